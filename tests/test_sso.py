"""SSO logins: `login --sso` against the test identity provider (tests/fakes/idp.py, https on 127.0.0.1 with its
own CA) and the Quay-compatible registry, which checks the ID token as Quay does (DESIGN.md section 10).

The helper trusts the IdP's CA through SSL_CERT_FILE, as a user's system store would. A BROWSER script
stands in for a person: it fetches the authorize URL, submits the IdP's login form and follows the
redirect to the listener (with urllib; the last tests drive a real headless Chromium).
"""

import base64
import concurrent.futures
import configparser
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import needs
from tests.fakes.idp import CLIENT_ID, ID_TOKEN_MARK, REFRESH_PREFIX, IdPUser, TestIdP
from tests.fakes.quay_registry import APP_TOKEN, QuayRegistry, b64url_decode
from tests.support import CLI, HELPER, USERS, cli, helper

pytestmark = pytest.mark.slow  # each test runs logins as processes: the full suite (CI)

CAROL = IdPUser("carol", "carol-idp-pw")
QUAY_CLIENT = "quay-ui"  # Quay's own login client (its CLIENT_ID)

# A person at a browser, in Python: GET the authorize URL (a login form), POST it, follow the redirect.
BROWSER = r"""#!{python}
import html.parser, ssl, sys, urllib.parse, urllib.request
class Form(html.parser.HTMLParser):
    fields, action = {{}}, None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form": Form.action = a["action"]
        if tag == "input": Form.fields[a["name"]] = a.get("value", "")
url = sys.argv[1]
context = ssl.create_default_context(cafile={ca!r})
page = urllib.request.urlopen(url, context=context).read().decode()
Form().feed(page)
Form.fields.update(username="carol", password="carol-idp-pw")
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a): return None
opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
target = urllib.parse.urljoin(url, Form.action)
try:
    opener.open(target, urllib.parse.urlencode(Form.fields).encode())
except urllib.error.HTTPError as e:
    location = e.headers["Location"]
    with open({log!r}, "a") as f: f.write(location.split("?")[0] + "\n")
    urllib.request.urlopen(location).read()
"""


@pytest.fixture
def ca_file(oidc_ca, tmp_path):
    path = tmp_path / "idp-ca.pem"
    oidc_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def idp(oidc_ca):
    with TestIdP(oidc_ca, users=[CAROL]) as found:
        yield found


@pytest.fixture
def quay(idp, tmp_path):
    with QuayRegistry(users=USERS) as registry:
        idp.trusted_by(registry, tmp_path)
        # Quay 3.18 with the CLI's client as an accepted audience (OIDC_AUDIENCES).
        registry.sso = {"issuer": idp.url, "client_id": QUAY_CLIENT, "audiences": [CLIENT_ID]}
        yield registry


@pytest.fixture
def env(file_keyring, ca_file, tmp_path):
    browser = tmp_path / "browser.py"
    browser.write_text(BROWSER.format(python=sys.executable, ca=ca_file, log=str(tmp_path / "visits")))
    browser.chmod(0o755)
    return dict(file_keyring, SSL_CERT_FILE=ca_file, BROWSER=str(browser))


def login(env, quay, idp, *more):
    return cli(env, "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, *more, timeout=60)


def get(env, host):
    r = helper(env, "get", host)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def claims(token):
    return json.loads(b64url_decode(token.split(".")[1]))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def files_under(root):
    for folder, _, names in os.walk(root):
        for name in names:
            yield os.path.join(folder, name)


def test_browser_login_get_list_logout(env, quay, idp, tmp_path):
    r = login(env, quay, idp, "--browser")
    assert r.returncode == 0, r.stderr
    assert r.stderr.endswith(
        f"Login Succeeded: carol at {quay.host} (SSO via {idp.url}; the refresh token is in the keyring)\n".encode()
    )
    assert (tmp_path / "visits").read_text().startswith("http://127.0.0.1:")  # the redirect went to our listener
    assert quay.sso_log[-1]["status"] == 200 and quay.auth_log[-1]["credential"] == "id_token"
    answer = get(env, quay.host)
    assert answer["Username"] == "$oauthtoken"
    assert claims(answer["Secret"])["sub"] == CAROL.subject and answer["Secret"].startswith(ID_TOKEN_MARK)
    assert len(idp.refresh_grants()) == 0  # the login's ID token is cached: no refresh yet
    listed = json.loads(helper(env, "list").stdout)
    assert listed == {quay.host: "$oauthtoken"}
    # No file holds the refresh token (the keyring's own file holds it encoded); the index holds no secret.
    index = json.loads(read(os.path.join(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")))
    sso = index["registries"][quay.host]["sso"]
    assert sso["issuer"] == idp.url and sso["subject"] == CAROL.subject and sso["user"] == "carol"
    assert [p for p in files_under(tmp_path) if REFRESH_PREFIX.encode() in read(p)] == []
    assert len(idp.live_refresh_tokens()) == 1
    r = cli(env, "logout", quay.host)
    assert r.returncode == 0 and r.stderr == f"Removed credentials for {quay.host}\n".encode(), r.stderr
    assert idp.revocations and idp.live_refresh_tokens() == []  # revoked at the IdP (RFC 7009)
    assert helper(env, "get", quay.host).stdout.strip() == b"credentials not found in native keychain"


def test_device_login(env, quay, idp):
    proc = subprocess.Popen(
        [CLI, "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, "--device"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        first = proc.stderr.readline().decode()
        second = proc.stderr.readline().decode()
        assert first.startswith(f"To sign in, open {idp.url}/device/verify?user_code="), first
        code = second.split()[-1]
        idp.slow_down = 1  # the first poll: slow down (5 s more between polls)
        idp.approve_device(code, "carol")
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        proc.kill()
    polls = [e["error"] for e in idp.token_log if e["grant"].endswith("device_code")]
    assert polls == ["slow_down", None]
    assert get(env, quay.host)["Username"] == "$oauthtoken"


def test_device_access_denied_stores_nothing(env, quay, idp):
    idp.access_denied = True
    proc = subprocess.Popen(
        [CLI, "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, "--device"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stderr.readline()
        code = proc.stderr.readline().decode().split()[-1]
        idp.approve_device(code, "carol", deny=True)
        assert proc.wait(timeout=30) == 1
        assert (
            proc.stderr.read()
            == b"quay-cred-helper: the sign-in was refused at the identity provider (access_denied)\n"
        )
    finally:
        proc.kill()
    assert helper(env, "list").stdout.strip() == b"{}"


@pytest.mark.parametrize(
    ("switch", "line"),
    [
        (
            "wrong_nonce",
            "the ID token's nonce is not the one this login sent: refused (a replayed answer?)\n",
        ),
        (
            "no_typ",
            "the identity provider's ID token has no typ header: Quay refuses it (OAuth access token could "
            "not be validated): have the IdP admin give the client's ID tokens typ JWT (Keycloak, Entra ID and Okta "
            "do by default)\n",
        ),
        (
            "no_refresh",
            "{issuer} gave no refresh token: nothing was stored: ask the IdP admin to allow refresh tokens "
            "for the client (offline_access), or check sso_scopes\n",
        ),
    ],
)
def test_a_bad_answer_from_the_idp_stores_nothing(env, quay, idp, switch, line):
    setattr(idp, switch, True)
    r = login(env, quay, idp, "--browser")
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[-1] + "\n" == "quay-cred-helper: " + line.format(issuer=idp.url)
    assert helper(env, "list").stdout.strip() == b"{}"
    assert quay.sso_log == []  # never shown to Quay


@pytest.mark.parametrize(
    ("setup", "words", "fix"),
    [
        (
            {"audiences": []},
            "Audience doesn't match",
            f"Quay 3.18 and later check the ID token's aud: ask the Quay admin to add OIDC_AUDIENCES: [{CLIENT_ID}]",
        ),
        ({"user_creation": False}, "User creation is disabled. Please contact your administrator", "ask the Quay"),
        ({"issuer": "https://other.example"}, "Issuer {issuer} not configured", "Quay has no OIDC login for"),
    ],
)
def test_quay_refusals_store_nothing_and_say_the_fix(env, quay, idp, setup, words, fix):
    quay.sso.update(setup)
    r = login(env, quay, idp, "--browser")
    assert r.returncode == 1
    last = r.stderr.decode().splitlines()[-1]
    assert last.startswith(
        f"quay-cred-helper: {quay.host} refused the SSO login: {words.format(issuer=idp.url)}: {fix}"
    ), last
    assert helper(env, "list").stdout.strip() == b"{}"


def test_older_quay_does_not_check_aud(env, quay, idp):
    quay.sso.update(audiences=[], check_aud=False)  # 3.9 to 3.17
    r = login(env, quay, idp, "--browser")
    assert r.returncode == 0, r.stderr


def test_no_client_id_offers_quays_own(env, quay, idp):
    r = cli(env, "login", quay.host, "--sso", "--issuer", idp.url)
    assert r.returncode == 1
    assert r.stderr.decode().endswith(
        f"(Quay's own OIDC login client is {QUAY_CLIENT}; it must allow PKCE or the device grant)\n"
    ), r.stderr


def near_its_end(env, token, seconds=37):
    """Move the cached ID token's times back, as if `seconds` had passed (the cache's own record)."""
    cache = os.path.join(env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens")
    moved = 0
    for path in files_under(cache):
        data = json.loads(read(path)) if path.endswith(".json") else None
        if data and data.get("token") == token:
            data["issued_at"] -= seconds
            data["expires_at"] -= seconds
            with open(path, "w") as f:
                json.dump(data, f)
            moved += 1
    assert moved == 1


def test_refresh_near_expiry_rotates_and_the_old_token_is_never_reused(env, quay, idp):
    idp.id_token_lifetime = 40  # handed out while 10% of 40 s is left: usable for 36 s
    assert login(env, quay, idp, "--browser").returncode == 0
    first = get(env, quay.host)["Secret"]
    near_its_end(env, first)
    second = get(env, quay.host)["Secret"]
    assert second != first and claims(second)["sub"] == CAROL.subject
    grants = idp.refresh_grants()
    assert len(grants) == 1 and grants[0]["status"] == 200
    assert get(env, quay.host)["Secret"] == second  # cached again
    # The keyring now holds the rotated token; the one used is never presented again.
    used = grants[0]["refresh"]
    assert used not in idp.live_refresh_tokens() and len(idp.live_refresh_tokens()) == 1


def test_a_dead_session_fails_at_once_with_one_line(env, quay, idp):
    idp.id_token_lifetime = 40
    assert login(env, quay, idp, "--browser").returncode == 0
    for token in list(idp.refresh_tokens):
        idp.revoke(token)
    idp.revocations.clear()
    cache = os.path.join(env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens")
    for path in files_under(cache):
        os.unlink(path)
    started = time.monotonic()
    r = helper(env, "get", quay.host)
    assert r.returncode == 1 and time.monotonic() - started < 10
    assert r.stdout == (f"{quay.host}: SSO session expired: run quay-cred-helper login {quay.host} --sso\n".encode()), (
        r.stdout,
        r.stderr,
    )


@pytest.mark.slow  # 16 processes: the full suite
def test_sixteen_gets_at_expiry_make_one_refresh(env, quay, idp):
    idp.id_token_lifetime = 40
    idp.slow = 0.3  # the refresh takes a while: the others wait on the single-flight lock
    assert login(env, quay, idp, "--browser").returncode == 0
    near_its_end(env, get(env, quay.host)["Secret"])
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: get(env, quay.host)["Secret"], range(16)))
    assert len(set(answers)) == 1
    assert [g["status"] for g in idp.refresh_grants()] == [200]
    assert len(idp.live_refresh_tokens()) == 1  # the rotated one: nothing reused, the family alive


def test_without_a_token_cache_concurrent_refreshes_never_present_one_token_twice(env, quay, idp):
    """QUAY_CRED_HELPER_NO_CACHE: every get refreshes; a lock of the session's own serialises them, so the IdP
    never sees a rotated token again (which would revoke the whole session)."""
    assert login(env, quay, idp, "--browser").returncode == 0
    env = dict(env, QUAY_CRED_HELPER_NO_CACHE="1")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: get(env, quay.host)["Username"], range(6)))
    assert answers == ["$oauthtoken"] * 6
    grants = idp.refresh_grants()
    assert [g["status"] for g in grants] == [200] * 6
    assert len({g["refresh"] for g in grants}) == 6  # each presented the token the one before it received
    assert len(idp.live_refresh_tokens()) == 1


@pytest.mark.slow  # over half a second: the full suite
def test_cached_sso_get_touches_neither_keyring_nor_network_nor_httpx(env, quay, idp):
    from tests.test_startup import HEAVY, imported

    assert login(env, quay, idp, "--browser").returncode == 0
    before = len(idp.access), sum(quay.requests.values())
    # A keyring that fails every call: a cached get must not open it.
    failing = dict(env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    r, names = imported(failing, "get", quay.host.encode())
    assert r.returncode == 0 and json.loads(r.stdout)["Username"] == "$oauthtoken", r.stderr
    assert not names & (HEAVY | {"jwt"}), names
    assert (len(idp.access), sum(quay.requests.values())) == before


# -- a real browser: headless Chromium (Debian's `chromium`) -------------------------------------------------
# `login --sso` hands the authorize URL to BROWSER, a two-line script that runs Chromium on it. Headless
# Chromium cannot type, so the IdP's login and verification pages carry one line of script that submits the
# form (the IdP's `autologin` switch, test-only); everything else is Chromium's own: it renders the IdP's
# page, posts the real form, follows the 302 to our 127.0.0.1 listener and shows its answer, which
# `--dump-dom` prints once the page has settled (`--virtual-time-budget`). Chromium trusts only the IdP's key
# (`--ignore-certificate-errors-spki-list`), as a system CA store would trust its certificate.


def spki_pin(url):
    """The base64 SHA-256 of the server's public key, as Chromium's SPKI list takes it."""
    host, port = url.split("//")[1].split(":")
    pem = ssl.get_server_certificate((host, int(port)))
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium_argv(issuer, profile, url=None):
    argv = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={spki_pin(issuer)}",
        "--virtual-time-budget=8000",
        "--dump-dom",
    ]
    return [*argv, url] if url else argv


@needs("chromium")
def test_chromium_follows_the_pkce_flow(env, quay, idp, tmp_path):
    idp.autologin = (CAROL.username, CAROL.password)
    dump = tmp_path / "page.html"
    browser = tmp_path / "chromium-browser"
    argv = " ".join(chromium_argv(idp.url, tmp_path / "profile"))
    browser.write_text(f'#!/bin/sh\nexec {argv} "$1" > {dump} 2>/dev/null\n')
    browser.chmod(0o755)
    env = dict(env, BROWSER=str(browser))
    r = cli(env, "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, "--browser", timeout=90)
    assert r.returncode == 0, r.stderr
    assert b"Login Succeeded: carol at" in r.stderr
    answer = json.loads(helper(env, "get", quay.host).stdout)
    assert answer["Username"] == "$oauthtoken" and claims(answer["Secret"])["sub"] == CAROL.subject
    # What the browser showed last: our listener's page, reached by the IdP's redirect.
    for _ in range(100):
        if b"return to the terminal" in (dump.read_bytes() if dump.exists() else b""):
            break
        subprocess.run(["sleep", "0.1"])
    assert b"Signed in. You can close this window and return to the terminal." in dump.read_bytes()
    assert [e["grant"] for e in idp.token_log] == ["authorization_code"]


@needs("chromium")
def test_chromium_approves_a_device_code(env, quay, idp, tmp_path):
    idp.autologin = (CAROL.username, CAROL.password)
    argv = [CLI, "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, "--device"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        uri = proc.stderr.readline().decode().split()[-1]
        proc.stderr.readline()
        page = subprocess.run(chromium_argv(idp.url, tmp_path / "profile", uri), capture_output=True, timeout=60).stdout
        assert b"Device approved" in page
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert json.loads(helper(env, "get", quay.host).stdout)["Username"] == "$oauthtoken"


# -- the other commands for an SSO user ------------------------------------------------------------------------


def token_request_as_carol(env, quay, credential):
    """`token` makes one /v2/auth request with the stored credential: the registry sees carol, and how."""
    r = cli(env, "token", f"{quay.host}/carol/app")
    assert r.returncode == 0, r.stderr
    assert quay.auth_log[-1] == {
        "user": "carol",
        "scopes": ["repository:carol/app:pull"],
        "status": 200,
        "credential": credential,
    }


def test_token_list_doctor_and_ci_login_for_an_sso_user(env, quay, idp):
    assert login(env, quay, idp, "--browser").returncode == 0
    token_request_as_carol(env, quay, "id_token")
    r = cli(env, "list", "--long")
    assert r.returncode == 0
    row = r.stdout.decode().splitlines()[1]
    assert re.fullmatch(
        rf"{quay.host}  \$oauthtoken  \S+Z  SSO session of carol, \d+s old; refresh token ends \S+Z", row
    )
    listed = json.loads(cli(env, "list", "--json").stdout)
    assert listed[0]["sso"]["issuer"] == idp.url and listed[0]["sso"]["user"] == "carol"
    r = cli(env, "doctor", quay.host)
    out = r.stdout.decode()
    for check in ("SSO identity provider", "SSO session", "credentials"):
        assert any(line.startswith("OK") and f"{quay.host} {check}" in line for line in out.splitlines()), out
    # ci-login is for robots: a registry configured for SSO only gets a pointer to robots.
    config = os.path.join(env["XDG_CONFIG_HOME"], "quay-cred-helper", "config.ini")
    with open(config, "w") as f:
        f.write(f"[{quay.host}]\nsso_issuer = {idp.url}\nsso_client_id = {CLIENT_ID}\n")
    r = cli(env, "ci-login", quay.host)
    assert r.returncode == 1 and b"ci-login logs in robots, not SSO users" in r.stderr, r.stderr


def test_config_settings_and_logout_without_a_revocation_endpoint(env, quay, idp):
    idp.revocation = False
    config = os.path.join(env["XDG_CONFIG_HOME"], "quay-cred-helper", "config.ini")
    os.makedirs(os.path.dirname(config), exist_ok=True)
    with open(config, "w") as f:
        f.write(f"[{quay.host}]\nsso_issuer = {idp.url}\nsso_client_id = {CLIENT_ID}\n")
    r = cli(env, "login", quay.host, "--sso", "--browser", timeout=60)
    assert r.returncode == 0, r.stderr
    r = cli(env, "logout", quay.host)
    assert r.returncode == 0 and r.stderr == f"Removed credentials for {quay.host}\n".encode(), r.stderr
    assert idp.revocations == []
    assert helper(env, "list").stdout.strip() == b"{}"


def test_sso_flags_need_sso(env, quay, idp):
    r = cli(env, "login", quay.host, "--device")
    assert r.returncode == 1 and r.stderr == b"quay-cred-helper: --device goes with --sso\n"
    r = cli(env, "login", quay.host, "--sso", "-u", "alice")
    assert r.returncode == 1 and b"--sso goes without -u" in r.stderr
    r = cli(env, "login", quay.host, "--sso", "--client-id", CLIENT_ID)
    assert r.returncode == 1
    assert r.stderr.decode().startswith(f"quay-cred-helper: no SSO issuer for {quay.host} (Quay does not publish it)")


def test_a_long_refresh_token_is_split_across_keyring_entries(env, quay, idp):
    idp.refresh_length = 5000  # over Windows Credential Manager's 2,560 bytes per entry
    idp.id_token_lifetime = 40
    assert login(env, quay, idp, "--browser").returncode == 0
    near_its_end(env, get(env, quay.host)["Secret"])
    assert get(env, quay.host)["Username"] == "$oauthtoken"
    grants = idp.refresh_grants()
    assert len(grants) == 1 and grants[0]["status"] == 200 and len(grants[0]["refresh"]) == 5000
    assert cli(env, "logout", quay.host).returncode == 0
    keyring_file = os.path.join(env["XDG_DATA_HOME"], "python_keyring", "keyring_pass.cfg")
    part = "_23sso_2e"  # "#sso." as keyrings.alt's file escapes an entry's name
    assert part not in read(keyring_file).decode()  # every part erased
    assert login(env, quay, idp, "--browser").returncode == 0
    assert read(keyring_file).decode().count(part) == 4  # 5,000 characters: the main entry and 4 parts
    stored = json.dumps({"ServerURL": quay.host, "Username": "alice", "Secret": "alice-password"}).encode()
    assert helper(env, "store", stored).returncode == 0  # docker login over the session
    assert part not in read(keyring_file).decode()  # the session's parts went with it
    assert get(env, quay.host) == {"ServerURL": quay.host, "Username": "alice", "Secret": "alice-password"}


# -- real clients as an SSO user ------------------------------------------------------------------------------


@needs("skopeo", "podman")
def test_real_clients_push_and_pull_as_an_sso_user_with_id_tokens_only(
    env, idp, docker_registry, tmp_path, monkeypatch
):
    """skopeo, podman, docker-py and oras-py through the helper, against Debian's docker-registry whose tokens
    come from the Quay-compatible service: it sees only ID tokens, and no file holds the refresh token."""
    import shutil

    import docker.auth

    from tests.fakes.real_registry import oci_layout
    from tests.test_oras import oras_py, push_titled_artifact

    quay = docker_registry.quay
    idp.trusted_by(quay, tmp_path)
    quay.sso = {"issuer": idp.url, "client_id": QUAY_CLIENT, "audiences": [CLIENT_ID]}
    host = docker_registry.host
    r = cli(env, "login", host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, "--browser", timeout=60)
    assert r.returncode == 0, r.stderr
    env = dict(env, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"))
    assert cli(env, "configure", host, "--docker", "--podman").returncode == 0
    layout = tmp_path / "image"
    oci_layout(str(layout))
    image = f"{host}/carol/app:1"
    r = subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{image}"],
        env=env,
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr
    runroot = tempfile.mkdtemp(prefix="qch-")  # podman wants a short one
    try:
        storage = ["--root", str(tmp_path / "storage"), "--runroot", runroot, "--storage-driver", "vfs"]
        r = subprocess.run(["podman", *storage, "pull", "--tls-verify=false", image], env=env, capture_output=True)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
    # oras-py pulls an artifact from carol's namespace (alice pushed it there).
    quay.accounts["alice"].namespaces.add("carol")
    data = b'{"spdxVersion": "SPDX-2.3"}'
    push_titled_artifact(host, "carol/sbom", "1", "sbom.json", data)
    r = oras_py(env, "pull", f"{host}/carol/sbom:1", str(tmp_path / "pulled"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pulled" / "sbom.json").read_bytes() == data
    # docker-py resolves the registry's credentials through docker's config.json, as its clients do.
    monkeypatch.setenv("PATH", env["PATH"])
    for name in ("PYTHON_KEYRING_BACKEND", "QUAY_CRED_HELPER_ALLOW_PLAINTEXT", "SSL_CERT_FILE", "HOME"):
        monkeypatch.setenv(name, env[name])
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, env[name])
    found = docker.auth.resolve_authconfig(
        docker.auth.load_config(os.path.join(env["DOCKER_CONFIG"], "config.json")), host
    )
    assert found["Username"] == "$oauthtoken" and claims(found["Password"])["sub"] == CAROL.subject

    by_clients = [e for e in quay.auth_log if e["scopes"] and e["user"] != "alice"]
    assert by_clients and all(e["user"] == "carol" and e["status"] == 200 for e in by_clients), quay.auth_log
    assert {e["credential"] for e in quay.auth_log if e["user"] != "alice"} == {"id_token"}  # only ID tokens
    assert [p for p in files_under(tmp_path) if REFRESH_PREFIX.encode() in read(p)] == []


# -- SIGKILL at each step ---------------------------------------------------------------------------------------


def test_sigkill_during_a_refresh_leaves_a_usable_session_or_a_clear_log_in_again(env, quay, idp):
    idp.id_token_lifetime = 40
    assert login(env, quay, idp, "--browser").returncode == 0
    near_its_end(env, get(env, quay.host)["Secret"])
    # Killed at once (before the refresh reaches the IdP): the session is intact.
    killed = subprocess.Popen([HELPER, "get"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    killed.kill()
    killed.wait()
    assert idp.refresh_grants() == []
    # Killed while the IdP answers the refresh: the IdP rotated a token that nobody kept.
    idp.slow = 2.0
    proc = subprocess.Popen([HELPER, "get"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdin.write(quay.host.encode())
    proc.stdin.close()
    for _ in range(250):
        if ("POST", "/token", "refresh_token") in idp.access:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    idp.slow = 0
    for _ in range(250):  # the IdP finishes the request the killed get sent
        if idp.refresh_grants():
            break
        time.sleep(0.02)  # the IdP finishes the request the killed get sent: it rotated a token nobody kept
    r = helper(env, "get", quay.host)
    # The refresh token in the keyring was rotated away: the IdP sees it reused and ends the session.
    assert r.returncode == 1, r.stdout
    assert r.stdout == f"{quay.host}: SSO session expired: run quay-cred-helper login {quay.host} --sso\n".encode()
    assert idp.live_refresh_tokens() == []  # the whole family revoked: nobody holds a live token
    # Logging in again gives a working session.
    assert login(env, quay, idp, "--browser").returncode == 0
    assert get(env, quay.host)["Username"] == "$oauthtoken"


def test_sigkill_during_login_stores_nothing(env, quay, idp, tmp_path):
    stalled = tmp_path / "stalled-browser"
    stalled.write_text("#!/bin/sh\nexit 0\n")  # a browser that never comes back
    stalled.chmod(0o755)
    argv = [CLI, "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, "--browser"]
    proc = subprocess.Popen(argv, env=dict(env, BROWSER=str(stalled)), stderr=subprocess.PIPE)
    assert proc.stderr.readline().startswith(b"Signing in in your browser")
    proc.kill()
    proc.wait()
    assert helper(env, "list").stdout.strip() == b"{}"
    assert login(env, quay, idp, "--browser").returncode == 0  # and a new login works


def test_a_rotated_refresh_token_is_kept_even_when_its_id_token_is_refused(env, quay, idp):
    """The IdP revokes the old refresh token as it answers: the new one is stored before the answer's ID token
    is checked, so a refused ID token costs one failed get, never the session."""
    idp.id_token_lifetime = 40
    assert login(env, quay, idp, "--browser").returncode == 0
    near_its_end(env, get(env, quay.host)["Secret"])
    idp.no_typ = True
    r = helper(env, "get", quay.host)
    assert r.returncode == 1 and b"has no typ header: Quay refuses it" in r.stdout, r.stdout
    idp.no_typ = False
    time.sleep(0.1)
    r = helper(env, "get", quay.host)
    assert r.returncode == 0, r.stdout
    assert [g["status"] for g in idp.refresh_grants()] == [200, 200]  # the second with the rotated token
    assert idp.refresh_grants()[1]["refresh"] == idp.refresh_grants()[0]["issued_refresh"]


# -- login --sso --app-token: an app-specific token made with the sign-in (sso/apptoken.py) -------------------
# The registry's /api/v1/user/apptoken answers as Quay's endpoints/api/appspecifictokens.py does.

DAY = 86400


def app_login(env, quay, idp):
    return login(env, quay, idp, "--app-token", "--browser")


def keyring_entries(env):
    """{username in the keyring file (the keyring's own encoding undone): value}."""
    path = os.path.join(env["XDG_DATA_HOME"], "python_keyring", "keyring_pass.cfg")
    if not os.path.exists(path):
        return {}
    parser = configparser.RawConfigParser()
    parser.read(path)
    return {
        name: base64.b64decode(value).decode() for section in parser.sections() for name, value in parser.items(section)
    }


def index_entry(env, host):
    index = json.loads(read(os.path.join(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")))
    return index["registries"].get(host)


def live_tokens(quay):
    return {uuid: token["code"] for uuid, token in quay.app_tokens.items()}


def test_app_token_login_stores_only_the_app_token_and_get_answers_it(env, quay, idp, tmp_path):
    idp.no_refresh = True  # an IdP that gives a public client no refresh token
    quay.app_token_expiration = 30 * DAY
    r = app_login(env, quay, idp)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().endswith(
        f"Login Succeeded: carol at {quay.host} (SSO via {idp.url}; an app token made with it is kept as $app)\n"
    )
    [(uuid, code)] = live_tokens(quay).items()
    made = quay.app_tokens[uuid]
    assert made["user"] == "carol" and re.fullmatch(r"quay-cred-helper on \S+, \d{4}-\d\d-\d\d", made["title"])
    # The keyring holds one entry: $app and the token; no refresh token anywhere.
    entries = keyring_entries(env)
    assert [json.loads(v) for v in entries.values()] == [{"username": "$app", "secret": code}]
    assert [p for p in files_under(tmp_path) if REFRESH_PREFIX.encode() in read(p)] == []
    # The index records whose token it is, its uuid and Quay's expiry, never the token.
    entry = index_entry(env, quay.host)
    assert entry["username"] == "$app" and "sso" not in entry
    record = entry["app_token"]
    assert record["uuid"] == uuid and record["user"] == "carol" and record["issuer"] == idp.url
    assert abs(int(record["expires"]) - made["expiration"]) <= 1 and int(record["expires"]) > int(record["created"])
    assert code not in json.dumps(entry) and APP_TOKEN not in json.dumps(entry)
    answer = get(env, quay.host)
    assert answer["Username"] == "$app" and answer["Secret"] == code
    # The registry sees $app and the token, as carol.
    token_request_as_carol(env, quay, "app_token")
    out = cli(env, "doctor", quay.host).stdout.decode().splitlines()
    for check in ("credentials", "app token"):
        assert any(line.startswith("OK") and f"{quay.host} {check}" in line for line in out), out
    listed = json.loads(cli(env, "list", "--json").stdout)[0]["app_token"]
    assert listed["uuid"] == uuid and listed["user"] == "carol" and listed["due"] is False
    row = cli(env, "list", "--long").stdout.decode().splitlines()[1]
    assert re.fullmatch(rf"{quay.host}  \$app\s+\S+Z  app token of SSO user carol, \d+s old; expires \S+Z", row), row


def days_pass(env, quay, days):
    """Move the app tokens' times (at the registry and in the index) back, as if `days` had passed."""
    for token in quay.app_tokens.values():
        token["created"] -= days * DAY
        token["expiration"] -= days * DAY
    index_path = os.path.join(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")
    index = json.loads(read(index_path))
    record = index["registries"][quay.host]["app_token"]
    for name in ("created", "expires"):
        record[name] = str(int(record[name]) - int(days * DAY))
    with open(index_path, "w") as f:
        json.dump(index, f)


def expiring_at_quay(env, quay):
    """Quay's own ?expiring=true answer, asked with the login's cached ID token as Bearer."""
    cache = os.path.join(env["XDG_CACHE_HOME"], "quay-cred-helper")
    [id_token] = {json.loads(read(p))["token"] for p in files_under(cache) if ID_TOKEN_MARK.encode() in read(p)}
    request = urllib.request.Request(
        f"{quay.url}/api/v1/user/apptoken?expiring=true", headers={"Authorization": f"Bearer {id_token}"}
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def test_renewal_makes_a_new_token_and_revokes_the_old(env, quay, idp):
    quay.app_token_expiration = 10 * DAY
    assert app_login(env, quay, idp).returncode == 0
    [(old_uuid, old_code)] = live_tokens(quay).items()
    days_pass(env, quay, 8.5)  # not yet in the last tenth of its life
    assert json.loads(cli(env, "list", "--json").stdout)[0]["app_token"]["due"] is False
    assert expiring_at_quay(env, quay) == {"tokens": [], "only_expiring": True}
    days_pass(env, quay, 1)  # nine and a half days on: due, by list and by Quay's ?expiring=true alike
    row = cli(env, "list", "--long").stdout.decode().splitlines()[1]
    assert row.endswith(f"(due: quay-cred-helper login {quay.host} --sso --app-token)"), row
    assert json.loads(cli(env, "list", "--json").stdout)[0]["app_token"]["due"] is True
    out = cli(env, "doctor", quay.host).stdout.decode().splitlines()
    [warning] = [line for line in out if f"{quay.host} app token" in line]
    assert warning.startswith("WARN") and "of SSO user carol: expires" in warning, out
    assert f"quay-cred-helper login {quay.host} --sso --app-token" in "\n".join(out)
    [listed] = expiring_at_quay(env, quay)["tokens"]
    assert listed["uuid"] == old_uuid and "token_code" not in listed  # Quay's list never shows the code
    assert sorted(listed) == ["created", "expiration", "last_accessed", "title", "uuid"]
    r = app_login(env, quay, idp)
    assert r.returncode == 0, r.stderr
    [(new_uuid, new_code)] = live_tokens(quay).items()
    assert new_uuid != old_uuid and new_code != old_code  # the old one revoked (DELETE), the new one kept
    assert ("revoke_app_specific_token", "carol", {"app_specific_token": old_uuid}) in quay.api.audit
    assert get(env, quay.host)["Secret"] == new_code
    assert index_entry(env, quay.host)["app_token"]["uuid"] == new_uuid
    assert ("DELETE", f"/api/v1/user/apptoken/{old_uuid}", 204) in quay.api.requests


def test_logout_revokes_the_app_token(env, quay, idp):
    assert app_login(env, quay, idp).returncode == 0
    assert len(quay.app_tokens) == 1
    r = cli(env, "logout", quay.host)
    assert r.returncode == 0 and r.stderr == f"Removed credentials for {quay.host}\n".encode(), r.stderr
    assert quay.app_tokens == {} and keyring_entries(env) == {}
    assert helper(env, "list").stdout.strip() == b"{}"


def test_logout_after_the_sign_in_is_stale_says_where_to_revoke(env, quay, idp):
    assert app_login(env, quay, idp).returncode == 0
    shutil.rmtree(os.path.join(env["XDG_CACHE_HOME"], "quay-cred-helper"))  # the login's ID token is gone
    r = cli(env, "logout", quay.host)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 2 and lines[1] == f"Removed credentials for {quay.host}", lines
    assert "stays valid at Quay" in lines[0] and "Quay's web UI" in lines[0]
    assert len(quay.app_tokens) == 1 and keyring_entries(env) == {}  # erased here, left at Quay as said


def test_an_app_token_replaces_an_sso_session_and_the_other_way_round(env, quay, idp):
    assert login(env, quay, idp, "--browser").returncode == 0
    assert len(idp.live_refresh_tokens()) == 1
    assert app_login(env, quay, idp).returncode == 0
    assert idp.live_refresh_tokens() == [] and len(quay.app_tokens) == 1  # the session ended at the IdP
    assert [json.loads(v)["username"] for v in keyring_entries(env).values()] == ["$app"]
    assert login(env, quay, idp, "--browser").returncode == 0
    assert quay.app_tokens == {}  # the app token revoked with the new session's ID token
    assert get(env, quay.host)["Username"] == "$oauthtoken"


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("sso_api", "made no app token (HTTP 401: Invalid token): nothing was stored: log in with --sso alone"),
        (
            "app_tokens_feature",
            "made no app token (HTTP 404: The requested URL was not found on the server.): "
            "nothing was stored: ask the Quay admin to turn on FEATURE_APP_SPECIFIC_TOKENS",
        ),
    ],
)
def test_a_refusal_stores_nothing_and_says_one_line(env, quay, idp, setup, words):
    setattr(quay, setup, False)
    r = app_login(env, quay, idp)
    assert r.returncode == 1
    lines = r.stderr.decode().splitlines()
    assert lines[0].startswith("Signing in in your browser") and len(lines) == 2, lines  # the prompt, then one line
    assert lines[1].startswith(f"quay-cred-helper: {quay.host} {words}"), lines
    assert quay.app_tokens == {} and keyring_entries(env) == {}
    assert helper(env, "list").stdout.strip() == b"{}"


def test_an_app_token_the_keyring_cannot_keep_is_revoked_at_once(env, quay, idp):
    failing = dict(env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    r = login(failing, quay, idp, "--app-token", "--browser")
    assert r.returncode == 1 and r.stderr.decode().splitlines()[-1].startswith("quay-cred-helper: "), r.stderr
    assert [request[0] for request in quay.api.requests if "apptoken" in request[1]] == ["POST", "DELETE"]
    assert quay.app_tokens == {} and helper(env, "list").stdout.strip() == b"{}"


def test_app_token_needs_sso(env, quay):
    r = cli(env, "login", quay.host, "--app-token", "-u", "alice", "--password-stdin", stdin="x\n")
    assert r.returncode == 1 and r.stderr == b"quay-cred-helper: --app-token goes with --sso\n"

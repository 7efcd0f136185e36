"""What a hostile registry, a hostile local user and a real Quay showed (issue 12): a test per finding.

Hostile servers are local (tests/fakes/hostile.py): they drip bytes, hang up on TLS, or play a proxy
that logs what it would have seen. Nothing here leaves 127.0.0.1.
"""

import base64
import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from quay_cred_helper.config import Settings
from quay_cred_helper.errors import InputError, KeyringError, RegistryError
from quay_cred_helper.names import is_loopback, registry_key
from tests.fakes.hostile import DripServer, LoggingProxy, TLSHangup
from tests.fakes.quay_registry import b64url
from tests.support import ROBOT, ROBOT_TOKEN, cli, count_case, examples, helper, store

NOT_FOUND = b"credentials not found in native keychain\n"


def login(env, host, password="alice-password"):
    return cli(env, "login", host, "-u", "alice", "--password-stdin", stdin=password)


def configured(env, text):
    path = Path(env["HOME"], "config.ini")
    path.write_text(text)
    return dict(env, QUAY_CRED_HELPER_CONFIG=str(path))


def jwt_with(claims):
    return f"{b64url(b'{}')}.{b64url(json.dumps(claims).encode())}.c2ln"


# -- 1. an overall deadline ------------------------------------------------------------------------

CHALLENGE = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
    b'WWW-Authenticate: Bearer realm="http://127.0.0.1:1/v2/auth",service="s"\r\n\r\n'
)


@pytest.mark.slow  # waits out a deadline in real time
def test_robot_get_from_a_registry_dripping_its_headers_falls_back_within_the_deadline(file_keyring):
    with DripServer(CHALLENGE, interval=0.3) as drip:
        env = configured(file_keyring, f"[{drip.host}]\ndeadline = 2\n")
        store(env, drip.host, ROBOT, ROBOT_TOKEN)
        start = time.monotonic()
        r = helper(env, "get", drip.host)
        elapsed = time.monotonic() - start
    assert r.returncode == 0 and json.loads(r.stdout)["Secret"] == ROBOT_TOKEN
    assert f"{drip.host} did not finish within 2 s".encode() in r.stderr
    assert elapsed < 8  # the drip alone would take 45 s


@pytest.mark.slow  # waits out a deadline in real time
def test_token_from_a_registry_dripping_its_body_stops_at_the_deadline(file_keyring):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    with DripServer(b"{" + b" " * 399, prefix=head, interval=0.2) as drip:
        env = configured(file_keyring, f"[{drip.host}]\ndeadline = 2\ntimeout = 10\n")
        start = time.monotonic()
        r = cli(env, "token", drip.host)
        elapsed = time.monotonic() - start
    assert r.returncode == 1
    assert r.stderr.startswith(f"quay-cred-helper: {drip.host} did not finish within 2 s: ".encode())
    assert elapsed < 8


# -- 2. proxies never see loopback credentials ---------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_loopback_registries_never_go_through_a_proxy(file_keyring, quay):
    with LoggingProxy() as proxy:
        url = f"http://{proxy.host}"
        env = dict(file_keyring, HTTP_PROXY=url, HTTPS_PROXY=url, http_proxy=url, https_proxy=url)
        assert login(env, quay.host).returncode == 0
        store(env, quay.host, ROBOT, ROBOT_TOKEN)
        assert json.loads(helper(env, "get", quay.host).stdout)["Secret"] != ROBOT_TOKEN  # the exchange worked
    assert proxy.seen == []


def test_remote_https_goes_through_connect_and_plain_http_credentials_never_through_a_proxy(monkeypatch):
    from quay_cred_helper.registry.transport import make_client

    with LoggingProxy() as proxy:
        for name in ("HTTPS_PROXY", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://{proxy.host}")
        monkeypatch.setenv("NO_PROXY", "internal.example")
        client = make_client(Settings())
        route = client._transport.route
        assert route(httpx.Request("GET", "https://quay.example.com/v2/")) is client._transport.via["https"]
        assert route(httpx.Request("GET", "http://quay.example.com/v2/")) is client._transport.via["http"]
        with_password = httpx.Request("GET", "http://quay.example.com/v2/auth", headers={"Authorization": "Basic x"})
        assert route(with_password) is client._transport.direct
        assert route(httpx.Request("GET", "https://internal.example/v2/")) is client._transport.direct
        assert route(httpx.Request("GET", "https://localhost:5000/v2/")) is client._transport.direct
        # For real: the proxy gets a CONNECT (and, forwarding nothing, refuses it).
        with pytest.raises(httpx.ProxyError):
            client.get("https://registry.example/v2/")
        client.close()
    assert proxy.seen and proxy.seen[0].startswith("CONNECT registry.example:443 ")


# -- 3. plain-http fallback by exception type --------------------------------------------------------


def test_plain_http_registry_that_hangs_up_on_the_tls_client_hello(file_keyring, quay):
    with TLSHangup(quay.host) as front:
        r = login(file_keyring, front.host)
        assert r.returncode == 0, r.stderr
        assert front.hangups >= 1


# -- 4. remembered challenges expire, and a 401 under one re-discovers ---------------------------------


def challenge_file(env, host):
    return Path(env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens", host.replace(":", "_"), "challenge.json")


@pytest.mark.slow  # over half a second: the full suite
def test_a_maintenance_page_answering_200_once_does_not_switch_the_exchange_off(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    quay.v2_open = True
    assert json.loads(helper(file_keyring, "get", quay.host).stdout)["Secret"] == ROBOT_TOKEN
    quay.v2_open = False
    # A minute later (the remembered "no authentication" is that old), the exchange is back.
    path = challenge_file(file_keyring, quay.host)
    data = json.loads(path.read_text())
    path.write_text(json.dumps(dict(data, saved_at=data["saved_at"] - 61)))
    secret = json.loads(helper(file_keyring, "get", quay.host).stdout)["Secret"]
    assert secret != ROBOT_TOKEN and quay.auth_log[-1]["user"] == ROBOT


@pytest.mark.slow  # over half a second: the full suite
def test_referrers_after_a_maintenance_200_rediscovers_on_the_401(file_keyring, quay):
    from tests.fakes.artifacts import push_demo

    push_demo(quay.url, "org/app", "alice", "alice-password")
    assert login(file_keyring, quay.host).returncode == 0
    quay.v2_open = True
    cli(file_keyring, "token", quay.host)  # remembers "no authentication needed"
    quay.v2_open = False
    r = cli(file_keyring, "referrers", f"{quay.host}/org/app:1.0", "--format", "digest")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 2


def moving_realm(realms, refused):
    """A registry whose /v2/ names realms[-1]; a realm in `refused` answers 401."""
    seen = []

    def handler(request):
        seen.append(str(request.url))
        if request.url.path == "/v2/":
            header = f'Bearer realm="https://quay.example.com{realms[-1]}",service="s"'
            return httpx.Response(401, headers={"WWW-Authenticate": header})
        if request.url.path in refused:
            return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "Invalid"}]})
        return httpx.Response(200, json={"token": jwt_with({"exp": time.time() + 3600, "access": []})})

    return handler, seen


def test_a_realm_that_moved_is_found_again_and_a_refusal_is_never_resent(tmp_path):
    from quay_cred_helper.registry.cache import FileTokenCache
    from tests.support import tokens

    realms = ["/v2/auth"]
    handler, seen = moving_realm(realms, refused={"/v2/auth"})
    cache = FileTokenCache(str(tmp_path / "tokens"))
    exchange = tokens(tmp_path / "none.ini", cache=cache, client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(RegistryError, match="refused the credentials: Invalid"):
        exchange.get("quay.example.com", credentials=lambda: ("alice", "pw"))
    assert [u.split("?")[0] for u in seen] == ["https://quay.example.com/v2/", "https://quay.example.com/v2/auth"]
    # Remembered, the realm is refused once, /v2/ is asked again, and the same realm is not asked twice.
    seen.clear()
    from quay_cred_helper.registry.challenge import Challenge

    cache.save_challenge(
        "quay.example.com", Challenge("https://quay.example.com", "https://quay.example.com/v2/auth", "s")
    )
    with pytest.raises(RegistryError):
        exchange.get("quay.example.com", credentials=lambda: ("alice", "pw"))
    assert [u.split("?")[0] for u in seen] == ["https://quay.example.com/v2/auth", "https://quay.example.com/v2/"]
    # The realm moved: the remembered one refuses, /v2/ names the new one, which answers.
    realms.append("/v2/auth2")
    cache.save_challenge(
        "quay.example.com", Challenge("https://quay.example.com", "https://quay.example.com/v2/auth", "s")
    )
    seen.clear()
    assert exchange.get("quay.example.com", credentials=lambda: ("alice", "pw")).token.endswith(".c2ln")
    assert [u.split("?")[0] for u in seen][-1] == "https://quay.example.com/v2/auth2"


# -- 5. configure --migrate leaves no plaintext credential behind ------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_migrate_keeps_no_secret_in_backups_or_diffs_and_writes_through_symlinks(file_keyring):
    auth = base64.b64encode(b"alice:migrated-password").decode()
    dotfiles = Path(file_keyring["HOME"], "dotfiles")
    dotfiles.mkdir()
    target = dotfiles / "docker-config.json"
    target.write_text(json.dumps({"auths": {"quay.example.com": {"auth": auth}}, "psFormat": "x"}, indent="\t"))
    config_dir = Path(file_keyring["DOCKER_CONFIG"])
    config_dir.mkdir()
    (config_dir / "config.json").symlink_to(target)

    r = cli(file_keyring, "configure", "quay.example.com", "--docker", "--migrate", "--dry-run")
    assert r.returncode == 0 and b'"auth": "<redacted>"' in r.stdout
    assert auth.encode() not in r.stdout + r.stderr

    r = cli(file_keyring, "configure", "quay.example.com", "--docker", "--migrate")
    assert r.returncode == 0, r.stderr
    assert (config_dir / "config.json").is_symlink() and os.readlink(config_dir / "config.json") == str(target)
    data = json.loads(target.read_text())
    assert data["credHelpers"] == {"quay.example.com": "quay"} and data["psFormat"] == "x"
    for path in [target, Path(f"{target}.bak"), *config_dir.rglob("*")]:
        if path.is_file():
            text = path.read_text()
            assert auth not in text and "migrated-password" not in text, path
    assert json.loads(Path(f"{target}.bak").read_text())["psFormat"] == "x"
    got = json.loads(helper(file_keyring, "get", "quay.example.com").stdout)
    assert (got["Username"], got["Secret"]) == ("alice", "migrated-password")


# -- 6. server-given lifetimes are clamped ---------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, lifetime",
    [
        ({"token": "t", "expires_in": float("inf")}, 60),  # not a finite number: the default minute
        ({"token": jwt_with({"exp": 1e300})}, 86400),  # a JWT "valid" for ever: a day at most
        ({"token": "t", "expires_in": 10**9}, 86400),
        ({"token": jwt_with({"exp": float("nan")})}, 60),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_lifetimes_are_clamped(quay, file_keyring, answer, lifetime):
    quay.faults.append(("raw", json.dumps(answer).encode()))
    r = cli(file_keyring, "token", quay.host, "--json")
    assert r.returncode == 0, r.stderr
    assert lifetime - 5 <= json.loads(r.stdout)["expires_in"] <= lifetime


def test_a_cached_token_claiming_an_endless_life_is_not_handed_out(tmp_path):
    from quay_cred_helper.registry.cache import FileTokenCache, Token

    cache = FileTokenCache(str(tmp_path))
    cache.save("quay.example.com", "id", [], Token("t", time.time(), time.time() + 3600))
    path = next(tmp_path.rglob("id.json"))
    for expires in ("Infinity", "NaN", str(time.time() + 10 * 86400)):
        path.write_text(path.read_text().replace(json.dumps(json.loads(path.read_text())["expires_at"]), expires))
        assert cache.load("quay.example.com", "id", []) is None
        cache.save("quay.example.com", "id", [], Token("t", time.time(), time.time() + 3600))


# -- 7. and 8. registry names: IPv6 literals, cache folders, loopback -------------------------------------


@pytest.mark.parametrize("name", ["[..]", "[.]", "[a:5000]", "[::1", "[:::1]", "[1.2.3.4]"])
def test_odd_bracketed_names_are_refused(name):
    with pytest.raises(InputError, match="invalid registry name"):
        registry_key(name)


@pytest.mark.slow  # over half a second: the full suite
def test_odd_names_cannot_reach_other_registries_tokens(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    helper(file_keyring, "get", quay.host)  # caches a JWT
    tokens = Path(file_keyring["XDG_CACHE_HOME"], "quay-cred-helper", "tokens")
    before = sorted(tokens.rglob("*.json"))
    assert before
    for name in ("[..]", "[.]"):
        r = helper(file_keyring, "erase", name)
        assert (r.returncode, r.stdout) == (0, b"")  # nothing there to erase
        r = helper(file_keyring, "store", json.dumps({"ServerURL": name, "Username": "u", "Secret": "s"}))
        assert r.returncode == 1 and r.stdout.startswith(b"invalid registry name")
    assert sorted(tokens.rglob("*.json")) == before


def test_cache_folders_are_unique_and_inside_the_root(tmp_path):
    from quay_cred_helper.registry.cache import FileTokenCache

    cache = FileTokenCache(str(tmp_path / "tokens"))
    keys = ["[::1]:5000", "[::1:5000]", "a:5000", "127.0.0.1:5000", "127.0.0.1_5000.example"]
    folders = [cache._dir(registry_key(k)) for k in keys if not k.startswith("127.0.0.1_")]
    assert len(set(folders)) == len(folders)
    assert all(os.path.dirname(f) == str(tmp_path / "tokens") for f in folders)


@pytest.mark.parametrize(
    "key, loopback",
    [
        ("127.0.0.1:5000", True),
        ("127.255.255.254", True),
        ("localhost:8080", True),
        ("[::1]:5000", True),
        ("[0:0:0:0:0:0:0:1]", True),
        ("127.0.0.256", False),  # a DNS name, not an address
        ("127.1.300.1", False),
        ("127.0.0.1.example.com", False),
        ("127.000.0.1", False),
        ("[::2]", False),
    ],
)
def test_loopback_means_an_ip_literal_or_localhost(key, loopback):
    assert is_loopback(registry_key(key)) is loopback


def test_loopback_names_are_one_host_for_the_realm():
    from quay_cred_helper.registry.session import Session

    session = Session(httpx.Client(), "127.0.0.1:8080", Settings())
    session.check_realm("http://localhost:8080/v2/auth")  # a Quay whose SERVER_HOSTNAME says localhost
    with pytest.raises(RegistryError, match="refusing to send credentials over plain http"):
        Session(httpx.Client(), "127.0.0.256:8080", Settings()).check_realm("http://127.0.0.256:8080/v2/auth")
    with pytest.raises(RegistryError, match="the token realm is not on 127.0.0.1"):
        session.check_realm("http://10.0.0.1/v2/auth")


# -- 9. referrers cannot be made to spin ------------------------------------------------------------------


def test_link_headers_are_read_in_linear_time():
    from quay_cred_helper.registry.referrers import next_link

    start = time.perf_counter()
    assert next_link("<" * 99_000) is None  # the old pattern took about 45 s of CPU on this
    assert next_link("<a>; rel=prev, " * 5000 + '</next>; rel="next"') == "/next"
    assert time.perf_counter() - start < 2


def fanning_repository(children=20, cycle=False):
    from quay_cred_helper.registry.referrers import Repository
    from quay_cred_helper.registry.session import Session

    calls = []

    def handler(request):
        calls.append(request.url.path)
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        subject = request.url.path.rsplit("/", 1)[1]
        if cycle:  # two manifests that refer to each other
            other = "sha256:" + ("b" if subject.endswith("a") else "a") * 64
            items = [{"mediaType": "m", "digest": other, "size": 1}]
        else:
            items = [
                {"mediaType": "m", "digest": f"sha256:{len(calls):032x}{i:032x}", "size": 1} for i in range(children)
            ]
        return httpx.Response(200, json={"manifests": items})

    session = Session(httpx.Client(transport=httpx.MockTransport(handler)), "quay.example.com", Settings())
    return Repository(session, session.discover(), "org/app", auth=None), calls


def test_a_tree_that_never_ends_stops_with_a_clear_message():
    from quay_cred_helper.registry.referrers import MAX_REQUESTS, walk

    repository, calls = fanning_repository()
    with pytest.raises(RegistryError, match=f"stopped after {MAX_REQUESTS} requests to quay.example.com"):
        walk(repository, "sha256:" + "a" * 64, (), depth=10)
    assert len(calls) == MAX_REQUESTS + 1  # + the /v2/ ping


def test_a_digest_met_again_is_not_walked_again():
    from quay_cred_helper.registry.referrers import walk

    repository, calls = fanning_repository(cycle=True)
    listing = walk(repository, "sha256:" + "a" * 64, (), depth=10)
    assert len(calls) == 1 + 2  # /v2/, then each of the two manifests once
    assert listing.descriptors[0]["referrers"][0]["digest"] == "sha256:" + "a" * 64


@pytest.mark.slow  # over half a second: the full suite
def test_json_keeps_the_index_annotations(quay, file_keyring):
    from tests.fakes.artifacts import push_demo

    push_demo(quay.url, "org/app", "alice", "alice-password")
    assert login(file_keyring, quay.host).returncode == 0
    r = cli(file_keyring, "referrers", f"{quay.host}/org/app:1.0", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["annotations"]["org.opencontainers.image.created"].startswith("2026-")


# -- 10. server text reaches the terminal escaped ---------------------------------------------------------


def test_server_text_is_escaped_and_one_error_is_one_line(file_keyring, quay):
    quay.faults.append(("refuse", "nope\x1b]0;pwned\x07\x1b[2J\nsecond line"))
    r = login(file_keyring, quay.host)
    assert r.returncode == 1
    assert b"\x1b" not in r.stderr and b"\x07" not in r.stderr and r.stderr.count(b"\n") == 1
    assert b"nope\\x1b]0;pwned\\x07\\x1b[2J\\x0asecond line" in r.stderr


def test_referrer_cells_are_escaped(capsys):
    from quay_cred_helper.commands.referrers import _print_table

    _print_table([{"digest": "sha256:x", "mediaType": "m\x1b[31m", "size": 1, "artifactType": "a\nb\x9b"}])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "a\\x0ab\\x9b" in out and out.count("\n") == 2


# -- 11. private files and directories whatever the umask -------------------------------------------------


@pytest.mark.posix
def test_configure_and_logs_create_private_files_under_umask_000(file_keyring, tmp_path):
    from quay_cred_helper import log

    auth_file = tmp_path / "new" / "deeper" / "auth.json"
    env = dict(file_keyring, REGISTRY_AUTH_FILE=str(auth_file))
    old = os.umask(0)
    try:
        assert cli(env, "configure", "quay.example.com", "--podman", "--registries-conf").returncode == 0
        log_file = tmp_path / "logs" / "quay-cred-helper.log"
        os.environ[log.LOG_FILE_ENV] = str(log_file)
        (tmp_path / "logs").mkdir(mode=0o700)
        log.enable()
        for _ in range(1100):  # over 1 MiB: the file rotates and a new one is opened
            log.debug("x" * 1000)
    finally:
        os.umask(old)
        os.environ.pop(log.LOG_FILE_ENV, None)
        log._logger.handlers.clear()
        log._logger = None
    drop_in = Path(env["HOME"], ".config", "containers", "registries.conf.d", "50-quay-cred-helper.conf")
    created = [auth_file, auth_file.parent, auth_file.parent.parent, drop_in, drop_in.parent]
    created += sorted((tmp_path / "logs").iterdir())
    assert len(created) >= 7  # the log and at least one rotated file
    for path in created:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


# -- 12. doctor and proxy passwords -------------------------------------------------------------------------


def test_doctor_redacts_proxy_passwords_and_survives_odd_values(file_keyring):
    env = dict(file_keyring, HTTPS_PROXY="alice:proxy-pass-1@proxy:3128", HTTP_PROXY="http://alice:proxy-pass-2@:3128")
    r = cli(env, "doctor")
    assert b"internal error" not in r.stderr and b"proxy-pass" not in r.stdout + r.stderr
    assert b"HTTPS_PROXY=***@proxy:3128" in r.stdout and b"HTTP_PROXY=http://***@:3128" in r.stdout


# -- 13. internal errors become messages ----------------------------------------------------------------------


def test_deeply_nested_json_from_the_registry(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    quay.faults.append(("raw", b"[" * 100_000))
    r = helper(file_keyring, "get", quay.host)
    assert r.stdout == f"{quay.host} answered /v2/auth without a token\n".encode()


def test_a_retry_after_that_is_not_ascii_digits(file_keyring, quay):
    quay.faults.append(("retry-after", "\u00b2"))
    r = cli(file_keyring, "token", quay.host)
    assert r.returncode == 0, r.stderr


def test_a_huge_integer_on_stdin_or_in_the_index(file_keyring):
    r = helper(file_keyring, "store", '{"ServerURL": "h", "Username": "u", "Secret": "s", "x": 1' + "0" * 5000 + "}")
    assert (r.returncode, r.stdout) == (1, b"invalid JSON on stdin: number too large\n")
    index = Path(file_keyring["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")
    index.parent.mkdir(parents=True)
    index.write_text('{"version": 1, "registries": {}, "n": 1' + "0" * 5000 + "}")
    assert helper(file_keyring, "list").stdout == b"{}\n"


@pytest.mark.parametrize("field", ["Username", "Secret"])
def test_a_lone_surrogate_is_refused_and_nothing_is_stored(file_keyring, field):
    payload = {"ServerURL": "quay.example.com", "Username": "alice", "Secret": "s"}
    r = helper(file_keyring, "store", json.dumps(dict(payload, **{field: "a\ud800b"})))
    assert (r.returncode, r.stdout) == (1, f"invalid credentials: {field} is not valid Unicode\n".encode())
    assert helper(file_keyring, "list").stdout == b"{}\n"


# -- 14. an erase racing another erase ------------------------------------------------------------------------


def test_an_erase_that_loses_a_race_succeeds(home):
    home["PYTHON_KEYRING_BACKEND"] = "tests.fakes.raising_keyring.DeletedMeanwhile"
    home["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    r = helper(home, "erase", "quay.example.com")
    assert (r.returncode, r.stdout) == (0, b"")  # the other erase did it: nothing left to erase


# -- 15. the Secret Service fast read agrees with keyring, whatever keyring's settings ----------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["store", "erase", "get"]),
        st.sampled_from(["quay.example.com", "other.example.com"]),
        st.sampled_from([None, "KeePassXC"]),  # KEYRING_PROPERTY_SCHEME for this step
        st.text(alphabet="abc123", min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.slow  # a Secret Service
@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPERATIONS)
def test_the_fast_read_agrees_with_keyring(secret_service, monkeypatch, tmp_path_factory, operations):
    import keyring
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    from quay_cred_helper.credentials import secretservice
    from quay_cred_helper.credentials.keyring_backend import Keyring

    count_case()
    secret_service.revive()  # gnome-keyring's own crash in an earlier example is not ours to count
    cache = tmp_path_factory.mktemp("cache")
    for name, value in secret_service.apply({"XDG_CACHE_HOME": str(cache)}).items():
        monkeypatch.setenv(name, value)
    previous = keyring.get_keyring()
    touched = set()
    try:
        for operation, key, scheme, secret in operations:
            if scheme:
                monkeypatch.setenv("KEYRING_PROPERTY_SCHEME", scheme)
            else:
                monkeypatch.delenv("KEYRING_PROPERTY_SCHEME", raising=False)
            backend = SecretServiceKeyring()  # keyring reads KEYRING_PROPERTY_* when it makes a backend
            keyring.set_keyring(backend)
            ours = Keyring(fast_read=secretservice.read)
            touched.add((scheme, key))
            try:
                if operation == "store":
                    ours.set("quay-cred-helper", key, secret)
                elif operation == "erase":
                    ours.delete("quay-cred-helper", key)
            except KeyringError:
                assume(not secret_service.revive())  # the daemon died under us: this example tells nothing
                raise
            assert Keyring(fast_read=secretservice.read).get("quay-cred-helper", key) == backend.get_password(
                "quay-cred-helper", key
            ), (operation, key, scheme)
    finally:
        for scheme, key in touched:  # leave the shared collection as found
            if scheme:
                monkeypatch.setenv("KEYRING_PROPERTY_SCHEME", scheme)
            else:
                monkeypatch.delenv("KEYRING_PROPERTY_SCHEME", raising=False)
            backend = SecretServiceKeyring()
            while backend.get_password("quay-cred-helper", key) is not None:
                backend.delete_password("quay-cred-helper", key)
        keyring.set_keyring(previous)

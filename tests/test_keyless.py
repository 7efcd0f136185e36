"""Keyless robots: an OIDC token from the job or pod, exchanged through Quay's robot federation, nothing stored.

The Quay-compatible registry checks the OIDC token as quay/quay does (issuer per robot, discovery and JWKS
over https, RS256 with a kid, iat/exp with 30 s of leeway, subject), against a local https issuer.
"""

import concurrent.futures
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests import support
from tests.fakes.issuer import GitHubTokenService
from tests.fakes.quay_registry import b64url_decode
from tests.support import ROBOT, claims_of, cli, get, helper

SUBJECT = "system:serviceaccount:ci:builder"


@pytest.fixture
def quay(quay, issuer, tmp_path):
    """conftest's registry, trusting the issuer, with ROBOT federated to SUBJECT's tokens."""
    issuer.trusted_by(quay, tmp_path)
    quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": SUBJECT}]
    return quay


def exchanges(quay):
    return quay.count("/oauth2/federation/robot/token")


# -- sources --------------------------------------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_env_source_login_get_cache_list_logout(env, quay, issuer):
    oidc_token = issuer.token(SUBJECT)
    env = dict(env, CI_JOB_JWT=oidc_token)
    r = cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "env:CI_JOB_JWT")
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"Login Succeeded: {ROBOT} at {quay.host} (keyless, OIDC token from env:CI_JOB_JWT)\n".encode()
    assert exchanges(quay) == 1  # login verifies with one exchange
    assert json.loads(helper(env, "list").stdout) == {quay.host: ROBOT}

    got = get(env, quay.host)
    claims = claims_of(got["Secret"])
    assert got["Username"] == ROBOT and claims["sub"] == ROBOT and claims["aud"] == quay.server_hostname
    assert exchanges(quay) == 2
    # Cached: no exchange, and the source is not even read (the variable is gone).
    del env["CI_JOB_JWT"]
    assert get(env, quay.host)["Secret"] == got["Secret"] and exchanges(quay) == 2

    # The Quay JWT is the robot's password at /v2/auth: token works, as for any robot.
    r = cli(env, "token", f"{quay.host}/org/app", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["access"] == [{"type": "repository", "name": "org/app", "actions": ["pull"]}]
    assert quay.auth_log[-1]["user"] == ROBOT and quay.auth_log[-1]["credential"] == "jwt"

    assert cli(env, "logout", quay.host).returncode == 0
    assert helper(env, "list").stdout == b"{}\n"
    r = helper(env, "get", quay.host)  # the keyring is asked now, and this machine has none
    assert r.returncode == 1 and r.stdout.startswith(b"no keyring backend available")


@pytest.mark.slow  # over half a second: the full suite
def test_file_source_is_read_afresh_after_rotation(env, quay, issuer, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(issuer.token(SUBJECT, jti="first"))
    assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", f"file:{token_file}", "--no-verify").returncode == 0
    first = get(env, quay.host)["Secret"]
    # The kubelet rotates the projected token in place; the cached Quay JWT nears its end.
    token_file.write_text(issuer.token(SUBJECT, jti="second"))
    cache = next(Path(env["XDG_CACHE_HOME"]).rglob("keyless*.json"))
    entry = json.loads(cache.read_text())
    # An hour-long JWT with 200 s left is within its 300 s margin: never handed out.
    cache.write_text(json.dumps(dict(entry, issued_at=time.time() - 3400, expires_at=time.time() + 200)))
    quay.clock = lambda: time.time() + 5  # so the new Quay JWT differs
    second = get(env, quay.host)["Secret"]
    assert second != first and exchanges(quay) == 2
    assert [e["jti"] for e in quay.federation_log] == ["first", "second"]  # the rotated file was read


@pytest.mark.slow  # over half a second: the full suite
def test_github_source_with_an_audience(env, quay, issuer):
    with GitHubTokenService(issuer, SUBJECT) as github:
        env = dict(env, **github.env())
        r = cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "github", "--audience", "quay.example.com/org x")
        assert r.returncode == 0, r.stderr
        assert get(env, quay.host)["Username"] == ROBOT
        # The URL had a query: the audience is appended with &, urlencoded, and remembered for later exchanges.
        assert [q["query"]["audience"] for q in github.requests] == [["quay.example.com/org x"]] * 2
        assert [q["query"]["api-version"] for q in github.requests] == [["2.0"]] * 2


def test_config_file_keyless_needs_no_login(env, quay, issuer, tmp_path):
    config = tmp_path / "config.ini"
    config.write_text(f"[{quay.host}]\nrobot = {ROBOT}\noidc = env:ID_TOKEN\n")
    env = dict(env, QUAY_CRED_HELPER_CONFIG=str(config), ID_TOKEN=issuer.token(SUBJECT))
    assert get(env, quay.host)["Username"] == ROBOT and exchanges(quay) == 1


# -- failures: one actionable line each, never "not found" ------------------------------------------------


def keyless_get(env, quay, token=None, robot=ROBOT, source="env:ID_TOKEN", extra=None):
    cli(env, "login", quay.host, "-u", robot, "--oidc", source, "--no-verify")
    env = dict(env, **(extra or {}))
    if token is not None:
        env["ID_TOKEN"] = token
    r = helper(env, "get", quay.host)
    assert r.returncode == 1 and r.stdout.count(b"\n") == 1
    assert r.stdout != b"credentials not found in native keychain\n"
    return r.stdout.decode().strip()


@pytest.mark.posix  # file modes
@pytest.mark.slow  # over half a second: the full suite
def test_a_file_source_is_checked_as_the_provider_checks_it(env, quay, issuer, tmp_path):
    """`oidc = file:PATH` means one thing at every door: a file others can write is refused (files.check_private)."""
    token_file = tmp_path / "token"
    token_file.write_text(issuer.token(SUBJECT))
    token_file.chmod(0o664)
    assert keyless_get(env, quay, source=f"file:{token_file}") == (
        f"refusing the OIDC token file {token_file}: other users can write it: chmod go-w {token_file}"
    )
    assert exchanges(quay) == 0
    token_file.chmod(0o644)
    assert get(env, quay.host)["Username"] == ROBOT and exchanges(quay) == 1


@pytest.mark.slow  # over half a second: the full suite
def test_source_problems_say_how_to_fix_them(env, quay, tmp_path):
    assert keyless_get(env, quay) == (
        "the OIDC token variable ID_TOKEN is not set or empty: "
        "GitLab CI: declare it under id_tokens: {ID_TOKEN: {aud: ...}} in the job"
    )
    assert keyless_get(env, quay, source="github").startswith(
        "ACTIONS_ID_TOKEN_REQUEST_URL is not set: this is not a GitHub Actions job allowed OIDC tokens: "
        "add `permissions: id-token: write`"
    )
    message = keyless_get(env, quay, source=f"file:{tmp_path}/missing")
    assert message.startswith(f"cannot read the OIDC token file {tmp_path}/missing: No such file or directory")
    assert (
        keyless_get(env, quay, token="not-a-jwt")
        == "the OIDC token from env:ID_TOKEN is not a JWT: check what the source holds"
    )
    assert exchanges(quay) == 0


@pytest.mark.slow  # seven refusals, each a login and a get: the full suite
@pytest.mark.parametrize(
    "case, expected",
    [
        ("subject", "refused the OIDC token for org+ci: Token does not match robot: the OIDC token's subject (sub)"),
        ("expired", "Invalid token: Signature has expired: the OIDC token has expired"),
        ("issuer", "not configured for this robot: add the token's issuer (iss) to the robot's federation entries"),
        ("future", "Invalid token: Issued At claim (iat) cannot be in the future.: the OIDC token was issued (iat)"),
        ("robot", "refused the OIDC token for org+nobody: Could not find robot with specified username: check"),
        ("federation", "Robot does not have federated login configured: configure federation for the robot"),
        ("rotated", "failed the robot federation for org+ci (HTTP 500): usually the issuer is http://"),
    ],
)
def test_every_refusal_is_one_actionable_line(env, quay, issuer, case, expected):
    robot = ROBOT
    token = issuer.token(SUBJECT)
    if case == "subject":
        token = issuer.token("system:serviceaccount:ci:other")
    elif case == "expired":
        token = issuer.token(SUBJECT, issued=time.time() - 700, lifetime=600)
    elif case == "issuer":
        quay.federation[ROBOT] = [{"issuer": "https://token.actions.githubusercontent.com", "subject": SUBJECT}]
    elif case == "future":
        token = issuer.token(SUBJECT, issued=time.time() + 120)
    elif case == "robot":
        robot = "org+nobody"
    elif case == "federation":
        quay.federation.clear()
    elif case == "rotated":
        issuer.rotate()  # the token's kid is no longer in the JWKS
    message = keyless_get(env, quay, token=token, robot=robot)
    assert expected in message, message


# -- concurrency, expiry, secrets ---------------------------------------------------------------------------


@pytest.mark.slow  # real time or many processes: the full suite
def test_concurrent_cold_gets_make_one_exchange(env, quay, issuer):
    env = dict(env, ID_TOKEN=issuer.token(SUBJECT))
    assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "env:ID_TOKEN", "--no-verify").returncode == 0
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        secrets = list(pool.map(lambda _: get(env, quay.host)["Secret"], range(16)))
    assert len(set(secrets)) == 1 and exchanges(quay) == 1


@pytest.mark.posix
@pytest.mark.slow  # over half a second: the full suite
def test_oidc_token_and_jwt_stay_out_of_files_and_logs(env, quay, issuer):
    oidc_token = issuer.token(SUBJECT)
    env = dict(env, ID_TOKEN=oidc_token, QUAY_CRED_HELPER_LOG="debug")
    assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "env:ID_TOKEN").returncode == 0
    jwt = get(env, quay.host)["Secret"]
    cache = Path(env["XDG_CACHE_HOME"])
    for path in Path(env["HOME"]).parent.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert oidc_token.encode() not in text, path  # never written anywhere
            if jwt.encode() in text:
                assert cache in path.parents and path.stat().st_mode & 0o077 == 0, path  # only the private cache


@pytest.mark.slow  # a real registry and skopeo
def test_skopeo_pulls_as_the_keyless_robot(file_keyring, docker_registry, issuer, tmp_path):
    import shutil

    from tests.fakes.real_registry import oci_layout

    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed")
    quay = docker_registry.quay
    issuer.trusted_by(quay, tmp_path)
    quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": SUBJECT}]
    env = dict(file_keyring, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"), ID_TOKEN=issuer.token(SUBJECT))
    layout = tmp_path / "image"
    oci_layout(str(layout))
    ref = f"docker://{docker_registry.host}/org/keyless-app:1"
    alice = tmp_path / "alice-auth.json"  # alice pushes the image (credentials in a file, never in argv)
    alice.write_text(json.dumps({"auths": {docker_registry.host: {"auth": "YWxpY2U6YWxpY2UtcGFzc3dvcmQ="}}}))
    r = subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", "--dest-authfile", str(alice), f"oci:{layout}:latest", ref],
        env=env,
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr
    assert cli(env, "configure", docker_registry.host, "--podman").returncode == 0
    assert cli(env, "login", docker_registry.host, "-u", ROBOT, "--oidc", "env:ID_TOKEN").returncode == 0
    quay.auth_log.clear()
    r = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Name}}", ref],
        env=env,
        capture_output=True,
        text=True,
    )
    assert (r.returncode, r.stdout.strip()) == (0, f"{docker_registry.host}/org/keyless-app"), r.stderr
    used = [e for e in quay.auth_log if e["scopes"]]
    assert used and all(e["user"] == ROBOT and e["credential"] == "jwt" and e["status"] == 200 for e in used)


@pytest.mark.slow  # over half a second: the full suite
def test_cached_keyless_get_imports_nothing_heavy(env, quay, issuer):
    from tests.test_startup import HEAVY, imported

    env = dict(env, ID_TOKEN=issuer.token(SUBJECT))
    assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "env:ID_TOKEN").returncode == 0
    get(env, quay.host)  # fills the cache
    r, names = imported(env, "get", quay.host.encode())
    assert r.returncode == 0 and json.loads(r.stdout)["Username"] == ROBOT
    assert not names & (HEAVY | {"keyring", "jeepney"}), names


@pytest.mark.slow  # over half a second: the full suite
def test_doctor_shows_the_oidc_token_and_the_exchange(env, quay, issuer):
    env = dict(env, ID_TOKEN=issuer.token(SUBJECT, audience="quay.example.com"))
    assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "env:ID_TOKEN").returncode == 0
    r = cli(env, "doctor", quay.host, "--json")
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
    token = checks[f"{quay.host} OIDC token"]
    assert token["status"] == "OK"
    assert token["detail"].startswith(f"from env:ID_TOKEN: iss {issuer.url}, sub {SUBJECT}, aud quay.example.com, ")
    exchange = checks[f"{quay.host} keyless exchange"]
    assert exchange == {
        "check": f"{quay.host} keyless exchange",
        "status": "OK",
        "detail": f"{ROBOT} accepted: Quay JWT sub {ROBOT}, aud {quay.server_hostname}",
        "fix": None,
    }
    # A broken source is a FAIL with its fix, and no exchange is tried.
    del env["ID_TOKEN"]
    before = exchanges(quay)
    checks = {c["check"]: c for c in json.loads(cli(env, "doctor", quay.host, "--json").stdout)["checks"]}
    assert checks[f"{quay.host} OIDC token"]["status"] == "FAIL"
    assert checks[f"{quay.host} OIDC token"]["fix"].startswith("GitLab CI: declare it under id_tokens")
    assert exchanges(quay) == before


# -- real Quay's federation answers, and the hints for them ---------------------------------------------------


def exchange(registry, tmp_path, token):
    """One federation exchange in-process, as `get` makes it: the Quay JWT, or the error."""
    from quay_cred_helper.errors import HelperError

    config = tmp_path / "config.ini"
    config.write_text("")
    try:
        return support.tokens(config).federated(registry.host, "id", ROBOT, lambda key, bounds: token)
    except HelperError as exc:
        return exc


@pytest.mark.parametrize(
    "case, status, message, hint",
    [
        ("rs384", 200, None, None),
        ("future", 400, "Invalid token: Issued At claim (iat) cannot be in the future.", "synchronise the clocks"),
        ("no-iat", 400, 'Invalid token: Token is missing the "iat" claim', "Quay needs iat and exp"),
        ("no-exp", 400, 'Invalid token: Token is missing the "exp" claim', "Quay needs iat and exp"),
        ("no-kid", 400, "Invalid token: Missing `kid` header", "Quay needs a kid"),
        ("hs256", 400, "Invalid token: The specified alg value is not allowed", "RS256 and RS384 tokens only"),
        ("forged", 400, "Invalid token: Signature verification failed", "not signed by its issuer's keys"),
        ("audience", 400, "Invalid token: Audience doesn't match", "this token's aud is 'github'"),
        ("no-aud", 400, 'Invalid token: Token is missing the "aud" claim', "this token has none"),
        ("audience-ok", 200, None, None),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_federation_answers_in_real_quays_words_with_a_hint_for_each(
    quay, issuer, tmp_path, case, status, message, hint
):
    token = {
        "rs384": lambda: issuer.token(SUBJECT, alg="RS384"),
        "future": lambda: issuer.token(SUBJECT, issued=time.time() + 120),
        "no-iat": lambda: issuer.token(SUBJECT, omit=("iat",)),
        "no-exp": lambda: issuer.token(SUBJECT, omit=("exp",)),
        "no-kid": lambda: issuer.token(SUBJECT, kid=False),
        "hs256": lambda: issuer.token(SUBJECT, alg="HS256"),
        "forged": lambda: issuer.token(SUBJECT, forged=True),
        "audience": lambda: issuer.token(SUBJECT, audience="github"),
        "no-aud": lambda: issuer.token(SUBJECT, omit=("aud",)),
        "audience-ok": lambda: issuer.token(SUBJECT, audience=["other", "quay.example.com"]),
    }[case]()
    if case.startswith(("audience", "no-aud")):  # Quay HEAD checks an entry's audiences when it has some
        quay.federation[ROBOT][0]["audiences"] = ["quay.example.com"]
    found = exchange(quay, tmp_path, token)
    assert quay.federation_log[-1]["status"] == status
    if status == 200:
        assert json.loads(b64url_decode(found.token.split(".")[1]))["sub"] == ROBOT
        return
    assert found.problem == f"{quay.host} refused the OIDC token for {ROBOT}: {message}", found.problem
    assert hint in found.fix, found.fix
    if case in ("audience", "no-aud"):
        assert f"audience = under [{quay.host}]" in found.fix


@pytest.mark.slow  # over half a second: the full suite
def test_the_helper_says_which_clock_or_audience_to_fix(env, quay, issuer):
    assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "env:ID_TOKEN", "--no-verify").returncode == 0

    def refusal(token):
        r = helper(dict(env, ID_TOKEN=token), "get", quay.host)
        assert r.returncode == 1 and r.stdout.count(b"\n") == 1
        return r.stdout.decode()

    assert "cannot be in the future.: the OIDC token was issued (iat) more than 30 s ahead of Quay's clock: " in (
        refusal(issuer.token(SUBJECT, issued=time.time() + 120))
    )
    quay.federation[ROBOT][0]["audiences"] = ["quay.example.com"]
    message = refusal(issuer.token(SUBJECT, audience="github"))
    assert "Audience doesn't match: the robot's federation entry accepts only the audiences it lists, " in message
    assert "this token's aud is 'github'" in message
    message = refusal(issuer.token(SUBJECT, omit=("aud",)))
    assert "the robot's federation entry checks the audience, and this token has none" in message

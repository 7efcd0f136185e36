"""Token exchange: robots' `get`, the cache, single flight, and every error a registry can cause."""

import base64
import concurrent.futures
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.quay_registry import QuayRegistry
from tests.fakes.real_registry import free_port
from tests.support import HELPER, ROBOT, ROBOT_TOKEN, claims_of, cli, get, helper, jwt_with, store

NOT_FOUND = b"credentials not found in native keychain\n"


def token_files(env):
    root = Path(env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens")
    return sorted(p for p in root.rglob("*.json") if p.name != "challenge.json") if root.exists() else []


def basic(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# -- robots get one-hour JWTs ------------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_robot_get_returns_a_jwt_accepted_as_the_robots_password(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    got = get(file_keyring, quay.host)
    assert got["Username"] == ROBOT and got["Secret"] != ROBOT_TOKEN
    claims = claims_of(got["Secret"])
    assert claims["sub"] == ROBOT and claims["aud"] == quay.server_hostname
    assert claims["exp"] - claims["iat"] == 3600
    assert (quay.count("/v2/"), quay.count("/v2/auth")) == (1, 1)

    # A client uses that JWT as the robot's password: the registry accepts it.
    import httpx

    r = httpx.get(
        f"{quay.url}/v2/auth",
        params={"service": quay.server_hostname, "scope": "repository:org/app:pull"},
        headers={"Authorization": basic(ROBOT, got["Secret"])},
    )
    assert r.status_code == 200
    assert claims_of(r.json()["token"])["access"] == [{"type": "repository", "name": "org/app", "actions": ["pull"]}]


@pytest.mark.slow  # over half a second: the full suite
def test_robot_get_from_cache_needs_no_keyring_and_no_request(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    first = get(file_keyring, quay.host)["Secret"]
    requests = quay.count("/v2/auth")
    # No keyring at all: a cache hit must not need one.
    no_keyring = dict(file_keyring, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    assert get(no_keyring, quay.host)["Secret"] == first
    assert quay.count("/v2/auth") == requests


@pytest.mark.slow  # over half a second: the full suite
def test_cache_hit_imports_neither_httpx_nor_keyring(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    get(file_keyring, quay.host)
    probe = (
        "import sys\n"
        "sys.argv = ['docker-credential-quay', 'get']\n"
        "from quay_cred_helper.helper import main\n"
        "code = main()\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'keyring', 'httpcore', 'ssl'})\n"
        "print(code, loaded, file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], input=quay.host.encode(), env=file_keyring, capture_output=True, timeout=30
    )
    assert r.stderr.decode().strip() == "0 []"
    assert claims_of(json.loads(r.stdout)["Secret"])["sub"] == ROBOT


@pytest.mark.slow  # real time or many processes: the full suite
def test_32_concurrent_cold_gets_make_one_request(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: helper(file_keyring, "get", quay.host, timeout=60), range(32)))
    assert all(r.returncode == 0 for r in results), [r.stdout for r in results if r.returncode]
    assert len({json.loads(r.stdout)["Secret"] for r in results}) == 1
    assert quay.count("/v2/auth") == 1
    assert quay.count("/v2/") == 1


@pytest.mark.slow  # over half a second: the full suite
def test_users_and_special_usernames_get_their_stored_secret(file_keyring, quay):
    for username, secret in (
        ("alice", "alice-password"),
        ("$app", "app-token"),
        ("$oauthtoken", "oauth"),
        ("<token>", "identity"),
    ):
        store(file_keyring, quay.host, username, secret)
        assert get(file_keyring, quay.host) == {"ServerURL": quay.host, "Username": username, "Secret": secret}
    assert quay.count("/v2/auth") == 0


def test_robot_exchange_can_be_turned_off(file_keyring, quay, tmp_path):
    config = tmp_path / "config.ini"
    config.write_text(f"[{quay.host}]\nrobot_exchange = false\n")
    env = dict(file_keyring, QUAY_CRED_HELPER_CONFIG=str(config))
    store(env, quay.host, ROBOT, ROBOT_TOKEN)
    assert get(env, quay.host)["Secret"] == ROBOT_TOKEN
    assert quay.count("/v2/auth") == 0


@pytest.mark.slow  # over half a second: the full suite
def test_unreachable_registry_gets_the_stored_robot_token(file_keyring):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    store(file_keyring, host, ROBOT, ROBOT_TOKEN)
    r = helper(file_keyring, "get", host)
    assert r.returncode == 0
    assert json.loads(r.stdout)["Secret"] == ROBOT_TOKEN
    assert b"connection refused" in r.stderr and b"returning the stored robot token" in r.stderr


@pytest.mark.slow  # over half a second: the full suite
def test_rejected_robot_is_an_error_not_not_found(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, "wrong-token")
    r = helper(file_keyring, "get", quay.host)
    assert r.returncode == 1
    assert (
        r.stdout
        == (
            f"{quay.host} refused the credentials: Could not find robot with username: {ROBOT} and "
            "supplied password.: check the robot's name and token in Quay (Robot Accounts)\n"
        ).encode()
    )
    assert quay.count("/v2/auth") == 1  # never retried


@pytest.mark.slow  # over half a second: the full suite
def test_new_credentials_never_get_an_old_token(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    first = get(file_keyring, quay.host)["Secret"]
    quay.clock = lambda: time.time() + 2  # the next token gets a new iat
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    assert get(file_keyring, quay.host)["Secret"] != first
    assert quay.count("/v2/auth") == 2


@pytest.mark.slow  # over half a second: the full suite
def test_erase_drops_the_registrys_tokens(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    get(file_keyring, quay.host)
    assert token_files(file_keyring)
    assert helper(file_keyring, "erase", quay.host).returncode == 0
    assert token_files(file_keyring) == []
    assert helper(file_keyring, "get", quay.host).stdout == NOT_FOUND


@pytest.mark.posix
@pytest.mark.slow  # over half a second: the full suite
def test_cache_files_are_private_and_versioned(file_keyring, quay):
    os.umask(0o000)
    try:
        store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
        get(file_keyring, quay.host)
    finally:
        os.umask(0o022)
    (path,) = token_files(file_keyring)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (path.parent, path.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    entry = json.loads(path.read_text())
    assert entry["version"] == 1 and entry["expires_at"] - entry["issued_at"] > 3500
    assert ROBOT_TOKEN not in path.read_text()


@pytest.mark.parametrize(
    "damage",
    [
        b"{not json",
        b"",
        b'{"version": 99, "token": "x"}',
        b"[1]",
        b'{"version": 1, "token": "x", "issued_at": "soon", "expires_at": null}',
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_corrupt_or_foreign_cache_file_is_replaced(file_keyring, quay, damage):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    get(file_keyring, quay.host)
    (path,) = token_files(file_keyring)
    path.write_bytes(damage)
    got = get(file_keyring, quay.host)
    assert claims_of(got["Secret"])["sub"] == ROBOT
    assert quay.count("/v2/auth") == 2
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize("life_left", [-10, 100, 299])
@pytest.mark.slow  # over half a second: the full suite
def test_expired_or_nearly_expired_tokens_are_never_handed_out(file_keyring, quay, life_left):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    get(file_keyring, quay.host)
    (path,) = token_files(file_keyring)
    entry = json.loads(path.read_text())
    now = time.time()
    entry.update(token="stale", issued_at=now - 3600 + life_left, expires_at=now + life_left)
    path.write_text(json.dumps(entry))
    assert get(file_keyring, quay.host)["Secret"] != "stale"
    assert quay.count("/v2/auth") == 2


@pytest.mark.slow  # over half a second: the full suite
def test_no_cache_setting(file_keyring, quay):
    env = dict(file_keyring, QUAY_CRED_HELPER_NO_CACHE="1")
    store(env, quay.host, ROBOT, ROBOT_TOKEN)
    get(env, quay.host)
    get(env, quay.host)
    assert quay.count("/v2/auth") == 2 and quay.count("/v2/") == 2
    assert token_files(env) == []


@pytest.mark.slow  # over half a second: the full suite
def test_realm_is_remembered(file_keyring, quay):
    store(file_keyring, quay.host, "alice", "alice-password")
    for repo in ("org/a", "org/b", "org/c"):
        r = subprocess.run(
            [os.path.join(os.path.dirname(HELPER), "quay-cred-helper"), "token", f"{quay.host}/{repo}"],
            env=file_keyring,
            capture_output=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
    assert (quay.count("/v2/"), quay.count("/v2/auth")) == (1, 3)


# -- the registry misbehaving (live server) ------------------------------------------------


@pytest.fixture
def tokens(tmp_path, monkeypatch):
    """In-process TokenExchange with a private cache dir and a config file the test may fill."""
    from quay_cred_helper.registry.cache import FileTokenCache
    from tests.support import tokens as make_tokens

    return make_tokens(tmp_path / "config.ini", cache=FileTokenCache(str(tmp_path / "cache")))


def set_config(tokens, path, text):
    """Write the config file; a process reads it once, so the exchange is given a fresh read."""
    from quay_cred_helper.config import Config

    path.write_text(text)
    tokens.settings = Config(str(path)).settings


def creds(username, secret):
    return lambda: (username, secret)


@pytest.mark.slow  # over half a second: the full suite
def test_503_bursts_then_recovery(quay, tokens):
    quay.faults.extend([("status", 503), ("status", 502)])
    token = tokens.get(quay.host, "id", credentials=creds("alice", "alice-password"))
    assert claims_of(token.token)["sub"] == "alice"
    assert quay.count("/v2/auth") == 3


@pytest.mark.slow  # over half a second: the full suite
def test_persistent_5xx_gives_up_after_bounded_retries(quay, tokens):
    from quay_cred_helper.errors import Unreachable

    quay.faults.extend([("status", 503)] * 10)
    start = time.monotonic()
    with pytest.raises(Unreachable, match="is failing: HTTP 503"):
        tokens.get(quay.host, "id", credentials=creds("alice", "alice-password"))
    assert quay.count("/v2/auth") == 3 and time.monotonic() - start < 10


@pytest.mark.slow  # real time or many processes: the full suite
def test_429_with_retry_after_is_honoured(quay, tokens):
    quay.faults.extend([("retry-after", 1)])
    start = time.monotonic()
    tokens.get(quay.host, "id", credentials=creds("alice", "alice-password"))
    assert time.monotonic() - start >= 1 and quay.count("/v2/auth") == 2


@pytest.mark.slow  # real time or many processes: the full suite
def test_login_throttling_is_reported_and_401_never_retried(quay, tokens, tmp_path):
    from quay_cred_helper.errors import RegistryError

    for pause in (0, 0.6):  # the second attempt waits out the 0.5 s window of the first failure
        time.sleep(pause)
        with pytest.raises(RegistryError, match="Invalid Username or Password"):
            tokens.get(quay.host, "bad", credentials=creds("alice", "wrong"))
    assert quay.count("/v2/auth") == 2  # one request per failure
    # The right password at once: Quay answers 429 within 0.5*(2^2-1) s of the last failure.
    set_config(tokens, tmp_path / "config.ini", f"[{quay.host}]\nretries = 0\n")
    with pytest.raises(RegistryError, match="throttling logins after failed attempts"):
        tokens.get(quay.host, "good", credentials=creds("alice", "alice-password"))
    # With retries, Retry-After is honoured and the login goes through once the window has passed
    # (Quay rounds Retry-After down, so allow enough attempts to cover the rounding).
    set_config(tokens, tmp_path / "config.ini", f"[{quay.host}]\nretries = 4\n")
    start = time.monotonic()
    assert tokens.get(quay.host, "good", credentials=creds("alice", "alice-password"))
    assert time.monotonic() - start < 5
    assert [e["status"] for e in quay.auth_log] == [401, 401, 200]  # the 429s never reached the password check
    assert quay.count("/v2/auth") <= 2 + 1 + 5


@pytest.mark.slow  # real time or many processes: the full suite
def test_timeout(quay, tokens, tmp_path):
    from quay_cred_helper.errors import Unreachable

    set_config(tokens, tmp_path / "config.ini", f"[{quay.host}]\ntimeout = 0.5\nretries = 1\n")
    quay.faults.extend([("slow", 3), ("slow", 3)])
    start = time.monotonic()
    with pytest.raises(Unreachable, match=r"did not answer within 0.5 s"):
        tokens.get(quay.host, "id", credentials=creds("alice", "alice-password"))
    assert time.monotonic() - start < 3


@pytest.mark.parametrize(
    "fault, message",
    [
        (("malformed",), "answered /v2/auth without a token"),
        (("token", {"access_token": ""}), "answered /v2/auth without a token"),
        (("huge",), "sent a response over 1024 KiB: refused"),
        (("reset",), "closed the connection before answering"),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_bad_token_responses(quay, tokens, fault, message):
    from quay_cred_helper.errors import RegistryError

    quay.faults.extend([fault] * 3)
    with pytest.raises(RegistryError, match=message):
        tokens.get(quay.host, "id", credentials=creds("alice", "alice-password"))


def test_token_lifetime_without_jwt_or_exp(quay, tokens):
    quay.faults.append(("notjwt",))
    token = tokens.get(quay.host, "id1", credentials=creds("alice", "alice-password"))
    assert token.token == "not-a-jwt" and 59 <= token.expires_at - token.issued_at <= 61
    quay.faults.append(("token", {"token": "a.eyJzdWIiOiJ4In0.c", "expires_in": 120}))
    token = tokens.get(quay.host, "id2", credentials=creds("alice", "alice-password"))
    assert 119 <= token.expires_at - token.issued_at <= 121


def test_anonymous_access_not_allowed(tokens):
    from quay_cred_helper.errors import RegistryError

    with QuayRegistry(anonymous=False) as closed, pytest.raises(RegistryError) as err:
        tokens.get(closed.host, scopes=["repository:org/app:pull"])
    assert str(err.value) == (
        f"{closed.host}: anonymous access is not allowed: log in first (quay-cred-helper login {closed.host})"
    )


def test_post_to_realm_is_405_on_quay(quay):
    import httpx

    r = httpx.post(f"{quay.url}/v2/auth", data={"grant_type": "refresh_token"})
    assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_tls_verified_by_default_then_trusted_with_ca_bundle(tokens, tmp_path):
    import ssl

    import trustme

    from quay_cred_helper.errors import RegistryError

    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    with QuayRegistry(users={"alice": ("pw", ["org"])}, ssl_context=server_context) as secure:
        with pytest.raises(RegistryError) as err:
            tokens.get(secure.host, credentials=creds("alice", "pw"))
        assert str(err.value).startswith(f"TLS verification failed for {secure.host}: set ca_bundle")
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        set_config(tokens, tmp_path / "config.ini", f"[{secure.host}]\nca_bundle = {tmp_path / 'ca.pem'}\n")
        token = tokens.get(secure.host, credentials=creds("alice", "pw"))
        assert claims_of(token.token)["sub"] == "alice"


# -- faults a live server cannot produce on cue: a mock transport ----------------------------


def mock_tokens(handler, tmp_path, monkeypatch):
    import httpx

    from tests.support import tokens as make_tokens

    seen = []

    def record(request):
        seen.append(request)
        return handler(request)

    return make_tokens(tmp_path / "config.ini", client=httpx.Client(transport=httpx.MockTransport(record))), seen


def challenge_then(realm, token_response):
    import httpx

    def handler(request):
        if request.url.path == "/v2/":
            return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'})
        return token_response(request)

    return handler


@pytest.mark.parametrize(
    "realm, message",
    [
        ("https://elsewhere.example/v2/auth", "refusing to send credentials to elsewhere.example"),
        ("http://quay.example.com/v2/auth", "refusing to send credentials over plain http"),
        ("ftp://quay.example.com/auth", "sent an unusable token realm"),
    ],
)
def test_credentials_go_only_to_a_safe_realm(tmp_path, monkeypatch, realm, message):
    import httpx

    from quay_cred_helper.errors import RegistryError

    tokens, seen = mock_tokens(
        challenge_then(realm, lambda r: httpx.Response(200, json={"token": "t"})), tmp_path, monkeypatch
    )
    with pytest.raises(RegistryError, match=message):
        tokens.get("quay.example.com", credentials=creds("alice", "pw"))
    assert [r.url.host for r in seen] == ["quay.example.com"]  # nothing sent to the realm
    assert all("authorization" not in r.headers for r in seen)


def test_realm_host_allowed_by_config(tmp_path, monkeypatch):
    import httpx

    tokens, seen = mock_tokens(
        challenge_then("https://auth.example.com/token", lambda r: httpx.Response(200, json={"token": "t"})),
        tmp_path,
        monkeypatch,
    )
    set_config(tokens, tmp_path / "config.ini", "[quay.example.com]\nrealm_hosts = auth.example.com\n")
    assert tokens.get("quay.example.com", credentials=creds("alice", "pw")).token == "t"
    assert seen[-1].headers["authorization"] == basic("alice", "pw")
    assert seen[-1].url.params.get_list("service") == ["svc"]


def test_redirects_are_not_followed(tmp_path, monkeypatch):
    import httpx

    from quay_cred_helper.errors import RegistryError

    tokens, seen = mock_tokens(
        challenge_then(
            "https://quay.example.com/v2/auth",
            lambda r: httpx.Response(302, headers={"Location": "https://evil.example/steal"}),
        ),
        tmp_path,
        monkeypatch,
    )
    with pytest.raises(RegistryError, match="redirected the token request"):
        tokens.get("quay.example.com", credentials=creds("alice", "pw"))
    assert "evil.example" not in {r.url.host for r in seen}


@pytest.mark.parametrize(
    "status, body, message",
    [
        (
            401,
            {
                "errors": [
                    {
                        "code": "UNAUTHORIZED",
                        "message": "Client login with unencrypted passwords is disabled."
                        " Please generate an encrypted password in the user admin panel for use here.",
                    }
                ]
            },
            "use an encrypted password",
        ),
        (401, {"errors": [{"code": "UNAUTHORIZED", "message": "This user is disabled."}]}, "This user is disabled"),
        (405, {"errors": [{"code": "DENIED", "message": "denied"}]}, "does not accept this token request (405 DENIED)"),
        (400, {"errors": [{"code": "NAME_INVALID", "message": "bad name"}]}, "NAME_INVALID: bad name"),
    ],
)
def test_error_messages(tmp_path, monkeypatch, status, body, message):
    import httpx

    from quay_cred_helper.errors import RegistryError

    tokens, seen = mock_tokens(
        challenge_then("https://quay.example.com/v2/auth", lambda r: httpx.Response(status, json=body)),
        tmp_path,
        monkeypatch,
    )
    with pytest.raises(RegistryError, match=re.escape(message)) as err:
        tokens.get("quay.example.com", credentials=creds("alice", "pw"))
    assert "\n" not in str(err.value) and "pw" not in str(err.value).split(":")[-1]
    assert len(seen) == 2  # /v2/ and one token request: never retried


def test_dns_failure(tmp_path, monkeypatch):
    import httpx

    from quay_cred_helper.errors import Unreachable

    def handler(request):
        raise httpx.ConnectError("[Errno -2] Name or service not known") from socket.gaierror(-2, "not known")

    tokens, seen = mock_tokens(handler, tmp_path, monkeypatch)
    with pytest.raises(Unreachable, match="cannot resolve quay.example.com"):
        tokens.get("quay.example.com", credentials=creds("alice", "pw"))
    assert len(seen) == 3


def test_registry_without_auth_needs_no_token(tmp_path, monkeypatch):
    import httpx

    tokens, seen = mock_tokens(lambda r: httpx.Response(200, json={}), tmp_path, monkeypatch)
    assert tokens.get("quay.example.com", credentials=creds("alice", "pw")) is None
    assert len(seen) == 1


# -- server-given lifetimes are clamped ---------------------------------------------------------------


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


# -- a failure is remembered only for the calls that waited for it ------------------------------------


def test_a_failure_answers_only_the_calls_that_waited_for_it(tmp_path):
    from quay_cred_helper.errors import DeadlineExceeded, NotFound
    from quay_cred_helper.registry.cache import FAILURE_LIFETIME, FileTokenCache

    now = [1_000_000.0]
    cache = FileTokenCache(str(tmp_path / "tokens"), clock=lambda: now[0])
    cache.fail("quay.example.com", "id", [], DeadlineExceeded("quay.example.com did not finish within 2 s", "fix"))
    found = cache.failed("quay.example.com", "id", [], since=now[0] - 1)
    assert type(found) is DeadlineExceeded and str(found) == "quay.example.com did not finish within 2 s: fix"
    assert cache.failed("quay.example.com", "id", [], since=now[0] + 1) is None  # it began after the failure
    assert cache.failed("quay.example.com", "other", [], since=now[0] - 1) is None
    now[0] += FAILURE_LIFETIME + 1
    assert cache.failed("quay.example.com", "id", [], since=0) is None  # too old
    cache.fail("quay.example.com", "id", [], NotFound())  # never recorded as anything but nothing stored
    assert cache.failed("quay.example.com", "id", [], since=0) is None

"""Hardening, third pass (issue 19): every path under the deadline, real Quay's and podman's answers.

A test per finding, numbered as in the issue (item 1, the GitHub Actions token request, is tested with
keyless/oidc.py). Hostile servers are local and stop; nothing here leaves 127.0.0.1.
"""

import concurrent.futures
import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests import support
from tests.conftest import needs
from tests.fakes import fake_kubelet as kubelet
from tests.fakes.hostile import DripServer, _read_head, _Server
from tests.fakes.quay_registry import b64url, b64url_decode
from tests.support import ROBOT, ROBOT_TOKEN, cli, helper, store

V1 = "credentialprovider.kubelet.k8s.io/v1"
NOBODY = 65534
CHALLENGE = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
    b'WWW-Authenticate: Bearer realm="http://127.0.0.1:1/v2/auth",service="s"\r\n\r\n'
)


def provider_path():
    return os.path.join(support.BIN, "quay-credential-provider")


def configured(env, text, name="config.ini"):
    path = Path(env["HOME"], name)
    path.write_text(text)
    return dict(env, QUAY_CRED_HELPER_CONFIG=str(path)), path


def timed(run):
    start = time.monotonic()
    result = run()
    return result, time.monotonic() - start


class StallingRegistry(_Server):
    """A registry that answers /v2/ with its challenge and /v2/auth with a token at once, and drips the
    answer to every other path (`drip`: also /v2/auth) one byte every `interval` seconds."""

    def __init__(self, interval=0.25, drip_auth=False):
        super().__init__()
        self.interval, self.drip_auth = interval, drip_auth
        self.paths = []

    def _serve(self, conn):
        if conn.recv(1, socket.MSG_PEEK) == b"\x16":  # a TLS ClientHello: hang up, as a plain-http server does
            conn.close()
            return
        head = _read_head(conn)
        if not head:
            return
        path = head.split(b" ", 2)[1].decode("latin-1").split("?")[0]
        self.paths.append(path)
        if path in ("/v2/", "/v2"):
            realm = f'Bearer realm="http://{self.host}/v2/auth",service="{self.host}"'
            self._answer(conn, f"401 Unauthorized\r\nWWW-Authenticate: {realm}", b"")
        elif path == "/v2/auth" and not self.drip_auth:
            claims = {"exp": int(time.time()) + 3600, "access": []}
            self._answer(conn, "200 OK", json.dumps({"token": f"e30.{b64url(json.dumps(claims).encode())}.c2ln"}))
        else:  # the headers, dripped: only a wall-clock bound ends this
            response = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 400 + b"\r\n\r\n"
            for byte in response:
                if self.stopped.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    @staticmethod
    def _answer(conn, status, body):
        """One answer, then the connection closes: the next request comes on a new one, and is seen."""
        body = body.encode() if isinstance(body, str) else body
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)
        conn.close()


# -- 2. the single-flight lock counts against the deadline, and waiters fail fast ------------------------------


@pytest.mark.slow  # six processes waiting out a deadline in real time
def test_six_concurrent_cold_gets_of_a_stalled_registry_all_answer_within_the_deadline(file_keyring):
    with DripServer(CHALLENGE, interval=0.3) as drip:
        env, _ = configured(file_keyring, f"[{drip.host}]\ndeadline = 2\n")
        store(env, drip.host, ROBOT, ROBOT_TOKEN)
        start = time.monotonic()

        def get(_):
            r = helper(env, "get", drip.host, timeout=60)
            return r, time.monotonic() - start

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(get, range(6)))
        connections = len(drip.connections)
    elapsed = sorted(seconds for _, seconds in results)
    for r, _ in results:  # each falls back to the stored robot token, saying why
        assert r.returncode == 0 and json.loads(r.stdout)["Secret"] == ROBOT_TOKEN
        assert f"{drip.host} did not finish within 2 s".encode() in r.stderr, r.stderr
    # All at about the same time: one deadline after start-up (seconds when six processes load the keyring at
    # once on a busy machine), never one deadline after another as the lock's queue drains.
    assert elapsed[-1] - elapsed[0] < 1.5 and elapsed[-1] < 15, elapsed
    assert connections == 1  # the others waited for that exchange and took its error, or ran out waiting


def test_a_lock_wait_ends_at_its_timeout(tmp_path):
    from quay_cred_helper.files import Lock, LockTimeout

    path = str(tmp_path / "x.lock")
    with Lock(path):
        start = time.monotonic()
        with pytest.raises(LockTimeout), Lock(path, timeout=0.3):
            pass
        assert 0.3 <= time.monotonic() - start < 1.5
    with Lock(path, timeout=0):  # free: had at once, even with no time left
        pass


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


# -- 3. a token fetched in the middle of a request keeps the outer deadline ------------------------------------


@pytest.mark.slow  # waits out a deadline in real time
def test_referrers_against_a_registry_dripping_its_manifest_headers_stops_at_the_deadline(file_keyring):
    with StallingRegistry() as registry:
        env, _ = configured(file_keyring, f"[{registry.host}]\ndeadline = 3\n")
        r, elapsed = timed(lambda: cli(env, "referrers", f"{registry.host}/org/app:latest", timeout=40))
        paths = list(registry.paths)
    assert r.returncode == 1
    assert r.stderr.startswith(f"quay-cred-helper: {registry.host} did not finish within 3 s".encode()), r.stderr
    assert "/v2/auth" in paths and "/v2/org/app/manifests/latest" in paths  # the token was fetched mid-request
    assert elapsed < 3 + 2.5, elapsed  # the drip alone takes 100 s


@pytest.mark.slow  # over half a second: the full suite
def test_an_alarm_inside_another_keeps_the_outer_one():
    from quay_cred_helper.registry.transport import alarm

    class Outer(Exception):
        pass

    class Inner(Exception):
        pass

    start = time.monotonic()
    with pytest.raises(Outer), alarm(0.5, Outer):
        with alarm(5, Inner):
            pass  # the inner alarm ends first: the outer one must still ring
        time.sleep(3)
    assert time.monotonic() - start < 1.5
    start = time.monotonic()
    with pytest.raises(Outer), alarm(0.3, Outer), alarm(5, Inner):
        time.sleep(3)  # the earlier of the two rings, with its own error
    assert time.monotonic() - start < 1.5


# -- 4. numbers that parse but make no sense ----------------------------------------------------------------

NONSENSE = [
    ("deadline", "nan"),
    ("deadline", "inf"),
    ("deadline", "1e400"),
    ("timeout", "nan"),
    ("timeout", "-1"),
    ("retries", "-1"),
]


def refusal(path, setting, value):
    return f"cannot use config file {path}: {setting} = {value}: not a "


@pytest.mark.slow  # over half a second: the full suite
def test_nonsense_numbers_are_config_errors_naming_the_setting_and_the_file(file_keyring, tmp_path):
    """Every value through the helper (a cold robot `get`), two (a float and an int) through the CLI and the
    provider: each executable a process per value, so the fast tier stays fast; every parser in-process below."""
    host = "127.0.0.1:1"
    env, path = configured(file_keyring, "")
    store(env, host, ROBOT, ROBOT_TOKEN)
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    token = etc / "robot-token"
    token.write_text(ROBOT_TOKEN)
    token.chmod(0o600)
    config = etc / "kubelet.ini"
    for setting, value in NONSENSE:
        path.write_text(f"[{host}]\n{setting} = {value}\n")
        runs = [(helper(env, "get", host), "stdout")]
        if (setting, value) in (("deadline", "nan"), ("retries", "-1")):
            runs.append((cli(env, "token", host), "stderr"))
        for r, out in runs:
            text = getattr(r, out).decode()
            assert r.returncode == 1 and text.count("\n") == 1, text
            assert refusal(path, setting, value) in text, text
        if len(runs) == 1:
            continue
        config.write_text(f"[{host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n{setting} = {value}\n")
        config.chmod(0o600)
        with pytest.raises(kubelet.Rejected) as refused:
            kubelet.run(provider_path(), ["--config", str(config)], env, V1, f"{host}/org/app")
        stderr = refused.value.args[1].stderr.decode()
        assert refusal(config, setting, value) in stderr and stderr.count("\n") == 1, stderr


def test_every_number_setting_is_checked_in_process():
    from quay_cred_helper.config import Settings

    for name in ("deadline", "timeout", "connect_timeout"):
        for value in ("nan", "inf", "-inf", "1e400", "-1", "0", "86401", "x"):
            with pytest.raises(ValueError, match=f"^{name} = "):
                Settings({name: value})
        assert getattr(Settings({name: "0.5"}), name) == 0.5
    for value in ("-1", "101", "1.5", "1e400", "x"):
        with pytest.raises(ValueError, match="^retries = "):
            Settings({"retries": value})
    assert Settings({"retries": "0"}).retries == 0


# -- 5. a debug log that cannot be opened ---------------------------------------------------------------------


def _three_executables(env, etc):
    """Each executable once: (name, result)."""
    config = etc / "kubelet.ini"
    config.write_text("")
    config.chmod(0o600)
    request = kubelet.request(V1, "quay.example.com/org/app")
    provider = subprocess.run(
        [provider_path(), "--config", str(config)], input=request, env=env, capture_output=True, timeout=30
    )
    return [("helper", helper(env, "list")), ("cli", cli(env, "list")), ("provider", provider)]


def test_a_log_file_in_a_missing_directory_gets_it_and_an_unwritable_one_a_warning(home, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    env = dict(home, QUAY_CRED_HELPER_LOG="debug", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    log = tmp_path / "missing" / "logs" / "debug.log"
    for name, r in _three_executables(dict(env, QUAY_CRED_HELPER_LOG_FILE=str(log)), etc):
        assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") <= 1, (name, r.stderr)
        assert r.returncode == (1 if name == "provider" else 0), (name, r.stdout, r.stderr)
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700 and stat.S_IMODE(log.parent.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    for name, r in _three_executables(dict(env, QUAY_CRED_HELPER_LOG_FILE=str(blocked / "debug.log")), etc):
        lines = r.stderr.decode().splitlines()
        assert b"Traceback" not in r.stderr, (name, r.stderr)
        assert f"warning: no debug log: cannot write {blocked}/debug.log: Not a directory" in lines[0], (name, lines)
        assert r.returncode == (1 if name == "provider" else 0), (name, r.stdout, r.stderr)
        if name == "helper":
            assert r.stdout == b"{}\n"  # the command itself is untouched


# -- 6. the provider's files: owner and every directory up to /, checked on the descriptor ---------------------


@pytest.fixture
def node(home, tmp_path, quay):
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    token = etc / "robot-token"
    token.write_text(ROBOT_TOKEN)
    token.chmod(0o600)
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    return env, etc, token


def provider_config(etc, text):
    config = etc / "kubelet.ini"
    config.write_text(text)
    config.chmod(0o600)
    return ["--config", str(config)]


def refused_by_provider(env, args, image):
    with pytest.raises(kubelet.Rejected) as refused:
        kubelet.run(provider_path(), args, env, V1, image)
    result = refused.value.args[1]
    assert result.stdout == b"" and result.stderr.count(b"\n") == 1
    return result.stderr.decode().strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to hand files to another user")
def test_the_provider_refuses_files_root_does_not_own_or_others_can_change(node, quay, tmp_path):
    env, etc, token = node
    image = f"{quay.host}/org/app"
    args = provider_config(etc, f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")
    assert kubelet.run(provider_path(), args, env, V1, image)["auth"]  # as given: fine
    config = Path(args[1])
    os.chown(config, NOBODY, NOBODY)
    assert refused_by_provider(env, args, image) == (
        f"quay-credential-provider: refusing the provider config file {config}: "
        f"it is owned by uid {NOBODY}, not root: chown root {config}"
    )
    os.chown(config, 0, 0)
    os.chown(token, NOBODY, NOBODY)
    assert f"refusing the robot token file {token}: it is owned by uid {NOBODY}" in refused_by_provider(
        env, args, image
    )
    os.chown(token, 0, 0)
    # Root's 0600 files in a directory anyone can write (not sticky): anyone could swap them.
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    moved = open_dir / "robot-token"
    moved.write_text(ROBOT_TOKEN)
    moved.chmod(0o600)
    args = provider_config(etc, f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {moved}\n")
    assert refused_by_provider(env, args, image).endswith(
        f"refusing the robot token file {moved}: other users can write its directory {open_dir}: chmod go-w {open_dir}"
    )
    # A directory above, too; a root-owned sticky one (/tmp) is fine.
    inner = open_dir / "deeper"
    inner.mkdir(mode=0o700)
    config = inner / "kubelet.ini"
    config.write_text(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")
    config.chmod(0o600)
    assert f"other users can write its directory {open_dir}" in refused_by_provider(
        env, ["--config", str(config)], image
    )
    open_dir.chmod(0o1777)
    assert kubelet.run(provider_path(), ["--config", str(config)], env, V1, image)["auth"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to hand files to another user")
@pytest.mark.slow  # over half a second: the full suite
def test_the_provider_checks_the_ca_bundle_and_oidc_files_its_config_names(node, quay, issuer, oidc_ca, tmp_path):
    env, etc, token = node
    image = f"{quay.host}/org/app"
    ca = etc / "ca.pem"
    oidc_ca.cert_pem.write_to_path(str(ca))
    ca.chmod(0o644)
    os.chown(ca, NOBODY, NOBODY)
    args = provider_config(etc, f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\nca_bundle = {ca}\n")
    assert f"refusing the CA bundle {ca}: it is owned by uid {NOBODY}" in refused_by_provider(env, args, image)
    os.chown(ca, 0, 0)
    assert kubelet.run(provider_path(), args, env, V1, image)["auth"]  # read through the descriptor it checked

    issuer.trusted_by(quay, tmp_path)
    quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": "node"}]
    node_token = etc / "node-token"
    node_token.write_text(issuer.token("node"))
    node_token.chmod(0o644)
    os.chown(node_token, NOBODY, NOBODY)
    args = provider_config(etc, f"[{quay.host}]\nrobot = {ROBOT}\noidc = file:{node_token}\n")
    assert f"refusing the OIDC token file {node_token}: it is owned by uid {NOBODY}" in refused_by_provider(
        env, args, image
    )
    assert quay.federation_log == []
    os.chown(node_token, 0, 0)
    assert kubelet.run(provider_path(), args, env, V1, image)["auth"][quay.host]["username"] == ROBOT


def test_check_private_reads_through_the_descriptor_it_checked(tmp_path):
    from quay_cred_helper.errors import ConfigError
    from quay_cred_helper.files import check_private

    path = tmp_path / "token"
    path.write_text("first")
    path.chmod(0o600)
    with check_private(str(path), "robot token file") as checked:
        os.rename(path, tmp_path / "old")
        path.write_text("swapped")  # a new file at the path: the checked one is still read
        assert checked.read() == b"first" and checked.stat.st_size == 5
    (tmp_path / "dir").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        check_private(str(tmp_path / "dir"), "robot token file")
    path.chmod(0o620)
    with pytest.raises(ConfigError, match=f"other users can write it: chmod go-w {path}$"):
        check_private(str(path), "robot token file")


# -- 7. identity and trust settings must name their registry -------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_identity_and_trust_settings_under_default_are_refused(file_keyring):
    from quay_cred_helper.config import REGISTRY_ONLY

    env, path = configured(file_keyring, "")
    store(env, "quay.example.com", ROBOT, ROBOT_TOKEN)
    settings = [
        "robot = org+ci",
        "oidc = env:ID_TOKEN",
        "audience = quay",
        "robot_token_file = /etc/token",
        "robot_token_env = QUAY_ROBOT_TOKEN",
        "service_account = true",
        "realm_hosts = evil.example",
        "insecure_http = true",
    ]
    assert [setting.split(" ")[0] for setting in settings] == list(REGISTRY_ONLY)
    for setting in settings:
        name = setting.split(" ")[0]
        path.write_text(f"[DEFAULT]\n{setting}\n\n[quay.example.com]\ntimeout = 5\n")
        expected = (
            f"cannot use config file {path}: {name} is under [DEFAULT]: "
            "identity and trust settings must name their registry: move it under [HOST]"
        )
        r = helper(env, "get", "other.example.com")  # any registry, stored or not, keyless or not
        assert (r.returncode, r.stdout.decode().strip()) == (1, expected)
        if name != "robot":
            continue
        r = helper(env, "get", "quay.example.com")  # a stored robot, about to be exchanged
        assert (r.returncode, r.stdout.decode().strip()) == (1, expected)
        r = cli(env, "token", "quay.example.com")
        assert (r.returncode, r.stderr.decode().strip()) == (1, f"quay-cred-helper: {expected}")


# -- 8. doctor: a stalling check is a FAIL with its fix, and the others still run --------------------------------


@pytest.mark.slow  # waits out two deadlines in real time
def test_doctor_reports_each_stalling_check_and_goes_on(file_keyring):
    with StallingRegistry(drip_auth=True) as registry:
        env, path = configured(file_keyring, f"[{registry.host}]\ndeadline = 2\n")
        cli(env, "login", registry.host, "-u", "alice", "--password-stdin", "--no-verify", stdin="alice-password")
        r, elapsed = timed(lambda: cli(env, "doctor", "--json", registry.host, timeout=60))
    assert r.returncode == 1, r.stderr
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
    for name in ("credentials", "referrers API"):  # /v2/auth and the referrers probe both drip
        check = checks[f"{registry.host} {name}"]
        assert check["status"] == "FAIL" and check["detail"] == f"{registry.host} did not finish within 2 s", check
        assert check["fix"] == (
            f"the registry is stalling; raise deadline = N under [{registry.host}] in {path} if it is only slow"
        )
    assert checks[f"{registry.host} reachable"]["status"] == "OK"
    assert elapsed < 2 * 2 + 4, elapsed  # each check within its own bound


# -- 9. real Quay's federation answers, and the hints for them ---------------------------------------------------

SUBJECT = "system:serviceaccount:ci:builder"


@pytest.fixture
def federated(issuer, tmp_path):
    from tests.fakes.quay_registry import QuayRegistry

    with QuayRegistry(users=support.USERS, robots=support.ROBOTS) as registry:
        issuer.trusted_by(registry, tmp_path)
        registry.federation[ROBOT] = [{"issuer": issuer.url, "subject": SUBJECT}]
        yield registry


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
    federated, issuer, tmp_path, case, status, message, hint
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
        federated.federation[ROBOT][0]["audiences"] = ["quay.example.com"]
    found = exchange(federated, tmp_path, token)
    assert federated.federation_log[-1]["status"] == status
    if status == 200:
        assert json.loads(b64url_decode(found.token.split(".")[1]))["sub"] == ROBOT
        return
    assert found.problem == f"{federated.host} refused the OIDC token for {ROBOT}: {message}", found.problem
    assert hint in found.fix, found.fix
    if case in ("audience", "no-aud"):
        assert f"audience = under [{federated.host}]" in found.fix


@pytest.mark.slow  # over half a second: the full suite
def test_the_helper_says_which_clock_or_audience_to_fix(home, federated, issuer, tmp_path):
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    assert cli(env, "login", federated.host, "-u", ROBOT, "--oidc", "env:ID_TOKEN", "--no-verify").returncode == 0

    def refusal(token):
        r = helper(dict(env, ID_TOKEN=token), "get", federated.host)
        assert r.returncode == 1 and r.stdout.count(b"\n") == 1
        return r.stdout.decode()

    assert "cannot be in the future.: the OIDC token was issued (iat) more than 30 s ahead of Quay's clock: " in (
        refusal(issuer.token(SUBJECT, issued=time.time() + 120))
    )
    federated.federation[ROBOT][0]["audiences"] = ["quay.example.com"]
    message = refusal(issuer.token(SUBJECT, audience="github"))
    assert "Audience doesn't match: the robot's federation entry accepts only the audiences it lists, " in message
    assert "this token's aud is 'github'" in message
    message = refusal(issuer.token(SUBJECT, omit=("aud",)))
    assert "the robot's federation entry checks the audience, and this token has none" in message


# -- 10. an erase of nothing succeeds: podman logout, twice, and --all ----------------------------------------


@pytest.mark.slow  # podman
@needs("podman")
def test_podman_logout_twice_and_logout_all_through_the_helper(file_keyring):
    env = file_keyring
    assert cli(env, "configure", "quay.example.com").returncode == 0
    store(env, "quay.example.com", "carol", "s3cret")
    for attempt in range(2):  # the second erases nothing: podman 4.3.1 overflowed its stack on not-found
        r = subprocess.run(["podman", "logout", "quay.example.com"], env=env, capture_output=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, b"Removed login credentials for quay.example.com\n"), (attempt, r)
    assert json.loads(helper(env, "list").stdout) == {}
    r = subprocess.run(["podman", "logout", "--all"], env=env, capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"Removed login credentials for all registries\n"), r.stderr[-500:]
    r = helper(env, "erase", "quay.example.com")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


# -- 11. what podman logout --all really rewrites ---------------------------------------------------------


@pytest.mark.slow  # podman
@needs("podman")
@pytest.mark.parametrize("auth_file", [False, True])
def test_configure_names_the_file_podman_logout_all_rewrites(file_keyring, tmp_path, auth_file):
    env = dict(file_keyring)
    docker_config = Path(env["DOCKER_CONFIG"], "config.json")
    podman_auth = Path(env["XDG_RUNTIME_DIR"], "containers", "auth.json")
    if auth_file:
        podman_auth = tmp_path / "auth.json"
        env["REGISTRY_AUTH_FILE"] = str(podman_auth)
    r = cli(env, "configure", "quay.example.com")
    assert r.returncode == 0, r.stderr
    rewritten, kept = (podman_auth, docker_config) if auth_file else (docker_config, podman_auth)
    notes = [line for line in r.stderr.decode().splitlines() if "podman logout --all" in line]
    assert notes == [
        f'quay-cred-helper: `podman logout --all` rewrites {rewritten} as {{"auths": {{}}}}, without credHelpers: '
        "run configure again after it, or use --registries-conf"
    ]
    store(env, "quay.example.com", "carol", "s3cret")
    r = subprocess.run(["podman", "logout", "--all"], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    assert json.loads(rewritten.read_text()) == {"auths": {}}  # podman 4.3.1 (Debian 12)
    assert json.loads(kept.read_text())["credHelpers"] == {"quay.example.com": "quay"}
    assert json.loads(helper(env, "list").stdout) == {}  # erased through the helper first

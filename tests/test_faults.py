"""Faults: processes killed mid-write, many processes at once, backends and registries that misbehave."""

import base64
import concurrent.futures
import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fakes.hostile import DripServer
from tests.support import CLI, FAULTS, HELPER, ROBOT, ROBOT_TOKEN, cli, configured, helper, store

KILLS = int(os.environ.get("QUAY_CRED_HELPER_KILLS", "200"))
STRESS_SECONDS = float(os.environ.get("QUAY_CRED_HELPER_STRESS_SECONDS", "30"))
REGISTRIES = [f"reg{i}.example.com" for i in range(4)]


def start(argv, env, stdin=b""):
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def kill_soon(proc, rng, window):
    time.sleep(rng.uniform(0, window))
    proc.send_signal(signal.SIGKILL)
    FAULTS["kills sent"] += 1
    if proc.wait(timeout=30) == -signal.SIGKILL:
        FAULTS["processes killed mid-run"] += 1


def index_entries(env):
    path = Path(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")
    if not path.exists():
        return {}
    data = json.loads(path.read_text())  # must always parse
    assert data["version"] == 1
    return data["registries"]


def keyring_users(env):
    """registry -> username, as the keyring has it (through the installed helper)."""
    found = {}
    for registry in REGISTRIES:
        r = helper(env, "get", registry)
        if r.returncode == 0:
            found[registry] = json.loads(r.stdout)["Username"]
        else:
            assert r.stdout == b"credentials not found in native keychain\n", r.stdout
    return found


def assert_consistent(env):
    """Every index entry has its secret in the keyring under the same username."""
    in_keyring = keyring_users(env)
    for key, entry in index_entries(env).items():
        assert in_keyring.get(key) == entry["username"], (key, entry, in_keyring)


def leftovers(directory):
    return [p for p in Path(directory).rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]


@pytest.mark.slow
@pytest.mark.posix
def test_sigkill_during_store_and_erase(secret_keyring):
    rng = random.Random(1)
    env = secret_keyring
    kills = 0
    for i in range(KILLS):
        registry = rng.choice(REGISTRIES)
        payload = json.dumps({"ServerURL": registry, "Username": f"user{i}", "Secret": f"pw{i}"}).encode()
        kill_soon(start([HELPER, "store"], env, payload), rng, 0.25)
        index_entries(env)  # parses after every kill
        kill_soon(start([HELPER, "erase"], env, registry.encode()), rng, 0.25)
        index_entries(env)
        kills += 2
        if i % 25 == 0:
            assert_consistent(env)
    assert_consistent(env)
    assert kills == 2 * KILLS


@pytest.mark.slow
@pytest.mark.posix
def test_sigkill_during_configure(file_keyring):
    rng = random.Random(2)
    env = file_keyring
    config = Path(env["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    original = json.dumps({"auths": {}, "credsStore": "desktop", "other": [1, 2, 3]}, indent="\t") + "\n"
    config.write_text(original)
    seen = set()
    for i in range(KILLS):
        args = ["configure", REGISTRIES[i % 4], "--docker"] + (["--remove"] if i % 2 else [])
        kill_soon(start([CLI, *args], env), rng, 0.3)
        text = config.read_text()
        data = json.loads(text)  # never a mix of two versions
        assert data["credsStore"] == "desktop" and data["other"] == [1, 2, 3]
        seen.add(text)
    assert len(seen) > 1  # some runs did finish their write


@pytest.mark.slow
@pytest.mark.posix
def test_sigkill_during_token_cache_writes(file_keyring, quay):
    rng = random.Random(3)
    env = file_keyring
    helper(env, "store", json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN}))
    cache = Path(env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens")
    for i in range(KILLS):
        kill_soon(start([CLI, "token", f"{quay.host}/org/repo{i % 7}"], env), rng, 0.4)
        for path in leftovers(cache):
            if path.suffix == ".json":
                entry = json.loads(path.read_text())  # every cache file parses
                assert entry["version"] == 1
    # And the helper still works from whatever was left.
    got = json.loads(helper(env, "get", quay.host).stdout)
    assert got["Username"] == ROBOT


@pytest.mark.slow
def test_16_processes_at_once(secret_keyring):
    env = secret_keyring
    deadline = time.monotonic() + STRESS_SECONDS
    counts = {"ops": 0, "errors": []}

    def worker(n):
        rng = random.Random(n)
        ops = 0
        while time.monotonic() < deadline:
            registry = rng.choice(REGISTRIES)
            verb = rng.choice(["store", "store", "get", "erase", "list"])
            stdin = {
                "store": json.dumps({"ServerURL": registry, "Username": f"w{n}-{ops}", "Secret": f"s{n}"}),
                "list": "",
            }.get(verb, registry)
            r = helper(env, verb, stdin, timeout=60)
            ok = r.returncode == 0 or r.stdout == b"credentials not found in native keychain\n"
            if not ok:
                counts["errors"].append((verb, r.stdout[:200]))
            ops += 1
        return ops

    with ThreadPoolExecutor(16) as pool:
        counts["ops"] = sum(pool.map(worker, range(16)))
    FAULTS["concurrent operations"] += counts["ops"]
    assert counts["errors"] == []
    assert counts["ops"] > 16
    assert_consistent(env)
    listed = json.loads(helper(env, "list").stdout)
    assert set(listed) == set(index_entries(env))


# -- backends and registries that misbehave ----------------------------------------------------


def test_backend_that_raises(home):
    home["PYTHON_KEYRING_BACKEND"] = "tests.fakes.raising_keyring.Raising"
    home["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    for verb, stdin in (("get", "quay.example.com"), ("store", '{"ServerURL":"h","Username":"u","Secret":"s"}')):
        r = helper(home, verb, stdin)
        assert (r.returncode, r.stdout) == (1, b"keyring backend failed: RuntimeError: backend exploded\n")


def test_item_erased_while_being_read_is_not_found(home):
    home["PYTHON_KEYRING_BACKEND"] = "tests.fakes.raising_keyring.Vanishing"
    home["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    r = helper(home, "get", "quay.example.com")
    assert (r.returncode, r.stdout) == (1, b"credentials not found in native keychain\n")


@pytest.mark.slow  # over half a second: the full suite
def test_429_without_retry_after_backs_off_and_recovers(quay, tmp_path, monkeypatch):
    from tests.support import tokens

    quay.faults.extend([("status", 429), ("status", 429)])
    start_time = time.monotonic()
    token = tokens(tmp_path / "none.ini").get(quay.host, credentials=lambda: ("alice", "alice-password"))
    assert token and quay.count("/v2/auth") == 3
    assert time.monotonic() - start_time < 5


def test_500_is_reported_not_retried(quay, tmp_path, monkeypatch):
    from quay_cred_helper.errors import Unreachable
    from tests.support import tokens

    quay.faults.append(("status", 500))
    with pytest.raises(Unreachable, match=r"is failing: HTTP 500: service unavailable"):
        tokens(tmp_path / "none.ini").get(quay.host, credentials=lambda: ("alice", "alice-password"))
    assert quay.count("/v2/auth") == 1
    # The next call goes through: the fault was a burst.
    assert tokens(tmp_path / "none.ini").get(quay.host, credentials=lambda: ("alice", "alice-password"))


def test_jwt_without_exp_lives_60_seconds(quay, tmp_path, monkeypatch):
    from tests.support import tokens

    payload = base64.urlsafe_b64encode(json.dumps({"sub": "alice"}).encode()).rstrip(b"=").decode()
    quay.faults.append(("token", {"token": f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"}))
    token = tokens(tmp_path / "none.ini").get(quay.host, credentials=lambda: ("alice", "alice-password"))
    assert 59 <= token.expires_at - token.issued_at <= 61


def test_plain_http_refused_off_loopback_unless_opted_in(tmp_path, monkeypatch):
    import ssl

    import httpx

    from quay_cred_helper.errors import RegistryError
    from tests.support import tokens

    seen = []

    def handler(request):
        seen.append(str(request.url))
        if request.url.scheme == "https":
            # As httpx raises it: the ssl error of a server that speaks no TLS is the cause.
            raise httpx.ConnectError("handshake failed") from ssl.SSLError(1, "WRONG_VERSION_NUMBER")
        return httpx.Response(200, json={})

    config = tmp_path / "config.ini"
    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(RegistryError, match="does not speak TLS: set insecure_http = true"):
        tokens(config, client=client).get("quay.example.com")
    assert seen == ["https://quay.example.com/v2/"]
    config.write_text("[quay.example.com]\ninsecure_http = true\n")
    assert tokens(config, client=client).get("quay.example.com") is None
    assert seen[-1] == "http://quay.example.com/v2/"


# -- secrets: error paths, tracebacks, files ------------------------------------------------------


@pytest.mark.slow  # many processes: the full suite
def test_exceptions_in_any_layer_print_no_secret(file_keyring, monkeypatch, capsys):
    from quay_cred_helper import cli
    from quay_cred_helper import helper as helper_module
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.registry.tokens import TokenExchange
    from quay_cred_helper.store import HelperStore

    secret = "layer-secret-value"

    def explode(*args, **kwargs):
        raise RuntimeError(f"boom {secret} Authorization: Basic {base64.b64encode(secret.encode()).decode()}")

    for module, name in (
        (KeyringStore, "get"),
        (KeyringStore, "add"),
        (HelperStore, "get"),
        (TokenExchange, "get"),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(module, name, explode)
            for env_key, value in file_keyring.items():
                patch.setenv(env_key, value)
            patch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115
            helper_module.main(["get"])
            cli.main(["--debug", "token", "quay.example.com"])
            cli.main(["list"])
        out = capsys.readouterr()
        assert secret not in out.out + out.err
        assert base64.b64encode(secret.encode()).decode() not in out.out + out.err
        assert "Traceback (most recent call last)" not in out.out


@pytest.mark.posix
@pytest.mark.slow  # over half a second: the full suite
def test_files_stay_private_under_umask_000(file_keyring, quay):
    env = dict(file_keyring, QUAY_CRED_HELPER_LOG="debug")
    old = os.umask(0)
    try:
        helper(env, "store", json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN}))
        helper(env, "get", quay.host)
        subprocess.run([CLI, "configure", quay.host], env=env, capture_output=True, timeout=30)
    finally:
        os.umask(old)
    written = [Path(env[v], "quay-cred-helper") for v in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")]
    written += [Path(env["DOCKER_CONFIG"], "config.json"), Path(env["XDG_RUNTIME_DIR"], "containers", "auth.json")]
    for root in written:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            mode = path.stat().st_mode & 0o777
            assert mode & 0o077 == 0, (path, oct(mode))
            if path.is_file() and path.suffix != ".lock":
                text = path.read_bytes()
                assert ROBOT_TOKEN.encode() not in text, path


# -- an overall deadline ------------------------------------------------------------------------

CHALLENGE = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
    b'WWW-Authenticate: Bearer realm="http://127.0.0.1:1/v2/auth",service="s"\r\n\r\n'
)


@pytest.mark.slow  # waits out a deadline in real time
def test_robot_get_from_a_registry_dripping_its_headers_falls_back_within_the_deadline(file_keyring):
    with DripServer(CHALLENGE, interval=0.3) as drip:
        env, _ = configured(file_keyring, f"[{drip.host}]\ndeadline = 2\n")
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
        env, _ = configured(file_keyring, f"[{drip.host}]\ndeadline = 2\ntimeout = 10\n")
        start = time.monotonic()
        r = cli(env, "token", drip.host)
        elapsed = time.monotonic() - start
    assert r.returncode == 1
    assert r.stderr.startswith(f"quay-cred-helper: {drip.host} did not finish within 2 s: ".encode())
    assert elapsed < 8


# -- internal errors become messages ----------------------------------------------------------------------


def test_deeply_nested_json_from_the_registry(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    quay.faults.append(("raw", b"[" * 100_000))
    r = helper(file_keyring, "get", quay.host)
    assert r.stdout == f"{quay.host} answered /v2/auth without a token\n".encode()


def test_a_retry_after_that_is_not_ascii_digits(file_keyring, quay):
    quay.faults.append(("retry-after", "\u00b2"))
    r = cli(file_keyring, "token", quay.host)
    assert r.returncode == 0, r.stderr


# -- the single-flight lock counts against the deadline, and waiters fail fast ------------------------


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

"""Fixtures: an isolated home per test, real keyring backends, local registries."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.quay_registry import QuayRegistry

BIN = os.path.dirname(sys.executable)
HELPER = os.path.join(BIN, "docker-credential-quay")
CLI = os.path.join(BIN, "quay-cred-helper")

USERS = {"alice": ("alice-password", ["alice", "org", "library"])}
ROBOT = "org+ci"
ROBOT_TOKEN = "R0B0T" * 12 + "TOKN"  # 64 characters, like Quay's robot tokens
ROBOTS = {ROBOT: ROBOT_TOKEN}


def needs(*programs):
    missing = [p for p in programs if not shutil.which(p)]
    return pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"not installed: {missing}")


def isolated_env(root):
    """Environment for subprocesses: fresh HOME and XDG dirs under `root`, our bin first on PATH,
    none of the caller's docker, registry, keyring or quay-cred-helper settings."""
    prefixes = ("XDG_", "DOCKER_", "REGISTRY_AUTH", "QUAY_CRED", "PYTHON_KEYRING")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        path = os.path.join(root, name.lower())
        os.makedirs(path, mode=0o700)
        env[name] = path
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["DOCKER_CONFIG"] = os.path.join(env["HOME"], ".docker")
    return env


@pytest.fixture
def home(tmp_path):
    return isolated_env(str(tmp_path))


@pytest.fixture
def file_keyring(home):
    """A file keyring backend (keyrings.alt, plaintext: opted in explicitly)."""
    home["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    home["QUAY_CRED_HELPER_ALLOW_PLAINTEXT"] = "1"
    return home


class SecretService:
    """gnome-keyring's Secret Service on a private D-Bus session."""

    def __init__(self, data_home, runtime_dir, unlock=True):
        self.env = dict(os.environ, XDG_DATA_HOME=str(data_home), XDG_RUNTIME_DIR=str(runtime_dir))
        unlock_cmd = (
            "printf test | gnome-keyring-daemon --unlock --components=secrets"
            if unlock
            else ("gnome-keyring-daemon --start --components=secrets")
        )
        script = f'{unlock_cmd} >/dev/null 2>&1; echo "$DBUS_SESSION_BUS_ADDRESS"; exec sleep 600'
        self.proc = subprocess.Popen(
            ["dbus-run-session", "--", "sh", "-c", script],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            self.stop()
            raise RuntimeError("dbus-run-session did not start")

    def apply(self, env):
        env.update(
            DBUS_SESSION_BUS_ADDRESS=self.address,
            XDG_DATA_HOME=self.env["XDG_DATA_HOME"],
            XDG_RUNTIME_DIR=self.env["XDG_RUNTIME_DIR"],
        )
        env.pop("PYTHON_KEYRING_BACKEND", None)
        return env

    def stop(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)


def _secret_service(tmp_path_factory, unlock):
    if not shutil.which("gnome-keyring-daemon") and not os.environ.get("CI"):
        pytest.skip("gnome-keyring not installed")
    base = tmp_path_factory.mktemp("secret-service")
    (base / "data").mkdir()
    (base / "run").mkdir(mode=0o700)
    service = SecretService(base / "data", base / "run", unlock=unlock)
    # The collection is created by the first write; give the daemon a moment to own the bus name.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ],
            env=dict(service.env, DBUS_SESSION_BUS_ADDRESS=service.address),
            capture_output=True,
            text=True,
        )
        if "true" in probe.stdout:
            break
        time.sleep(0.05)
    return service


@pytest.fixture(scope="module")
def secret_service(tmp_path_factory):
    service = _secret_service(tmp_path_factory, unlock=True)
    yield service
    service.stop()


@pytest.fixture
def secret_keyring(home, secret_service):
    return secret_service.apply(home)


@pytest.fixture
def quay():
    with QuayRegistry(users=USERS, robots=ROBOTS, public_namespaces={"library"}) as registry:
        yield registry


def run(argv, env, stdin=b"", timeout=30):
    """Run an installed executable the way a client does."""
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=timeout)


def helper(env, verb, stdin=b"", timeout=30):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return run([HELPER, verb], env, stdin, timeout)


def cli(env, *args, stdin=b"", timeout=30):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return run([CLI, *args], env, stdin, timeout)


# -- secrets must never show up in any process's argv or environment ---------------------------

WATCHED = {}

SECRETS = ["alice-password", ROBOT_TOKEN, "s3cret", "fast-path-secret", "migrated-password", "py-secret"]


class ProcWatcher:
    """Scans every process's argv and environment for known secrets while the tests run."""

    def __init__(self, secrets):
        self.needles = [s.encode() for s in secrets]
        self.hits = []
        self.scans = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.02):
            self.scan()

    def scan(self):
        self.scans += 1
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            for part in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{entry}/{part}", "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                for needle in self.needles:
                    if needle in data:
                        self.hits.append((entry, part, data.split(b"\0")[0][:100]))


@pytest.fixture(scope="session", autouse=True)
def secret_watcher():
    if not os.path.isdir("/proc"):
        yield None
        return
    watcher = ProcWatcher(SECRETS)
    watcher.thread.start()
    yield watcher
    watcher.stop.set()
    watcher.thread.join()
    WATCHED.update(scans=watcher.scans, hits=len(watcher.hits))
    assert not watcher.hits, watcher.hits[:5]


# -- how many generated cases the property tests ran -----------------------------------------

GENERATED = {"cases": 0}
FAULTS = {"kills sent": 0, "processes killed mid-run": 0, "concurrent operations": 0}


def count_case():
    GENERATED["cases"] += 1


def pytest_terminal_summary(terminalreporter):
    if GENERATED["cases"]:
        terminalreporter.write_line(f"property tests: {GENERATED['cases']} generated cases")
    if WATCHED:
        terminalreporter.write_line(
            f"secret watcher: {WATCHED['scans']} scans of every process's argv and environment, "
            f"{WATCHED['hits']} secrets found"
        )
    if FAULTS["kills sent"] or FAULTS["concurrent operations"]:
        terminalreporter.write_line("fault tests: " + ", ".join(f"{v} {k}" for k, v in FAULTS.items()))

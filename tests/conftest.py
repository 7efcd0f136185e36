"""Fixtures: an isolated home per test, real keyring backends, local registries."""

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from tests.fakes.quay_registry import QuayRegistry
from tests.support import (
    ENV_SECRETS,
    FAULTS,
    GENERATED,
    NO_KEYRING,
    ROBOTS,
    SECRETS,
    TIER,
    USERS,
    isolated_env,
    missing,
    secret_service_on_bus,
)


def needs(*programs):
    absent = missing(*programs)
    return pytest.mark.skipif(bool(absent) and not os.environ.get("CI"), reason=f"not installed: {absent}")


@pytest.fixture
def home(tmp_path):
    return isolated_env(str(tmp_path))


@pytest.fixture
def file_keyring(home):
    """A file keyring backend (keyrings.alt, plaintext: opted in explicitly)."""
    home["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    home["QUAY_CRED_HELPER_ALLOW_PLAINTEXT"] = "1"
    return home


@pytest.fixture
def env(home):
    """A machine with no keyring at all (keyring's fail backend), as a CI job or a node has: what a keyless
    robot, a held robot token and the provider must work without. A test file may narrow it under the same
    name (test_ci.py: no CI variables either); a different environment gets a name of its own."""
    return dict(home, PYTHON_KEYRING_BACKEND=NO_KEYRING)


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

    def revive(self):
        """Start gnome-keyring again on the same bus if it died (gnome-keyring 42 crashes after a few thousand
        rapid sessions: its failure, not ours); True if it had."""
        env = dict(self.env, DBUS_SESSION_BUS_ADDRESS=self.address)
        if secret_service_on_bus(env):
            return False
        subprocess.run(
            "printf test | gnome-keyring-daemon --unlock --components=secrets",
            shell=True,
            env=env,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not secret_service_on_bus(env):
            time.sleep(0.05)
        return True

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
        if secret_service_on_bus(dict(service.env, DBUS_SESSION_BUS_ADDRESS=service.address)):
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
def docker_registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1 (plain http), its tokens from a QuayRegistry (`.quay`)."""
    from tests.fakes.real_registry import BINARY, DockerRegistry

    if not os.path.exists(BINARY) and not os.environ.get("CI"):
        pytest.skip("docker-registry not installed")
    with DockerRegistry(tmp_path, USERS, ROBOTS, public_namespaces={"library"}) as registry:
        yield registry


@pytest.fixture(scope="session")
def oidc_ca():
    """The test CA that OIDC issuers' certificates come from."""
    import trustme

    return trustme.CA()


@pytest.fixture
def issuer(oidc_ca):
    """An OIDC issuer on https://127.0.0.1 (discovery, JWKS, tokens on demand)."""
    from tests.fakes.issuer import OIDCIssuer

    with OIDCIssuer(oidc_ca) as found:
        yield found


@pytest.fixture
def quay():
    with QuayRegistry(users=USERS, robots=ROBOTS, public_namespaces={"library"}) as registry:
        yield registry


# -- secrets must never show up in any process's argv or environment ---------------------------

WATCHED = {}


PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans():
    """Make this process the subreaper of its descendants: daemons that fork away (gnome-keyring-daemon)
    stay in our process tree, where the watcher looks."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def descendants(root):
    """Pids of `root` and every process under it, from /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(b")") + 2 :].split()[1])  # the field after the state
        children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


class ProcWatcher:
    """Scans the argv and environment of this test run's processes for known secrets while the tests run
    (`argv_only`: secrets a job holds in its environment by design, looked for in argv alone)."""

    def __init__(self, secrets, argv_only=()):
        self.needles = [s.encode() for s in secrets]
        self.argv_needles = [s.encode() for s in argv_only]
        self.hits = []
        self.scans = 0
        self.processes = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.02):
            self.scan()

    def scan(self):
        self.scans += 1
        for pid in descendants(os.getpid()):
            self.processes.add(pid)
            for part in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{part}", "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                for needle in self.needles + (self.argv_needles if part == "cmdline" else []):
                    if needle in data:
                        self.hits.append((pid, part, data.split(b"\0")[0][:100]))


@pytest.fixture(scope="session", autouse=True)
def secret_watcher():
    if not os.path.isdir("/proc"):
        yield None
        return
    adopt_orphans()
    watcher = ProcWatcher(SECRETS, ENV_SECRETS)
    watcher.thread.start()
    yield watcher
    watcher.stop.set()
    watcher.thread.join()
    WATCHED.update(scans=watcher.scans, hits=len(watcher.hits), processes=len(watcher.processes))
    assert not watcher.hits, watcher.hits[:5]


def pytest_configure(config):
    TIER["full"] = not config.option.markexpr  # scripts/test runs -m "": everything


SLOW_FIXTURES = {"secret_service", "secret_keyring", "docker_registry"}  # the full suite only
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="means POSIX: file modes, signals, fork or unix sockets")


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("posix"):
            item.add_marker(POSIX_ONLY)


def pytest_terminal_summary(terminalreporter):
    if GENERATED["cases"]:
        terminalreporter.write_line(f"property tests: {GENERATED['cases']} generated cases")
    if WATCHED:
        terminalreporter.write_line(
            f"secret watcher: {WATCHED['scans']} scans of the argv and environment of this run's "
            f"{WATCHED['processes']} processes, {WATCHED['hits']} secrets found"
        )
    if FAULTS["kills sent"] or FAULTS["concurrent operations"]:
        terminalreporter.write_line("fault tests: " + ", ".join(f"{v} {k}" for k, v in FAULTS.items()))

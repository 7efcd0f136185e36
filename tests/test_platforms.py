"""Windows and macOS: what can be checked on Linux (README: Platforms says what cannot).

The Windows Credential Manager cap runs the installed helper against keyring's own Windows backend
with only its win32cred calls emulated (tests/fakes/credential_manager.py). The rest is the code
that branches on the platform: those tests name the platform fact they stand in for.
"""

import json
import logging
import logging.handlers
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from quay_cred_helper import client_configs, fastjson, files, log
from quay_cred_helper.credentials import keyring_backend
from tests.support import cli, helper, store

ROOT = Path(__file__).resolve().parent.parent
LONG_TOKEN = "windows-long-token-"  # the start of every over-long secret below (tests/support.py SECRETS)


# -- Windows Credential Manager holds 2,560 bytes per secret ------------------------------------


@pytest.fixture
def credential_manager(home):
    home["PYTHON_KEYRING_BACKEND"] = "tests.fakes.credential_manager.WinVaultKeyring"
    home["PYTHONPATH"] = str(ROOT)
    return home


def stored_bytes(username, secret):
    """What keyring hands Credential Manager for one of our entries, in its UTF-16 bytes."""
    return len(fastjson.dumps_strings({"username": username, "secret": secret}).encode("utf-16-le"))


@pytest.mark.slow  # over half a second: the full suite
def test_a_secret_over_the_windows_limit_is_refused_at_store_with_one_line(credential_manager):
    env = credential_manager
    overhead = stored_bytes("alice", "") // 2  # characters: ASCII JSON, two bytes each in UTF-16
    fits = LONG_TOKEN + "f" * (1280 - overhead - len(LONG_TOKEN))
    assert stored_bytes("alice", fits) == 2560
    r = store(env, "quay.example.com", "alice", fits)
    assert (r.returncode, r.stdout) == (0, b""), r.stdout
    assert json.loads(helper(env, "get", "quay.example.com").stdout)["Secret"] == fits

    for server in ("quay.example.com", "other.example.com"):  # replacing a stored one, and a new one
        r = store(env, server, "alice", fits + "x", check=False)
        assert r.returncode == 1
        (line,) = r.stdout.decode().splitlines()
        assert line == (
            f"the credential for {server} is 2562 bytes as Windows Credential Manager stores it (UTF-16), "
            "over its limit of 2560: nothing was stored: store a shorter secret (a password or robot token "
            "rather than a long token), or choose another keyring backend with PYTHON_KEYRING_BACKEND"
        )
        assert LONG_TOKEN.encode() not in r.stdout + r.stderr
    # Nothing changed: the stored credential is still there, the new registry has none.
    assert json.loads(helper(env, "get", "quay.example.com").stdout)["Secret"] == fits
    r = helper(env, "get", "other.example.com")
    assert (r.returncode, r.stdout) == (1, b"credentials not found in native keychain\n")
    assert json.loads(helper(env, "list").stdout) == {"quay.example.com": "alice"}

    # login goes through the same store: one line, exit 1.
    r = cli(env, "login", "third.example.com", "-u", "alice", "--password-stdin", "--no-verify", stdin=fits + "xy")
    assert r.returncode == 1 and b"over its limit of 2560: nothing was stored" in r.stderr
    assert len(r.stderr.decode().strip().splitlines()) == 1


def test_only_the_windows_backend_has_the_limit(file_keyring):
    r = store(file_keyring, "quay.example.com", "alice", LONG_TOKEN + "p" * 3000)
    assert (r.returncode, r.stdout) == (0, b"")
    assert json.loads(helper(file_keyring, "get", "quay.example.com").stdout)["Secret"].endswith("p" * 3000)


def test_the_keyring_policy_allows_the_desktop_backends():
    import keyring.backends.macOS
    import keyring.backends.SecretService
    import keyring.backends.Windows
    import keyrings.alt.Windows

    from tests.fakes.credential_manager import WinVaultKeyring

    windows, macos = keyring.backends.Windows.WinVaultKeyring(), keyring.backends.macOS.Keyring()
    for backend in (windows, macos, keyring.backends.SecretService.Keyring()):
        assert not keyring_backend.is_plaintext(backend), keyring_backend.name(backend)
    assert keyring_backend.is_plaintext(keyrings.alt.Windows.RegistryKeyring())  # the registry: refused
    assert keyring_backend.is_windows_credential_manager(windows)
    assert keyring_backend.is_windows_credential_manager(WinVaultKeyring())  # by lineage, as the fake relies on
    assert not keyring_backend.is_windows_credential_manager(macos)


def test_the_secret_service_fast_read_is_linux_only(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    for name in [n for n in os.environ if n.startswith("KEYRING_PROPERTY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "platform", "linux")
    path, record = keyring_backend._selection(keyring_backend.SECRET_SERVICE)
    files.private_dir(os.path.dirname(path))
    files.write_json(path, record)  # keyring chose the Secret Service last time
    assert keyring_backend._fast_read_agrees()
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        assert not keyring_backend._fast_read_agrees(), platform


# -- doctor's "helper on PATH" on Windows -------------------------------------------------------


def test_helper_on_path_looks_for_the_exe_on_windows(monkeypatch, tmp_path):
    """On Windows pip installs Scripts\\docker-credential-quay.exe; docker finds it by PATHEXT."""
    import sysconfig

    scripts = tmp_path / "Scripts"
    scripts.mkdir()
    real_get_path = sysconfig.get_path
    monkeypatch.setattr(
        sysconfig, "get_path", lambda name, *a, **k: str(scripts) if name == "scripts" else real_get_path(name, *a, **k)
    )
    monkeypatch.setenv("PATH", str(scripts))
    monkeypatch.setattr(client_configs, "WINDOWS", True)

    (scripts / "docker-credential-quay").write_text("#!python\n")  # what the POSIX wheel would leave there
    (scripts / "docker-credential-quay").chmod(0o755)
    problem, fix = client_configs.helper_on_path()
    assert problem == "docker-credential-quay.exe is not on PATH"
    assert fix == f'add {scripts} to PATH ($env:Path = "{scripts};" + $env:Path)'

    (scripts / "docker-credential-quay.exe").write_bytes(b"MZ")
    (scripts / "docker-credential-quay.exe").chmod(0o755)
    assert client_configs.helper_on_path() is None

    monkeypatch.setattr(client_configs, "WINDOWS", False)  # the same folder seen from POSIX
    (scripts / "docker-credential-quay").unlink()
    problem, fix = client_configs.helper_on_path()
    assert (problem, fix) == (
        "docker-credential-quay is not on PATH",
        f"add {scripts} to PATH (export PATH={scripts}:$PATH)",
    )


# -- replacing a file another process has open -------------------------------------------------


class SharingViolations:
    """os.replace failing as Windows fails it while a reader holds the target (winerror 32), `times`
    times. Linux has no sharing violations to produce on cue: this stands in for the other process."""

    def __init__(self, times):
        self.times, self.calls = times, 0
        self.real = os.replace

    def __call__(self, src, dst):
        self.calls += 1
        if self.calls <= self.times:
            raise PermissionError(13, "The process cannot access the file because it is being used by another process")
        self.real(src, dst)


@pytest.mark.slow  # over half a second: the full suite
def test_write_atomic_retries_a_held_file_on_windows_within_a_second(monkeypatch, tmp_path):
    target = tmp_path / "index.json"
    target.write_bytes(b"old")
    monkeypatch.setattr(files, "REPLACE_TRIES", 10)  # Windows' value
    held = SharingViolations(3)
    monkeypatch.setattr(os, "replace", held)
    files.write_atomic(str(target), b"new")
    assert (target.read_bytes(), held.calls) == (b"new", 4)

    held = SharingViolations(99)  # never let go
    monkeypatch.setattr(os, "replace", held)
    started = time.monotonic()
    with pytest.raises(PermissionError):
        files.write_atomic(str(target), b"newer")
    assert held.calls == 10 and time.monotonic() - started < 1.5
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["index.json"]  # no temp file


def test_write_atomic_does_not_retry_on_posix(monkeypatch, tmp_path):
    held = SharingViolations(1)
    monkeypatch.setattr(os, "replace", held)
    with pytest.raises(PermissionError):
        files.write_atomic(str(tmp_path / "f"), b"x")
    assert held.calls == files.REPLACE_TRIES == 1  # a POSIX rename is not blocked by readers: fail at once


# -- the debug log on Windows: a size check when it is opened, one old file ---------------------


def test_windows_log_rolls_over_when_opened_and_never_during(tmp_path):
    path = tmp_path / "quay-cred-helper.log"
    path.write_bytes(b"a" * (log.MAX_BYTES + 1))
    (tmp_path / "quay-cred-helper.log.1").write_bytes(b"older")
    handler = log._size_checked_file(str(path))
    try:
        assert (tmp_path / "quay-cred-helper.log.1").stat().st_size == log.MAX_BYTES + 1  # one old file
        assert not isinstance(handler, logging.handlers.RotatingFileHandler)
        handler.emit(logging.makeLogRecord({"msg": "x" * (2 * log.MAX_BYTES)}))  # no rollover mid-run
        handler.emit(logging.makeLogRecord({"msg": "after"}))
    finally:
        handler.close()
    assert path.read_text().endswith("after\n") and sorted(p.name for p in tmp_path.iterdir()) == [
        "quay-cred-helper.log",
        "quay-cred-helper.log.1",
    ]


def test_windows_log_that_cannot_roll_over_grows_on(tmp_path):
    path = tmp_path / "quay-cred-helper.log"
    path.write_bytes(b"a" * (log.MAX_BYTES + 1))
    (tmp_path / "quay-cred-helper.log.1").mkdir()  # the rename fails, as when another process holds the log
    (tmp_path / "quay-cred-helper.log.1" / "x").write_text("")
    handler = log._size_checked_file(str(path))
    try:
        handler.emit(logging.makeLogRecord({"msg": "still logged"}))
    finally:
        handler.close()
    text = path.read_text()
    assert text.startswith("a" * 100) and text.endswith("still logged\n")


def test_the_windows_log_is_the_size_checked_one(monkeypatch, tmp_path):
    monkeypatch.setenv(log.LOG_FILE_ENV, str(tmp_path / "debug.log"))
    monkeypatch.setattr(sys, "platform", "win32")
    logger = logging.getLogger("quay_cred_helper")
    before = list(logger.handlers)
    try:
        log.enable()
        (added,) = [h for h in logger.handlers if h not in before]
        assert type(added) is logging.FileHandler and added.baseFilename == str(tmp_path / "debug.log")
    finally:
        for handler in [h for h in logger.handlers if h not in before]:
            logger.removeHandler(handler)
            handler.close()
        monkeypatch.setattr(log, "_logger", None)


@pytest.mark.posix
def test_posix_log_rotates_and_is_private(monkeypatch, tmp_path):
    handler = log._rotating_file(str(tmp_path / "debug.log"))
    try:
        assert isinstance(handler, logging.handlers.RotatingFileHandler) and handler.maxBytes == log.MAX_BYTES
        handler.emit(logging.makeLogRecord({"msg": "x"}))
    finally:
        handler.close()
    assert stat.S_IMODE((tmp_path / "debug.log").stat().st_mode) == 0o600


# -- Docker Desktop's config.json: credsStore "desktop", and configure beside it ------------------

DESKTOP_STANDIN = """#!{python}
# Stands in for Docker Desktop's docker-credential-desktop: notes each call (never the secret).
import json, sys
verb, data = sys.argv[1], sys.stdin.read()
server = json.loads(data)["ServerURL"] if verb == "store" else data.strip()
with open({log!r}, "a") as f:
    f.write(json.dumps([verb, server]) + "\\n")
if verb == "get":
    print("credentials not found in native keychain")
    sys.exit(1)
if verb == "list":
    print("{{}}")
"""


def desktop_config(env, text):
    path = Path(env["DOCKER_CONFIG"], "config.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_configure_beside_docker_desktops_creds_store(file_keyring):
    path = desktop_config(file_keyring, '{\n\t"auths": {},\n\t"credsStore": "desktop"\n}\n')
    r = cli(file_keyring, "configure", "quay.example.com", "--docker")
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text()) == {
        "auths": {},
        "credsStore": "desktop",  # left alone: Docker Desktop keeps every other registry
        "credHelpers": {"quay.example.com": "quay"},
    }
    assert b"sets credsStore 'desktop': left alone; docker still uses it for other registries" in r.stderr
    assert cli(file_keyring, "configure", "quay.example.com", "--docker", "--remove").returncode == 0
    assert json.loads(path.read_text()) == {"auths": {}, "credsStore": "desktop"}


@pytest.mark.slow  # the real docker CLI
@pytest.mark.posix  # the stand-in helper is a script with a #! line
def test_docker_sends_the_configured_registry_to_the_helper_and_the_rest_to_desktop(file_keyring, quay, tmp_path):
    from tests.conftest import missing

    if missing("docker") and not os.environ.get("CI"):
        pytest.skip("docker not installed")
    env = file_keyring
    bin_dir, calls = tmp_path / "desktop-bin", tmp_path / "desktop-calls"
    bin_dir.mkdir()
    standin = bin_dir / "docker-credential-desktop"
    standin.write_text(DESKTOP_STANDIN.format(python=sys.executable, log=str(calls)))
    standin.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    desktop_config(env, '{\n\t"auths": {},\n\t"credsStore": "desktop"\n}\n')
    assert cli(env, "configure", quay.host, "--docker").returncode == 0

    import subprocess

    def docker(*args, stdin=None):
        return subprocess.run(["docker", *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)

    r = docker("login", "-u", "alice", "--password-stdin", quay.host, stdin="alice-password\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(helper(env, "list").stdout) == {quay.host: "alice"}  # through the helper
    other = quay.host.replace("127.0.0.1", "localhost")  # the same server under a name configure never saw
    r = docker("login", "-u", "alice", "--password-stdin", other, stdin="alice-password\n")
    assert r.returncode == 0, r.stderr
    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    assert ["store", other] in seen and not [call for call in seen if quay.host in call[1]]
    assert json.loads(helper(env, "list").stdout) == {quay.host: "alice"}


# -- the deadline without SIGALRM (Windows): a timer thread interrupts the read -------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_the_deadline_holds_where_there_is_no_sigalrm(monkeypatch):
    """A registry dripping its headers under the read timeout: on Windows (no SIGALRM here, as there) the
    timer thread stops the request at the deadline, as the signal does on POSIX."""
    from quay_cred_helper.config import Settings
    from quay_cred_helper.errors import DeadlineExceeded
    from quay_cred_helper.registry import transport
    from quay_cred_helper.registry.session import Session
    from tests.fakes.hostile import DripServer

    monkeypatch.delattr(transport.signal, "setitimer")
    head = b"HTTP/1.1 401 Unauthorized\r\n" + b"X-Drip: " + b"y" * 200 + b"\r\n\r\n"
    with DripServer(head, interval=0.1) as drip:
        settings = Settings({"deadline": "1", "timeout": "5", "retries": "0"})
        client = transport.make_client(settings)
        start = time.monotonic()
        try:
            with pytest.raises(DeadlineExceeded, match=f"{drip.host} did not finish within 1 s"):
                Session(client, drip.host, settings).send(f"http://{drip.host}/v2/")
        finally:
            client.close()
        assert time.monotonic() - start < 2.5  # the drip alone would take 20 s


def test_a_request_inside_the_deadline_is_not_interrupted_later(monkeypatch):
    from quay_cred_helper.registry import transport

    monkeypatch.delattr(transport.signal, "setitimer")
    with transport.alarm(0.2, lambda: AssertionError("rang")):
        pass
    time.sleep(0.4)  # the timer was cancelled: no KeyboardInterrupt arrives now

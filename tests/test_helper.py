"""docker-credential-quay as clients run it: the installed executable, real keyring backends."""

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import _secret_service
from tests.support import helper, store

NOT_FOUND = b"credentials not found in native keychain\n"


@pytest.fixture(params=[pytest.param("secret-service", marks=pytest.mark.slow), "file"])
def keyring_env(request):
    return request.getfixturevalue("secret_keyring" if request.param == "secret-service" else "file_keyring")


@pytest.mark.slow  # over half a second: the full suite
def test_cycle(keyring_env):
    r = store(keyring_env, "https://Quay.Example.com/")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    for form in ("quay.example.com", "quay.example.com\n", "http://quay.example.com", "QUAY.EXAMPLE.COM/v1/"):
        r = helper(keyring_env, "get", form)
        assert r.returncode == 0, r.stdout
        assert json.loads(r.stdout) == {"ServerURL": form.strip(), "Username": "alice", "Secret": "s3cret"}
    r = helper(keyring_env, "list")
    assert (r.returncode, json.loads(r.stdout)) == (0, {"https://Quay.Example.com/": "alice"})
    # docker logout erases host, http://host and https://host: the first wins, the rest erase nothing.
    assert helper(keyring_env, "erase", "quay.example.com").returncode == 0
    for form in ("http://quay.example.com", "https://quay.example.com"):
        r = helper(keyring_env, "erase", form)
        assert (r.returncode, r.stdout) == (0, b"")  # an erase of nothing succeeds (podman needs it)
    r = helper(keyring_env, "get", "quay.example.com")
    assert (r.returncode, r.stdout) == (1, NOT_FOUND)
    assert json.loads(helper(keyring_env, "list").stdout) == {}


def test_erase_of_unknown_touches_nothing_else(keyring_env):
    store(keyring_env, "keep.example.com", secret="kept")
    r = helper(keyring_env, "erase", "never.example.com")
    assert (r.returncode, r.stdout) == (0, b"")
    assert json.loads(helper(keyring_env, "get", "keep.example.com").stdout)["Secret"] == "kept"


@pytest.mark.slow  # over half a second: the full suite
def test_docker_hub_forms(keyring_env):
    store(keyring_env, "https://index.docker.io/v1/", "hubuser", "hubpass")
    for form in ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"):
        assert json.loads(helper(keyring_env, "get", form).stdout)["Username"] == "hubuser"


def test_identity_token_pair_is_kept(keyring_env):
    store(keyring_env, "quay.example.com", "<token>", "identity-token-value")
    got = json.loads(helper(keyring_env, "get", "quay.example.com").stdout)
    assert (got["Username"], got["Secret"]) == ("<token>", "identity-token-value")


@pytest.mark.slow  # over half a second: the full suite
def test_store_replaces(keyring_env):
    store(keyring_env, "quay.example.com", "alice", "one")
    store(keyring_env, "https://quay.example.com", "bob", "two")
    got = json.loads(helper(keyring_env, "get", "quay.example.com").stdout)
    assert (got["Username"], got["Secret"]) == ("bob", "two")
    assert json.loads(helper(keyring_env, "list").stdout) == {"https://quay.example.com": "bob"}


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{", b"invalid JSON on stdin"),
        (b"\xff\xfe\xfd", b"input is not valid UTF-8"),
        (b'{"ServerURL": "quay.example.com", "Username": 1, "Secret": "x"}', b"invalid credentials: Username"),
        (b'{"ServerURL": "", "Username": "u", "Secret": "x"}', b"no credentials server URL"),
        (b'{"ServerURL": "quay.example.com", "Username": "", "Secret": "x"}', b"no credentials username"),
        (b"x" * ((1 << 20) + 10), b"input too large"),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_bad_input_leaves_keyring_and_index_untouched(keyring_env, payload, message):
    store(keyring_env, "quay.example.com", "alice", "original")
    index = os.path.join(keyring_env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")
    before = Path(index).read_bytes()
    r = helper(keyring_env, "store", payload)
    assert r.returncode == 1
    assert r.stdout.startswith(message) and r.stdout.count(b"\n") == 1
    assert Path(index).read_bytes() == before
    assert json.loads(helper(keyring_env, "get", "quay.example.com").stdout)["Secret"] == "original"


def test_version_help_usage(file_keyring):
    from quay_cred_helper import __version__

    for flag in ("version", "-v", "--version"):
        r = helper(file_keyring, flag)
        assert (r.returncode, r.stdout.decode()) == (0, f"docker-credential-quay (quay-cred-helper) {__version__}\n")
    assert helper(file_keyring, "--help").returncode == 0
    r = helper(file_keyring, "bogus")
    assert r.returncode == 1 and r.stdout.startswith(b"Usage: docker-credential-quay")


def test_list_works_without_any_keyring(home):
    # docker runs `list` on every classic build: no keyring, no stdin, no network.
    home["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    r = helper(home, "list", stdin=None)
    assert (r.returncode, json.loads(r.stdout)) == (0, {})


@pytest.mark.posix
def test_index_file_is_private(file_keyring):
    store(file_keyring, "quay.example.com", "alice", "s3cret-value")
    directory = os.path.join(file_keyring["XDG_CONFIG_HOME"], "quay-cred-helper")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    index = os.path.join(directory, "index.json")
    assert stat.S_IMODE(os.stat(index).st_mode) == 0o600
    assert b"s3cret-value" not in Path(index).read_bytes()


# -- keyring failures: a clear error, fast, never the not-found text -----------------


def assert_keyring_error(r, fragment, elapsed):
    assert r.returncode == 1
    assert fragment in r.stdout, r.stdout
    assert r.stdout != NOT_FOUND and r.stdout.count(b"\n") == 1
    assert elapsed < 5, elapsed


def timed(env, verb, stdin):
    start = time.monotonic()
    r = helper(env, verb, stdin)
    return r, time.monotonic() - start


def test_no_backend(home):
    home["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    for verb, stdin in (("get", "quay.example.com"), ("store", '{"ServerURL":"h","Username":"u","Secret":"s"}')):
        r, elapsed = timed(home, verb, stdin)
        assert_keyring_error(r, b"no keyring backend available", elapsed)


def test_plaintext_backend_refused_without_opt_in(home):
    home["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    r = helper(home, "store", '{"ServerURL":"quay.example.com","Username":"u","Secret":"s"}')
    assert r.returncode == 1
    assert r.stdout.startswith(b"refusing plaintext keyring backend keyrings.alt.file.PlaintextKeyring")
    assert not os.path.exists(os.path.join(home["XDG_DATA_HOME"], "python_keyring"))


def test_plaintext_not_used_when_the_secret_service_is_missing(home):
    # keyring's chainer would fall back to keyrings.alt's plaintext file: we do not.
    home["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=/nonexistent/bus"
    r, elapsed = timed(home, "store", '{"ServerURL":"quay.example.com","Username":"u","Secret":"s"}')
    assert_keyring_error(r, b"keyring", elapsed)
    assert not os.path.exists(os.path.join(home["XDG_DATA_HOME"], "python_keyring"))


@pytest.mark.slow  # over half a second: the full suite
def test_locked_keyring(home, tmp_path_factory):
    service = _secret_service(tmp_path_factory, unlock=True)
    try:
        env = service.apply(home)
        assert store(env, "quay.example.com").returncode == 0
        lock = (
            "import secretstorage; c = secretstorage.dbus_init(); "
            "[col.lock() for col in secretstorage.get_all_collections(c)]"
        )
        import subprocess
        import sys

        subprocess.run([sys.executable, "-c", lock], env=env, check=True, timeout=20)
        for verb, stdin in (("get", "quay.example.com"), ("store", '{"ServerURL":"h","Username":"u","Secret":"s"}')):
            r, elapsed = timed(env, verb, stdin)
            assert_keyring_error(r, b"keyring is locked", elapsed)
    finally:
        service.stop()


@pytest.mark.posix
@pytest.mark.slow  # over half a second: the full suite
def test_dbus_that_never_answers(home, tmp_path):
    # A socket that accepts connections and never says a word: the D-Bus handshake hangs.
    path = str(tmp_path / "silent-bus")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)
    held = []
    stop = threading.Event()

    def answer_auth_then_nothing(conn):
        # Complete the SASL handshake, then never answer a method call.
        conn.settimeout(10)
        buffered = b""
        try:
            while not stop.is_set():
                data = conn.recv(4096)
                if not data:
                    return
                buffered += data
                while b"\r\n" in buffered:
                    line, buffered = buffered.split(b"\r\n", 1)
                    if line.startswith(b"AUTH"):
                        conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                    elif line.startswith(b"NEGOTIATE_UNIX_FD"):
                        conn.sendall(b"AGREE_UNIX_FD\r\n")
        except OSError:
            return

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            held.append(conn)
            threading.Thread(target=answer_auth_then_nothing, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        home["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={path}"
        home["PYTHON_KEYRING_BACKEND"] = "keyring.backends.SecretService.Keyring"
        r, elapsed = timed(home, "get", "quay.example.com")
        assert_keyring_error(r, b"did not answer", elapsed)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


# -- bad input becomes a message, and nothing is stored -----------------------------------------------


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


# -- an erase racing another erase ------------------------------------------------------------------------


def test_an_erase_that_loses_a_race_succeeds(home):
    home["PYTHON_KEYRING_BACKEND"] = "tests.fakes.raising_keyring.DeletedMeanwhile"
    home["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    r = helper(home, "erase", "quay.example.com")
    assert (r.returncode, r.stdout) == (0, b"")  # the other erase did it: nothing left to erase

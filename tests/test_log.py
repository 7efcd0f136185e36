"""Debug logs: where they go, and that no secret, Authorization header or JWT signature gets in."""

import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.fakes import fake_kubelet as kubelet
from tests.support import PROVIDER, ROBOT, ROBOT_TOKEN, V1, cli, helper


@pytest.mark.posix
@pytest.mark.slow  # over half a second: the full suite
def test_helper_logs_to_a_private_file_without_secrets(file_keyring, quay):
    env = dict(file_keyring, QUAY_CRED_HELPER_LOG="debug")
    helper(env, "store", json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN}))
    got = json.loads(helper(env, "get", quay.host).stdout)
    helper(env, "get", quay.host)
    log = Path(env["XDG_STATE_HOME"], "quay-cred-helper", "log", "quay-cred-helper.log")
    text = log.read_text()
    assert "GET http://" in text and "from the cache" in text  # it did log the exchange
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert ROBOT_TOKEN not in text and got["Secret"] not in text
    assert got["Secret"].split(".")[2] not in text  # no JWT signature either


@pytest.mark.slow  # over half a second: the full suite
def test_cli_debug_goes_to_stderr_without_secrets(file_keyring, quay):
    r = cli(file_keyring, "--debug", "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
    assert r.returncode == 0 and b"GET http://" in r.stderr
    r2 = cli(file_keyring, "--debug", "token", f"{quay.host}/org/app")
    token = r2.stdout.decode().strip()
    for output in (r.stderr, r2.stderr):
        assert b"alice-password" not in output and token.encode() not in output
        assert b"Authorization" not in output and b"Basic " not in output


def test_redaction():
    from quay_cred_helper import log

    log.secret("hunter22")
    line = log.redact("pw=hunter22 Authorization: Basic YWxpY2U6cHc= Bearer abc.def token eyJa.eyJb.c2ln")
    assert line == "pw=[secret] Authorization: Basic [redacted] Bearer [redacted] token [jwt]"


# -- a debug log that cannot be opened ---------------------------------------------------------------------


def _three_executables(env, etc):
    """Each executable once: (name, result)."""
    config = etc / "kubelet.ini"
    config.write_text("")
    config.chmod(0o600)
    request = kubelet.request(V1, "quay.example.com/org/app")
    provider = subprocess.run(
        [PROVIDER, "--config", str(config)], input=request, env=env, capture_output=True, timeout=30
    )
    return [("helper", helper(env, "list")), ("cli", cli(env, "list")), ("provider", provider)]


def test_a_log_file_in_a_missing_directory_gets_it_and_an_unwritable_one_a_warning(env, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    env = dict(env, QUAY_CRED_HELPER_LOG="debug")
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

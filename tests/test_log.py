"""Debug logs: where they go, and that no secret, Authorization header or JWT signature gets in."""

import json
import stat
from pathlib import Path

import pytest

from tests.support import ROBOT, ROBOT_TOKEN, cli, helper


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

"""quay-cred-helper login/logout/list/token, run as installed against the local Quay-compatible registry."""

import json
import subprocess
import sys

import pytest

from tests.fakes.quay_registry import b64url_decode
from tests.support import CLI, ROBOT, ROBOT_TOKEN, cli, helper, login


def jwt_claims(token):
    return json.loads(b64url_decode(token.split(".")[1]))


@pytest.mark.slow  # over half a second: the full suite
def test_login_list_logout(file_keyring, quay):
    r = cli(file_keyring, "login", f"http://{quay.host}/", "-u", "alice", "--password-stdin", stdin="alice-password\n")
    assert r.returncode == 0, r.stderr
    assert quay.count("/v2/auth") == 1  # verified with one token request
    got = json.loads(helper(file_keyring, "get", quay.host).stdout)
    assert (got["Username"], got["Secret"]) == ("alice", "alice-password")  # only the line ending is dropped

    r = cli(file_keyring, "list")
    width = len(quay.host)
    assert r.stdout.decode().splitlines() == [f"{'REGISTRY':<{width}}  USERNAME", f"{quay.host}  alice"]
    r = cli(file_keyring, "list", "--json")
    [row] = json.loads(r.stdout)  # with when the secret was stored, and its age
    assert set(row) == {"registry", "username", "stored", "age_seconds"} and 0 <= row["age_seconds"] < 60
    assert (row["registry"], row["username"]) == (quay.host, "alice")

    r = cli(file_keyring, "logout", quay.host)
    assert r.returncode == 0 and b"Removed" in r.stderr
    assert helper(file_keyring, "get", quay.host).returncode == 1
    r = cli(file_keyring, "logout", quay.host)
    assert r.returncode == 0 and b"not logged in" in r.stderr


@pytest.mark.slow  # over half a second: the full suite
def test_rejected_login_stores_nothing_and_says_why(file_keyring, quay):
    r = cli(file_keyring, "login", quay.host, "-u", "alice", "--password-stdin", stdin="wrong\n")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == (
        f"quay-cred-helper: {quay.host} refused the credentials: Invalid Username or Password: "
        "check the username and password or token (quay-cred-helper login)"
    )
    assert helper(file_keyring, "list").stdout.strip() == b"{}"
    r = cli(file_keyring, "login", quay.host, "-u", "org+nobody", "--password-stdin", stdin="x\n")
    assert b"Could not find robot with username: org+nobody" in r.stderr
    assert quay.count("/v2/auth") == 2  # one request per attempt: a 401 is never retried


@pytest.mark.slow  # over half a second: the full suite
def test_login_no_verify_stores_without_asking(file_keyring):
    r = cli(file_keyring, "login", "quay.invalid", "-u", "alice", "--password-stdin", "--no-verify", stdin="pw")
    assert r.returncode == 0, r.stderr
    assert json.loads(helper(file_keyring, "get", "quay.invalid").stdout)["Secret"] == "pw"


def test_login_never_takes_a_password_from_argv(file_keyring):
    r = cli(file_keyring, "login", "quay.invalid", "-u", "alice", "-p", "pw")
    assert r.returncode == 2
    assert cli(file_keyring, "list", "--json").stdout.strip() == b"[]"


def test_login_without_terminal_or_password_stdin_fails_clearly(file_keyring):
    r = cli(file_keyring, "login", "quay.invalid", "-u", "alice")
    assert r.returncode == 1
    assert b"use --password-stdin" in r.stderr


def test_login_with_empty_password_stores_nothing(file_keyring):
    r = cli(file_keyring, "login", "quay.invalid", "-u", "alice", "--password-stdin", stdin="\n")
    assert r.returncode == 1 and b"empty password" in r.stderr
    assert helper(file_keyring, "list").stdout.strip() == b"{}"


@pytest.mark.slow  # over half a second: the full suite
def test_token_for_curl(file_keyring, quay):
    cli(file_keyring, "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
    r = cli(file_keyring, "token", f"{quay.host}/org/app")
    assert r.returncode == 0, r.stderr
    token = r.stdout.decode().strip()
    claims = jwt_claims(token)
    assert claims["sub"] == "alice" and claims["aud"] == quay.server_hostname
    assert claims["access"] == [{"type": "repository", "name": "org/app", "actions": ["pull"]}]
    assert "org/app" not in quay.created  # pull only: no repository created
    # Warm: from the cache, no request.
    before = quay.count("/v2/auth")
    assert cli(file_keyring, "token", f"{quay.host}/org/app").stdout.decode().strip() == token
    assert quay.count("/v2/auth") == before

    r = cli(file_keyring, "token", f"{quay.host}/org/new", "--push", "--json")
    data = json.loads(r.stdout)
    assert data["access"] == [{"type": "repository", "name": "org/new", "actions": ["pull", "push"]}]
    assert data["scopes"] == ["repository:org/new:pull,push"]
    assert 3300 < data["expires_in"] <= 3600
    assert "org/new" in quay.created


@pytest.mark.slow  # over half a second: the full suite
def test_token_downscoped_and_anonymous(file_keyring, quay):
    r = cli(file_keyring, "token", f"{quay.host}/library/hello", "--json")
    data = json.loads(r.stdout)
    assert data["access"] == [{"type": "repository", "name": "library/hello", "actions": ["pull"]}]
    assert jwt_claims(data["token"])["sub"] is None
    # Quay answers HTTP 200 with an empty access list for what the caller may not pull: token says so.
    r = cli(file_keyring, "token", f"{quay.host}/org/private", "--json")
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr == b"quay-cred-helper: granted no access to org/private: check the name and your permissions\n"
    # With no scope asked for, an empty access list is all there is to grant.
    r = cli(file_keyring, "token", quay.host, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["access"] == []


def test_token_scope_grammar_and_push_without_repo(file_keyring, quay):
    r = cli(file_keyring, "token", quay.host, "--scope", "registry:catalog:*")
    assert r.returncode == 1
    assert b"rejected the token request: INVALID_REQUEST" in r.stderr
    r = cli(file_keyring, "token", quay.host, "--push")
    assert r.returncode == 1 and b"--push needs a repository" in r.stderr


@pytest.mark.slow  # over half a second: the full suite
def test_robot_login_then_token(file_keyring, quay):
    r = cli(file_keyring, "login", quay.host, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN)
    assert r.returncode == 0, r.stderr
    data = json.loads(cli(file_keyring, "token", f"{quay.host}/org/app", "--json").stdout)
    assert jwt_claims(data["token"])["sub"] == ROBOT


def test_python_dash_m_is_the_cli(file_keyring):
    r = subprocess.run(
        [sys.executable, "-m", "quay_cred_helper", "--version"], env=file_keyring, capture_output=True, text=True
    )
    r2 = subprocess.run([CLI, "--version"], env=file_keyring, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == r2.stdout and r.stdout.startswith("quay-cred-helper ")


# -- server text reaches the terminal escaped ---------------------------------------------------------


def test_server_text_is_escaped_and_one_error_is_one_line(file_keyring, quay):
    quay.faults.append(("refuse", "nope\x1b]0;pwned\x07\x1b[2J\nsecond line"))
    r = login(file_keyring, quay.host)
    assert r.returncode == 1
    assert b"\x1b" not in r.stderr and b"\x07" not in r.stderr and r.stderr.count(b"\n") == 1
    assert b"nope\\x1b]0;pwned\\x07\\x1b[2J\\x0asecond line" in r.stderr

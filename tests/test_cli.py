"""quay-cred-helper login/logout/list, run as installed."""

import json
import subprocess
import sys

from tests.conftest import CLI, cli, helper


def test_login_list_logout(file_keyring):
    r = cli(file_keyring, "login", "https://Quay.Example.com", "-u", "alice", "--password-stdin", stdin="pw-1\n")
    assert r.returncode == 0, r.stderr
    got = json.loads(helper(file_keyring, "get", "quay.example.com").stdout)
    assert (got["Username"], got["Secret"]) == ("alice", "pw-1")  # only the line ending is dropped

    r = cli(file_keyring, "list")
    assert r.stdout.decode().splitlines() == ["REGISTRY          USERNAME", "quay.example.com  alice"]
    r = cli(file_keyring, "list", "--json")
    assert json.loads(r.stdout) == [{"registry": "quay.example.com", "username": "alice"}]

    r = cli(file_keyring, "logout", "quay.example.com")
    assert r.returncode == 0 and b"Removed" in r.stderr
    assert helper(file_keyring, "get", "quay.example.com").returncode == 1
    r = cli(file_keyring, "logout", "quay.example.com")
    assert r.returncode == 0 and b"not logged in" in r.stderr


def test_login_never_takes_a_password_from_argv(file_keyring):
    r = cli(file_keyring, "login", "quay.example.com", "-u", "alice", "-p", "pw")
    assert r.returncode == 2
    assert cli(file_keyring, "list", "--json").stdout.strip() == b"[]"


def test_login_without_terminal_or_password_stdin_fails_clearly(file_keyring):
    r = cli(file_keyring, "login", "quay.example.com", "-u", "alice")
    assert r.returncode == 1
    assert b"use --password-stdin" in r.stderr


def test_login_with_empty_password_stores_nothing(file_keyring):
    r = cli(file_keyring, "login", "quay.example.com", "-u", "alice", "--password-stdin", stdin="\n")
    assert r.returncode == 1 and b"empty password" in r.stderr
    assert helper(file_keyring, "list").stdout.strip() == b"{}"


def test_python_dash_m_is_the_cli(file_keyring):
    r = subprocess.run(
        [sys.executable, "-m", "quay_cred_helper", "--version"], env=file_keyring, capture_output=True, text=True
    )
    r2 = subprocess.run([CLI, "--version"], env=file_keyring, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == r2.stdout and r.stdout.startswith("quay-cred-helper ")

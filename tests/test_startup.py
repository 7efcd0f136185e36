"""What keeps the helper fast: what each hot path imports, the launcher, and the shortcuts' fidelity."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quay_cred_helper import fastjson, paths
from tests.support import CLI, HELPER, ROBOT, ROBOT_TOKEN, count_case, examples, helper

HEAVY = {"httpx", "httpcore", "keyring", "secretstorage", "cryptography", "platformdirs", "re", "json", "hashlib"}


def _modules(argv, env, stdin=b""):
    r = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], input=stdin, env=env, capture_output=True, timeout=30
    )
    dotted = {line.split("|")[-1].strip() for line in r.stderr.decode().splitlines() if line.startswith("import time:")}
    return r, {name.split(".")[0] for name in dotted} | {
        name for name in dotted if name.startswith("quay_cred_helper.")
    }


# The module of a robot whose token the job holds: loaded for such robots only (its docstring's promise).
HELD = "quay_cred_helper.sources.robot_token"
KEYLESS = "quay_cred_helper.sources.keyless"


def imported(env, verb, stdin=b""):
    """Top-level modules our code imports for one call of the installed launcher (python -X importtime),
    beyond what the interpreter's own start imports in the same environment (an editable install's
    finder, for one, brings `re` into every process before any of our code runs)."""
    _, interpreter = _modules(["-c", "pass"], env)
    r, names = _modules([HELPER, verb], env, stdin)
    return r, names - interpreter


def test_version_and_list_import_nothing_heavy(file_keyring):
    for verb in ("version", "list"):
        r, names = imported(file_keyring, verb)
        assert r.returncode == 0
        assert not names & HEAVY, (verb, names & HEAVY)


@pytest.mark.slow  # over half a second: the full suite
def test_cached_robot_get_imports_nothing_heavy(file_keyring, quay):
    helper(file_keyring, "store", json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN}))
    assert helper(file_keyring, "get", quay.host).returncode == 0  # fills the cache
    r, names = imported(file_keyring, "get", quay.host.encode())
    assert r.returncode == 0 and json.loads(r.stdout)["Username"] == ROBOT
    assert not names & HEAVY, names & HEAVY
    assert not names & {HELD, KEYLESS}, names  # a keyring robot: neither other source's module


def test_user_get_from_secret_service_reads_without_keyring(secret_keyring):
    payload = json.dumps({"ServerURL": "quay.example.com", "Username": "alice", "Secret": "fast-path-secret"})
    assert helper(secret_keyring, "store", payload).returncode == 0
    r, names = imported(secret_keyring, "get", b"quay.example.com")
    assert json.loads(r.stdout)["Secret"] == "fast-path-secret"
    # Our own D-Bus client read it (over _socket): not jeepney, nor what jeepney imports, nor keyring.
    assert "_socket" in names, names
    jeepneys = {"jeepney", "socket", "selectors", "enum", "typing", "struct", "contextlib", "collections"}
    assert not names & (jeepneys | HEAVY), names
    assert "quay_cred_helper.store" in names and not names & {HELD, KEYLESS}, names  # a user: neither


def test_shortcut_is_dropped_when_keyrings_choice_may_differ(secret_keyring):
    payload = json.dumps({"ServerURL": "quay.example.com", "Username": "alice", "Secret": "s"})
    assert helper(secret_keyring, "store", payload).returncode == 0
    # Another backend chosen: the Secret Service shortcut must not answer for it.
    env = dict(secret_keyring, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    r = helper(env, "get", "quay.example.com")
    assert r.returncode == 1 and r.stdout.startswith(b"no keyring backend available")
    # A keyringrc.cfg appearing changes keyring's choice too.
    config = Path(secret_keyring["XDG_CONFIG_HOME"], "python_keyring", "keyringrc.cfg")
    config.parent.mkdir()
    config.write_text("[backend]\ndefault-keyring=keyring.backends.fail.Keyring\n")
    r = helper(secret_keyring, "get", "quay.example.com")
    assert r.returncode == 1 and r.stdout.startswith(b"no keyring backend available")


@pytest.mark.parametrize(
    "xdg",
    [
        {},
        {"XDG_CONFIG_HOME": "/tmp/cfg", "XDG_CACHE_HOME": "/tmp/cache"},
        {"XDG_CONFIG_HOME": "  ", "XDG_CACHE_HOME": ""},
    ],
)
def test_paths_agree_with_platformdirs(monkeypatch, xdg):
    import platformdirs

    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in xdg.items():
        monkeypatch.setenv(name, value)
    dirs = platformdirs.PlatformDirs(paths.APP, appauthor=False)
    assert paths.config_dir() == dirs.user_config_dir
    assert paths.cache_dir() == dirs.user_cache_dir


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=examples(300), deadline=None)
@given(json_values)
def test_fastjson_reads_what_json_writes(value):
    count_case()
    for text in (json.dumps(value), json.dumps(value, indent=2, ensure_ascii=False)):
        assert fastjson.loads(text) == json.loads(text)


@settings(max_examples=examples(500), deadline=None)
@given(st.text(alphabet=st.sampled_from('{}[]",:0123456789.eE+-truefalsn \\u\t\nx\x00é'), max_size=40))
def test_fastjson_accepts_and_refuses_exactly_like_json(text):
    count_case()
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            fastjson.loads(text)
    else:
        result = fastjson.loads(text)
        assert result == expected or (result != result and expected != expected)  # NaN


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.text(), st.text()))
def test_fastjson_writes_what_json_writes(mapping):
    count_case()
    assert fastjson.dumps_strings(mapping) == json.dumps(mapping)


def test_python_dash_m_helper_entry_is_the_same_main():
    env = dict(os.environ)
    r = subprocess.run([HELPER, "version"], capture_output=True, text=True, env=env)
    r2 = subprocess.run(
        [sys.executable, "-c", "from quay_cred_helper.helper import main; main(['version'])"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.stdout == r2.stdout


@pytest.mark.slow  # over half a second: the full suite
def test_warm_token_needs_neither_httpx_nor_keyring(file_keyring, quay):
    from tests.support import cli

    cli(file_keyring, "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
    first = cli(file_keyring, "token", f"{quay.host}/org/app").stdout
    r, names = _modules([CLI, "token", f"{quay.host}/org/app"], file_keyring)
    assert r.stdout == first
    assert not names & {"httpx", "httpcore", "keyring", "secretstorage", "jeepney"}, names


# -- the launchers end with os._exit: output, exit codes and a closed pipe stay as they were -----------


def test_a_large_list_arrives_whole_through_a_pipe(file_keyring):
    """list's answer, far beyond a pipe's 64 KiB, is flushed before the launcher's os._exit."""
    registries = {f"r{n}.example.com": {"server": f"r{n}.example.com", "username": f"user-{n}"} for n in range(4000)}
    env = dict(os.environ, **file_keyring)
    index = subprocess.run(
        [sys.executable, "-c", "from quay_cred_helper import paths; print(paths.index_file())"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert index
    os.makedirs(os.path.dirname(index), exist_ok=True)
    Path(index).write_text(json.dumps({"version": 1, "registries": registries}))
    r = subprocess.run([HELPER, "list"], env=env, capture_output=True, timeout=30)  # pipes
    assert r.returncode == 0 and len(r.stdout) > 100_000
    assert json.loads(r.stdout) == {name: entry["username"] for name, entry in registries.items()}


def test_exit_codes_and_messages_are_unchanged_by_the_launcher(file_keyring):
    r = helper(file_keyring, "get", b"nothing.example.com")
    assert (r.returncode, r.stdout) == (1, b"credentials not found in native keychain\n")
    r = helper(file_keyring, "bogus")
    assert r.returncode == 1 and r.stdout.startswith(b"Usage: docker-credential-quay")
    assert helper(file_keyring, "version").returncode == 0


def test_a_closed_stdout_fails_at_once_as_before(file_keyring):
    """A reader that hung up: exit 1, as with the sys.exit launcher before, and never a hang."""
    read, write = os.pipe()
    os.close(read)
    r = subprocess.run([HELPER, "version"], env=file_keyring, stdout=write, stderr=subprocess.PIPE, timeout=30)
    os.close(write)
    assert r.returncode == 1 and b"BrokenPipeError" in r.stderr


@pytest.mark.parametrize("source", ["env", "file"])
@pytest.mark.slow  # over half a second: the full suite
def test_cached_robot_token_get_imports_nothing_heavy(home, quay, tmp_path, source):
    """A CI job's robot token (robot_token_env or _file), no keyring: a cached `get` is the index, the config,
    the variable (a keyed BLAKE2b, builtin) or one stat, and one cache file."""
    from tests.fakes.quay_registry import Account
    from tests.support import CI_ROBOT, CI_ROBOT_TOKEN

    quay.accounts[CI_ROBOT] = Account(CI_ROBOT_TOKEN, ["org"])
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", QUAY_ROBOT_TOKEN=CI_ROBOT_TOKEN)
    token_file = tmp_path / "robot-token"
    token_file.write_text(CI_ROBOT_TOKEN)
    token_file.chmod(0o600)
    where = "robot_token_env = QUAY_ROBOT_TOKEN" if source == "env" else f"robot_token_file = {token_file}"
    config = tmp_path / "config.ini"
    config.write_text(f"[{quay.host}]\nrobot = {CI_ROBOT}\n{where}\n")
    env["QUAY_CRED_HELPER_CONFIG"] = str(config)
    first = helper(env, "get", quay.host)  # fills the cache
    assert first.returncode == 0, first.stdout
    r, names = imported(env, "get", quay.host.encode())
    assert r.returncode == 0 and r.stdout == first.stdout and quay.count("/v2/auth") == 1
    assert not names & (HEAVY | {"jeepney"}), names & (HEAVY | {"jeepney"})
    assert HELD in names and KEYLESS not in names, names  # the one source's module, loaded for it alone

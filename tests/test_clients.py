"""Real clients calling docker-credential-quay: docker CLI, podman, skopeo, docker-py."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs
from tests.fakes.real_registry import oci_layout
from tests.support import ROBOTS, cli, helper, store

pytestmark = pytest.mark.slow  # real clients, packages and builds: the full suite only


def sh(argv, env, stdin=None, timeout=120):
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, timeout=timeout)


def listed(env):
    return json.loads(helper(env, "list").stdout)


def write_helpers_config(path, host):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"credHelpers": {host: "quay"}}, f)


@needs("docker")
def test_docker_login_and_logout(secret_keyring, quay):
    env = secret_keyring
    write_helpers_config(os.path.join(env["DOCKER_CONFIG"], "config.json"), quay.host)
    r = sh(["docker", "login", "-u", "alice", "--password-stdin", quay.host], env, "alice-password\n")
    assert r.returncode == 0, r.stderr
    assert "Login Succeeded" in r.stdout
    assert listed(env) == {quay.host: "alice"}
    # The secret went to the keyring, not to docker's config file.
    assert "alice-password" not in Path(env["DOCKER_CONFIG"], "config.json").read_text()
    assert json.loads(helper(env, "get", quay.host).stdout)["Secret"] == "alice-password"

    r = sh(["docker", "logout", quay.host], env)
    assert r.returncode == 0, r.stderr
    assert listed(env) == {}
    assert helper(env, "get", quay.host).stdout == b"credentials not found in native keychain\n"


@needs("docker")
def test_docker_login_with_a_wrong_password_stores_nothing(secret_keyring, quay):
    env = secret_keyring
    write_helpers_config(os.path.join(env["DOCKER_CONFIG"], "config.json"), quay.host)
    r = sh(["docker", "login", "-u", "alice", "--password-stdin", quay.host], env, "wrong\n")
    assert r.returncode != 0
    assert listed(env) == {}


@needs("podman")
def test_podman_login_get_login_logout(secret_keyring, quay):
    env = dict(secret_keyring, REGISTRY_AUTH_FILE=os.path.join(secret_keyring["HOME"], "auth.json"))
    write_helpers_config(env["REGISTRY_AUTH_FILE"], quay.host)
    r = sh(
        ["podman", "login", "--tls-verify=false", "-u", "alice", "--password-stdin", quay.host], env, "alice-password\n"
    )
    assert r.returncode == 0, r.stderr
    assert listed(env) == {quay.host: "alice"}
    assert "alice-password" not in Path(env["REGISTRY_AUTH_FILE"]).read_text()

    r = sh(["podman", "login", "--get-login", quay.host], env)
    assert (r.returncode, r.stdout.strip()) == (0, "alice")

    r = sh(["podman", "logout", quay.host], env)
    assert r.returncode == 0, r.stderr
    assert listed(env) == {}
    r = sh(["podman", "login", "--get-login", quay.host], env)
    assert r.returncode != 0


@needs("skopeo")
def test_skopeo_through_the_helper(secret_keyring, docker_registry, tmp_path):
    env = dict(secret_keyring, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"))
    write_helpers_config(env["REGISTRY_AUTH_FILE"], docker_registry.host)
    layout = tmp_path / "image"
    oci_layout(str(layout))
    private = f"docker://{docker_registry.host}/org/app:1"
    public = f"docker://{docker_registry.host}/library/hello:1"

    # Not found: skopeo goes on anonymously; the push is refused by the registry.
    r = sh(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", private], env)
    assert r.returncode != 0
    assert "credentials not found" not in r.stderr  # not-found is not an error for clients

    payload = json.dumps({"ServerURL": docker_registry.host, "Username": "alice", "Secret": "alice-password"})
    assert helper(env, "store", payload).returncode == 0
    for dest in (private, public):
        r = sh(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", dest], env)
        assert r.returncode == 0, r.stderr
    r = sh(["skopeo", "inspect", "--tls-verify=false", private], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Name"] == f"{docker_registry.host}/org/app"
    users = {entry["user"] for entry in docker_registry.quay.auth_log if entry["status"] == 200}
    assert "alice" in users

    # Erased: public pulls still work anonymously, private ones are refused.
    assert helper(env, "erase", docker_registry.host).returncode == 0
    r = sh(["skopeo", "inspect", "--tls-verify=false", public], env)
    assert r.returncode == 0, r.stderr
    r = sh(["skopeo", "inspect", "--tls-verify=false", private], env)
    assert r.returncode != 0
    assert "unauthorized" in r.stderr or "denied" in r.stderr


def test_docker_py_store(secret_keyring, monkeypatch):
    from docker.credentials import Store
    from docker.credentials.errors import CredentialsNotFound

    # docker-py finds the helper on its own process's PATH.
    monkeypatch.setenv("PATH", secret_keyring["PATH"])
    store = Store("quay", environment=secret_keyring)
    store.store("https://quay.example.com", "alice", "py-secret")
    assert store.get("quay.example.com") == {
        "ServerURL": "quay.example.com",
        "Username": "alice",
        "Secret": "py-secret",
    }
    assert store.list() == {"https://quay.example.com": "alice"}
    store.erase("quay.example.com")
    with pytest.raises(CredentialsNotFound):
        store.get("quay.example.com")
    assert store.list() == {}


@needs("skopeo")
def test_skopeo_with_a_robot_uses_only_the_one_hour_jwt(file_keyring, docker_registry, tmp_path):
    env = dict(file_keyring, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"))
    write_helpers_config(env["REGISTRY_AUTH_FILE"], docker_registry.host)
    layout = tmp_path / "image"
    oci_layout(str(layout))
    robot, token = next(iter(ROBOTS.items()))
    payload = json.dumps({"ServerURL": docker_registry.host, "Username": robot, "Secret": token})
    assert helper(env, "store", payload).returncode == 0

    ref = f"docker://{docker_registry.host}/org/robot-app:1"
    r = sh(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", ref], env)
    assert r.returncode == 0, r.stderr
    r = sh(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Name}}", ref], env)
    assert (r.returncode, r.stdout.strip()) == (0, f"{docker_registry.host}/org/robot-app"), r.stderr

    quay = docker_registry.quay
    by_skopeo = [e for e in quay.auth_log if e["scopes"]]  # the helper's own exchange asks no scope
    assert by_skopeo and all(e["user"] == robot and e["status"] == 200 for e in by_skopeo)
    assert {e["credential"] for e in by_skopeo} == {"jwt"}  # the robot token never left the helper
    assert [e["credential"] for e in quay.auth_log if not e["scopes"]] == ["password"]  # one exchange, cached


# -- an erase of nothing succeeds: podman logout, twice, and --all ----------------------------------------


@pytest.mark.slow  # podman
@needs("podman")
def test_podman_logout_twice_and_logout_all_through_the_helper(file_keyring):
    env = file_keyring
    assert cli(env, "configure", "quay.example.com").returncode == 0
    store(env, "quay.example.com", "carol", "s3cret")
    for attempt in range(2):  # the second erases nothing: podman 4.3.1 overflowed its stack on not-found
        r = subprocess.run(["podman", "logout", "quay.example.com"], env=env, capture_output=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, b"Removed login credentials for quay.example.com\n"), (attempt, r)
    assert json.loads(helper(env, "list").stdout) == {}
    r = subprocess.run(["podman", "logout", "--all"], env=env, capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"Removed login credentials for all registries\n"), r.stderr[-500:]
    r = helper(env, "erase", "quay.example.com")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")

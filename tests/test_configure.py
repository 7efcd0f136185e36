"""quay-cred-helper configure: docker's config.json, podman's auth file, registries.conf, --migrate."""

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs
from tests.support import cli, helper, store

ORIGINAL = {"auths": {"quay.example.com": {}}, "credsStore": "desktop", "zzz": {"keep": [1, 2]}, "aaa": True}


@pytest.fixture
def docker_env(file_keyring):
    """A file keyring and an existing (empty) docker config directory."""
    Path(file_keyring["DOCKER_CONFIG"]).mkdir()
    return file_keyring


def docker_config(env):
    return Path(env["DOCKER_CONFIG"], "config.json")


def auth_file(env):
    return Path(env["XDG_RUNTIME_DIR"], "containers", "auth.json")


def write(path, data, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent="\t") + "\n")
    path.chmod(mode)


@pytest.mark.posix
def test_adds_keeps_everything_else_and_is_idempotent(docker_env):
    write(docker_config(docker_env), ORIGINAL, 0o640)
    before = docker_config(docker_env).read_text()
    r = cli(docker_env, "configure", "https://Quay.Example.com/")
    assert r.returncode == 0, r.stderr
    data = json.loads(docker_config(docker_env).read_text())
    assert list(data) == ["auths", "credsStore", "zzz", "aaa", "credHelpers"]  # order kept, ours appended
    assert data["credHelpers"] == {"quay.example.com": "quay"} and data["credsStore"] == "desktop"
    assert stat.S_IMODE(docker_config(docker_env).stat().st_mode) == 0o640
    assert Path(str(docker_config(docker_env)) + ".bak").read_text() == before
    assert '\t"credHelpers"' in docker_config(docker_env).read_text()  # docker's tab indentation
    assert b"sets credsStore 'desktop': left alone" in r.stderr
    assert json.loads(auth_file(docker_env).read_text()) == {"credHelpers": {"quay.example.com": "quay"}}
    assert stat.S_IMODE(auth_file(docker_env).stat().st_mode) == 0o600
    assert b"podman logout --all" in r.stderr

    after = docker_config(docker_env).read_bytes(), auth_file(docker_env).read_bytes()
    r = cli(docker_env, "configure", "quay.example.com")
    assert r.stderr.count(b"already as wanted") == 2
    assert (docker_config(docker_env).read_bytes(), auth_file(docker_env).read_bytes()) == after


def test_remove_undoes_only_what_configure_added(docker_env):
    write(docker_config(docker_env), dict(ORIGINAL, credHelpers={"gcr.io": "gcloud"}))
    cli(docker_env, "configure", "quay.example.com", "other.example.com")
    cli(docker_env, "configure", "quay.example.com", "other.example.com", "--remove")
    data = json.loads(docker_config(docker_env).read_text())
    assert data == dict(ORIGINAL, credHelpers={"gcr.io": "gcloud"})
    assert json.loads(auth_file(docker_env).read_text()) == {}


def test_dry_run_prints_a_diff_and_writes_nothing(docker_env):
    write(docker_config(docker_env), ORIGINAL)
    before = docker_config(docker_env).read_bytes()
    r = cli(docker_env, "configure", "quay.example.com", "--docker", "--dry-run")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert out.startswith(f"--- {docker_config(docker_env)}\n+++ {docker_config(docker_env)}\n")
    assert '+\t"credHelpers": {' in out and '+\t\t"quay.example.com": "quay"' in out
    assert docker_config(docker_env).read_bytes() == before
    assert not Path(str(docker_config(docker_env)) + ".bak").exists() and not auth_file(docker_env).exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"credHelpers": "quay"}'])
def test_malformed_file_is_reported_and_left_alone(docker_env, content):
    docker_config(docker_env).write_text(content)
    r = cli(docker_env, "configure", "quay.example.com", "--docker")
    assert r.returncode == 1 and b"nothing was changed" in r.stderr and r.stderr.count(b"\n") == 1
    assert docker_config(docker_env).read_text() == content


@pytest.mark.slow  # over half a second: the full suite
def test_migrate_moves_plaintext_into_the_keyring(docker_env):
    secret = "migrated-password"
    plain = base64.b64encode(f"bob:{secret}".encode()).decode()
    write(docker_config(docker_env), {"auths": {"https://quay.example.com": {"auth": plain}, "x.io": {"auth": "eDp5"}}})
    r = cli(docker_env, "configure", "quay.example.com", "--docker")
    assert b"still holds a plaintext credential" in r.stderr and b"--migrate" in r.stderr
    assert plain in docker_config(docker_env).read_text()
    r = cli(docker_env, "configure", "quay.example.com", "--docker", "--migrate", "--dry-run")
    assert helper(docker_env, "get", "quay.example.com").returncode == 1  # a dry run stores nothing
    r = cli(docker_env, "configure", "quay.example.com", "--docker", "--migrate")
    assert r.returncode == 0, r.stderr
    got = json.loads(helper(docker_env, "get", "quay.example.com").stdout)
    assert (got["Username"], got["Secret"]) == ("bob", secret)
    data = json.loads(docker_config(docker_env).read_text())
    assert data["auths"] == {"https://quay.example.com": {}, "x.io": {"auth": "eDp5"}}  # others untouched
    assert secret not in docker_config(docker_env).read_text() and plain not in docker_config(docker_env).read_text()


def test_podman_auth_file_follows_registry_auth_file(docker_env, tmp_path):
    docker_env["REGISTRY_AUTH_FILE"] = str(tmp_path / "custom-auth.json")
    cli(docker_env, "configure", "quay.example.com", "--podman")
    assert json.loads(Path(docker_env["REGISTRY_AUTH_FILE"]).read_text())["credHelpers"] == {"quay.example.com": "quay"}
    assert not docker_config(docker_env).exists()


def test_helper_not_on_path_is_reported(docker_env):
    docker_env["PATH"] = "/usr/bin:/bin"
    r = cli(docker_env, "configure", "quay.example.com", "--docker")
    assert b"docker-credential-quay is not on PATH: add" in r.stderr


@needs("podman")
@pytest.mark.slow  # over half a second: the full suite
def test_registries_conf_drop_in_reaches_podman(docker_env):
    r = cli(docker_env, "configure", "quay.example.com", "--registries-conf")
    assert r.returncode == 0
    drop_in = Path(docker_env["HOME"], ".config", "containers", "registries.conf.d", "50-quay-cred-helper.conf")
    assert 'credential-helpers = ["containers-auth.json", "quay"]' in drop_in.read_text()
    helper(docker_env, "store", json.dumps({"ServerURL": "quay.example.com", "Username": "carol", "Secret": "x"}))
    podman_env = dict(docker_env, REGISTRY_AUTH_FILE=os.path.join(docker_env["HOME"], "empty-auth.json"))
    r = subprocess.run(
        ["podman", "login", "--get-login", "quay.example.com"],
        env=podman_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout.strip()) == (0, "carol"), r.stderr
    cli(docker_env, "configure", "quay.example.com", "--registries-conf", "--remove")
    assert not drop_in.exists()


# -- configure --migrate leaves no plaintext credential behind ------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_migrate_keeps_no_secret_in_backups_or_diffs_and_writes_through_symlinks(file_keyring):
    auth = base64.b64encode(b"alice:migrated-password").decode()
    dotfiles = Path(file_keyring["HOME"], "dotfiles")
    dotfiles.mkdir()
    target = dotfiles / "docker-config.json"
    target.write_text(json.dumps({"auths": {"quay.example.com": {"auth": auth}}, "psFormat": "x"}, indent="\t"))
    config_dir = Path(file_keyring["DOCKER_CONFIG"])
    config_dir.mkdir()
    (config_dir / "config.json").symlink_to(target)

    r = cli(file_keyring, "configure", "quay.example.com", "--docker", "--migrate", "--dry-run")
    assert r.returncode == 0 and b'"auth": "<redacted>"' in r.stdout
    assert auth.encode() not in r.stdout + r.stderr

    r = cli(file_keyring, "configure", "quay.example.com", "--docker", "--migrate")
    assert r.returncode == 0, r.stderr
    assert (config_dir / "config.json").is_symlink() and os.readlink(config_dir / "config.json") == str(target)
    data = json.loads(target.read_text())
    assert data["credHelpers"] == {"quay.example.com": "quay"} and data["psFormat"] == "x"
    for path in [target, Path(f"{target}.bak"), *config_dir.rglob("*")]:
        if path.is_file():
            text = path.read_text()
            assert auth not in text and "migrated-password" not in text, path
    assert json.loads(Path(f"{target}.bak").read_text())["psFormat"] == "x"
    got = json.loads(helper(file_keyring, "get", "quay.example.com").stdout)
    assert (got["Username"], got["Secret"]) == ("alice", "migrated-password")


# -- what podman logout --all really rewrites ---------------------------------------------------------


@pytest.mark.slow  # podman
@needs("podman")
@pytest.mark.parametrize("auth_file", [False, True])
def test_configure_names_the_file_podman_logout_all_rewrites(file_keyring, tmp_path, auth_file):
    env = dict(file_keyring)
    docker_config = Path(env["DOCKER_CONFIG"], "config.json")
    podman_auth = Path(env["XDG_RUNTIME_DIR"], "containers", "auth.json")
    if auth_file:
        podman_auth = tmp_path / "auth.json"
        env["REGISTRY_AUTH_FILE"] = str(podman_auth)
    r = cli(env, "configure", "quay.example.com")
    assert r.returncode == 0, r.stderr
    rewritten, kept = (podman_auth, docker_config) if auth_file else (docker_config, podman_auth)
    notes = [line for line in r.stderr.decode().splitlines() if "podman logout --all" in line]
    assert notes == [
        f'quay-cred-helper: `podman logout --all` rewrites {rewritten} as {{"auths": {{}}}}, without credHelpers: '
        "run configure again after it, or use --registries-conf"
    ]
    store(env, "quay.example.com", "carol", "s3cret")
    r = subprocess.run(["podman", "logout", "--all"], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    assert json.loads(rewritten.read_text()) == {"auths": {}}  # podman 4.3.1 (Debian 12)
    assert json.loads(kept.read_text())["credHelpers"] == {"quay.example.com": "quay"}
    assert json.loads(helper(env, "list").stdout) == {}  # erased through the helper first

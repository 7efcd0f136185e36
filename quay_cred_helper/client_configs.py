"""What container clients read: where docker and podman keep their configs, and how they name registries."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from quay_cred_helper import files
from quay_cred_helper.names import DOCKER_HUB

HELPER = "quay"  # credHelpers value: clients run docker-credential-<HELPER>
# pip installs the helper on Windows as Scripts\docker-credential-quay.exe, which docker finds by PATHEXT.
WINDOWS = sys.platform == "win32"
DROP_IN = "50-quay-cred-helper.conf"


def docker_config_path() -> str:
    return os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")


def podman_auth_path() -> str:
    """The auth file podman, skopeo and buildah read (and write) first."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return os.environ["REGISTRY_AUTH_FILE"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json")
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(config, "containers", "auth.json")


def registries_conf_drop_in() -> str:
    # containers/image reads $HOME/.config here, whatever XDG_CONFIG_HOME says.
    return os.path.join(os.path.expanduser("~/.config"), "containers", "registries.conf.d", DROP_IN)


def credential_key(key: str, docker: bool) -> str:
    # docker looks Docker Hub up as its index URL; podman as docker.io.
    return "https://index.docker.io/v1/" if docker and key == DOCKER_HUB else key


def routes(key: str) -> list[str]:
    """Which client configs send registry `key` to this helper."""
    found = []
    for label, path, docker in (("docker", docker_config_path(), True), ("podman", podman_auth_path(), False)):
        data = files.read_json(path) or {}
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict) and helpers.get(credential_key(key, docker)) == HELPER:
            found.append(f"{label} ({path})")
    if os.path.exists(registries_conf_drop_in()):
        found.append(f"registries.conf ({registries_conf_drop_in()})")
    return found


def missing_helpers() -> list[tuple[str, str, str]]:
    """(config file, where, helper) for every credsStore or credHelpers entry of docker's config and
    podman's auth file whose docker-credential-<helper> is not on PATH (a leftover `credsStore: desktop`
    without Docker Desktop breaks `docker login` and `oras login`)."""
    found = []
    for path in dict.fromkeys((docker_config_path(), podman_auth_path())):
        data = files.read_json(path) or {}
        entries = [("credsStore", data.get("credsStore"))]
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            entries += [(f"credHelpers[{registry!r}]", name) for registry, name in helpers.items()]
        for where, name in entries:
            if isinstance(name, str) and name and not shutil.which(f"docker-credential-{name}"):
                found.append((path, where, name))
    return found


def helper_on_path() -> tuple[str, str] | None:
    """None if `docker-credential-quay` on PATH is this installation, else (problem, fix)."""
    program = "docker-credential-quay.exe" if WINDOWS else "docker-credential-quay"
    expected = os.path.join(sysconfig.get_path("scripts"), program)
    found = shutil.which(program)
    if found and _same_file_name(found, expected):
        return None
    where = os.path.dirname(expected)
    if not found:
        shell = f'$env:Path = "{where};" + $env:Path' if WINDOWS else f"export PATH={where}:$PATH"
        return f"{program} is not on PATH", f"add {where} to PATH ({shell})"
    return f"the {program} on PATH is {found}, not this installation's", f"put {where} first in PATH"


def _same_file_name(a: str, b: str) -> bool:
    # normcase: Windows names are case-insensitive (shutil.which may answer ...\DOCKER-CREDENTIAL-QUAY.EXE).
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))

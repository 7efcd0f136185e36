"""Pointing container clients at the helper: docker's config.json, podman's auth file, registries.conf.

Every change is a read, a merge that keeps unknown keys and their order, and
an atomic write with the original's mode (0600 for a new file) and a `.bak`
of the previous version. A file that does not parse is reported and left
alone. `--remove` takes out only the entries that name this helper.
"""

import base64
import difflib
import json
import os
import sys

from quay_cred_helper import files
from quay_cred_helper.errors import HelperError
from quay_cred_helper.names import DOCKER_HUB, registry_key

HELPER = "quay"  # credHelpers value: clients run docker-credential-<HELPER>
DROP_IN = "50-quay-cred-helper.conf"
DROP_IN_TEXT = (
    "# Written by quay-cred-helper configure --registries-conf; removed by --remove.\n"
    "# podman, skopeo and buildah ask these helpers in turn; containers-auth.json keeps their own logins.\n"
    'credential-helpers = ["containers-auth.json", "quay"]\n'
)


def docker_config_path():
    return os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")


def podman_auth_path():
    """The auth file podman, skopeo and buildah read (and write) first."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return os.environ["REGISTRY_AUTH_FILE"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json")
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(config, "containers", "auth.json")


def registries_conf_drop_in():
    # containers/image reads $HOME/.config here, whatever XDG_CONFIG_HOME says.
    return os.path.join(os.path.expanduser("~/.config"), "containers", "registries.conf.d", DROP_IN)


class Change:
    """One file's planned new content, with what to tell the user."""

    def __init__(self, path, old, new, mode, notes):
        self.path, self.old, self.new, self.mode, self.notes = path, old, new, mode, notes

    @property
    def changed(self):
        return self.old != self.new

    def diff(self):
        return "".join(
            difflib.unified_diff(
                (self.old or "").splitlines(keepends=True),
                (self.new or "").splitlines(keepends=True),
                fromfile=self.path if self.old is not None else "/dev/null",
                tofile=self.path if self.new is not None else "/dev/null",
            )
        )

    def apply(self):
        directory = os.path.dirname(self.path)
        if self.old is not None:
            files.write_atomic(self.path + ".bak", self.old.encode(), self.mode)
        if self.new is None:
            os.unlink(self.path)
            return
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        files.write_atomic(self.path, self.new.encode(), self.mode)


def _read(path):
    """(text or None, mode) of a file."""
    try:
        with open(path, encoding="utf-8", newline="") as f:  # exactly as on disk, for the diff and .bak
            text = f.read()
        return text, os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return None, 0o600
    except (OSError, UnicodeDecodeError) as exc:
        raise HelperError(f"cannot read {path}: {exc}") from None


def _parse(path, text):
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HelperError(f"{path} is not valid JSON ({exc}): fix it by hand; nothing was changed") from None
    if not isinstance(data, dict):
        raise HelperError(f"{path} is not a JSON object: fix it by hand; nothing was changed")
    helpers = data.get("credHelpers", {})
    if not isinstance(helpers, dict):
        raise HelperError(f"{path}: credHelpers is not an object: fix it by hand; nothing was changed")
    return data


def _indent(text):
    for line in (text or "").splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and stripped != line:
            return line[: len(line) - len(stripped)]
    return "\t"  # as docker and podman write it


def credential_key(key, docker):
    # docker looks Docker Hub up as its index URL; podman as docker.io.
    return "https://index.docker.io/v1/" if docker and key == DOCKER_HUB else key


def _plaintext_entries(data, key):
    """The auths entries of `data` that hold a credential for registry `key`."""
    found = []
    auths = data.get("auths")
    for name, entry in auths.items() if isinstance(auths, dict) else ():
        try:
            same = registry_key(name) == key
        except HelperError:
            same = False
        if same and isinstance(entry, dict) and (entry.get("auth") or entry.get("identitytoken")):
            found.append(name)
    return found


def plan_json(path, keys, docker, remove=False, migrate=None):
    """The change to one client's JSON config. `migrate(key, username, secret)` stores a plaintext login."""
    text, mode = _read(path)
    data = _parse(path, text)
    notes = []
    if docker and data.get("credsStore"):
        notes.append(
            f"{path} sets credsStore {data['credsStore']!r}: left alone; docker still uses it for other registries"
        )
    helpers = data.get("credHelpers")
    for key in keys:
        name = credential_key(key, docker)
        if remove:
            if helpers and helpers.get(name) == HELPER:
                del helpers[name]
            continue
        if helpers is None:
            helpers = data["credHelpers"] = {}
        helpers[name] = HELPER
        for auth_name in _plaintext_entries(data, key):
            entry = data["auths"][auth_name]
            if migrate is None:
                notes.append(
                    f"{path} still holds a plaintext credential for {key} (auths[{auth_name!r}]): "
                    "rerun with --migrate to move it into the keyring"
                )
                continue
            if entry.get("identitytoken"):
                username, secret = "<token>", entry["identitytoken"]
            else:
                try:
                    username, _, secret = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    notes.append(f"{path}: auths[{auth_name!r}].auth is not base64 of user:password: left alone")
                    continue
            migrate(key, auth_name, username, secret)
            for field in ("auth", "identitytoken", "username", "password"):
                entry.pop(field, None)
            notes.append(f"the plaintext credential for {key} in {path} goes into the keyring")
    if remove and helpers == {} and "credHelpers" in data:
        del data["credHelpers"]
    new = json.dumps(data, indent=_indent(text)) + "\n"
    if text is not None and _parse(path, text) == data:
        new = text  # nothing to do: keep the file byte for byte
    if text is None and not data:
        new = None
    return Change(path, text, new, mode, notes)


def plan_drop_in(remove=False):
    path = registries_conf_drop_in()
    text, mode = _read(path)
    if remove:
        new = None if text is not None and text == DROP_IN_TEXT else text
        notes = [] if text in (None, DROP_IN_TEXT) else [f"{path} was edited by hand: left alone"]
        return Change(path, text, new, 0o644, notes)
    notes = [f"{path}: podman, skopeo and buildah will ask docker-credential-quay for every registry"]
    return Change(path, text, DROP_IN_TEXT, mode if text is not None else 0o644, notes)


def helper_on_path():
    """None if `docker-credential-quay` on PATH is this installation, else a one-line problem and fix."""
    import shutil
    import sysconfig

    expected = os.path.join(sysconfig.get_path("scripts"), "docker-credential-quay")
    found = shutil.which("docker-credential-quay")
    if found and os.path.realpath(found) == os.path.realpath(expected):
        return None
    where = os.path.dirname(expected)
    if not found:
        return f"docker-credential-quay is not on PATH: add {where} to PATH (export PATH={where}:$PATH)"
    return f"the docker-credential-quay on PATH is {found}, not this installation's: put {where} first in PATH"


def report(changes, dry_run, out=sys.stdout, err=sys.stderr):
    for change in changes:
        for note in change.notes:
            print(f"quay-cred-helper: {note}", file=err)
        if not change.changed:
            print(f"{change.path}: already as wanted", file=err)
        elif dry_run:
            out.write(change.diff())
        else:
            change.apply()
            action = "removed" if change.new is None else "updated"
            print(
                f"{change.path}: {action} (previous version in {change.path}.bak)"
                if change.old is not None
                else f"{change.path}: created",
                file=err,
            )

"""quay-cred-helper configure: point docker's config.json, podman's auth file or registries.conf at the helper.

Every change is a read, a merge that keeps unknown keys and their order, and
an atomic write with the original's mode (0600 for a new file) and a `.bak`
of the previous version. A file that does not parse is reported and left
alone. `--remove` takes out only the entries that name this helper.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from quay_cred_helper import files
from quay_cred_helper.client_configs import HELPER, credential_key, docker_config_path, helper_on_path, podman_auth_path
from quay_cred_helper.client_configs import registries_conf_drop_in as drop_in_path
from quay_cred_helper.context import Context
from quay_cred_helper.errors import HelperError
from quay_cred_helper.names import registry_key

# migrate(key, server, username, secret): store a plaintext login before it leaves the file.
Migrate = Callable[[str, str, str, str], None]
DROP_IN_TEXT = (
    "# Written by quay-cred-helper configure --registries-conf; removed by --remove.\n"
    "# podman, skopeo and buildah ask these helpers in turn; containers-auth.json keeps their own logins.\n"
    'credential-helpers = ["containers-auth.json", "quay"]\n'
)


SECRET_FIELDS = ("auth", "identitytoken", "password", "registrytoken")
# A secret field's value in a client config, as it appears on one line of the file.
_SECRET_VALUE = re.compile('("(?:' + "|".join(SECRET_FIELDS) + r')"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact(text: str) -> str:
    """A config file's text with every credential value replaced, for showing it."""
    return _SECRET_VALUE.sub(r'\1"<redacted>"', text)


class Change:
    """One file's planned new content, with what to tell the user.

    `backup` is what goes into `path.bak`: the old text, less any credential that moved into the keyring."""

    def __init__(
        self, path: str, old: str | None, new: str | None, mode: int, notes: list[str], backup: str | None = None
    ) -> None:
        self.path, self.old, self.new, self.mode, self.notes = path, old, new, mode, notes
        self.backup = backup if backup is not None else old

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def diff(self) -> str:
        """The unified diff, credentials redacted: a dry run never prints one."""
        return "".join(
            difflib.unified_diff(
                redact(self.old or "").splitlines(keepends=True),
                redact(self.new or "").splitlines(keepends=True),
                fromfile=self.path if self.old is not None else "/dev/null",
                tofile=self.path if self.new is not None else "/dev/null",
            )
        )

    def apply(self) -> None:
        directory = os.path.dirname(self.path)
        if self.backup is not None:
            files.write_atomic(self.path + ".bak", self.backup.encode(), self.mode)
        if self.new is None:
            os.unlink(self.path)
            return
        files.private_dir(directory, tighten=False)
        files.write_atomic(self.path, self.new.encode(), self.mode)


def _read(path: str) -> tuple[str | None, int]:
    """(text or None, mode) of a file."""
    try:
        with open(path, encoding="utf-8", newline="") as f:  # exactly as on disk, for the diff and .bak
            text = f.read()
        return text, os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return None, 0o600
    except (OSError, UnicodeDecodeError) as exc:
        raise HelperError(f"cannot read {path}: {exc}") from None


def _parse(path: str, text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise HelperError(f"{path} is not valid JSON ({exc}): fix it by hand; nothing was changed") from None
    if not isinstance(data, dict):
        raise HelperError(f"{path} is not a JSON object: fix it by hand; nothing was changed")
    helpers = data.get("credHelpers", {})
    if not isinstance(helpers, dict):
        raise HelperError(f"{path}: credHelpers is not an object: fix it by hand; nothing was changed")
    return data


def _indent(text: str | None) -> str:
    for line in (text or "").splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and stripped != line:
            return line[: len(line) - len(stripped)]
    return "\t"  # as docker and podman write it


def _plaintext_entries(data: dict[str, Any], key: str) -> list[str]:
    """The auths entries of `data` that hold a credential for registry `key`."""
    found: list[str] = []
    auths = data.get("auths")
    for name, entry in auths.items() if isinstance(auths, dict) else ():
        try:
            same = registry_key(name) == key
        except HelperError:
            same = False
        if same and isinstance(entry, dict) and (entry.get("auth") or entry.get("identitytoken")):
            found.append(name)
    return found


def plan_json(path: str, keys: list[str], docker: bool, remove: bool = False, migrate: Migrate | None = None) -> Change:
    """The change to one client's JSON config: the helper's entries (the plan), and with `migrate` each
    plaintext login moved out of it (migrate_plaintext).

    A symlinked config (dotfiles) is changed in its target, as the docker CLI does."""
    path = os.path.realpath(path)
    text, mode = _read(path)
    data = _parse(path, text)
    notes: list[str] = []
    migrated: list[str] = []
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
        migrated += migrate_plaintext(path, data, key, migrate, notes)
    if remove and helpers == {} and "credHelpers" in data:
        del data["credHelpers"]
    new: str | None = json.dumps(data, indent=_indent(text)) + "\n"
    if text is not None and _parse(path, text) == data:
        new = text  # nothing to do: keep the file byte for byte
    if text is None and not data:
        new = None
    backup = None
    if migrated:
        # The backup must not keep what moved into the keyring: the old file, less those credentials.
        old = _parse(path, text)
        for auth_name in migrated:
            _drop_secrets(old["auths"][auth_name])
        backup = json.dumps(old, indent=_indent(text)) + "\n"
        notes.append(f"{path}.bak keeps the previous version without the migrated credentials")
    return Change(path, text, new, mode, notes, backup)


def migrate_plaintext(
    path: str, data: dict[str, Any], key: str, migrate: Migrate | None, notes: list[str]
) -> list[str]:
    """Move registry `key`'s plaintext logins out of config `data`: `migrate(key, server, username, secret)`
    stores each first (it raises if it cannot), then its secrets leave `data`. The auths names moved;
    a note for each (and for each left, without `migrate`)."""
    moved: list[str] = []
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
        _drop_secrets(entry)
        moved.append(auth_name)
        notes.append(f"the plaintext credential for {key} in {path} goes into the keyring")
    return moved


def _drop_secrets(entry: dict[str, Any]) -> None:
    for field in (*SECRET_FIELDS, "username"):
        entry.pop(field, None)


def podman_logout_file() -> str:
    """The file `podman logout --all` rewrites as `{"auths": {}}` (podman 4.3.1, checked): podman's own
    default auth file, REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json when DOCKER_CONFIG is set,
    else auth.json. It erases each credential through the helper first; other files keep credHelpers."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return os.environ["REGISTRY_AUTH_FILE"]
    return docker_config_path() if os.environ.get("DOCKER_CONFIG") else podman_auth_path()


def plan_drop_in(remove: bool = False) -> Change:
    path = drop_in_path()
    text, mode = _read(path)
    if remove:
        new = None if text is not None and text == DROP_IN_TEXT else text
        notes = [] if text in (None, DROP_IN_TEXT) else [f"{path} was edited by hand: left alone"]
        return Change(path, text, new, 0o600, notes)
    notes = [f"{path}: podman, skopeo and buildah will ask docker-credential-quay for every registry"]
    return Change(path, text, DROP_IN_TEXT, mode if text is not None else 0o600, notes)


def report(changes: list[Change], dry_run: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
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


def run(args: argparse.Namespace, ctx: Context) -> int:
    keys = [registry_key(registry) for registry in args.registries]
    everything = args.all or not (args.docker or args.podman or args.registries_conf)

    def store_checked(key: str, server: str, username: str, secret: str) -> None:
        ctx.store.add(key, server, username, secret)
        # Only delete the plaintext once the keyring gives the same credential back.
        if ctx.keyring_store.get(key) != (username, secret):
            raise HelperError(f"the keyring did not give back the credential for {key}: nothing was changed")

    def show_only(key: str, server: str, username: str, secret: str) -> None:
        return None  # the diff shows what would move

    migrate: Migrate | None = None
    if args.migrate:
        migrate = show_only if args.dry_run else store_checked

    changes = []
    if args.docker or everything:
        changes.append(plan_json(docker_config_path(), keys, True, args.remove, migrate))
    if args.podman or everything:
        changes.append(plan_json(podman_auth_path(), keys, False, args.remove, migrate))
    rewritten = os.path.realpath(podman_logout_file())
    for change in changes:
        if change.changed and not args.remove and change.path == rewritten:
            change.notes.append(
                f'`podman logout --all` rewrites {change.path} as {{"auths": {{}}}}, without credHelpers: '
                "run configure again after it, or use --registries-conf"
            )
    if args.registries_conf:
        changes.append(plan_drop_in(args.remove))
    problem = helper_on_path()
    if problem:
        ctx.warn(f"warning: {problem[0]}: {problem[1]}")
    report(changes, args.dry_run)
    return 0

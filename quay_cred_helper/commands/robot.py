"""quay-cred-helper robot: a robot's token rotated through Quay's API, a robot shown, the API's token stored.

    robot api-token REG [--remove]      the OAuth token for Quay's API, from stdin or a prompt, into the keyring
    robot show REG NS+NAME [--json]     what Quay says about the robot: dates, federation, permissions
    robot rotate REG NS+NAME            a new token from Quay, stored where the old one was, proved

`rotate` never loses the new token (docs/robots.md): it finds where the robot's token lives (the
registry's keyring entry, if it is this robot; a robot_token_file the config names for it), finishes
a rotation it finds staged there, then stages its intent, asks Quay once for a new token, stages that
token before storing it anywhere, stores it, unstages it, and proves it with one /v2/auth exchange. A
crash after Quay answered leaves the new token staged; one before Quay's answer was staged leaves the
intent, and the next run asks Quay's API for the robot's current token (admins get it) and compares
it with the digest of the token the intent replaced.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
import time
from collections.abc import Callable

from quay_cred_helper import log
from quay_cred_helper.context import Context
from quay_cred_helper.credentials import rotation
from quay_cred_helper.credentials.rotation import (
    ApiTokens,
    FileStaging,
    KeyringStaging,
    Pending,
    digest,
)
from quay_cred_helper.errors import (
    ApiRefused,
    HelperError,
    InputError,
    KeyringError,
    NotFound,
    RegistryError,
    SourceError,
)
from quay_cred_helper.names import registry_key
from quay_cred_helper.registry.api import Robot, RobotApi, RobotName, locate
from quay_cred_helper.sources.robot_token import read_token_file, write_token_file

MAX_API_TOKEN = 4096


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where a robot's token lives: the keyring or a robot_token_file."""

    where: str
    read: Callable[[], str | None]
    write: Callable[[str], None]
    file: str = ""  # a robot_token_file; "" for the keyring


def _slots(ctx: Context, key: str, robot: str) -> list[Slot]:
    """Every place this robot's token is kept for the registry; the keyring first (it stages there)."""
    slots = []
    entry = ctx.index.get(key)
    if entry is not None and entry.username == robot and not entry.oidc:
        server = entry.server or key

        def read_keyring() -> str | None:
            try:
                return ctx.keyring_store.get(key)[1]
            except NotFound:
                return None

        slots.append(Slot("the keyring", read_keyring, lambda token: ctx.store.add(key, server, robot, token)))
    settings = ctx.settings(key)
    if settings.robot_token_file and settings.robot == robot:
        path = settings.robot_token_file

        def read_file() -> str | None:
            try:  # checked as the provider checks it (files.check_private): an unsafe file is refused
                return read_token_file(path)
            except SourceError:  # missing or empty: nothing to replace, the rotation writes it
                return None

        slots.append(Slot(path, read_file, lambda token: write_token_file(path, token), path))
    if slots:
        return slots
    if entry is not None and entry.username == robot:
        raise InputError(f"{robot} at {key} is keyless: it has no token to rotate")
    raise InputError(
        f"no token of {robot} is stored for {key}",
        f"log in as the robot first (quay-cred-helper login {key} -u {robot} --password-stdin), or set "
        + settings.where(f"robot = {robot} and robot_token_file = PATH", key),
    )


def _check_api_token(token: str) -> str:
    if not token:
        raise InputError("empty API token")
    if len(token) > MAX_API_TOKEN or not token.isprintable() or any(c.isspace() for c in token):
        raise InputError("that is not an OAuth token (spaces, control characters or too long)", "paste only the token")
    log.secret(token)
    return token


def _read_stdin_line() -> str:
    line = sys.stdin.readline()
    return line.rstrip("\r\n") if line.endswith("\n") else line


def _api_token(args: argparse.Namespace, ctx: Context, key: str) -> str:
    if args.api_token_stdin:
        return _check_api_token(_read_stdin_line())
    found = ApiTokens(ctx.keyring).get(key)
    if found is None:
        raise InputError(
            f"no Quay API token stored for {key}",
            f"store an OAuth token with org:admin (an organization's robot) or user:admin (one of your own): "
            f"quay-cred-helper robot api-token {key} (see docs/robots.md)",
        )
    return found[0]


def _store_api_token(args: argparse.Namespace, ctx: Context, key: str) -> int:
    tokens = ApiTokens(ctx.keyring)
    if args.remove:
        if not tokens.delete(key):
            raise HelperError(f"no Quay API token stored for {key}")
        print(f"Removed the Quay API token for {key}", file=sys.stderr)
        return 0
    if args.api_token_stdin or not sys.stdin.isatty():
        token = _read_stdin_line()
    else:
        token = getpass.getpass("Quay OAuth token: ")
    tokens.set(key, _check_api_token(token))
    print(f"Stored the Quay API token for {key} in the keyring", file=sys.stderr)
    return 0


def _finished(pending: Pending, found: Robot) -> str | None:
    """The token an interrupted rotation got from Quay, or None if it never got one.

    Quay's current token (admins get it with the robot) is the truth; else the staged one. Either is
    the new one only if it differs from the token the rotation set out to replace."""
    current = found.token or pending.token
    if not current or (pending.before and digest(current) == pending.before):
        return None
    return current


def _commit(ctx: Context, key: str, slots: list[Slot], token: str) -> None:
    for slot in slots:
        slot.write(token)
        log.debug("rotate: the new token is stored in %s", slot.where)
    ctx.cache.drop(key)  # the keyring's store.add drops them too; a token file's JWTs go here


def _prove(ctx: Context, key: str, robot: str, token: str) -> None:
    try:
        ctx.tokens(cached=False).get(key, credentials=lambda: (robot, token))
    except HelperError as exc:
        raise RegistryError(
            f"the new token of {robot} is stored, but checking it failed: {exc.problem}", exc.fix
        ) from None


def _rotate(args: argparse.Namespace, ctx: Context, key: str, robot: RobotName) -> int:
    with rotation.lock():
        return _rotate_locked(args, ctx, key, robot)


def _rotate_locked(args: argparse.Namespace, ctx: Context, key: str, robot: RobotName) -> int:
    slots = _slots(ctx, key, robot.full)
    # Staged where the new token is going: in the keyring if it goes there, else beside the token file.
    staging = FileStaging(slots[0].file) if slots[0].file else KeyringStaging(ctx.keyring, key)
    pending = staging.load()
    if pending is not None and pending.robot != robot.full:
        raise InputError(
            f"a rotation of {pending.robot} at {key} was interrupted",
            f"finish it first: quay-cred-helper robot rotate {key} {pending.robot}",
        )
    api_token = _api_token(args, ctx, key)
    stored = ", ".join(slot.where for slot in slots)
    exchange = ctx.tokens()
    with exchange.opened(key) as session:
        api, found = locate(session, exchange.challenge(session).base, api_token, robot)
        if pending is not None:
            token = _finished(pending, found)
            if token is not None:
                _commit(ctx, key, slots, token)
                staging.clear()
                _prove(ctx, key, robot.full, token)
                print(
                    f"Finished the interrupted rotation of {robot} at {key}: its new token is in {stored}",
                    file=sys.stderr,
                )
                return 0
            log.debug("rotate: the interrupted rotation of %s never got a new token from Quay", robot)
        before = slots[0].read()
        intent = Pending(robot.full, "", digest(before) if before else "", time.time())
        staging.save(intent)
        log.debug("rotate: intent staged in %s", staging.where)
        token = _regenerate(api, staging, key, robot)
        try:
            staging.save(dataclasses.replace(intent, token=token))
        except HelperError as exc:
            raise _unfinished(exc, key, robot, "Quay has the new token: the next run asks for it") from None
        log.debug("rotate: the new token is staged in %s", staging.where)
    try:
        _commit(ctx, key, slots, token)
    except HelperError as exc:
        raise _unfinished(exc, key, robot, f"the new token is staged in {staging.where}") from None
    staging.clear()
    log.debug("rotate: staging cleared")
    _prove(ctx, key, robot.full, token)
    print(
        f"Rotated {robot} at {key}: the new token is in {stored} and works (Quay refuses the old one)", file=sys.stderr
    )
    return 0


def _unfinished(exc: HelperError, key: str, robot: RobotName, where: str) -> HelperError:
    """A rotation that stopped after Quay made the new token: what happened, and that the next run finishes it."""
    kind = KeyringError if isinstance(exc, KeyringError) else HelperError
    return kind(
        f"{exc.problem}; {where}", f"run quay-cred-helper robot rotate {key} {robot} again: it finishes the rotation"
    )


def _regenerate(api: RobotApi, staging: KeyringStaging | FileStaging, key: str, robot: RobotName) -> str:
    try:
        token = api.regenerate()
    except ApiRefused:
        staging.clear()  # Quay refused: nothing changed
        raise
    except HelperError as exc:  # no answer, or none we could read: Quay may have made a new token
        raise RegistryError(
            f"{exc.problem}; Quay may have regenerated the token",
            f"run quay-cred-helper robot rotate {key} {robot} again: it finds out and finishes",
        ) from None
    log.secret(token)
    return token


def _show(args: argparse.Namespace, ctx: Context, key: str, robot: RobotName) -> int:
    api_token = _api_token(args, ctx, key)
    exchange = ctx.tokens()
    with exchange.opened(key) as session:
        api, found = locate(session, exchange.challenge(session).base, api_token, robot)
        federation = api.federation()
        try:
            permissions: list[dict[str, object]] | None = [dataclasses.asdict(p) for p in api.permissions()]
        except ApiRefused as exc:  # the robot and its federation came with the same token: a matter of scope
            ctx.warn(str(exc))
            permissions = None
    shown = {
        "registry": key,
        "name": found.name,
        "kind": "user" if api.user else "organization",
        "description": found.description,
        "created": found.created,
        "last_accessed": found.last_accessed,
        "federation": federation,
        "permissions": permissions,
    }
    if args.json:
        json.dump(shown, sys.stdout, indent=2)
        print()
        return 0
    rows = [
        ("robot", f"{found.name} ({shown['kind']} robot at {key})"),
        ("description", found.description or "-"),
        ("created", found.created or "-"),
        ("last used", found.last_accessed or "never (or not recorded)"),
    ]
    rows += [("federation", f"{e['issuer']}  subject {e['subject']}") for e in federation] or [("federation", "none")]
    if permissions is not None:
        rows += [
            ("permission", f"{robot.namespace}/{p['repository']}  {p['role']}{'  (public)' if p['public'] else ''}")
            for p in permissions
        ] or [("permission", "none")]
    for label, value in rows:
        print(f"{label:<12} {value}")
    return 0


def run(args: argparse.Namespace, ctx: Context) -> int:
    key = registry_key(args.registry)
    if args.remove and args.action != "api-token":
        raise InputError("--remove goes with robot api-token")
    if args.json and args.action != "show":
        raise InputError("--json goes with robot show")
    if args.action == "api-token":
        if args.robot:
            raise InputError("robot api-token takes no robot: the token is the registry's")
        return _store_api_token(args, ctx, key)
    if not args.robot:
        raise InputError(
            f"robot {args.action} needs the robot", f"quay-cred-helper robot {args.action} {key} NAMESPACE+NAME"
        )
    robot = RobotName.parse(args.robot)
    return _rotate(args, ctx, key, robot) if args.action == "rotate" else _show(args, ctx, key, robot)

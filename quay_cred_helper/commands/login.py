"""quay-cred-helper login: check the credentials with one token request, then store them in the keyring.

A keyless robot (--oidc) and a robot whose token the job holds (--token-from) store no secret:
the index records the robot and where its token comes from; no keyring is needed. An SSO login
(--sso) signs in at the identity provider and keeps only its refresh token (sso/)."""

from __future__ import annotations

import argparse
import getpass
import sys

from quay_cred_helper import log
from quay_cred_helper.context import Context
from quay_cred_helper.errors import InputError
from quay_cred_helper.names import is_robot, registry_key
from quay_cred_helper.sources import oidc
from quay_cred_helper.sources.keyless import Keyless
from quay_cred_helper.sources.robot_token import RobotToken, robot_token_source


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline()
        # Like `docker login --password-stdin`: drop only the line ending.
        password = password.rstrip("\r\n") if password.endswith("\n") else password
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise InputError("no terminal to prompt for a password", "use --password-stdin")
    if not password:
        raise InputError("empty password")
    return password


def _read_username(args: argparse.Namespace) -> str:
    if args.username:
        username: str = args.username
        return username
    if args.password_stdin or not sys.stdin.isatty():
        raise InputError("no username", "pass -u USERNAME")
    username = input("Username: ").strip()
    if not username:
        raise InputError("no credentials username")
    return username


def _robot_only(args: argparse.Namespace, option: str) -> None:
    if not args.username or not is_robot(args.username):
        raise InputError(f"{option} needs the robot", "pass -u ORG+ROBOT")
    if args.password_stdin:
        raise InputError(f"{option} takes no password: the token comes from its source")


def _keyless(args: argparse.Namespace, ctx: Context, key: str) -> int:
    _robot_only(args, "--oidc")
    # auto: the source detected here is recorded, so that later exchanges need no detection.
    source = oidc.detect(args.audience) if args.oidc == "auto" else oidc.check(args.oidc)
    keyless = Keyless(args.username, source, args.audience)
    if not args.no_verify:
        # One exchange, uncached: the robot's federation must accept this source's token now.
        ctx.store.federated(key, keyless, cached=False)
    ctx.store.add_keyless(key, args.registry, keyless)
    how = f"keyless, OIDC token from {oidc.describe(source)}"
    print(f"Login Succeeded: {keyless.robot} at {key} ({how})", file=sys.stderr)
    return 0


def _token_from(args: argparse.Namespace, ctx: Context, key: str) -> int:
    _robot_only(args, "--token-from")
    if args.oidc or args.audience:
        raise InputError("--token-from goes without --oidc and --audience: the robot's own token is the source")
    held = RobotToken(args.username, robot_token_source(args.token_from))
    held.read()  # a missing or empty source is an error now, --no-verify or not
    if not args.no_verify:
        # One exchange, uncached: the registry must accept the token now.
        ctx.store.held_jwt(key, held, cached=False)
    ctx.store.add_robot_token(key, args.registry, held)
    print(f"Login Succeeded: {held.robot} at {key} (robot token from {held.source}, nothing stored)", file=sys.stderr)
    return 0


_SSO_ONLY = ("issuer", "client_id", "browser", "device", "no_browser", "port", "app_token")


def _sso(args: argparse.Namespace, ctx: Context, key: str) -> int:
    if args.username or args.password_stdin or args.oidc or args.token_from or args.audience or args.no_verify:
        raise InputError("--sso goes without -u, --password-stdin, --oidc, --token-from, --audience and --no-verify")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: not a port number")
    flow = "device" if args.device else "browser" if args.browser else ""

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # Only for --sso: PyJWT and cryptography, which a password or robot login never needs.
    from quay_cred_helper.sso import login as sso_login  # noqa: PLC0415

    user, issuer = sso_login.login(
        ctx, key, args.registry, args.issuer, args.client_id, flow, args.port, not args.no_browser, say, args.app_token
    )
    kept = "an app token made with it is kept as $app" if args.app_token else "the refresh token is in the keyring"
    print(f"Login Succeeded: {user} at {key} (SSO via {issuer}; {kept})", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, ctx: Context) -> int:
    key = registry_key(args.registry)
    if args.sso:
        return _sso(args, ctx, key)
    used = [name for name in _SSO_ONLY if getattr(args, name)]
    if used:
        raise InputError(f"--{used[0].replace('_', '-')} goes with --sso")
    if args.token_from:
        return _token_from(args, ctx, key)
    if args.oidc:
        return _keyless(args, ctx, key)
    if args.audience:
        raise InputError("--audience goes with --oidc")
    username = _read_username(args)
    password = _read_password(args)
    log.secret(password)
    if not args.no_verify:
        # One token request without scope (the cheapest); a refusal raises and stores nothing.
        ctx.tokens(cached=False).get(key, credentials=lambda: (username, password))
    ctx.store.add(key, args.registry, username, password)
    print(f"Login Succeeded: {username} at {key}", file=sys.stderr)
    return 0

"""quay-cred-helper login: check the credentials with one token request, then store them in the keyring."""

from __future__ import annotations

import argparse
import getpass
import sys

from quay_cred_helper import log
from quay_cred_helper.context import Context
from quay_cred_helper.errors import InputError
from quay_cred_helper.keyless import oidc
from quay_cred_helper.keyless.robot import Keyless
from quay_cred_helper.names import is_robot, registry_key


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


def _keyless(args: argparse.Namespace, ctx: Context, key: str) -> int:
    if not args.username or not is_robot(args.username):
        raise InputError("--oidc needs the robot", "pass -u ORG+ROBOT")
    if args.password_stdin:
        raise InputError("--oidc takes no password: the OIDC token comes from its source")
    keyless = Keyless(args.username, oidc.check(args.oidc), args.audience)
    if not args.no_verify:
        # One exchange, uncached: the robot's federation must accept this source's token now.
        ctx.store.federated(key, keyless, cached=False)
    ctx.store.add_keyless(key, args.registry, keyless)
    print(f"Login Succeeded: {keyless.robot} at {key} (keyless, OIDC token from {keyless.oidc})", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, ctx: Context) -> int:
    key = registry_key(args.registry)
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

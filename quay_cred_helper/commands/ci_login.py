"""quay-cred-helper ci-login: one step for a CI job: log a robot in, then point docker and podman at the helper.

Keyless when the job has an OIDC token (`--oidc`, by default `auto`: the CI systems sources/oidc.py
detects; `none` for never), else the robot's token from the job's secrets (`--token-from`, by default
env:QUAY_ROBOT_TOKEN). Either way nothing secret is stored and no keyring is needed, and the
login is verified with one exchange. A keyless login that the registry refuses, or a CI that
hands out no OIDC token, falls back on the robot token when the job has one, and says so. It
prints what it did, never a secret.
"""

from __future__ import annotations

import argparse
import sys

from quay_cred_helper.commands import configure
from quay_cred_helper.context import Context
from quay_cred_helper.errors import FederationRefused, InputError, SourceError
from quay_cred_helper.names import is_robot, registry_key
from quay_cred_helper.sources import oidc
from quay_cred_helper.sources.keyless import Keyless
from quay_cred_helper.sources.robot_token import RobotToken, robot_token_source

DEFAULT_TOKEN_FROM = "env:QUAY_ROBOT_TOKEN"


def _keyless(ctx: Context, key: str, robot: str, args: argparse.Namespace) -> Keyless | None:
    """The keyless robot, verified with one exchange (None with --oidc none); SourceError or
    FederationRefused when it cannot be."""
    if args.oidc == "none":
        return None
    source = oidc.detect(args.audience) if args.oidc == "auto" else oidc.check(args.oidc)
    keyless = Keyless(robot, source, args.audience)
    ctx.store.federated(key, keyless, cached=False)
    return keyless


def run(args: argparse.Namespace, ctx: Context) -> int:
    key = registry_key(args.registry)
    settings = ctx.config.settings(key)
    robot = args.robot or settings.robot
    if not robot and settings.sso_issuer:
        # A job has no person to sign in at the IdP, and an SSO session is a person's (docs/sso.md).
        raise InputError(
            "ci-login logs in robots, not SSO users: a CI job has nobody to sign in",
            "give the job a robot (keyless or its token: docs/ci.md), or pass --robot ORG+NAME",
        )
    if not is_robot(robot):
        raise InputError("ci-login needs the robot", f"pass --robot ORG+NAME (or set robot = under [{key}])")
    held = RobotToken(robot, robot_token_source(args.token_from))
    not_keyless: SourceError | FederationRefused | None = None
    try:
        keyless = _keyless(ctx, key, robot, args)
    except (SourceError, FederationRefused) as exc:
        keyless, not_keyless = None, exc
    if keyless is not None:
        ctx.store.add_keyless(key, args.registry, keyless)
        how = f"keyless, OIDC token from {oidc.describe(keyless.oidc)}"
    else:
        try:
            held.read()
        except SourceError as missing:
            if not_keyless is None or isinstance(not_keyless, FederationRefused):
                raise (not_keyless or missing) from None  # an OIDC token the registry refused says the most
            raise SourceError(
                f"no way to log in {robot} at {key}: {not_keyless.problem}; and {missing.problem}",
                f"{missing.fix}; or for keyless: {not_keyless.fix}",
            ) from None
        if not_keyless is not None:
            # With no CI system here at all (Jenkins, a plain container), the list of what was looked for is noise.
            here = oidc.here() or args.oidc != "auto"
            why = not_keyless.problem if here else "no CI OIDC token here (docs/ci.md)"
            ctx.warn(f"not keyless: {why}; using the robot token from {held.source}")
        ctx.store.held_jwt(key, held, cached=False)  # one exchange, uncached: the token must work now
        ctx.store.add_robot_token(key, args.registry, held)
        how = f"robot token from {held.source}, nothing stored"
    print(f"Login Succeeded: {robot} at {key} ({how})", file=sys.stderr)
    # docker's config.json and podman's auth file, as `configure REGISTRY` does.
    clients = argparse.Namespace(
        registries=[args.registry],
        docker=False,
        podman=False,
        registries_conf=False,
        all=True,
        remove=False,
        migrate=False,
        dry_run=False,
    )
    configure.run(clients, ctx)
    print(f"docker, podman, skopeo and buildah now get one-hour JWTs for {key} from the helper", file=sys.stderr)
    return 0

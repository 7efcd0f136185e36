"""quay-cred-helper credential: what `get` would give for a registry, with its kind and expiry, as data.

The JSON is a stable interface (docs/exec.md), version 1:

    {"version": 1, "registry", "username", "secret", "expires_at", "kind"}

`expires_at` is an RFC 3339 UTC time read from a JWT's `exp`, or null when the secret does not say
(a password, a robot token, an app-specific or OAuth token). `kind` is one of KINDS. `exec` builds
its throwaway docker config from `fetch`, so both hand out exactly what `get` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from quay_cred_helper.context import Context
from quay_cred_helper.credentials.rotation import ApiTokens
from quay_cred_helper.errors import HelperError, NotFound
from quay_cred_helper.names import is_robot, registry_key
from quay_cred_helper.registry import jwt
from quay_cred_helper.store import KEYLESS, source_of

VERSION = 1
KINDS = {
    "robot-jwt": "a robot's one-hour JWT, exchanged for its stored or held token",
    "keyless-jwt": "a keyless robot's one-hour JWT, from Quay's robot federation",
    "robot-token": "a robot's long-lived token itself (robot_exchange = false, or the registry unreachable)",
    "password": "a user's password, as stored",
    "app-token": "an app-specific token ($app), as stored",
    "oauth-token": "an OAuth token ($oauthtoken), as stored",
    "id-token": "an identity provider's ID token ($oauthtoken with a JWT: SSO)",
    "identity-token": "a refresh token (<token>) a client exchanges itself",
}
API_KINDS = ("oauth-token", "id-token")  # what Quay's REST API takes as `Authorization: Bearer`


class Credential:
    __slots__ = ("registry", "username", "secret", "kind", "expires_at")

    def __init__(self, registry: str, username: str, secret: str, kind: str, expires_at: float | None) -> None:
        self.registry = registry
        self.username = username
        self.secret = secret
        self.kind = kind
        self.expires_at = expires_at

    def to_json(self) -> dict[str, object]:
        return {
            "version": VERSION,
            "registry": self.registry,
            "username": self.username,
            "secret": self.secret,
            "expires_at": rfc3339(self.expires_at) if self.expires_at is not None else None,
            "kind": self.kind,
        }


def rfc3339(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _kind(username: str, secret: str, keyless: bool) -> str:
    is_jwt = jwt.claims(secret) is not None
    if is_robot(username):
        if keyless:
            return "keyless-jwt"
        return "robot-jwt" if is_jwt else "robot-token"
    if username == "$app":
        return "app-token"
    if username == "$oauthtoken":
        return "id-token" if is_jwt else "oauth-token"
    if username == "<token>":
        return "identity-token"
    return "password"


def fetch(ctx: Context, key: str, repository: str = "") -> Credential:
    """What `get` gives for registry `key` (or the robot the store routes `repository` to), described."""
    try:
        username, secret = ctx.store.get(key, repository)
    except NotFound:
        raise HelperError(f"no credentials for {key}", f"store some: quay-cred-helper login {key}") from None
    kind = _kind(username, secret, source_of(*ctx.store.source(key, repository)) == KEYLESS)
    expires = jwt.number(jwt.claims(secret), "exp") if kind != "password" else None
    return Credential(key, username, secret, kind, expires)


def _api_token(ctx: Context, found: Credential) -> Credential:
    """A Bearer token for Quay's REST API: the credential itself where its kind is one, else the OAuth
    token stored with `robot api-token`."""
    if found.kind in API_KINDS:
        return found
    stored = ApiTokens(ctx.keyring).get(found.registry)
    if stored is None:
        raise HelperError(
            f"the credential for {found.registry} is {KINDS[found.kind]}: Quay's REST API does not take it",
            f"store an OAuth token for the API: quay-cred-helper robot api-token {found.registry}",
        )
    return Credential(found.registry, "$oauthtoken", stored[0], "oauth-token", None)


def run(args: argparse.Namespace, ctx: Context) -> int:
    registry, _, repository = args.reference.partition("/")
    key = registry_key(registry)
    found = fetch(ctx, key, repository.strip("/"))
    if args.api:
        found = _api_token(ctx, found)
    if args.json:
        json.dump(found.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(found.secret)
    return 0

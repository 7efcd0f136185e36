"""quay-cred-helper token: a bearer token for curl and scripts (cached; httpx only on a miss)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from quay_cred_helper.context import Context
from quay_cred_helper.errors import HelperError, InputError
from quay_cred_helper.names import registry_key


def _split_reference(text: str) -> tuple[str, str | None]:
    """`registry[/ns/repo]` -> (key, repository or None)."""
    registry, _, repository = text.partition("/")
    return registry_key(registry), repository.strip("/") or None


def _not_granted(scopes: list[str], access: list[Any] | None) -> str | None:
    """The first repository scope the token grants nothing for; None when all are granted or the token
    does not say (a token that is not a JWT)."""
    if access is None:
        return None
    granted = {entry.get("name") for entry in access if isinstance(entry, dict) and entry.get("actions")}
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name = rest.rpartition(":")[0]
        if kind == "repository" and name not in granted:
            return name
    return None


def run(args: argparse.Namespace, ctx: Context) -> int:
    key, repository = _split_reference(args.reference)
    scopes = list(args.scope)
    if repository:
        # Pull only unless asked: on Quay a push scope creates a missing repository.
        scopes.append(f"repository:{repository}:{'pull,push' if args.push else 'pull'}")
    elif args.push:
        raise InputError("--push needs a repository: REGISTRY/NAMESPACE/REPOSITORY")
    identity, credentials = ctx.store.token_credentials(key, repository or "")  # a namespace's robot, if any
    token = ctx.tokens().get(key, identity, scopes, credentials=credentials)
    if token is None:
        raise HelperError(f"{key} needs no token: it answered /v2/ without authentication")
    refused = _not_granted(scopes, token.access)
    if refused:
        # Quay answers 200 with an empty access list (or an anonymous token) rather than an error.
        raise HelperError(f"granted no access to {refused}", "check the name and your permissions")
    if args.json:
        json.dump(
            {
                "registry": key,
                "token": token.token,
                "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token.expires_at)),
                "expires_in": int(token.expires_at - time.time()),
                "scopes": sorted(set(scopes)),
                "access": token.access,
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print(token.token)
    return 0

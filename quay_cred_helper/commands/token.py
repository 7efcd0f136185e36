"""quay-cred-helper token: a bearer token for curl and scripts (cached; httpx only on a miss)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from quay_cred_helper.context import Context
from quay_cred_helper.errors import HelperError, InputError
from quay_cred_helper.names import registry_key
from quay_cred_helper.sources import token_credentials


def _split_reference(text: str) -> tuple[str, str | None]:
    """`registry[/ns/repo]` -> (key, repository or None)."""
    registry, _, repository = text.partition("/")
    return registry_key(registry), repository.strip("/") or None


def run(args: argparse.Namespace, ctx: Context) -> int:
    key, repository = _split_reference(args.reference)
    scopes = list(args.scope)
    if repository:
        # Pull only unless asked: on Quay a push scope creates a missing repository.
        scopes.append(f"repository:{repository}:{'pull,push' if args.push else 'pull'}")
    elif args.push:
        raise InputError("--push needs a repository: REGISTRY/NAMESPACE/REPOSITORY")
    identity, credentials = token_credentials(ctx.index, ctx.keyring_store, key)
    token = ctx.tokens().get(key, identity, scopes, credentials=credentials)
    if token is None:
        raise HelperError(f"{key} needs no token: it answered /v2/ without authentication")
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

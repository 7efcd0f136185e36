"""quay-cred-helper logout: remove a registry's credentials and its cached tokens."""

from __future__ import annotations

import argparse
import sys

from quay_cred_helper.context import Context
from quay_cred_helper.errors import NotFound
from quay_cred_helper.names import registry_key
from quay_cred_helper.sso import apptoken


def run(args: argparse.Namespace, ctx: Context) -> int:
    key = registry_key(args.registry)
    entry = ctx.index.get(key)
    if entry is not None and entry.app_token:
        apptoken.end(ctx, key, entry, ctx.warn)
    try:
        ctx.store.delete(key)
    except NotFound:
        print(f"not logged in to {key}", file=sys.stderr)
        return 0
    print(f"Removed credentials for {key}", file=sys.stderr)
    return 0

"""quay-cred-helper list: registries with stored credentials, from the index alone (no keyring, no network)."""

from __future__ import annotations

import argparse
import json
import sys

from quay_cred_helper.context import Context
from quay_cred_helper.errors import printable


def run(args: argparse.Namespace, ctx: Context) -> int:
    rows = sorted((key, printable(entry.username)) for key, entry in ctx.index.entries().items())
    if args.quiet:
        for key, _ in rows:
            print(key)
        return 0
    if args.json:
        json.dump([{"registry": k, "username": u} for k, u in rows], sys.stdout, indent=2)
        print()
        return 0
    width = max([len("REGISTRY")] + [len(k) for k, _ in rows])
    print(f"{'REGISTRY':<{width}}  USERNAME")
    for key, username in rows:
        print(f"{key:<{width}}  {username}")
    return 0

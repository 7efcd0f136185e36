"""quay-cred-helper list: registries with stored credentials, from the index alone (no keyring, no network).

`--long` and `--json` add when each secret was stored and its age (keyless robots store none; entries
from before ages were kept have none); for an SSO login, the session's age, its Quay user and issuer, and
when its refresh token ends when the identity provider said; for an app token made at an SSO login, its
expiry at Quay, and whether it is due for renewal (the last tenth of its life, Quay's ?expiring=true window)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from quay_cred_helper.config import format_duration
from quay_cred_helper.context import Context
from quay_cred_helper.credentials.index import app_token_expiry
from quay_cred_helper.errors import printable


def _when(stored: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stored))


def _refresh_end(sso: dict[str, str]) -> str | None:
    """When the IdP said the session's refresh token ends, if it said."""
    value = sso.get("refresh_expires", "")
    return _when(int(value)) if value.isdigit() else None


def run(args: argparse.Namespace, ctx: Context) -> int:
    entries = sorted(ctx.index.entries().items())
    rows = [(key, printable(entry.username)) for key, entry in entries]
    if args.quiet:
        for key, _ in rows:
            print(key)
        return 0
    now = time.time()
    if args.json:
        listed = []
        for key, entry in entries:
            row: dict[str, object] = {"registry": key, "username": entry.username, "stored": None, "age_seconds": None}
            if entry.stored:
                row.update(stored=_when(entry.stored), age_seconds=max(0, int(now - entry.stored)))
            if entry.sso:
                ends = _refresh_end(entry.sso)
                row["sso"] = {"issuer": entry.sso.get("issuer"), "user": entry.sso.get("user"), "refresh_expires": ends}
            if entry.app_token:
                until, due = app_token_expiry(entry.app_token, now)
                app: dict[str, object] = {k: entry.app_token.get(k) for k in ("issuer", "user", "uuid", "title")}
                row["app_token"] = dict(app, expires=_when(until) if until else None, due=due)
            listed.append(row)
        json.dump(listed, sys.stdout, indent=2)
        print()
        return 0
    width = max([len("REGISTRY")] + [len(k) for k, _ in rows])
    if not args.long:
        print(f"{'REGISTRY':<{width}}  USERNAME")
        for key, username in rows:
            print(f"{key:<{width}}  {username}")
        return 0
    user_width = max([len("USERNAME")] + [len(u) for _, u in rows])
    print(f"{'REGISTRY':<{width}}  {'USERNAME':<{user_width}}  {'STORED':<20}  AGE")
    for (key, username), (_, entry) in zip(rows, entries):
        if entry.oidc:
            stored, age = "-", "keyless: no secret"
        elif entry.sso:
            stored, age = _when(entry.stored), f"SSO session of {printable(entry.sso.get('user', '?'))}, "
            age += f"{format_duration(now - entry.stored)} old"
            ends = _refresh_end(entry.sso)
            age += f"; refresh token ends {ends}" if ends else ""
        elif entry.app_token:
            stored, age = _when(entry.stored), f"app token of SSO user {printable(entry.app_token.get('user', '?'))}, "
            age += f"{format_duration(now - entry.stored)} old"
            until, due = app_token_expiry(entry.app_token, now)
            age += f"; expires {_when(until)}" if until else "; no expiry"
            age += f" (due: quay-cred-helper login {key} --sso --app-token)" if due else ""
        elif entry.stored:
            stored, age = _when(entry.stored), format_duration(now - entry.stored)
        else:
            stored, age = "unknown", "-"
        print(f"{key:<{width}}  {username:<{user_width}}  {stored:<20}  {age}")
    return 0

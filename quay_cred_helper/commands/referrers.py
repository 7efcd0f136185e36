"""quay-cred-helper referrers: list the OCI referrers (signatures, SBOMs, attestations) of a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from quay_cred_helper.cli import REFERRER_FIELDS as FIELDS
from quay_cred_helper.context import Context
from quay_cred_helper.errors import printable
from quay_cred_helper.registry.auth import BearerAuth
from quay_cred_helper.registry.challenge import Challenge
from quay_cred_helper.registry.reference import parse_reference
from quay_cred_helper.registry.referrers import INDEX, Listing, Repository, StaleChallenge, walk
from quay_cred_helper.registry.session import Session


def _field(descriptor: dict[str, Any], name: str) -> str:
    """One field of a descriptor as the registry sent it, fit for a terminal."""
    if name == "created":
        return printable(str(descriptor.get("annotations", {}).get("org.opencontainers.image.created", "")))
    return printable(str(descriptor.get(name, "")))


def _rows(descriptors: list[dict[str, Any]], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    for descriptor in descriptors:
        yield depth, descriptor
        yield from _rows(descriptor.get("referrers", []), depth + 1)


def _print_table(descriptors: list[dict[str, Any]]) -> None:
    rows = [
        ["  " * depth + ("└─ " if depth else "") + _field(d, "digest")] + [_field(d, f) or "-" for f in FIELDS[1:]]
        for depth, d in _rows(descriptors)
    ]
    header = ["DIGEST", "ARTIFACT TYPE", "MEDIA TYPE", "SIZE", "CREATED"]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def run(args: argparse.Namespace, ctx: Context) -> int:
    key, name, tag, digest = parse_reference(args.reference)
    tokens = ctx.tokens()
    identity, credentials = ctx.store.token_credentials(key, name)  # a namespace's robot, if any
    scope = f"repository:{name}:pull"

    def bearer(refresh: bool) -> str | None:
        token = tokens.get(key, identity, [scope], credentials, refresh=refresh)
        return token.token if token else None

    def list_with(session: Session, challenge: Challenge) -> tuple[str, Listing]:
        repository = Repository(session, challenge, name, BearerAuth(bearer) if challenge.realm else None)
        subject = digest or repository.resolve(tag or "latest")
        return subject, walk(repository, subject, args.artifact_type, args.depth if args.tree else 1)

    with tokens.opened(key) as session:
        try:
            subject, listing = list_with(session, tokens.challenge(session))
        except StaleChallenge:  # remembered "no auth", then a 401: the registry changed its mind
            subject, listing = list_with(session, tokens.rediscover(session))
    if listing.how == "tag-schema":
        ctx.warn(f"{key} has no referrers API: read the tag {subject.replace(':', '-')}")
    for note in listing.notes:
        ctx.warn(note)
    if args.json:
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": INDEX, "manifests": listing.descriptors}
        if listing.annotations:
            index["annotations"] = listing.annotations
        json.dump(index, sys.stdout, indent=2)
        print()
    elif args.format:
        for _, descriptor in _rows(listing.descriptors):
            print(_field(descriptor, args.format))
    else:
        _print_table(listing.descriptors)
    return 0

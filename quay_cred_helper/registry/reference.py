"""OCI references (distribution spec grammar): `REGISTRY/NS/REPO:TAG` or `@sha256:HEX`."""

from __future__ import annotations

import re

from quay_cred_helper.errors import InputError
from quay_cred_helper.names import registry_key

_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def is_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None


def parse_reference(text: str) -> tuple[str, str, str | None, str | None]:
    """`REGISTRY/NS/REPO@sha256:HEX` or `REGISTRY/NS/REPO:TAG` -> (key, repository, tag, digest)."""
    usage = "expected REGISTRY/NAMESPACE/REPOSITORY@sha256:DIGEST or REGISTRY/NAMESPACE/REPOSITORY:TAG"
    text = text.strip()
    if text.startswith("docker://"):
        text = text[len("docker://") :]
    registry, _, rest = text.partition("/")
    if not rest:
        raise InputError(f"{usage}, got {text[:200]!r}")
    key = registry_key(registry)
    name, at, digest = rest.partition("@")
    tag: str | None = None
    if at:
        if not is_digest(digest):
            raise InputError(f"invalid digest: {digest[:200]!r}")
        found_digest: str | None = digest
    else:
        found_digest = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise InputError(f"invalid tag: {tag[:200]!r}")
        else:
            tag = "latest"
    if not _REPOSITORY.fullmatch(name):
        raise InputError(f"invalid repository name: {name[:200]!r}")
    return key, name, tag, found_digest

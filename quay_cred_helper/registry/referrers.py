"""The OCI referrers of a manifest (distribution spec 1.1), with the tag-schema fallback.

`GET /v2/NAME/referrers/DIGEST` returns an image index of the manifests whose
`subject` is DIGEST. Registries without that API (Quay with
FEATURE_REFERRERS_API off, distribution 2.8, ...) keep the same index under
the tag `sha256-<hex>` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from quay_cred_helper.errors import RegistryError
from quay_cred_helper.registry.challenge import Challenge
from quay_cred_helper.registry.reference import is_digest
from quay_cred_helper.registry.session import Session, json_body, server_error

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST = 4 << 20  # registries refuse manifests over 4 MiB
MAX_PAGES = 50
MAX_REQUESTS = 200  # for one command, --tree included: a registry cannot keep us walking forever


class StaleChallenge(Exception):
    """A 401 under a remembered "no authentication needed": ask /v2/ again."""


@dataclass
class Listing:
    """What `referrers` found: descriptors (each with its own under "referrers" in a tree), and how."""

    descriptors: list[dict[str, Any]]
    how: str  # "api" or "tag-schema"
    annotations: dict[str, Any] = field(default_factory=dict)  # of the referrers index itself
    notes: list[str] = field(default_factory=list)


class Repository:
    """Reads from one repository; `auth` puts a pull token on each request (and renews it once on a 401)."""

    def __init__(self, session: Session, challenge: Challenge, name: str, auth: httpx.Auth | None) -> None:
        self.session, self.challenge, self.name, self.auth = session, challenge, name, auth
        self.key = session.key
        self.requests = 0

    def get(self, url: str, accept: str, params: list[tuple[str, str]] | None = None) -> tuple[httpx.Response, bytes]:
        if not url.startswith(("https://", "http://")):
            url = self.challenge.base + url
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            raise RegistryError(
                f"stopped after {MAX_REQUESTS} requests to {self.key}",
                "the registry keeps sending more referrers or pages; narrow it with --artifact-type or a lower --depth",
            )
        response, body = self.session.send(url, params, self.auth, headers={"Accept": accept}, limit=MAX_MANIFEST)
        if response.status_code == 401:
            if self.challenge.realm is None:
                raise StaleChallenge()
            raise RegistryError(
                f"no access to {self.key}/{self.name}",
                f"log in with an account that can pull it (quay-cred-helper login {self.key})",
            )
        return response, body

    def _refused(self, response: httpx.Response, body: bytes, what: str) -> RegistryError:
        code, message = server_error(json_body(body))
        if code == "NAME_UNKNOWN":
            return RegistryError(f"unknown repository {self.key}/{self.name}")
        if code in ("MANIFEST_UNKNOWN", "MANIFEST_INVALID"):
            return RegistryError(f"unknown manifest {what} in {self.key}/{self.name}")
        detail = f": {code or ''} {message or ''}".rstrip() if code or message else ""
        return RegistryError(f"{self.key} answered HTTP {response.status_code} for {what}{detail}")

    def resolve(self, tag: str) -> str:
        """The digest a tag points to."""
        response, body = self.get(f"/v2/{self.name}/manifests/{tag}", ", ".join(MANIFEST_TYPES))
        if response.status_code != 200:
            raise self._refused(response, body, f"tag {tag}")
        digest = response.headers.get("docker-content-digest", "")
        return digest if is_digest(digest) else "sha256:" + hashlib.sha256(body).hexdigest()

    def referrers(self, digest: str, artifact_types: Sequence[str] = ()) -> Listing:
        url: str | None = f"/v2/{self.name}/referrers/{digest}"
        params = [("artifactType", t) for t in artifact_types] or None
        listing = Listing([], "api")
        pages = 0
        while url:
            response, body = self.get(url, INDEX, params)
            if response.status_code == 404 and pages == 0:
                code, _ = server_error(json_body(body))
                if code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"):
                    raise self._refused(response, body, digest)
                return Listing(self._from_tag_schema(digest, artifact_types), "tag-schema")
            if response.status_code != 200:
                raise self._refused(response, body, digest)
            index = _index(body, self.key)
            page = index["manifests"]
            if artifact_types and "artifacttype" not in response.headers.get("oci-filters-applied", "").lower():
                page = [d for d in page if d.get("artifactType") in artifact_types]
            listing.descriptors += page
            if pages == 0 and isinstance(index.get("annotations"), dict):
                listing.annotations = index["annotations"]  # Quay copies the artifacts' annotations here
            pages += 1
            url = self._next_page(response, url)
            params = None  # the next link carries its own query
            if url and pages >= MAX_PAGES:
                listing.notes.append(f"stopped after {MAX_PAGES} pages of referrers")
                break
        return listing

    def _next_page(self, response: httpx.Response, current: str) -> str | None:
        link = next_link(response.headers.get("link", ""))
        if link is None:
            return None
        target = urljoin(self.challenge.base + current if current.startswith("/") else current, link)
        here, there = urlsplit(self.challenge.base), urlsplit(target)
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            raise RegistryError(f"{self.key} sent a next-page link to another origin: {there.netloc}: not followed")
        return target

    def _from_tag_schema(self, digest: str, artifact_types: Sequence[str]) -> list[dict[str, Any]]:
        # The subject must exist, or an empty answer would hide a typo.
        response, body = self.get(f"/v2/{self.name}/manifests/{digest}", ", ".join(MANIFEST_TYPES))
        if response.status_code != 200:
            raise self._refused(response, body, digest)
        tag = digest.replace(":", "-")
        response, body = self.get(f"/v2/{self.name}/manifests/{tag}", INDEX)
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise self._refused(response, body, f"tag {tag}")
        page: list[dict[str, Any]] = _index(body, self.key)["manifests"]
        return [d for d in page if d.get("artifactType") in artifact_types] if artifact_types else page


def next_link(header: str) -> str | None:
    """The target of the `rel="next"` entry of a Link header (RFC 8288), read in one linear pass."""
    for entry in header.split(","):
        target, sep, rest = entry.strip().partition(">")
        if not sep or not target.startswith("<"):
            continue
        for param in rest.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return target[1:]
    return None


def _index(body: bytes, key: str) -> dict[str, Any]:
    """The image index in a body, its manifests checked to be descriptors."""
    index = json_body(body)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise RegistryError(f"{key} sent a malformed referrers index: no manifests list")
    for item in manifests:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("digest"), str)
            and isinstance(item.get("mediaType"), str)
            and isinstance(item.get("size"), int)
            and isinstance(item.get("annotations", {}), dict)
        ):
            raise RegistryError(f"{key} sent a malformed referrers index: bad descriptor")
    assert isinstance(index, dict)
    return index


def walk(
    repository: Repository, digest: str, artifact_types: Sequence[str], depth: int, seen: set[str] | None = None
) -> Listing:
    """Referrers of `digest`, each with its own referrers under "referrers" down to `depth` levels.

    A digest is walked once: a referrer met again (a cycle, or one listed twice) gets no subtree."""
    seen = seen if seen is not None else {digest}
    listing = repository.referrers(digest, artifact_types)
    if depth > 1:
        for descriptor in listing.descriptors:
            if descriptor["digest"] in seen:
                continue
            seen.add(descriptor["digest"])
            below = walk(repository, descriptor["digest"], (), depth - 1, seen)
            descriptor["referrers"] = below.descriptors
            listing.notes += below.notes
    return listing

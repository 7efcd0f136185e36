"""The OCI referrers of a manifest (distribution spec 1.1), with the tag-schema fallback.

`GET /v2/NAME/referrers/DIGEST` returns an image index of the manifests whose
`subject` is DIGEST. Registries without that API (Quay with
FEATURE_REFERRERS_API off, distribution 2.8, ...) keep the same index under
the tag `sha256-<hex>` instead.
"""

import hashlib
import re
import sys
from urllib.parse import urljoin, urlsplit

from quay_cred_helper import config
from quay_cred_helper.auth import Session, json_body, make_client, server_error
from quay_cred_helper.errors import RegistryError
from quay_cred_helper.names import is_digest
from quay_cred_helper.store import credentials_for
from quay_cred_helper.tokens import Tokens

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST = 4 << 20  # registries refuse manifests over 4 MiB
MAX_PAGES = 50
_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)


class Repository:
    """Authenticated reads from one repository (pull scope only)."""

    def __init__(self, key, name, client=None, tokens=None):
        self.key, self.name = key, name
        self.client = client or make_client(key, config.load(key))
        self.session = Session(self.client, key)
        self.tokens = tokens or Tokens()
        self.identity, self.credentials = credentials_for(key)
        self.found = self.tokens.challenge(self.session)

    def close(self):
        self.client.close()

    def _headers(self, accept, refresh=False):
        headers = {"Accept": accept}
        if self.found["realm"] is not None:
            scope = f"repository:{self.name}:pull"
            token = self.tokens.get(self.key, self.identity, [scope], self.credentials, refresh=refresh)
            headers["Authorization"] = f"Bearer {token.token}"
        return headers

    def get(self, url, accept, params=None):
        """GET a URL of this registry; a 401 gets one retry with a freshly issued token."""
        if not url.startswith(("https://", "http://")):
            url = self.found["base"] + url
        response, body = self.session.send(url, params, headers=self._headers(accept), limit=MAX_MANIFEST)
        if response.status_code == 401 and self.found["realm"] is not None:
            headers = self._headers(accept, refresh=True)
            response, body = self.session.send(url, params, headers=headers, limit=MAX_MANIFEST)
            if response.status_code == 401:
                raise RegistryError(
                    f"no access to {self.key}/{self.name}: log in with an account that can pull it "
                    f"(quay-cred-helper login {self.key})"
                )
        return response, body

    def _refused(self, response, body, what):
        code, message = server_error(json_body(body))
        if code == "NAME_UNKNOWN":
            return RegistryError(f"unknown repository {self.key}/{self.name}")
        if code in ("MANIFEST_UNKNOWN", "MANIFEST_INVALID"):
            return RegistryError(f"unknown manifest {what} in {self.key}/{self.name}")
        detail = f": {code or ''} {message or ''}".rstrip() if code or message else ""
        return RegistryError(f"{self.key} answered HTTP {response.status_code} for {what}{detail}")

    def resolve(self, tag):
        """The digest a tag points to."""
        response, body = self.get(f"/v2/{self.name}/manifests/{tag}", ", ".join(MANIFEST_TYPES))
        if response.status_code != 200:
            raise self._refused(response, body, f"tag {tag}")
        digest = response.headers.get("docker-content-digest", "")
        return digest if is_digest(digest) else "sha256:" + hashlib.sha256(body).hexdigest()

    def referrers(self, digest, artifact_types=()):
        """(descriptors, how) where how is "api" or "tag-schema"."""
        url = f"/v2/{self.name}/referrers/{digest}"
        params = [("artifactType", t) for t in artifact_types] or None
        descriptors, pages = [], 0
        while url:
            response, body = self.get(url, INDEX, params)
            if response.status_code == 404 and pages == 0:
                code, _ = server_error(json_body(body))
                if code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"):
                    raise self._refused(response, body, digest)
                return self._from_tag_schema(digest, artifact_types), "tag-schema"
            if response.status_code != 200:
                raise self._refused(response, body, digest)
            page = _manifests(body, self.key)
            if artifact_types and "artifacttype" not in response.headers.get("oci-filters-applied", "").lower():
                page = [d for d in page if d.get("artifactType") in artifact_types]
            descriptors += page
            pages += 1
            url = self._next_page(response, url)
            params = None  # the next link carries its own query
            if url and pages >= MAX_PAGES:
                print(f"quay-cred-helper: stopped after {MAX_PAGES} pages of referrers", file=sys.stderr)
                break
        return descriptors, "api"

    def _next_page(self, response, current):
        match = _NEXT.search(response.headers.get("link", ""))
        if not match:
            return None
        target = urljoin(self.found["base"] + current if current.startswith("/") else current, match.group(1))
        here, there = urlsplit(self.found["base"]), urlsplit(target)
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            raise RegistryError(f"{self.key} sent a next-page link to another origin: {there.netloc}: not followed")
        return target

    def _from_tag_schema(self, digest, artifact_types):
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
        page = _manifests(body, self.key)
        return [d for d in page if d.get("artifactType") in artifact_types] if artifact_types else page


def _manifests(body, key):
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
    return manifests


def walk(repository, digest, artifact_types, depth):
    """Referrers of `digest`, each with its own referrers under "referrers" down to `depth` levels."""
    descriptors, how = repository.referrers(digest, artifact_types)
    if depth > 1:
        for descriptor in descriptors:
            descriptor["referrers"], _ = walk(repository, descriptor["digest"], (), depth - 1)
    return descriptors, how

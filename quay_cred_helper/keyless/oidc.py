"""Where a keyless robot's OIDC token comes from: the CI job's or the pod's own identity.

    github      GitHub Actions (`permissions: id-token: write`): GET $ACTIONS_ID_TOKEN_REQUEST_URL
                (+ &audience=...) with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`
    env:NAME    the token is in environment variable NAME (GitLab CI `id_tokens:`)
    file:PATH   the token is in a file, read afresh every time (a Kubernetes projected
                service-account token is rotated in place)

The token is read when an exchange is due (never on a cache hit), never
written anywhere, and registered with the log's redaction.
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlsplit

import httpx

from quay_cred_helper import log
from quay_cred_helper.config import Settings
from quay_cred_helper.errors import InputError, SourceError
from quay_cred_helper.names import is_loopback_host
from quay_cred_helper.registry.transport import make_client

KINDS = ("github", "env:NAME", "file:PATH")
MAX_TOKEN = 64 * 1024  # an OIDC token is a few KiB


def check(spec: str) -> str:
    """`spec` if it names a source; raises InputError otherwise."""
    kind, _, rest = spec.partition(":")
    if spec == "github" or (kind in ("env", "file") and rest):
        return spec
    raise InputError(f"unknown OIDC source {spec!r}", f"use one of {', '.join(KINDS)}")


def read(spec: str, audience: str) -> str:
    """The OIDC token from its source."""
    kind, _, rest = check(spec).partition(":")
    if kind == "github":
        token = _github(audience)
    elif kind == "env":
        token = os.environ.get(rest, "").strip()
        if not token:
            raise SourceError(
                f"the OIDC token variable {rest} is not set or empty",
                f"GitLab CI: declare it under id_tokens: {{{rest}: {{aud: ...}}}} in the job",
            )
    else:
        token = _file(rest)
    log.secret(token)
    if token.count(".") != 2:
        raise SourceError(f"the OIDC token from {spec} is not a JWT", "check what the source holds")
    return token


def _file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN + 1)
    except OSError as exc:
        raise SourceError(
            f"cannot read the OIDC token file {path}: {exc.strerror or type(exc).__name__}",
            "check the path (a pod mounts a projected service-account token) and its permissions",
        ) from None
    token = data.decode("utf-8", "replace").strip()
    if not token or len(data) > MAX_TOKEN:
        raise SourceError(f"the OIDC token file {path} is empty or too large", "check what mounts it")
    return token


def _github(audience: str) -> str:
    url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    request_token = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not url or not request_token:
        raise SourceError(
            "ACTIONS_ID_TOKEN_REQUEST_URL is not set: this is not a GitHub Actions job allowed OIDC tokens",
            "add `permissions: id-token: write` to the workflow or job",
        )
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname or "")):
        raise SourceError(f"refusing a GitHub token service that is not https: {url[:200]}")
    if audience:
        url += ("&" if "?" in url else "?") + "audience=" + quote(audience, safe="")
    log.secret(request_token)
    http = make_client(Settings())
    try:
        response = http.get(url, headers={"Authorization": f"bearer {request_token}"})
        value = response.json().get("value") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise SourceError(f"the GitHub Actions token service failed: {type(exc).__name__}") from None
    finally:
        http.close()
    if response.status_code != 200 or not isinstance(value, str) or not value:
        raise SourceError(
            f"the GitHub Actions token service answered HTTP {response.status_code} without a token",
            "check the job's `permissions: id-token: write`",
        )
    return value

"""Registry names: every form a client sends for one registry maps to one key."""

import re

from quay_cred_helper.errors import InputError

DOCKER_HUB = "docker.io"
# Docker sends Hub as https://index.docker.io/v1/, podman as docker.io.
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
_HOST = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?"
)
_LOOPBACK_HOSTS = frozenset({"localhost"})
_IPV4_LOOPBACK = re.compile(r"127(?:\.[0-9]{1,3}){3}")


def registry_key(server):
    """Return the canonical `host[:port]` for a server URL, host or `host/path`.

    Scheme, path, trailing slash and the case of the host are dropped, and the
    Docker Hub aliases become `docker.io`. Raises InputError for anything that
    is not a registry name.
    """
    text = server.strip()
    if not text:
        raise InputError("no credentials server URL")
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme.lower() not in ("http", "https"):
            raise InputError(f"unsupported scheme in server URL: {scheme}")
        text = rest
    host = text.split("/", 1)[0].lower()
    if not _HOST.fullmatch(host):
        raise InputError(f"invalid registry name: {server.strip()[:200]!r}")
    return DOCKER_HUB if host in _HUB_ALIASES else host


def hostname(key):
    """The host part of a registry key, without port or IPv6 brackets."""
    if key.startswith("["):
        return key[1 : key.index("]")]
    return key.rsplit(":", 1)[0] if ":" in key else key


def is_loopback(key):
    """True for registries on this machine (127.0.0.0/8, ::1, localhost)."""
    host = hostname(key)
    return host in _LOOPBACK_HOSTS or host == "::1" or _IPV4_LOOPBACK.fullmatch(host) is not None


def is_robot(username):
    """Quay robot accounts are named `namespace+name`."""
    return "+" in username and not username.startswith(("$", "<"))


_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def parse_reference(text):
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
    tag = None
    if at:
        if not DIGEST.fullmatch(digest):
            raise InputError(f"invalid digest: {digest[:200]!r}")
        digest_or_none = digest
    else:
        digest_or_none = None
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
    return key, name, tag, digest_or_none

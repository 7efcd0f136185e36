"""Registry names: every form a client sends for one registry maps to one key."""

from __future__ import annotations

from quay_cred_helper.errors import InputError

DOCKER_HUB = "docker.io"
# Docker sends Hub as https://index.docker.io/v1/, podman as docker.io.
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_IPV6_CHARS = frozenset("0123456789abcdef:.")
_DIGITS = frozenset("0123456789")


def _valid_host(host: str) -> bool:
    """`name[:port]` or `[ipv6][:port]`, already lower-cased.

    Checked by hand, not with `re`: importing re costs as much as the whole
    interpreter start, and every `get` goes through here.
    """
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or not name or not set(name) <= _IPV6_CHARS or not _is_ipv6(name):
            return False
    else:
        name, _, port = host.partition(":")
        port = ":" + port if _ else ""
        for label in name.split("."):
            if not label or not set(label) <= _LABEL_CHARS or label[0] == "-" or label[-1] == "-":
                return False
    if not port:
        return True
    digits = port[1:]
    return port[0] == ":" and 0 < len(digits) <= 5 and digits.isascii() and digits.isdigit()


def registry_key(server: str) -> str:
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
    if not _valid_host(host):
        raise InputError(f"invalid registry name: {server.strip()[:200]!r}")
    return DOCKER_HUB if host in _HUB_ALIASES else host


def hostname(key: str) -> str:
    """The host part of a registry key, without port or IPv6 brackets."""
    if key.startswith("["):
        return key[1 : key.index("]")]
    return key.rsplit(":", 1)[0] if ":" in key else key


def _is_ipv6(text: str) -> bool:
    import ipaddress  # only for bracketed hosts: `get` of an ordinary name never pays for it

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_ipv4(text: str) -> bool:
    """A dotted-quad IPv4 literal (no leading zeros, each part 0-255); anything else is a DNS name."""
    parts = text.split(".")
    return len(parts) == 4 and all(
        p and set(p) <= _DIGITS and len(p) <= 3 and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts
    )


def is_loopback_host(host: str) -> bool:
    """`localhost`, an IPv4 literal in 127.0.0.0/8, or the IPv6 loopback address; never a DNS name."""
    host = host.lower()
    if host == "localhost":
        return True
    if ":" in host:
        import ipaddress  # only for IPv6 literals

        try:
            return ipaddress.IPv6Address(host).is_loopback
        except ValueError:
            return False
    return _is_ipv4(host) and host.startswith("127.")


def is_loopback(key: str) -> bool:
    """True for registries on this machine (see is_loopback_host)."""
    return is_loopback_host(hostname(key))


def is_robot(username: str) -> bool:
    """Quay robot accounts are named `namespace+name`."""
    return "+" in username and not username.startswith(("$", "<"))

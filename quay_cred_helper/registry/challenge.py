"""How a registry wants to be authenticated: the WWW-Authenticate header (RFC 7235) and what we keep of it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SPACE = re.compile(r"[ \t]*")
_PARAM = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*")
_UNESCAPE = re.compile(r"\\(.)")


def parse(header: str) -> list[tuple[str, dict[str, str]]]:
    """Return [(scheme, {param: value})] for every challenge in a header value.

    Scheme and parameter names are lower-cased; quoted values are unescaped,
    so commas and quotes inside them are kept. Malformed text ends the parse
    with what was read so far rather than raising.
    """
    challenges = []
    pos = 0
    n = len(header)
    while pos < n:
        pos = _skip(header, pos)
        match = _TOKEN.match(header, pos)
        if not match:
            break
        scheme, pos = match.group().lower(), match.end()
        params: dict[str, str] = {}
        challenges.append((scheme, params))
        pos = _space(header, pos)
        # token68 form, e.g. "Negotiate abc==": a lone token running to the list's end.
        t68 = _TOKEN68.match(header, pos)
        if t68 and _at_list_end(header, t68.end()):
            params[""] = t68.group()
            pos = t68.end()
            continue
        while pos < n:
            after_comma = _skip(header, pos)
            param = _PARAM.match(header, after_comma)
            if not param:
                break  # a new scheme (or garbage)
            pos = param.end()
            quoted = _QUOTED.match(header, pos)
            if quoted:
                value, pos = _UNESCAPE.sub(r"\1", quoted.group(1)), quoted.end()
            else:
                token = _TOKEN.match(header, pos)
                if not token:
                    return challenges
                value, pos = token.group(), token.end()
            params[param.group(1).lower()] = value
            pos = _space(header, pos)
            if pos < n and header[pos] != ",":
                return challenges
    return challenges


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t,":
        pos += 1
    return pos


def _at_list_end(text: str, pos: int) -> bool:
    pos = _space(text, pos)
    return pos >= len(text) or text[pos] == ","


def _space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def bearer(headers: list[str]) -> dict[str, str] | None:
    """The Bearer challenge's params from a list of header values, or None."""
    for value in headers:
        for scheme, params in parse(value):
            if scheme == "bearer" and params.get("realm"):
                return params
    return None


@dataclass(frozen=True)
class Challenge:
    """What /v2/ told us: the base URL that answered, and the token realm and service (realm None: no auth)."""

    base: str
    realm: str | None
    service: str

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, version: int) -> Challenge | None:
        if not data or data.get("version") != version or not isinstance(data.get("base"), str):
            return None
        realm, service = data.get("realm"), data.get("service")
        if realm is not None and not isinstance(realm, str):
            return None
        return cls(data["base"], realm, service if isinstance(service, str) else "")

    def to_json(self, version: int) -> dict[str, Any]:
        return {"version": version, "base": self.base, "realm": self.realm, "service": self.service}

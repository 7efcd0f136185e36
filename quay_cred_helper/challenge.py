"""WWW-Authenticate parsing (RFC 7235): which realm and service to ask for a token."""

import re

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SPACE = re.compile(r"[ \t]*")
_PARAM = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*")
_UNESCAPE = re.compile(r"\\(.)")


def parse(header):
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
        params = {}
        challenges.append((scheme, params))
        pos = _SPACE.match(header, pos).end()
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
            pos = _SPACE.match(header, pos).end()
            if pos < n and header[pos] != ",":
                return challenges
    return challenges


def _skip(text, pos):
    while pos < len(text) and text[pos] in " \t,":
        pos += 1
    return pos


def _at_list_end(text, pos):
    pos = _SPACE.match(text, pos).end()
    return pos >= len(text) or text[pos] == ","


def bearer(headers):
    """The Bearer challenge's params from a list of header values, or None."""
    for value in headers:
        for scheme, params in parse(value):
            if scheme == "bearer" and params.get("realm"):
                return params
    return None

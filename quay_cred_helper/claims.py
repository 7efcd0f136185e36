"""Bearer tokens as we keep them, and reading a JWT's payload (not verifying it: the registry does that)."""

import base64
import json
from typing import NamedTuple


class Token(NamedTuple):
    token: str
    issued_at: float
    expires_at: float
    access: list


def payload(token):
    """The claims of a JWT as a dict, or None if the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        data = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(data)
    except (ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def number(claims, name):
    value = claims.get(name) if claims else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)

"""Reading a JWT's claims (not verifying them: the registry does that)."""

from __future__ import annotations

import base64
import json
from typing import Any


def payload(token: str) -> dict[str, Any] | None:
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


def number(claims: dict[str, Any] | None, name: str) -> float | None:
    value = claims.get(name) if claims else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)

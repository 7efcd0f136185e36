"""Reading a JWT's claims (not verifying them: the registry does that).

One decoder for every caller, light enough for the kubelet provider's hot
path (a pod's service-account token is decoded on every request): binascii
and fastjson, not base64 and json, which import more.
"""

from __future__ import annotations

import binascii

from quay_cred_helper import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT as a dict, or None if the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    part = parts[1]
    try:
        data = binascii.a2b_base64(part.replace("-", "+").replace("_", "/") + "=" * (-len(part) % 4))
        value = fastjson.loads(data.decode("utf-8"))
    except (ValueError, binascii.Error, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def number(claims: dict[str, Any] | None, name: str) -> float | None:
    value = claims.get(name) if claims else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)

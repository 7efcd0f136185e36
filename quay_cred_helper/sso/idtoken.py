"""Checking an ID token before anything is stored or handed out (PyJWT with cryptography: cold paths only).

The checks are the ones Quay makes (DESIGN.md section 10) and OIDC Core 3.1.3.7's: a signature by a
key of the IdP's JWKS (RS256 or RS384, with a `kid`), `iss`, `aud` containing our client, `exp` and
`iat` (30 s of leeway, as Quay allows), `sub`, the `nonce` we sent, and a `typ` header: Quay takes a
token without one for an OAuth application token and refuses it.
"""

from __future__ import annotations

import jwt

from quay_cred_helper.errors import IdPError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LEEWAY = 30  # seconds, as Quay
ALGORITHMS = ["RS256", "RS384"]  # what Quay accepts
TYPES = ("JWT", "at+jwt")  # `typ` values Quay takes for an SSO token (at+jwt from 3.17.4)


def check(token: str, jwks: dict[str, Any], issuer: str, client_id: str, nonce: str = "") -> dict[str, Any]:
    """The ID token's claims, if it passes every check; else an IdPError saying which failed.

    `nonce`: the one sent with the authorization request; "" for a refreshed token or the device grant,
    where the IdP sends none (or the first one again: either is fine)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdPError("the identity provider sent an ID token that is not a JWT") from None
    if header.get("typ") not in TYPES:
        raise IdPError(
            "the identity provider's ID token has no typ header: Quay refuses it "
            "(OAuth access token could not be validated)",
            "have the IdP admin give the client's ID tokens typ JWT (Keycloak, Entra ID and Okta do by default)",
        )
    kid = header.get("kid")
    try:
        keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id}
    except jwt.PyJWTError:
        raise IdPError("the identity provider's JWKS holds no usable key") from None
    if not kid or kid not in keys:
        raise IdPError(f"the ID token's key ({kid or 'no kid'}) is not in the identity provider's JWKS")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            keys[kid].key,
            algorithms=ALGORITHMS,
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise IdPError("the identity provider sent an expired ID token", "check this machine's clock") from None
    except jwt.ImmatureSignatureError:
        raise IdPError("the ID token is issued in the future", "check this machine's clock") from None
    except jwt.InvalidAudienceError:
        raise IdPError(f"the ID token is not for the client {client_id} (aud)", "check sso_client_id") from None
    except jwt.InvalidIssuerError:
        raise IdPError(f"the ID token is not from {issuer} (iss)", "check sso_issuer") from None
    except jwt.InvalidAlgorithmError:
        raise IdPError(f"the ID token is signed with {header.get('alg')}: Quay takes RS256 or RS384 only") from None
    except jwt.InvalidSignatureError:
        raise IdPError("the ID token's signature does not verify against the identity provider's keys") from None
    except jwt.PyJWTError as exc:
        raise IdPError(f"the identity provider sent an ID token that fails its checks ({type(exc).__name__})") from None
    if nonce and claims.get("nonce") != nonce:
        raise IdPError("the ID token's nonce is not the one this login sent: refused (a replayed answer?)")
    return claims

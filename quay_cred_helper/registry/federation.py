"""Quay's robot federation: an OIDC token in, a one-hour robot JWT out (keyless robots).

`GET <registry origin>/oauth2/federation/robot/token` with Basic `org+robot:<OIDC JWT>`
answers `{"token": JWT}`: Quay-signed, sub = the robot, aud = its SERVER_HOSTNAME,
an hour long. It is then the robot's password at /v2/auth.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from quay_cred_helper import log
from quay_cred_helper.errors import FederationRefused, RegistryError, Unreachable
from quay_cred_helper.registry import jwt
from quay_cred_helper.registry.cache import Token
from quay_cred_helper.registry.challenge import Challenge
from quay_cred_helper.registry.session import Session, json_body

PATH = "/oauth2/federation/robot/token"

# Quay's 400 messages, and what to do about each (Quay gives no codes, only these texts), in the order
# they are tried: the first text found in the message gives the fix. The audience fixes get the token's aud.
_HINTS = (
    ("does not match robot", "the OIDC token's subject (sub) is not the one the robot's federation entry names"),
    ("expired", "the OIDC token has expired: the job or pod must present a fresh one"),
    (
        "cannot be in the future",
        "the OIDC token was issued (iat) more than 30 s ahead of Quay's clock: synchronise the clocks (NTP) "
        "of Quay and of the token's issuer",
    ),
    ("not yet valid", "the OIDC token is not valid yet: synchronise the clocks (NTP) of Quay and the issuer"),
    (
        "audience doesn't match",
        "the robot's federation entry accepts only the audiences it lists, and this token's aud is {aud}: "
        "ask the source for one of them (oidc = github: login --audience, or audience = under [REGISTRY]; "
        "GitLab CI: the id_tokens aud; a pod: the projected token's audience)",
    ),
    (
        'missing the "aud" claim',
        "the robot's federation entry checks the audience, and this token has none: ask the source for a "
        "token with one the entry lists (oidc = github: login --audience, or audience = under [REGISTRY]; "
        "GitLab CI: the id_tokens aud; a pod: the projected token's audience)",
    ),
    ("not configured for this robot", "add the token's issuer (iss) to the robot's federation entries"),
    ("could not find robot", "check the robot's name (org+name)"),
    ("does not have federated login", "configure federation for the robot (Robot Accounts > Set robot federation)"),
    ("signature verification failed", "the token is not signed by its issuer's keys: check what the source holds"),
    ("alg value is not allowed", "Quay accepts RS256 and RS384 tokens only: use the issuer's own ID tokens"),
    ("missing `kid`", "Quay needs a kid in the token's header: use the issuer's own ID tokens"),
    ("token is missing the", "Quay needs iat and exp in the token: use the issuer's own ID tokens"),
)


def exchange(session: Session, challenge: Challenge, robot: str, oidc_token: str) -> Token:
    """One exchange at Quay's own origin: that of its token realm (on Quay, the registry's origin), which
    gets credentials only when the realm policy allows it (https, the registry's host or realm_hosts)."""
    if challenge.realm is None:
        raise RegistryError(f"{session.key} asks for no authentication: a keyless robot has nothing to exchange")
    session.check_realm(challenge.realm)
    realm = urlsplit(challenge.realm)
    log.secret(oidc_token)
    response, body = session.send(f"{realm.scheme}://{realm.netloc}{PATH}", auth=(robot, oidc_token))
    data = json_body(body)
    status, key = response.status_code, session.key
    if status == 200:
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or token.count(".") != 2:
            raise RegistryError(f"{key} answered the robot federation without a token")
        return Token.issued(token)
    message = ""
    if isinstance(data, dict):
        found = data.get("error") or data.get("message")
        message = str(found)[:300] if found else ""
    if status == 404 or status == 405:
        raise FederationRefused(
            f"{key} has no robot federation (HTTP {status})", "keyless robots need Quay 3.13 or later"
        )
    if status >= 500:
        raise Unreachable(
            f"{key} failed the robot federation for {robot} (HTTP {status})",
            "usually the issuer is http:// (Quay fetches it over https only), the token is not a JWT, "
            "or the issuer rotated its keys (a kid its JWKS no longer has)",
        )
    hint = next((fix for text, fix in _HINTS if text in message.lower()), "check the robot's federation entries")
    if "REGISTRY" in hint:  # an audience fix: name the registry, and what the token says
        claims = jwt.claims(oidc_token) or {}
        hint = hint.replace("{aud}", repr(claims.get("aud"))[:200]).replace("REGISTRY", key)
    raise FederationRefused(f"{key} refused the OIDC token for {robot}: {message or f'HTTP {status}'}", hint)

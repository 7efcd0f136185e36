"""What Quay says to an SSO user: one /v2/auth as `$oauthtoken`, the user's name, the public /config.

Quay's refusals are its own words (DESIGN.md section 10); REFUSALS gives each its fix. They are the
only signal Quay gives, so they are read here, in one table, and nowhere else.
"""

from __future__ import annotations

from quay_cred_helper.errors import RegistryError
from quay_cred_helper.registry.session import json_body, server_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from quay_cred_helper.registry.session import Session
    from quay_cred_helper.registry.tokens import TokenExchange

USERNAME = "$oauthtoken"
_AUDIENCE = (
    "Quay 3.18 and later check the ID token's aud: ask the Quay admin to add OIDC_AUDIENCES: [{client}] to "
    "the login config, or add an audience mapper at the IdP, or log in with Quay's own client (--client-id)"
)
_KEYS = "Quay cannot verify the identity provider's signature: ask the Quay admin (Quay refetches the JWKS hourly)"
# Quay's words (the start of its message) -> the fix; {client} and {issuer} are filled in.
REFUSALS = {
    "Issuer ": "Quay has no OIDC login for {issuer}: check sso_issuer, or ask the Quay admin for a "
    "<NAME>_LOGIN_CONFIG with OIDC_SERVER {issuer}",
    "Audience doesn't match": _AUDIENCE,
    'Token is missing the "aud" claim': _AUDIENCE,
    "Client ": "ask the Quay admin to add {client} to OIDC_ALLOWED_CLIENTS",
    "Signature has expired": "check this machine's clock, then log in again",
    "Issued At claim (iat) cannot be in the future.": "the IdP's clock is ahead of Quay's: tell the admins",
    "Signature verification failed": _KEYS,
    "Public key ": _KEYS,
    "Missing `kid` header": "the identity provider signs without a kid: Quay needs one (ask the IdP admin)",
    "The specified alg value is not allowed": "Quay takes RS256 or RS384 ID tokens only (ask the IdP admin)",
    "OAuth access token could not be validated": "the ID token has no typ header, which Quay needs (ask the IdP admin)",
    "Requests from impersonated principals are not supported": "sign in as yourself, not as an impersonated user",
    "User creation is disabled": "ask the Quay admin to create your account (FEATURE_USER_CREATION is off)",
    "duplicate key value violates unique constraint": "an account with your e-mail exists: sign in to Quay's web UI "
    "with your password once and attach this login (Account settings, External logins), then log in again",
}


def refusal(key: str, message: str, client: str, issuer: str) -> RegistryError:
    """Quay's refusal of an ID token as one line with its fix."""
    fix = next((fix for words, fix in REFUSALS.items() if message.startswith(words)), None)
    fix = fix.format(client=client, issuer=issuer) if fix else "check sso_issuer and sso_client_id"
    return RegistryError(f"{key} refused the SSO login: {message[:200]}", fix)


def verify(exchange: TokenExchange, key: str, id_token: str, client: str, issuer: str) -> str:
    """One /v2/auth as `$oauthtoken` with the ID token (nothing cached); then the Quay user's name from
    /api/v1/user/ with the ID token as Bearer ("" when Quay will not say)."""
    with exchange.opened(key) as session:
        challenge = exchange.challenge(session)
        if challenge.realm is None:
            raise RegistryError(f"{key} asks for no authentication: there is nothing to log in to")
        session.check_realm(challenge.realm)
        params = [("service", challenge.service)] if challenge.service else []
        response, body = session.send(challenge.realm, params=params, auth=(USERNAME, id_token))
        if response.status_code == 401:
            _, message = server_error(json_body(body))
            raise refusal(key, message or "unauthorized", client, issuer)
        if response.status_code != 200:
            session.fetch_token(challenge, USERNAME, id_token)  # its errors, as for any login
        return user(session, challenge.base, id_token)


def user(session: Session, origin: str, id_token: str) -> str:
    response, body = session.send(origin + "/api/v1/user/", headers={"Authorization": f"Bearer {id_token}"})
    data = json_body(body)
    name = data.get("username") if isinstance(data, dict) and response.status_code == 200 else None
    return name if isinstance(name, str) else ""


def client_ids(exchange: TokenExchange, key: str) -> list[str]:
    """The CLIENT_IDs of the OIDC logins Quay's public /config lists (it never lists their issuers)."""
    with exchange.opened(key) as session:
        origin = exchange.challenge(session).base
        response, body = session.send(origin + "/config")
    data = json_body(body)
    logins = data.get("external_login") if isinstance(data, dict) and response.status_code == 200 else None
    found = []
    for login in logins if isinstance(logins, list) else []:
        if isinstance(login, dict) and login.get("OIDC") and isinstance(login.get("CLIENT_ID"), str):
            found.append(login["CLIENT_ID"])
    return found

"""Speaking to the identity provider: discovery, and its token endpoints' answers as errors of ours.

The IdP is reached like a registry (registry/session.py: retries, the deadline, TLS errors classified
by type), over https only, trusting the registry's CA bundle or the system store (SSL_CERT_FILE).
"""

from __future__ import annotations

import contextlib
import urllib.parse

from quay_cred_helper.errors import IdPError, InputError, SessionExpired, Unreachable
from quay_cred_helper.registry.session import Session, json_body
from quay_cred_helper.registry.transport import make_client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from quay_cred_helper.config import Settings
    from quay_cred_helper.registry.deadline import Deadline

MAX_ANSWER = 256 * 1024


class Provider:
    """What the IdP's discovery document says, the parts a CLI needs."""

    __slots__ = ("issuer", "authorization", "token", "device", "revocation", "jwks_uri")

    def __init__(self, data: dict[str, Any]) -> None:
        self.issuer: str = data["issuer"]
        self.authorization: str = data.get("authorization_endpoint") or ""
        self.token: str = data["token_endpoint"]
        self.device: str = data.get("device_authorization_endpoint") or ""
        self.revocation: str = data.get("revocation_endpoint") or ""
        self.jwks_uri: str = data["jwks_uri"]


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def check_issuer(issuer: str) -> str:
    """The issuer as given, if it is an https URL (Quay fetches issuers over https only)."""
    parts = urllib.parse.urlsplit(issuer)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise InputError(f"not an https issuer URL: {issuer}", "pass the identity provider's issuer, https://...")
    return issuer


@contextlib.contextmanager
def opened(issuer: str, settings: Settings, deadline: Deadline | None = None) -> Iterator[Session]:
    """A session to the IdP, within `deadline` (a `get`'s refresh: the registry's) or one of its own."""
    client = make_client(settings)
    try:
        yield Session(client, host_of(issuer), settings, deadline=deadline)
    finally:
        client.close()


def get_json(session: Session, url: str) -> dict[str, Any]:
    response, body = session.send(url, limit=MAX_ANSWER)
    data = json_body(body)
    if response.status_code != 200 or not isinstance(data, dict):
        raise IdPError(f"{url} answered HTTP {response.status_code}", "check sso_issuer: is it the IdP's issuer URL?")
    return data


def discover(session: Session, issuer: str) -> Provider:
    """The IdP's discovery document, checked: its issuer must be the one asked for, endpoints https."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    data = get_json(session, url)
    try:
        provider = Provider(data)
        urls = [provider.token, provider.jwks_uri, provider.authorization, provider.device, provider.revocation]
        assert all(isinstance(u, str) for u in urls) and isinstance(provider.issuer, str)
    except (KeyError, AssertionError):
        raise IdPError(f"{url} is not an OpenID discovery document (no issuer, token_endpoint or jwks_uri)") from None
    if provider.issuer.rstrip("/") != issuer.rstrip("/"):
        raise IdPError(f"{url} names another issuer ({provider.issuer})", "set sso_issuer to the IdP's own issuer URL")
    for found in urls:
        if found and not found.startswith("https://"):
            raise IdPError(f"the identity provider's endpoint {found} is not https: refused")
    return provider


def post(session: Session, url: str, form: dict[str, str]) -> dict[str, Any]:
    """A form POST to one of the IdP's endpoints: its JSON answer, or its OAuth error raised (RFC 6749
    5.2): `invalid_grant` is a session that is over; the rest are the IdP's refusals."""
    response, body = session.send(url, method="POST", data=form, limit=MAX_ANSWER)
    data = json_body(body)
    if response.status_code == 200 and isinstance(data, dict):
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if response.status_code == 400 and isinstance(error, str):
        raise OAuthError(error, str(data.get("error_description") or "")[:200])
    if response.status_code >= 500:
        raise Unreachable(f"the identity provider {session.key} is failing: HTTP {response.status_code}")
    detail = f": {error}" if isinstance(error, str) else ""
    raise IdPError(f"the identity provider {session.key} answered HTTP {response.status_code}{detail}")


class OAuthError(IdPError):
    """An OAuth error answer (`error`, `error_description`): the flows read `error` (RFC 8628 polling)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"the identity provider refused: {error}" + (f" ({description})" if description else ""))
        self.error = error


def expired(key: str, why: str = "") -> SessionExpired:
    return SessionExpired(f"{key}: SSO session expired{why}", f"run quay-cred-helper login {key} --sso")

"""Errors a user sees: one line each, classified by type, carrying their fix.

`str(error)` is the line printed (the problem, then ": " and the fix when
there is one); doctor and the troubleshooting guide read `problem` and `fix`
separately. No message ever contains a secret.

    HelperError (problem, fix)
    +-- InputError          malformed input from a client, the kubelet or a user
    +-- NotFound            nothing stored: the exact text clients match
    +-- ConfigError         our config file (or a file it names) cannot be used
    +-- SourceError         a token the job holds (OIDC, or a robot's) cannot be had from its source
    +-- SessionExpired      the SSO session is over (refresh token revoked, expired or gone): log in again
    +-- KeyringError        the keyring is missing, refused or not answering
    |   +-- KeyringLocked   ... or locked (we never prompt)
    +-- RegistryError       the registry refused us or answered nonsense
        +-- IdPError            the identity provider (SSO) refused us or answered nonsense
        +-- FederationRefused   Quay refused the OIDC token for the robot
        +-- ApiRefused          Quay's API refused the call (4xx): the token, its scope, the robot; nothing changed
        +-- TLSError            the certificate could not be verified
        +-- Unreachable         connection, DNS, timeout, 5xx after retries
            +-- DeadlineExceeded    the command's whole budget ran out
"""

from __future__ import annotations

_CONTROLS: dict[int, str] = {}  # built on first use: only error paths need it


def printable(text: str) -> str:
    """`text` with every control character (C0, DEL, C1) shown as \\xNN: ESC sequences and newlines
    from a server reach a terminal inert, and one error stays one line."""
    if not _CONTROLS:
        _CONTROLS.update({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))})
    return text.translate(_CONTROLS)


class HelperError(Exception):
    """An error with a message fit to print as it is."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(f"{problem}: {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


class InputError(HelperError):
    """Malformed input from a client or a user."""


class NotFound(HelperError):
    """No credentials stored for a registry."""

    # Clients (docker, podman, skopeo, oras, docker-py) match this exact text
    # and then carry on anonymously; any other text makes their pull fail.
    MESSAGE = "credentials not found in native keychain"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class ConfigError(HelperError):
    """Our own config file cannot be used."""


class SourceError(HelperError):
    """A token the job or pod holds (an OIDC token, or a robot token in a variable or file) cannot be had from
    its source (never "not found": the client would go on anonymously)."""


class SessionExpired(HelperError):
    """The SSO session is over: its refresh token was refused, revoked, or is gone."""


class KeyringError(HelperError):
    """The keyring backend is missing, locked, refused or not answering."""


class KeyringLocked(KeyringError):
    """The keyring is locked and we never prompt."""


class RegistryError(HelperError):
    """The registry or its token endpoint refused us or answered nonsense."""


class IdPError(RegistryError):
    """The identity provider behind an SSO login refused us or answered nonsense."""


class FederationRefused(RegistryError):
    """Quay refused the OIDC token for the robot."""


class ApiRefused(RegistryError):
    """Quay's REST API answered 4xx: the OAuth token, its scopes or the robot are wrong, and nothing changed."""


class TLSError(RegistryError):
    """The registry's certificate could not be verified."""


class Unreachable(RegistryError):
    """The registry could not be reached (connection, DNS, timeout, 5xx after retries)."""


class DeadlineExceeded(Unreachable):
    """A command's whole budget for talking to a registry ran out."""

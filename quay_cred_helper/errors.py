"""Exceptions whose message is the one line a user sees."""


class HelperError(Exception):
    """An error with a message fit to print as it is (never containing a secret)."""


class InputError(HelperError):
    """Malformed input from a client or a user."""


class NotFound(HelperError):
    """No credentials stored for a registry."""

    # Clients (docker, podman, skopeo, oras, docker-py) match this exact text
    # and then carry on anonymously; any other text makes their pull fail.
    MESSAGE = "credentials not found in native keychain"

    def __init__(self):
        super().__init__(self.MESSAGE)


class KeyringError(HelperError):
    """The keyring backend is missing, locked, refused or not answering."""


class RegistryError(HelperError):
    """The registry or its token endpoint refused us or answered nonsense."""


class Unreachable(RegistryError):
    """The registry could not be reached (connection, DNS, timeout, 5xx after retries)."""

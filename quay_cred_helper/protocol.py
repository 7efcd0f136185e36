"""The docker-credential-helpers protocol as one pure function.

`serve(store, verb, stdin, stdout)` reads bytes from stdin, writes text to
stdout, and raises HelperError whose message the entry point prints on stdout
(clients show stdout, not stderr) before exiting 1. The store is anything
that meets the `Store` Protocol below. An erase of nothing succeeds, whatever the store.
"""

from __future__ import annotations

from quay_cred_helper import fastjson
from quay_cred_helper.errors import InputError, NotFound
from quay_cred_helper.names import registry_key

TYPE_CHECKING = False
if TYPE_CHECKING:  # a type for mypy only: `typing` costs as much as the interpreter's start
    from typing import BinaryIO, Protocol, TextIO

    class Store(Protocol):
        """A credential store, as in docker-credential-helpers: four methods, keyed by registry key.

        `get` and `delete` raise errors.NotFound when nothing is stored under the key; `server` is the
        name the client used, which `list` shows. tests/test_contracts.py runs one suite on each."""

        def add(self, key: str, server: str, username: str, secret: str) -> None: ...

        def get(self, key: str) -> tuple[str, str]: ...

        def delete(self, key: str) -> None: ...

        def list(self) -> dict[str, str]: ...

    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.store import HelperStore

    # Conformance, checked by mypy, free at run time: each implementation is a Store.
    def _keyring_store(store: KeyringStore) -> Store:
        return store

    def _helper_store(store: HelperStore) -> Store:
        return store


MAX_INPUT = 1 << 20  # 1 MiB: a credential or a kubelet's request is a few KiB at most, even with a JWT


def read_text(stdin: BinaryIO) -> str:
    return bounded_text(stdin.read(MAX_INPUT + 1), "input")


def bounded_text(data: bytes, what: str) -> str:
    """What a front door read from stdin (at most MAX_INPUT + 1 bytes), as text: the helper's `input` and
    the kubelet's `request` (kubelet/protocol.py) alike; an InputError when over MAX_INPUT or not UTF-8."""
    if len(data) > MAX_INPUT:
        raise InputError(f"{what} too large: more than 1 MiB on stdin")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} is not valid UTF-8") from None


def parse_credentials(text: str) -> tuple[str, str, str]:
    """Parse store's JSON object; returns (server, username, secret)."""
    try:
        obj = fastjson.loads(text)
    except ValueError as exc:
        raise InputError(f"invalid JSON on stdin: {exc}") from None
    if not isinstance(obj, dict):
        raise InputError("invalid credentials: expected a JSON object with ServerURL, Username and Secret")
    fields = []
    for name in ("ServerURL", "Username", "Secret"):
        value = obj.get(name, "")
        if not isinstance(value, str):
            raise InputError(f"invalid credentials: {name} must be a string")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate ("\ud800") parses, but no keyring can hold it
                raise InputError(f"invalid credentials: {name} is not valid Unicode") from None
        fields.append(value)
    server, username, secret = fields
    if not server.strip():
        raise InputError("no credentials server URL")
    if not username:
        raise InputError("no credentials username")
    return server.strip(), username, secret


def _lookup_key(server: str) -> str:
    # A name that cannot be a registry can have no credentials stored.
    try:
        return registry_key(server)
    except InputError:
        if not server.strip():
            raise
        raise NotFound() from None


def serve(store: Store, verb: str, stdin: BinaryIO, stdout: TextIO) -> None:
    if verb == "list":
        # Never read stdin here: docker-py sends none, and it may be a terminal.
        stdout.write(fastjson.dumps_strings(store.list()) + "\n")
    elif verb == "store":
        server, username, secret = parse_credentials(read_text(stdin))
        store.add(registry_key(server), server, username, secret)
    elif verb == "get":
        server = read_text(stdin).strip()
        username, secret = store.get(_lookup_key(server))
        stdout.write(fastjson.dumps_strings({"ServerURL": server, "Username": username, "Secret": secret}) + "\n")
    elif verb == "erase":
        # Erasing what is not there succeeds, as Debian's docker-credential-secretservice answers: on
        # "not found", podman 4.3.1 crashes (`podman logout REG`) or exits 125 (`podman logout --all`).
        try:
            store.delete(_lookup_key(read_text(stdin)))
        except NotFound:
            return
    else:
        raise InputError(f"unknown verb: {verb}")

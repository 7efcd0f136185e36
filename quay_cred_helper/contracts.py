"""The seams between packages, as types mypy checks (and tests/test_contracts.py runs against every implementation).

Never imported at run time by the hot paths (`typing` costs as much as the
interpreter's start): they name these types under `if TYPE_CHECKING`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from quay_cred_helper.registry.cache import Token
from quay_cred_helper.registry.challenge import Challenge


class Store(Protocol):
    """A credential store, as in docker-credential-helpers: four methods, keyed by registry key.

    `get` and `delete` raise errors.NotFound when nothing is stored under the
    key; `server` is the name the client used, which `list` shows."""

    def add(self, key: str, server: str, username: str, secret: str) -> None: ...

    def get(self, key: str) -> tuple[str, str]: ...

    def delete(self, key: str) -> None: ...

    def list(self) -> dict[str, str]: ...


class TokenCache(Protocol):
    """Where bearer tokens and registries' challenges are kept between runs.

    `load` hands out only tokens that are still fresh; `lock` is held around a
    fetch so that concurrent cold calls for one token make one request."""

    def load(self, key: str, identity: str, scopes: Sequence[str]) -> Token | None: ...

    def save(self, key: str, identity: str, scopes: Sequence[str], token: Token) -> None: ...

    def lock(self, key: str, identity: str, scopes: Sequence[str]) -> AbstractContextManager[object]: ...

    def load_challenge(self, key: str) -> Challenge | None: ...

    def save_challenge(self, key: str, challenge: Challenge) -> None: ...

    def forget_challenge(self, key: str) -> None: ...

    def drop(self, key: str) -> None: ...

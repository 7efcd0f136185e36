"""The index: which registries have credentials, and under which username.

`list` must answer without opening the keyring (docker runs it on every
build), and a robot's cached token must be found without it either, so the
non-secret half of each credential is kept here, in a 0600 JSON file.
"""

from __future__ import annotations

import os

from quay_cred_helper import files

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
ANONYMOUS = "anonymous"  # the identity of token requests made without credentials


def fingerprint(username: str, secret: str, salt: str) -> str:
    """A salted, slow fingerprint of a credential.

    Token-cache keys include it so a new password never gets an old token. It
    is computed when storing, so reading the cache needs no keyring; the slow
    hash keeps a stolen index from being a cheap password oracle.
    """
    import hashlib  # only when storing: about 2 ms of OpenSSL loading

    material = username.encode() + b"\0" + secret.encode()
    return hashlib.pbkdf2_hmac("sha256", material, bytes.fromhex(salt), 50_000).hex()[:32]


def app_token_expiry(record: dict[str, str], now: float) -> tuple[int, bool]:
    """(when an app token's record says it ends, 0 for never; whether it is due for renewal: in the
    last tenth of its life, the window Quay's GET /api/v1/user/apptoken?expiring=true uses)."""
    created, expires = record.get("created", ""), record.get("expires", "")
    if not expires.isdigit():
        return 0, False
    life = int(expires) - int(created) if created.isdigit() else 0
    return int(expires), now >= int(expires) - 0.1 * life


class IndexEntry:
    """The non-secret half of a stored credential (a plain class: `list` and `get` read it).

    A keyless robot has no secret at all: `oidc` names where its OIDC token comes from. Neither has a
    robot whose token the job holds (`login --token-from`): `token_from` names where, `env:NAME` or
    `file:PATH`. Both fields are absent from entries without them, as in indexes written before.
    `stored` is when the secret was first stored (Unix time; 0: unknown, an entry from before ages
    were kept). An SSO login (`login --sso`) has `sso`: the issuer, client, subject and Quay user, and
    when the IdP said its refresh token ends (never a secret); its `identity` is the ID token's cache
    identity, and the keyring holds only the refresh token (sso/session.py). An app token made at an SSO
    login (`login --sso --app-token`) is an ordinary `$app` entry plus `app_token`: the SSO session it
    came from, its uuid at Quay and its expiry (never the token; sso/apptoken.py)."""

    __slots__ = (
        "server",
        "username",
        "salt",
        "identity",
        "oidc",
        "audience",
        "stored",
        "token_from",
        "sso",
        "app_token",
    )

    def __init__(
        self,
        server: str,
        username: str,
        salt: str,
        identity: str,
        oidc: str = "",
        audience: str = "",
        stored: float = 0.0,
        token_from: str = "",
        sso: dict[str, str] | None = None,
        app_token: dict[str, str] | None = None,
    ) -> None:
        self.server, self.username, self.salt, self.identity = server, username, salt, identity
        self.oidc, self.audience, self.stored, self.token_from = oidc, audience, stored, token_from
        self.sso, self.app_token = sso, app_token

    @classmethod
    def new(cls, server: str, username: str, secret: str, previous: IndexEntry | None = None) -> IndexEntry:
        """The entry for a secret being stored. The same secret stored again (`docker login` every
        morning) keeps its age: it is as old as it was."""
        import time  # builtin: only when storing

        same = previous is not None and previous.stored and previous.username == username and previous.salt
        if previous is not None and same and fingerprint(username, secret, previous.salt) == previous.identity:
            return cls(server, username, previous.salt, previous.identity, stored=previous.stored)
        salt = os.urandom(16).hex()
        return cls(server, username, salt, fingerprint(username, secret, salt), stored=float(int(time.time())))

    @classmethod
    def from_json(cls, data: object) -> IndexEntry | None:
        if not isinstance(data, dict) or not isinstance(data.get("username"), str):
            return None
        fields = [data.get(name) for name in ("server", "salt", "identity", "oidc", "audience", "token_from")]
        server, salt, fingerprint, oidc, audience, token_from = (v if isinstance(v, str) else "" for v in fields)
        stored = data.get("stored")
        # Entries written before ages were kept have none; a value that is not a time is as good as none.
        if isinstance(stored, bool) or not isinstance(stored, (int, float)) or not 0 < stored < 1e11:
            stored = 0.0
        sso = data.get("sso")
        sso = {k: v for k, v in sso.items() if isinstance(v, str)} if isinstance(sso, dict) else {}
        sso_login = sso if sso.get("issuer") else None  # an SSO login's record, never a secret
        app = data.get("app_token")
        app = {k: v for k, v in app.items() if isinstance(v, str)} if isinstance(app, dict) else {}
        app_token = app if app.get("uuid") else None  # an app token's record, never the token
        username = data["username"]
        return cls(server, username, salt, fingerprint, oidc, audience, float(stored), token_from, sso_login, app_token)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "server": self.server,
            "username": self.username,
            "salt": self.salt,
            "identity": self.identity,
        }
        if self.oidc:
            data.update(oidc=self.oidc, audience=self.audience)
        if self.stored:
            data["stored"] = int(self.stored)
        if self.token_from:
            data.update(token_from=self.token_from)
        if self.sso:
            data.update(sso=self.sso)
        if self.app_token:
            data.update(app_token=self.app_token)
        return data


class Index:
    def __init__(self, path: str) -> None:
        self.path = path

    def entries(self) -> dict[str, IndexEntry]:
        """{key: entry}; empty if missing or corrupt, and entries that are not ours are skipped."""
        data = files.read_json(self.path)
        if not data or data.get("version") != VERSION:
            return {}
        raw = data.get("registries")
        if not isinstance(raw, dict):
            return {}
        entries = {}
        for key, value in raw.items():
            entry = IndexEntry.from_json(value)
            if entry is not None:
                entries[key] = entry
        return entries

    def servers(self) -> dict[str, str]:
        """{server as the client named it: username}: what `list` answers."""
        return {entry.server or key: entry.username for key, entry in self.entries().items()}

    def get(self, key: str) -> IndexEntry | None:
        return self.entries().get(key)

    def lock(self) -> files.Lock:
        """Held around every change, and around the keyring write that goes with it, so that
        concurrent stores and erases can neither lose an entry nor leave index and keyring apart."""
        files.private_dir(os.path.dirname(self.path))
        return files.Lock(self.path + ".lock")

    def put(self, key: str, entry: IndexEntry) -> None:
        """Call with lock() held."""
        self._write(dict(self.entries(), **{key: entry}))

    def remove(self, key: str) -> None:
        """Call with lock() held."""
        entries = self.entries()
        entries.pop(key, None)
        self._write(entries)

    def _write(self, entries: dict[str, IndexEntry]) -> None:
        data: dict[str, Any] = {"version": VERSION, "registries": {k: e.to_json() for k, e in entries.items()}}
        files.write_json(self.path, data)

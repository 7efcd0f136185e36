"""The keyring backend: keyring's own choice, minus the unsafe ones, with a deadline.

keyring picks a backend from PYTHON_KEYRING_BACKEND, keyringrc.cfg or the
platform. We honour that choice but refuse backends that store secrets in
plaintext unless the user opted in, never let a locked keyring pop up an
unlock prompt, and give up on a backend that does not answer in time.
keyring is imported only when a backend is really needed: `list` and a
cached `get` never are.
"""

from __future__ import annotations

import os
import sys

from quay_cred_helper import files, log, paths
from quay_cred_helper.errors import KeyringError, KeyringLocked

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from keyring.backend import KeyringBackend

    T = TypeVar("T")

ALLOW_PLAINTEXT_ENV = "QUAY_CRED_HELPER_ALLOW_PLAINTEXT"
TIMEOUT_ENV = "QUAY_CRED_HELPER_KEYRING_TIMEOUT"
DEFAULT_TIMEOUT = 4.0  # seconds; below the 5 s we promise for any keyring failure
SECRET_SERVICE = "keyring.backends.SecretService.Keyring"
# Windows Credential Manager (keyring's WinVaultKeyring) holds at most CRED_MAX_CREDENTIAL_BLOB_SIZE
# (wincred.h: 5 * 512) bytes per secret, and keyring writes the secret as UTF-16: about 1,280
# characters. CredWrite refuses more with "The stub received bad data" (docker-credential-helpers#190).
WINDOWS_CREDENTIAL_MANAGER = "keyring.backends.Windows.WinVaultKeyring"
WINDOWS_MAX_BYTES = 2560

_UNUSABLE = {"keyring.backends.fail", "keyring.backends.null"}
# What answers keyring here, for the fixes of a backend that does not (the Windows tier under Wine showed
# the Secret Service named on Windows).
if sys.platform == "win32":
    BACKEND_SERVICE = "the Credential Manager (the Windows service VaultSvc)"
elif sys.platform == "darwin":
    BACKEND_SERVICE = "the login keychain"
else:
    BACKEND_SERVICE = "the Secret Service (D-Bus session, gnome-keyring)"
_LOCKED_FIX = "unlock it (log in to the desktop session, or run gnome-keyring-daemon --unlock) and retry"


def timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def is_plaintext(backend: object) -> bool:
    # keyrings.alt exists to hold the backends keyring considers unsafe
    # (plaintext files, the Windows registry, ...).
    cls = type(backend)
    return cls.__module__.startswith("keyrings.alt") or "plaintext" in cls.__name__.lower()


def name(backend: object) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__name__}"


def is_windows_credential_manager(backend: object) -> bool:
    # By the class's lineage, not an import: keyring.backends.Windows loads pywin32 where it exists.
    return any(f"{cls.__module__}.{cls.__qualname__}" == WINDOWS_CREDENTIAL_MANAGER for cls in type(backend).__mro__)


def check_fits(backend: object, what: str, password: str) -> None:
    """A KeyringError, before anything is written, when `backend` cannot hold `password`."""
    size = len(password.encode("utf-16-le"))
    if is_windows_credential_manager(backend) and size > WINDOWS_MAX_BYTES:
        raise KeyringError(
            f"the credential for {what} is {size} bytes as Windows Credential Manager stores it (UTF-16), "
            f"over its limit of {WINDOWS_MAX_BYTES}: nothing was stored",
            "store a shorter secret (a password or robot token rather than a long token), "
            "or choose another keyring backend with PYTHON_KEYRING_BACKEND",
        )


def _no_unlock_prompts() -> None:
    # keyring's Secret Service backend calls unlock() on a locked collection,
    # which shows a desktop prompt (or waits for one). A credential helper runs
    # behind docker or podman where nobody can answer: make unlock() a no-op so
    # keyring raises KeyringLocked at once instead.
    import secretstorage

    def stay_locked(self: object, *args: object, **kwargs: object) -> bool:
        return False

    secretstorage.Collection.unlock = stay_locked  # type: ignore[method-assign]
    secretstorage.Item.unlock = stay_locked  # type: ignore[method-assign]


def _selection(backend_name: str) -> tuple[str, dict[str, object]]:
    """(file, record): where the choice is remembered, and the record of choosing `backend_name`
    under what keyring's choice depends on besides the machine (its env variable and config files)."""
    home = os.path.expanduser("~")
    stamps: list[int | None] = []
    for root, default in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share")):
        path = os.path.join(os.environ.get(root) or os.path.join(home, default), "python_keyring", "keyringrc.cfg")
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(None)
    record: dict[str, object] = {
        "backend": backend_name,
        "env": os.environ.get("PYTHON_KEYRING_BACKEND", ""),
        "keyringrc": stamps,
    }
    return os.path.join(paths.cache_dir(), "backend.json"), record


def _remember(backend: object) -> None:
    """Note which backend keyring chose, so the next `get` can read without importing keyring."""
    path, record = _selection(name(backend))
    try:
        if files.read_json(path) != record:
            files.private_dir(os.path.dirname(path))
            files.write_json(path, record)
    except OSError:
        pass  # only an optimisation


def remembered_secret_service() -> bool:
    """True when keyring chose the Secret Service last time, under the same env and config."""
    path, record = _selection(SECRET_SERVICE)
    return files.read_json(path) == record


def _fast_read_agrees() -> bool:
    """The fast read looks where keyring's Secret Service backend looks by default; KEYRING_PROPERTY_*
    (scheme, preferred collection) makes keyring look elsewhere, so then keyring answers itself.
    Linux only: elsewhere (macOS Keychain, Windows Credential Locker) keyring always answers."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(name.startswith("KEYRING_PROPERTY_") for name in os.environ) and remembered_secret_service()


def _load_modules() -> None:
    # Importing keyring (and secretstorage, cryptography behind it) is CPU work
    # that can take seconds on a loaded machine; it cannot hang, so it happens
    # before the deadline starts. Backend detection, which talks to D-Bus, runs
    # under the deadline.
    import contextlib

    import keyring  # noqa: F401

    with contextlib.suppress(ImportError):
        import secretstorage  # noqa: F401


def _resolve() -> KeyringBackend:
    import keyring

    chosen = keyring.get_keyring()
    # The chainer tries its backends in turn; a failing Secret Service would
    # then silently fall through to a plaintext file. Use the first safe one.
    candidates: list[KeyringBackend] = list(getattr(chosen, "backends", None) or [chosen])
    usable = [b for b in candidates if type(b).__module__ not in _UNUSABLE]
    if not usable:
        raise KeyringError(
            "no keyring backend available",
            "start a Secret Service (e.g. gnome-keyring) or choose one with PYTHON_KEYRING_BACKEND",
        )
    allow_plaintext = os.environ.get(ALLOW_PLAINTEXT_ENV) == "1"
    safe = [b for b in usable if allow_plaintext or not is_plaintext(b)]
    if not safe:
        raise KeyringError(
            f"refusing plaintext keyring backend {name(usable[0])}",
            f"use a secure backend, or set {ALLOW_PLAINTEXT_ENV}=1 to accept it",
        )
    backend = safe[0]
    if type(backend).__module__ == "keyring.backends.SecretService":
        _no_unlock_prompts()
    _remember(backend)
    log.debug("keyring backend: %s", name(backend))
    return backend


def _exception_classes(*names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of keyring and secretstorage, by import path; missing modules give none."""
    import importlib

    found: list[type[BaseException]] = []
    for dotted in names:
        module, _, attribute = dotted.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def classify(exc: BaseException) -> KeyringError:
    """The KeyringError for an exception keyring (or secretstorage under it) raised, by its type."""
    if isinstance(exc, KeyringError):
        return exc
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
    if isinstance(exc, _exception_classes("keyring.errors.KeyringLocked", "secretstorage.exceptions.LockedException")):
        return KeyringLocked("keyring is locked", _LOCKED_FIX)
    if isinstance(exc, TimeoutError):
        return KeyringError(
            f"keyring backend did not answer ({first_line})", f"check that {BACKEND_SERVICE} is running"
        )
    if isinstance(exc, _exception_classes("keyring.errors.NoKeyringError", "keyring.errors.InitError")):
        return KeyringError(f"no keyring backend available ({first_line})", "choose one with PYTHON_KEYRING_BACKEND")
    cls = type(exc).__name__
    return KeyringError(
        f"keyring backend failed: {cls}: {first_line}" if first_line else f"keyring backend failed: {cls}"
    )


def _vanished(exc: BaseException) -> bool:
    # Secret Service: the item was found, then erased by another process before
    # its secret was read. It is gone: that is "not found", not a keyring failure.
    return isinstance(exc, _exception_classes("secretstorage.exceptions.ItemNotFoundException"))


def _get_password(backend: KeyringBackend, service: str, username: str) -> str | None:
    try:
        return backend.get_password(service, username)
    except Exception as exc:
        if _vanished(exc):
            return None
        raise


def _delete_password(backend: KeyringBackend, service: str, username: str) -> bool:
    """Delete an entry; False if there was none (or another process deleted it first)."""
    if _get_password(backend, service, username) is None:
        return False
    try:
        backend.delete_password(service, username)
    except Exception as exc:
        if _vanished(exc) or isinstance(exc, _exception_classes("keyring.errors.PasswordDeleteError")):
            return False
        raise
    return True


class Keyring:
    """Runs keyring calls against the resolved backend, each within the deadline."""

    def __init__(self, fast_read: Callable[[str, str], str | None] | None = None) -> None:
        self._backend: KeyringBackend | None = None
        self._fast_read = fast_read

    def backend(self) -> KeyringBackend:
        if self._backend is None:
            _load_modules()
            self._backend = self._call(_resolve)
        return self._backend

    def get(self, service: str, username: str) -> str | None:
        if self._backend is None and self._fast_read is not None and _fast_read_agrees():
            value = self._fast_read(service, username)
            if value is not None:
                return value
        return self._call(_get_password, self.backend(), service, username)

    def set(self, service: str, username: str, password: str) -> None:
        backend = self.backend()
        check_fits(backend, username, password)
        self._call(backend.set_password, service, username, password)

    def delete(self, service: str, username: str) -> bool:
        """Delete an entry; False if there was none."""
        return self._call(_delete_password, self.backend(), service, username)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        import threading  # not at module level: `list` and cached `get` never get here

        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["value"] = fn(*args)
            except BaseException as exc:  # reported in the caller's thread
                result["error"] = exc

        # A daemon thread: a D-Bus call that never returns must not keep the
        # process alive after we report the timeout and exit.
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout())
        if worker.is_alive():
            raise KeyringError(
                f"keyring backend did not answer within {timeout():g} s",
                f"check that {BACKEND_SERVICE} is running, or choose another backend with PYTHON_KEYRING_BACKEND",
            )
        if "error" in result:
            raise classify(result["error"]) from None
        value: T = result["value"]
        return value

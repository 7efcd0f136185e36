"""The keyring backend: keyring's own choice, minus the unsafe ones, with a deadline.

keyring picks a backend from PYTHON_KEYRING_BACKEND, keyringrc.cfg or the
platform. We honour that choice but refuse backends that store secrets in
plaintext unless the user opted in, never let a locked keyring pop up an
unlock prompt, and give up on a backend that does not answer in time.
"""

import os

from quay_cred_helper.errors import KeyringError

ALLOW_PLAINTEXT_ENV = "QUAY_CRED_HELPER_ALLOW_PLAINTEXT"
TIMEOUT_ENV = "QUAY_CRED_HELPER_KEYRING_TIMEOUT"
DEFAULT_TIMEOUT = 4.0  # seconds; below the 5 s we promise for any keyring failure

_UNUSABLE = {"keyring.backends.fail", "keyring.backends.null"}


def _timeout():
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def is_plaintext(backend):
    # keyrings.alt exists to hold the backends keyring considers unsafe
    # (plaintext files, the Windows registry, ...).
    cls = type(backend)
    return cls.__module__.startswith("keyrings.alt") or "plaintext" in cls.__name__.lower()


def name(backend):
    cls = type(backend)
    return f"{cls.__module__}.{cls.__name__}"


def _no_unlock_prompts():
    # keyring's Secret Service backend calls unlock() on a locked collection,
    # which shows a desktop prompt (or waits for one). A credential helper runs
    # behind docker or podman where nobody can answer: make unlock() a no-op so
    # keyring raises KeyringLocked at once instead.
    import secretstorage

    def stay_locked(self, *args, **kwargs):
        return False

    secretstorage.Collection.unlock = stay_locked
    secretstorage.Item.unlock = stay_locked


SECRET_SERVICE = "keyring.backends.SecretService.Keyring"


def _selection(backend_name):
    """(file, record): where the choice is remembered, and the record of choosing `backend_name`
    under what keyring's choice depends on besides the machine (its env variable and config files)."""
    from quay_cred_helper import paths

    home = os.path.expanduser("~")
    stamps = []
    for root, default in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share")):
        path = os.path.join(os.environ.get(root) or os.path.join(home, default), "python_keyring", "keyringrc.cfg")
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(None)
    record = {"backend": backend_name, "env": os.environ.get("PYTHON_KEYRING_BACKEND", ""), "keyringrc": stamps}
    return os.path.join(paths.cache_dir(), "backend.json"), record


def _remember(backend):
    """Note which backend keyring chose, so the next `get` can read without importing keyring."""
    from quay_cred_helper import files

    path, record = _selection(name(backend))
    try:
        if files.read_json(path) != record:
            files.private_dir(os.path.dirname(path))
            files.write_json(path, record)
    except OSError:
        pass  # only an optimisation


def remembered_secret_service():
    """True when keyring chose the Secret Service last time, under the same env and config."""
    from quay_cred_helper import files

    path, record = _selection(SECRET_SERVICE)
    return files.read_json(path) == record


def _load_modules():
    # Importing keyring (and secretstorage, cryptography behind it) is CPU work
    # that can take seconds on a loaded machine; it cannot hang, so it happens
    # before the deadline starts. Backend detection, which talks to D-Bus, runs
    # under the deadline.
    import contextlib

    import keyring  # noqa: F401

    with contextlib.suppress(ImportError):
        import secretstorage  # noqa: F401


def _resolve():
    import keyring

    chosen = keyring.get_keyring()
    # The chainer tries its backends in turn; a failing Secret Service would
    # then silently fall through to a plaintext file. Use the first safe one.
    candidates = list(getattr(chosen, "backends", None) or [chosen])
    usable = [b for b in candidates if type(b).__module__ not in _UNUSABLE]
    if not usable:
        raise KeyringError(
            "no keyring backend available: start a Secret Service (e.g. gnome-keyring) "
            "or choose one with PYTHON_KEYRING_BACKEND"
        )
    allow_plaintext = os.environ.get(ALLOW_PLAINTEXT_ENV) == "1"
    safe = [b for b in usable if allow_plaintext or not is_plaintext(b)]
    if not safe:
        raise KeyringError(
            f"refusing plaintext keyring backend {name(usable[0])}: use a secure backend, "
            f"or set {ALLOW_PLAINTEXT_ENV}=1 to accept it"
        )
    backend = safe[0]
    if type(backend).__module__ == "keyring.backends.SecretService":
        _no_unlock_prompts()
    _remember(backend)
    from quay_cred_helper import log

    log.debug("keyring backend: %s", name(backend))
    return backend


def _describe(exc):
    cls = type(exc).__name__
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
    if cls == "KeyringLocked":
        return (
            "keyring is locked: unlock it (log in to the desktop session, or run "
            "gnome-keyring-daemon --unlock) and retry"
        )
    if isinstance(exc, TimeoutError):
        return f"keyring backend did not answer ({first_line}): check that the Secret Service is running"
    if cls in ("NoKeyringError", "InitError"):
        return f"no keyring backend available ({first_line}): choose one with PYTHON_KEYRING_BACKEND"
    return f"keyring backend failed: {cls}: {first_line}" if first_line else f"keyring backend failed: {cls}"


def _get_password(backend, service, username):
    try:
        return backend.get_password(service, username)
    except Exception as exc:
        # Secret Service: the item was found, then erased by another process before
        # its secret was read. It is gone: that is "not found", not a keyring failure.
        if type(exc).__name__ == "ItemNotFoundException":
            return None
        raise


class Keyring:
    """Runs keyring calls against the resolved backend, each within the deadline."""

    def __init__(self):
        self._backend = None

    def backend(self):
        if self._backend is None:
            _load_modules()
            self._backend = self._call(_resolve)
        return self._backend

    def get(self, service, username):
        if self._backend is None and remembered_secret_service():
            from quay_cred_helper import secretservice

            value = secretservice.read(service, username)
            if value is not None:
                return value
        backend = self.backend()
        return self._call(_get_password, backend, service, username)

    def set(self, service, username, password):
        backend = self.backend()
        self._call(backend.set_password, service, username, password)

    def delete(self, service, username):
        """Delete an entry; False if there was none."""
        backend = self.backend()
        if self._call(backend.get_password, service, username) is None:
            return False
        self._call(backend.delete_password, service, username)
        return True

    def _call(self, fn, *args):
        import threading  # not at module level: `list` and cached `get` never get here

        result = {}

        def run():
            try:
                result["value"] = fn(*args)
            except BaseException as exc:  # reported in the caller's thread
                result["error"] = exc

        # A daemon thread: a D-Bus call that never returns must not keep the
        # process alive after we report the timeout and exit.
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(_timeout())
        if worker.is_alive():
            raise KeyringError(
                f"keyring backend did not answer within {_timeout():g} s: check that the "
                "Secret Service (D-Bus session, gnome-keyring) is running, or choose another "
                "backend with PYTHON_KEYRING_BACKEND"
            )
        if "error" in result:
            exc = result["error"]
            if isinstance(exc, KeyringError):
                raise exc
            raise KeyringError(_describe(exc)) from None
        return result.get("value")

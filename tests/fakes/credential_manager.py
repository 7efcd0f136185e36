"""keyring's own Windows backend, with Windows Credential Manager's API emulated in a file.

Selected with PYTHON_KEYRING_BACKEND=tests.fakes.credential_manager.WinVaultKeyring. It subclasses
keyring.backends.Windows.WinVaultKeyring, so keyring's real logic runs (targets, compound names for
a second user, UTF-16 decoding); only the three calls into win32cred are replaced. The emulated
CredWrite refuses a blob over CRED_MAX_CREDENTIAL_BLOB_SIZE (2,560 bytes) the way Windows does,
with error 1783 "The stub received bad data", and pywin32 encodes the secret as UTF-16 as here.
The credentials live in ~/credential-manager.json (the test's isolated HOME).
"""

import base64
import json
import os

from keyring.backends.Windows import DecodingCredential
from keyring.backends.Windows import WinVaultKeyring as RealWinVaultKeyring

CRED_MAX_CREDENTIAL_BLOB_SIZE = 5 * 512


class CredentialError(Exception):
    """Shaped like pywintypes.error: (winerror, funcname, strerror)."""

    def __init__(self, winerror, funcname, strerror):
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


def _store_path():
    return os.path.join(os.path.expanduser("~"), "credential-manager.json")


def _load():
    try:
        with open(_store_path()) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _save(data):
    with open(_store_path(), "w") as f:
        json.dump(data, f)


class WinVaultKeyring(RealWinVaultKeyring):
    priority = 1  # the real one raises "Requires Windows and pywin32" here

    def _read_credential(self, target):
        found = _load().get(target)
        if found is None:
            return None  # CredRead's "not found" (1168), as the real method answers it
        return DecodingCredential(UserName=found["UserName"], CredentialBlob=base64.b64decode(found["blob"]))

    def _set_password(self, target, username, password):
        blob = password.encode("utf-16-le")  # pywin32(-ctypes): a wide-character buffer, no terminator
        if len(blob) > CRED_MAX_CREDENTIAL_BLOB_SIZE:
            raise CredentialError(1783, "CredWrite", "The stub received bad data.")
        data = _load()
        data[target] = {"UserName": username, "blob": base64.b64encode(blob).decode()}
        _save(data)

    def _delete_password(self, target):
        data = _load()
        data.pop(target, None)
        _save(data)

"""A keyring backend that fails, selected with PYTHON_KEYRING_BACKEND=tests.raising_keyring.Raising."""

from keyring.backend import KeyringBackend


class Raising(KeyringBackend):
    priority = 1

    def get_password(self, service, username):
        raise RuntimeError("backend exploded")

    def set_password(self, service, username, password):
        raise RuntimeError("backend exploded")

    def delete_password(self, service, username):
        raise RuntimeError("backend exploded")

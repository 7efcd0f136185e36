"""A keyring backend that fails, selected with PYTHON_KEYRING_BACKEND=tests.fakes.raising_keyring.Raising."""

from keyring.backend import KeyringBackend


class Raising(KeyringBackend):
    priority = 1

    def get_password(self, service, username):
        raise RuntimeError("backend exploded")

    def set_password(self, service, username, password):
        raise RuntimeError("backend exploded")

    def delete_password(self, service, username):
        raise RuntimeError("backend exploded")


class Vanishing(Raising):
    """A Secret Service item erased between being found and being read."""

    def get_password(self, service, username):
        from secretstorage.exceptions import ItemNotFoundException

        raise ItemNotFoundException("Item does not exist!")


class DeletedMeanwhile(Raising):
    """An entry another process deletes between our read and our delete."""

    def get_password(self, service, username):
        return '{"username": "u", "secret": "s"}'

    def delete_password(self, service, username):
        from keyring.errors import PasswordDeleteError

        raise PasswordDeleteError("Password not found")

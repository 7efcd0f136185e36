from quay_cred_helper.errors import NotFound


class MemoryStore:
    """The four-method store, in memory: tests the protocol with no keyring."""

    def __init__(self):
        self.entries = {}

    def add(self, key, server, username, secret):
        self.entries[key] = (server, username, secret)

    def get(self, key):
        if key not in self.entries:
            raise NotFound()
        return self.entries[key][1:]

    def delete(self, key):
        if self.entries.pop(key, None) is None:
            raise NotFound()

    def list(self):
        return {server: username for server, username, _ in self.entries.values()}

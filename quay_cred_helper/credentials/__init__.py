"""Credentials at rest: the store contract, the index, the keyring backend and its fast read."""

"""Quay credential helper: registry secrets in the OS keyring, bearer tokens from /v2/auth."""

__version__ = "0.1.0"

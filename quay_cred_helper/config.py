"""Per-registry settings: an INI file in the user config dir.

    [DEFAULT]
    timeout = 10

    [quay.example.com]
    ca_bundle = /etc/pki/quay-ca.pem

Sections are registry keys (`host[:port]`); DEFAULT applies to all.
"""

import os

from quay_cred_helper import paths
from quay_cred_helper.errors import HelperError

CONFIG_ENV = "QUAY_CRED_HELPER_CONFIG"
NO_CACHE_ENV = "QUAY_CRED_HELPER_NO_CACHE"

# name: (default, parser, meaning) -- the documentation is generated from this table.
SETTINGS = {
    "timeout": ("10", float, "seconds to wait for each response from a registry"),
    "connect_timeout": ("5", float, "seconds to wait for a connection"),
    "retries": ("2", int, "retries after a connection error, 429, 502, 503 or 504 (never after 401)"),
    "ca_bundle": ("", str, "PEM file of CA certificates to trust for this registry (default: system store)"),
    "insecure_http": ("false", "bool", "allow plain http to this registry and its realm even when not on loopback"),
    "realm_hosts": ("", "list", "other hosts allowed as token realm (credentials are sent there)"),
    "robot_exchange": ("true", "bool", "`get` hands robots a one-hour JWT instead of the stored robot token"),
}


def _bool(text):
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


class Settings:
    def __init__(self, values):
        for name, (_, kind, _) in SETTINGS.items():
            raw = values.get(name, SETTINGS[name][0])
            if kind == "bool":
                value = _bool(raw)
            elif kind == "list":
                value = [item for item in raw.replace(",", " ").split() if item]
            else:
                value = kind(raw)
            setattr(self, name, value)


def config_path():
    return os.environ.get(CONFIG_ENV) or paths.config_file()


def load(key):
    """The settings for one registry key."""
    path = config_path()
    if not os.path.exists(path):
        return Settings({})
    import configparser  # only when there is a file: keeps `get` lean

    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
        values = dict(parser[key]) if parser.has_section(key) else dict(parser.defaults())
        unknown = set(values) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown setting {sorted(unknown)[0]!r}")
        return Settings(values)
    except (OSError, UnicodeDecodeError, configparser.Error, ValueError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise HelperError(f"cannot use config file {path}: {first}") from None


def cache_enabled():
    return os.environ.get(NO_CACHE_ENV, "") not in ("1", "true", "yes")

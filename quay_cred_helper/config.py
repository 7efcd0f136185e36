"""Per-registry settings: an INI file in the user config dir, read once per process.

    [DEFAULT]
    timeout = 10

    [quay.example.com]
    ca_bundle = /etc/pki/quay-ca.pem

Sections are registry keys (`host[:port]`); DEFAULT applies to all. `get`
reads settings on every call, so this module imports configparser only when
the file exists, and Settings is a plain class (dataclasses cost more than
the interpreter's own start).
"""

from __future__ import annotations

import os

from quay_cred_helper import paths
from quay_cred_helper.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

CONFIG_ENV = "QUAY_CRED_HELPER_CONFIG"
NO_CACHE_ENV = "QUAY_CRED_HELPER_NO_CACHE"


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _list(text: str) -> list[str]:
    return [item for item in text.replace(",", " ").split() if item]


# name: (default, parser, meaning) -- the documentation is checked against this table.
SETTINGS: dict[str, tuple[str, Callable[[str], object], str]] = {
    "timeout": ("10", float, "seconds to wait for each response from a registry"),
    "connect_timeout": ("5", float, "seconds to wait for a connection"),
    "retries": ("2", int, "retries after a connection error, 429, 502, 503 or 504 (never after 401)"),
    "deadline": ("30", float, "seconds one command may spend on a registry in all: connect, answers, retries"),
    "ca_bundle": ("", str, "PEM file of CA certificates to trust for this registry (default: system store)"),
    "insecure_http": ("false", _bool, "allow plain http to this registry and its realm even when not on loopback"),
    "realm_hosts": ("", _list, "other hosts allowed as token realm (credentials are sent there)"),
    "robot_exchange": ("true", _bool, "`get` hands robots a one-hour JWT instead of the stored robot token"),
    "robot": ("", str, "a keyless robot (org+name) for this registry, with `oidc`: nothing stored, no login step"),
    "oidc": (
        "",
        str,
        "where the keyless robot's OIDC token comes from: auto, github, gitlab, azure, bitbucket, circleci, "
        "buildkite, kubernetes, env:NAME or file:PATH",
    ),
    "audience": ("", str, "the audience to ask the OIDC source for (github, buildkite; gitlab's variable name)"),
    "robot_token_file": ("", str, "a file holding `robot`'s token, exchanged for one-hour JWTs (helper and provider)"),
    "robot_token_env": ("", str, "an environment variable holding `robot`'s token (a CI secret), exchanged likewise"),
    "service_account": ("false", _bool, "kubelet provider: each pod's service-account token, as the robot it names"),
}


class Settings:
    """One registry's settings, typed; build a changed copy with replace(). `file` is the config file
    they came from, so that every fix hint names the file that was really read."""

    __slots__ = (*SETTINGS, "file")
    timeout: float
    connect_timeout: float
    retries: int
    deadline: float
    ca_bundle: str
    insecure_http: bool
    realm_hosts: list[str]
    robot_exchange: bool
    robot: str
    oidc: str
    audience: str
    robot_token_file: str
    robot_token_env: str
    service_account: bool
    file: str

    def __init__(self, values: Mapping[str, str] | None = None, file: str = "") -> None:
        values = values or {}
        for name, (default, parse, _) in SETTINGS.items():
            setattr(self, name, parse(values.get(name, default)))
        self.file = file

    def replace(self, **changes: object) -> Settings:
        copy = Settings.__new__(Settings)
        for name in self.__slots__:
            setattr(copy, name, changes[name] if name in changes else getattr(self, name))
        return copy

    def where(self, setting: str, key: str) -> str:
        """Where to put `setting` for registry `key`: `setting under [key] in FILE`, FILE the one read."""
        return f"{setting} under [{key}] in {self.file or config_path()}"


class Config:
    """The config file, parsed on first use and then kept: `settings(key)` for each registry."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or config_path()
        self._sections: dict[str, dict[str, str]] | None = None
        self._settings: dict[str, Settings] = {}

    def _read(self) -> dict[str, dict[str, str]]:
        if self._sections is None:
            self._sections = {}
            if os.path.exists(self.path):
                try:
                    with open(self.path, encoding="utf-8") as f:
                        text = f.read()
                except (OSError, UnicodeDecodeError) as exc:
                    raise self._error(exc) from None
                self._sections = read_plain(text) or self._read_configparser(text)
        return self._sections

    def _read_configparser(self, text: str) -> dict[str, dict[str, str]]:
        import configparser  # only for files beyond the plain subset: it brings `re`

        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, self.path)
        except configparser.Error as exc:
            raise self._error(exc) from None
        sections = {name: dict(parser[name]) for name in parser.sections()}
        sections[""] = dict(parser.defaults())
        return sections

    def _error(self, exc: Exception) -> ConfigError:
        first = (str(exc).splitlines() or [""])[0][:200]
        return ConfigError(f"cannot use config file {self.path}: {first}")

    def settings(self, key: str) -> Settings:
        """The settings for one registry key (its section over DEFAULT)."""
        found = self._settings.get(key)
        if found is None:
            sections = self._read()
            values = sections.get(key, sections.get("", {}))
            unknown = set(values) - set(SETTINGS)
            try:
                if unknown:
                    raise ValueError(f"unknown setting {sorted(unknown)[0]!r}")
                found = self._settings[key] = Settings(values, self.path)
            except ValueError as exc:
                raise self._error(exc) from None
        return found


def read_plain(text: str) -> dict[str, dict[str, str]] | None:
    """configparser's reading of `text` (each section over DEFAULT, under "" the defaults alone) for the
    plain subset: [section] lines, `key = value` or `key: value`, # and ; comment lines. None for anything
    else (indented or continuation lines, duplicates, a key before any section): configparser decides.
    configparser imports `re`, as long as the interpreter's own start, and the helper and the kubelet
    provider read this file on every call; tests/test_properties.py checks the two agree."""
    defaults: dict[str, str] = {}
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.split("\n"):  # the file was read with universal newlines, as configparser reads it
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if raw[0].isspace():
            return None
        if line[0] == "[":
            name = line[1:-1]
            if not line.endswith("]") or not name or name in sections or (name == "DEFAULT" and defaults):
                return None
            current = defaults if name == "DEFAULT" else sections.setdefault(name, {})
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        key = line[:cut].strip().lower() if cut > 0 else ""
        if current is None or not key or key in current:
            return None
        current[key] = line[cut + 1 :].strip()
    merged = {name: {**defaults, **values} for name, values in sections.items()}
    merged[""] = defaults
    return merged


def config_path() -> str:
    return os.environ.get(CONFIG_ENV) or paths.config_file()


def cache_enabled() -> bool:
    return os.environ.get(NO_CACHE_ENV, "") not in ("1", "true", "yes")

"""Per-registry settings: an INI file in the user config dir, read once per process.

    [DEFAULT]
    timeout = 10

    [quay.example.com]
    ca_bundle = /etc/pki/quay-ca.pem

    [quay.example.com/team-a]           ; repositories under team-a/ on that host: their own robot
    robot = team-a+nodes
    robot_token_file = /etc/quay-cred-helper/team-a-token

Sections are registry keys (`host[:port]`), or a registry key and a path
prefix (`host/team-a`): for a repository the longest prefix that ends on a
path segment wins (`team-a` never matches `team-ab/x`), else the host's own
section. A prefix section holds the identity settings (the robot and its
source, any of them); the connection settings (HOST_SETTINGS) belong to the
host, since one connection serves every repository. DEFAULT applies to all,
except the identity and trust settings (REGISTRY_ONLY), which must name their
registry. Numbers are checked (no nan, inf, negatives or overflow).
`get` reads settings on every call, so this module imports configparser only
when the file exists, and Settings is a plain class (dataclasses cost more
than the interpreter's own start).
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


UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}  # max_secret_age: a whole number and one unit


def duration(text: str) -> float:
    """Seconds in `90d`, `2w`, `12h` or `30m` (a whole number, one unit); empty or `0`: 0 (off).
    By hand, not with `re`: `get` parses every setting of its registry."""
    value = text.strip().lower()
    if value in ("", "0"):
        return 0.0
    number, unit = value[:-1], value[-1:]
    if unit not in UNITS or not number.isascii() or not number.isdigit() or int(number) == 0:
        raise ValueError("not a duration (a whole number and a unit: 90d, 2w, 12h or 30m)")
    return float(int(number) * UNITS[unit])


def format_duration(seconds: float) -> str:
    """A duration as max_secret_age is written, in its largest unit, rounded down: 3d, 5h, 12m, 40s."""
    seconds = max(0, int(seconds))
    for unit in "dhm":
        if seconds >= UNITS[unit]:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


MAX_SECONDS = 86400.0  # a day: past that a timer or socket timeout overflows, and no wait makes sense
MAX_RETRIES = 100


def _seconds(text: str) -> float:
    """A number of seconds above 0 and at most a day: nan, inf, 1e400 (inf) and negatives are refused."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_SECONDS:  # NaN fails every comparison
        raise ValueError(f"not a number of seconds above 0 and at most {MAX_SECONDS:g}")
    return value


def _retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_RETRIES:
        raise ValueError(f"not a whole number from 0 to {MAX_RETRIES}")
    return value


# name: (default, parser, meaning) -- the documentation is checked against this table.
SETTINGS: dict[str, tuple[str, Callable[[str], object], str]] = {
    "timeout": ("10", _seconds, "seconds to wait for each response from a registry"),
    "connect_timeout": ("5", _seconds, "seconds to wait for a connection"),
    "retries": ("2", _retries, "retries after a connection error, 429, 502, 503 or 504 (never after 401)"),
    "deadline": ("30", _seconds, "seconds one command may spend on a registry in all: connect, answers, retries"),
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
    "sso_issuer": ("", str, "login --sso: the identity provider behind Quay's OIDC login (its issuer URL)"),
    "sso_client_id": ("", str, "login --sso: the public CLI client registered at that identity provider"),
    "sso_scopes": ("openid email profile offline_access", str, "login --sso: the scopes asked for"),
    "max_secret_age": (
        "",
        duration,
        "warn (doctor; `get` once a day) when a stored secret is older: 90d, 2w, 12h, 30m",
    ),
}

# Settings of the connection to a host, the same for every repository on it: only [host] may set them.
HOST_SETTINGS = frozenset(
    {"timeout", "connect_timeout", "retries", "deadline", "ca_bundle", "insecure_http", "realm_hosts", "robot_exchange"}
)
# Who we are and whom we trust: each must name its registry. Under [DEFAULT] a keyless identity would make
# every registry keyless (its OIDC token then goes to any registry whose realm is on its own host, to be
# replayed to Quay), and trust would extend to every registry. A setting of this kind added later goes here.
REGISTRY_ONLY = (
    "robot",
    "oidc",
    "audience",
    "robot_token_file",
    "robot_token_env",
    "service_account",
    "sso_issuer",
    "sso_client_id",
    "realm_hosts",
    "insecure_http",
)


class Settings:
    """One registry's settings, typed; build a changed copy with replace(). `file` is the config file
    they came from, so that every fix hint names the file that was really read, and `section` the
    section (`host` or `host/prefix`; "" when only DEFAULT applied); `ca_data`, when set, is what
    `ca_bundle` held, read by an entry point that checked the file (the kubelet provider)."""

    __slots__ = (*SETTINGS, "file", "section", "ca_data")
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
    sso_issuer: str
    sso_client_id: str
    sso_scopes: str
    max_secret_age: float  # seconds; 0: no limit
    file: str
    section: str
    ca_data: str

    def __init__(self, values: Mapping[str, str] | None = None, file: str = "", section: str = "") -> None:
        values = values or {}
        for name, (default, parse, _) in SETTINGS.items():
            text = values.get(name, default)
            try:
                setattr(self, name, parse(text))
            except ValueError as exc:  # nan, -1, out of range, not a boolean: name the setting
                raise ValueError(f"{name} = {text[:40]}: {exc}") from None
        self.file = file
        self.section = section
        self.ca_data = ""

    def replace(self, **changes: object) -> Settings:
        copy = Settings.__new__(Settings)
        for name in self.__slots__:
            setattr(copy, name, changes[name] if name in changes else getattr(self, name))
        return copy

    def where(self, setting: str, key: str) -> str:
        """Where to put `setting` for registry `key`: `setting under [key] in FILE`, FILE the one read."""
        return f"{setting} under [{key}] in {self.file or config_path()}"


class Config:
    """The config file, parsed on first use and then kept: `settings(key)` for each registry,
    `settings(key, repository)` for a repository on it."""

    def __init__(self, path: str | None = None, text: str | None = None) -> None:
        """`text`: the file's contents, already read by the caller (the kubelet provider reads its config
        through the descriptor it checked), else read from `path` on first use."""
        self.path = path or config_path()
        # As open() would have read it: universal newlines.
        self._text = text.replace("\r\n", "\n").replace("\r", "\n") if text is not None else None
        self._sections: dict[str, dict[str, str]] | None = None
        self._settings: dict[str, Settings] = {}
        self._prefixes: dict[str, list[tuple[str, str]]] | None = None

    def _read(self) -> dict[str, dict[str, str]]:
        if self._sections is None:
            text = self._text
            if text is None and os.path.exists(self.path):
                try:
                    with open(self.path, encoding="utf-8") as f:
                        text = f.read()
                except (OSError, UnicodeDecodeError) as exc:
                    raise self._error(exc) from None
            sections = (read_plain(text) or self._read_configparser(text)) if text is not None else {}
            shared = [name for name in REGISTRY_ONLY if name in sections.get("", {})]
            if shared:
                raise ConfigError(
                    f"cannot use config file {self.path}: {shared[0]} is under [DEFAULT]",
                    "identity and trust settings must name their registry: move it under [HOST]",
                )
            self._sections = sections
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

    def settings(self, key: str, repository: str = "") -> Settings:
        """The settings for one registry key (its section over DEFAULT); with a repository
        (`ns/repo`), those of the longest prefix section that holds it, else the key's."""
        section = self.section_for(key, repository) if repository else key
        found = self._settings.get(section)
        if found is None:
            sections = self._read()
            values = sections.get(section, sections.get("", {}))
            unknown = set(values) - set(SETTINGS)
            try:
                if unknown:
                    raise ValueError(f"unknown setting {sorted(unknown)[0]!r}")
                if section != key:
                    values = self._with_host_settings(key, section, values)
                found = Settings(values, self.path, section if section in sections else "")
            except ValueError as exc:
                raise self._error(exc) from None
            self._settings[section] = found
        return found

    def _with_host_settings(self, key: str, section: str, values: dict[str, str]) -> dict[str, str]:
        """A prefix section's values, with the connection settings of its host."""
        sections = self._read()
        defaults, host = sections.get("", {}), sections.get(key, sections.get("", {}))
        for name in sorted(HOST_SETTINGS):
            if values.get(name) != defaults.get(name):
                raise ValueError(f"{name} in [{section}] applies to the whole host: set it under [{key}]")
        return {**values, **{name: host[name] for name in HOST_SETTINGS if name in host}}

    def prefixes(self, key: str) -> list[str]:
        """The prefix sections of a registry key (`host/team-a`, ...), longest first."""
        return [section for _, section in self._prefix_index().get(key, [])]

    def section_for(self, key: str, repository: str) -> str:
        """The section that serves `repository` on `key`: the longest prefix section whose path is
        the repository or a parent of it (whole segments), else the key itself."""
        path = repository.strip("/").lower()
        for prefix, section in self._prefix_index().get(key, []):
            if path == prefix or path.startswith(prefix + "/"):
                return section
        return key

    def _prefix_index(self) -> dict[str, list[tuple[str, str]]]:
        if self._prefixes is None:
            index: dict[str, list[tuple[str, str]]] = {}
            for section in self._read():
                host, slash, path = section.partition("/")
                if not slash:
                    continue
                prefix = path.strip("/").lower()
                if not prefix or "" in prefix.split("/"):
                    raise self._error(ValueError(f"section [{section}] names no repository path: write [host/ns]"))
                found = index.setdefault(host.lower(), [])
                if any(prefix == known for known, _ in found):
                    raise self._error(ValueError(f"section [{section}] repeats a prefix of another section"))
                found.append((prefix, section))
            for found in index.values():
                found.sort(key=lambda entry: len(entry[0]), reverse=True)
            self._prefixes = index
        return self._prefixes


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

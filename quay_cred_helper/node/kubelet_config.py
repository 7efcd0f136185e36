"""The kubelet's CredentialProviderConfig, read and checked as the kubelet does (doctor --kubelet, node install).

Facts from the kubelet's source (pkg/credentialprovider/plugin/config.go, plugin.go, keyring.go):

* `--image-credential-provider-config` is a file, or (Kubernetes 1.34 and later) a directory whose
  `*.json`, `*.yaml` and `*.yml` entries are read in byte order, not recursively, and merged; a
  provider name in two files is an error.
* Each file is decoded strictly: kind CredentialProviderConfig in group kubelet.config.k8s.io
  (v1alpha1, v1beta1, v1); an unknown field, a field in the wrong case or a duplicate key is fatal.
  `tokenAttributes` exists only in v1.
* Validation collects every error; any error stops the kubelet at start.
* matchImages: `https://` prepended and parsed as a URL; the port must be equal, the number of host
  labels equal, each label a glob of Go's filepath.Match (a malformed glob silently never matches), the
  glob's path a plain string prefix of the image's.

The cold path of one command: this module may import json, re and PyYAML.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import yaml  # PyYAML (Debian python3-yaml): only node and doctor --kubelet import this module

from quay_cred_helper.kubelet.protocol import API_VERSIONS

CONFIG_GROUP = "kubelet.config.k8s.io"
CONFIG_VERSIONS = tuple(f"{CONFIG_GROUP}/{v}" for v in ("v1alpha1", "v1beta1", "v1"))
V1 = API_VERSIONS[0]
GATE = "KubeletServiceAccountTokenForCredentialProviders"  # beta, on by default since 1.34
CACHE_TYPES = ("ServiceAccount", "Token")
EXTENSIONS = (".json", ".yaml", ".yml")

# Fields of each version, as the strict decoder knows them (kubernetes/kubelet config/*/types.go).
_TOP = ("kind", "apiVersion", "providers")
_PROVIDER = ("name", "matchImages", "defaultCacheDuration", "apiVersion", "args", "env")
_TOKEN_ATTRIBUTES = (
    "serviceAccountTokenAudience",
    "cacheType",
    "requireServiceAccount",
    "requiredServiceAccountAnnotationKeys",
    "optionalServiceAccountAnnotationKeys",
)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing the kubelet would refuse (or silently do), with its fix."""

    where: str
    detail: str
    fix: str


@dataclasses.dataclass
class TokenAttributes:
    audience: str
    cache_type: str
    require_service_account: bool | None
    required_keys: list[str]
    optional_keys: list[str]


@dataclasses.dataclass
class Provider:
    name: str
    match_images: list[str]
    default_cache_duration: float | None  # seconds; None when absent
    api_version: str
    args: list[str]
    env: list[tuple[str, str]]
    token_attributes: TokenAttributes | None
    where: str  # FILE providers[i]


@dataclasses.dataclass
class ProviderConfig:
    files: list[str]
    providers: list[Provider]
    problems: list[Problem]


# -- Go's time.ParseDuration --------------------------------------------------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d*(?:\.\d*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (`10m`, `1h30m`, `0`, `-5s`); ValueError as Go refuses it."""
    rest, sign = text, 1.0
    if rest[:1] in ("+", "-"):
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(rest):
        found = _PART.match(rest, pos)
        if not found or found.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(found.group(1)) * _UNITS[found.group(2)]
        pos = found.end()
    return sign * total


# -- reading ------------------------------------------------------------------------------------------


def read(path: str, gate: bool = True) -> ProviderConfig:
    """The config at `path` (a file or a directory) with every problem the kubelet would report."""
    config = ProviderConfig([], [], [])
    if os.path.isdir(path):
        try:
            names = sorted(os.path.join(path, e.name) for e in os.scandir(path) if _is_config_entry(e))
        except OSError as exc:
            config.problems.append(Problem(path, f"unable to read directory: {exc.strerror}", "check its permissions"))
            return config
        if not names:
            config.problems.append(
                Problem(
                    path,
                    "no configuration files found in directory (the kubelet reads *.json, *.yaml, *.yml)",
                    "put the CredentialProviderConfig in a .yaml or .json file there",
                )
            )
        config.files = names
    else:
        config.files = [path]
    seen: set[str] = set()
    for name in config.files:
        for provider in _read_file(name, config.problems):
            if provider.name in seen:
                config.problems.append(
                    Problem(
                        name,
                        f"duplicate provider name {provider.name!r} found in configuration file(s)",
                        "give each provider one entry across all the files",
                    )
                )
                continue
            seen.add(provider.name)
            config.providers.append(provider)
    # The kubelet stops at a file it cannot decode; the others are still worth checking here.
    decoded = not config.problems
    config.problems.extend(validate(config.providers, gate, config.files if decoded else []))
    return config


def _is_config_entry(entry: os.DirEntry[str]) -> bool:
    return not entry.is_dir() and os.path.splitext(entry.name)[1] in EXTENSIONS


class _Refused(Exception):
    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


def _read_file(path: str, problems: list[Problem]) -> list[Provider]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        problems.append(Problem(path, f"unable to read file: {exc.strerror}", "check that the kubelet can read it"))
        return []
    try:
        document = _load(data)
        return _decode(document, path)
    except _Refused as refused:
        problems.append(Problem(path, f"error decoding config: {refused.detail}", refused.fix))
        return []


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _Refused(f'duplicate field "{key}"', f"write {key} once")
        found[key] = value
    return found


def _load(data: bytes) -> Any:
    """JSON when it looks like JSON (as the kubelet's decoder sniffs), else YAML; strict about duplicates."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("not UTF-8", "save the file as UTF-8") from None
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError as exc:
            raise _Refused(f"invalid JSON: {exc}", "fix the JSON syntax") from None

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        pairs = [(loader.construct_object(k, deep=True), loader.construct_object(v, deep=True)) for k, v in node.value]
        return _no_duplicates([(str(k), v) for k, v in pairs])

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=Loader)  # a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")[:300]
        raise _Refused(f"invalid YAML: {first}", "fix the YAML syntax (spaces, not tabs; one document)") from None


def _fields(value: Any, known: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refused(f"{where or 'the document'} is not an object", "write it as key: value pairs")
    for key in value:
        if key not in known:
            near = [k for k in known if k.lower() == key.lower()]
            fix = f"write {near[0]} (names are case-sensitive)" if near else f"remove it (known: {', '.join(known)})"
            raise _Refused(f'strict decoding error: unknown field "{where + "." if where else ""}{key}"', fix)
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Refused(f"{where}: a string, not {json.dumps(value)}", f'quote it: {where.rpartition(".")[2]}: "..."')
    return value


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Refused(f"{where}: a list of strings, not {json.dumps(value)}", 'write it as a list: ["..."]')
    return [_string(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _decode(document: Any, path: str) -> list[Provider]:
    top = _fields(document, _TOP, "")
    version = top.get("apiVersion")
    if not version:
        raise _Refused("Object 'apiVersion' is missing", f"apiVersion: {CONFIG_VERSIONS[-1]}")
    if top.get("kind") != "CredentialProviderConfig":
        raise _Refused(f"kind is {top.get('kind')!r}, not CredentialProviderConfig", "kind: CredentialProviderConfig")
    if version not in CONFIG_VERSIONS:
        raise _Refused(
            f'no kind "CredentialProviderConfig" is registered for version "{version}"',
            f"apiVersion: {CONFIG_VERSIONS[-1]} (or {CONFIG_VERSIONS[1]}, {CONFIG_VERSIONS[0]})",
        )
    known = (*_PROVIDER, "tokenAttributes") if version.endswith("/v1") else _PROVIDER
    providers = []
    raw = top.get("providers") or []
    if not isinstance(raw, list):
        raise _Refused("providers: a list, not an object", "write providers as a list: - name: ...")
    for i, item in enumerate(raw):
        where = f"providers[{i}]"
        if isinstance(item, dict) and "tokenAttributes" in item and "tokenAttributes" not in known:
            raise _Refused(
                f'strict decoding error: unknown field "{where}.tokenAttributes"',
                f"tokenAttributes needs apiVersion: {CONFIG_VERSIONS[-1]} at the top of the file",
            )
        fields = _fields(item, known, where)
        duration: float | None = None
        if fields.get("defaultCacheDuration") is not None:
            text = fields["defaultCacheDuration"]
            if not isinstance(text, str):
                raise _Refused(
                    f"{where}.defaultCacheDuration: a duration string, not {json.dumps(text)}",
                    f'quote it with a unit: defaultCacheDuration: "{text}m"'
                    if isinstance(text, (int, float)) and not isinstance(text, bool)
                    else 'defaultCacheDuration: "10m"',
                )
            try:
                duration = parse_go_duration(text)
            except ValueError as exc:
                raise _Refused(f"{where}.defaultCacheDuration: {exc}", 'a Go duration: "10m", "1h", "0"') from None
        env = []
        for j, entry in enumerate(fields.get("env") or []):
            pair = _fields(entry, ("name", "value"), f"{where}.env[{j}]")
            env.append((_string(pair.get("name"), f"{where}.env[{j}].name"), _string(pair.get("value"), "value")))
        providers.append(
            Provider(
                name=_string(fields.get("name"), f"{where}.name"),
                match_images=_strings(fields.get("matchImages"), f"{where}.matchImages"),
                default_cache_duration=duration,
                api_version=_string(fields.get("apiVersion"), f"{where}.apiVersion"),
                args=_strings(fields.get("args"), f"{where}.args"),
                env=env,
                token_attributes=_token_attributes(fields.get("tokenAttributes"), f"{where}.tokenAttributes"),
                where=f"{path} {where}",
            )
        )
    return providers


def _token_attributes(value: Any, where: str) -> TokenAttributes | None:
    if value is None:
        return None
    fields = _fields(value, _TOKEN_ATTRIBUTES, where)
    require = fields.get("requireServiceAccount")
    if require is not None and not isinstance(require, bool):
        raise _Refused(f"{where}.requireServiceAccount: true or false, not {json.dumps(require)}", "true or false")
    return TokenAttributes(
        audience=_string(fields.get("serviceAccountTokenAudience"), f"{where}.serviceAccountTokenAudience"),
        cache_type=_string(fields.get("cacheType"), f"{where}.cacheType"),
        require_service_account=require,
        required_keys=_strings(fields.get("requiredServiceAccountAnnotationKeys"), where),
        optional_keys=_strings(fields.get("optionalServiceAccountAnnotationKeys"), where),
    )


# -- validation (validateCredentialProviderConfig) ----------------------------------------------------

_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def qualified_name_problem(key: str) -> str | None:
    """Why `key` (lower-cased first, as the kubelet does) is not a qualified name; None when it is."""
    key = key.lower()
    prefix, slash, name = key.rpartition("/")
    if key.count("/") > 1:
        return "a qualified name is NAME or PREFIX/NAME"
    if slash and not prefix:
        return "prefix part must be non-empty"
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return "prefix part must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
    if not name or len(name) > 63 or not _NAME_PART.fullmatch(name):
        return "name part must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    return None


def validate(providers: list[Provider], gate: bool, files: list[str]) -> list[Problem]:
    """Every error validateCredentialProviderConfig collects, each with its fix."""
    problems: list[Problem] = []
    if not providers and files:
        problems.append(Problem(", ".join(files), "providers: at least 1 item is required", "list a provider"))
    seen: set[str] = set()
    for p in providers:

        def bad(detail: str, fix: str, p: Provider = p) -> None:
            problems.append(Problem(p.where, detail, fix))

        for text, why in (("/", "cannot contain '/'"), (" ", "cannot contain spaces")):
            if text in p.name:
                bad(f"name {p.name!r}: provider name {why}", "name: the executable's file name in the bin dir")
        if p.name in (".", ".."):
            bad(f"name {p.name!r}: provider name cannot be {p.name!r}", "name: the executable's file name")
        if p.name in seen:
            bad(f"name {p.name!r}: duplicate", "give each provider its own name")
        seen.add(p.name)
        if not p.api_version:
            bad("apiVersion: Required value", f"apiVersion: {V1}")
        elif p.api_version not in API_VERSIONS:
            bad(
                f"apiVersion: Unsupported value {p.api_version!r}",
                f"apiVersion: {V1} (quay-credential-provider also speaks {', '.join(API_VERSIONS[1:])})",
            )
        if not p.match_images:
            bad("matchImages: at least 1 item is required", 'matchImages: ["quay.example.com"]')
        for pattern in p.match_images:
            try:
                parse_url(pattern)
            except ValueError as exc:
                bad(f"matchImages {pattern!r}: match image is invalid: {exc}", "write host[:port][/path], no scheme")
        if p.default_cache_duration is None:
            bad("defaultCacheDuration: Required value", 'defaultCacheDuration: "10m"')
        elif p.default_cache_duration < 0:
            bad("defaultCacheDuration: must be greater than or equal to 0", 'defaultCacheDuration: "10m"')
        if p.token_attributes is not None:
            problems.extend(_validate_token_attributes(p, gate))
    return problems


def _validate_token_attributes(p: Provider, gate: bool) -> list[Problem]:
    t = p.token_attributes
    assert t is not None
    where = f"{p.where}.tokenAttributes"
    found = []
    if not gate:
        found.append(
            Problem(
                where,
                f"tokenAttributes is not supported when the {GATE} feature gate is disabled",
                f"enable the gate (--feature-gates={GATE}=true; on by default since Kubernetes 1.34)",
            )
        )
    if not t.audience:
        found.append(Problem(where, "serviceAccountTokenAudience: Required value", "serviceAccountTokenAudience: HOST"))
    if t.require_service_account is None:
        found.append(Problem(where, "requireServiceAccount: Required value", "requireServiceAccount: true or false"))
    if p.api_version != V1:
        found.append(Problem(where, f"tokenAttributes is only supported for {V1} API version", f"apiVersion: {V1}"))
    if t.require_service_account is False and t.required_keys:
        found.append(
            Problem(
                where,
                "requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set",
                "set requireServiceAccount: true, or make the keys optional",
            )
        )
    for field, keys in (("required", t.required_keys), ("optional", t.optional_keys)):
        seen: set[str] = set()
        for key in keys:
            why = qualified_name_problem(key)
            if why:
                found.append(Problem(where, f"{field}ServiceAccountAnnotationKeys {key!r}: {why}", "a key like a/b"))
            if key in seen:
                found.append(Problem(where, f"{field}ServiceAccountAnnotationKeys {key!r}: duplicate", "list it once"))
            seen.add(key)
    both = sorted(set(t.required_keys) & set(t.optional_keys))
    if both:
        found.append(
            Problem(where, f"annotation keys cannot be both required and optional: {both}", "keep each in one list")
        )
    if not t.cache_type:
        found.append(
            Problem(
                where,
                "cacheType is required to be set when tokenAttributes is specified (since Kubernetes 1.34)",
                "cacheType: ServiceAccount",
            )
        )
    elif t.cache_type not in CACHE_TYPES:
        found.append(
            Problem(
                where,
                f"cacheType: Unsupported value {t.cache_type!r}",
                "cacheType: ServiceAccount or Token (exactly so written)",
            )
        )
    return found


# -- matching (URLsMatchStr) --------------------------------------------------------------------------

_HOST_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"")


def parse_url(text: str) -> tuple[str, str]:
    """(host with port, path) of `https://` + text as Go's net/url parses it; ValueError as it refuses."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("net/url: invalid control character in URL")
    rest = text.partition("#")[0].partition("?")[0]
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    for i, c in enumerate(host):
        if c == "%":
            code = host[i + 1 : i + 3]
            valid = len(code) == 2 and all(h in "0123456789abcdefABCDEF" for h in code)
            if not valid or (int(code[0], 16) < 8 and code != "25"):  # hosts %-encode only non-ASCII bytes
                raise ValueError(f"invalid URL escape {host[i : i + 3]!r}")
        elif ord(c) < 0x80 and c not in _HOST_OK:
            raise ValueError(f"invalid character {c!r} in host name")
    if not host.startswith("["):
        colon = host.rfind(":")
        if colon >= 0 and not host[colon + 1 :].isdigit() and host[colon + 1 :] != "":
            raise ValueError(f"invalid port {host[colon:]!r} after host")
    if "%" in path:
        for i in [i for i, c in enumerate(path) if c == "%"]:
            if not all(h in "0123456789abcdefABCDEF" for h in path[i + 1 : i + 3]) or len(path[i + 1 : i + 3]) < 2:
                raise ValueError(f"invalid URL escape {path[i : i + 3]!r}")
    return host, slash + path


def _split_host(host: str) -> tuple[list[str], str]:
    """net.SplitHostPort, or the whole host without a port, then the labels."""
    if host.startswith("["):
        inside, bracket, after = host[1:].partition("]")
        if bracket and after.startswith(":"):
            return inside.split("."), after[1:]
        return host.split("."), ""
    name, colon, port = host.rpartition(":")
    if colon and ":" not in name:
        return name.split("."), port
    return host.split("."), ""


class BadGlob(ValueError):
    """filepath.ErrBadPattern: the kubelet's match quietly fails."""


def _glob_regex(pattern: str) -> str:
    """Go's filepath.Match syntax (`*`, `?`, `[^a-z]`, `\\x`) as a regular expression; BadGlob if malformed."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 >= len(pattern):
                raise BadGlob("a trailing backslash")
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            i += 1
            negate = i < len(pattern) and pattern[i] == "^"
            i += negate
            items: list[str] = []
            while True:
                if i >= len(pattern):
                    raise BadGlob("an unclosed [")
                if pattern[i] == "]" and items:
                    break
                lo, i = _class_char(pattern, i)
                if i < len(pattern) and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                    if hi < lo:
                        raise BadGlob(f"range {lo}-{hi} runs backwards")
                    items.append(f"{re.escape(lo)}-{re.escape(hi)}")
                else:
                    items.append(re.escape(lo))
            out.append(f"[{'^' if negate else ''}{''.join(items)}]")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise BadGlob("an empty or malformed [...] class")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise BadGlob("a trailing backslash")
    return pattern[i], i + 1


def mismatch(glob: str, image: str) -> str | None:
    """Why the kubelet's URLsMatchStr(glob, image) is false; None when it matches."""
    try:
        glob_host, glob_path = parse_url(glob)
        image_host, image_path = parse_url(image)
    except ValueError as exc:
        return f"not a URL the kubelet can parse ({exc})"
    glob_labels, glob_port = _split_host(glob_host)
    image_labels, image_port = _split_host(image_host)
    if glob_port != image_port:
        return f"the port differs ({glob_port or 'none'} vs {image_port or 'none'}): a port matches only itself"
    if len(glob_labels) != len(image_labels):
        return (
            f"{len(glob_labels)} host labels against {len(image_labels)}: a * stands for one label "
            "(`*.example.com` does not match `a.b.example.com`)"
        )
    if not image_path.startswith(glob_path):
        return f"its path {glob_path} is not a prefix of {image_path or '/'}"
    for g, t in zip(glob_labels, image_labels):
        try:
            if not re.fullmatch(_glob_regex(g), t, re.DOTALL):
                return f"host label {t!r} does not match {g!r}"
        except BadGlob as exc:
            return f"a malformed glob ({exc}): the kubelet ignores the error and never matches"
    return None


def matches(glob: str, image: str) -> bool:
    return mismatch(glob, image) is None


def auth_key(key: str) -> str:
    """A response's auth key as BasicDockerKeyring.Add stores it: scheme dropped, /v1/ or /v2/ too."""
    if not key.startswith(("https://", "http://")):
        key = "https://" + key
    rest = key.partition("://")[2]
    host, slash, path = rest.partition("#")[0].partition("?")[0].partition("/")
    path = slash + path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return host + path if path and path != "/" else host


def auth_keys_in_order(keys: list[str]) -> list[str]:
    """The kubelet's order of auth keys: normalised, deduplicated, reverse byte order (not longest first)."""
    return sorted({auth_key(k) for k in keys}, reverse=True)


# -- images (ParseNormalizedNamed(image).Name()) ------------------------------------------------------


def normalise_image(image: str) -> str:
    """The repository the kubelet matches and sends: tag and digest dropped, Docker Hub spelled out."""
    name = image.strip().partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first == first.lower()):
        first, rest = "docker.io", name
    if first == "index.docker.io":
        first = "docker.io"
    if first == "docker.io" and "/" not in rest:
        rest = "library/" + rest
    if not rest or rest != rest.lower():
        raise ValueError(f"{image!r} is not an image reference the kubelet accepts (repository names are lower-case)")
    return f"{first}/{rest}"

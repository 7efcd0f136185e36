"""quay-cred-helper node install: the provider on one node, and its kubelet told, every path under --root.

One run, planned first, then shown (--dry-run: a unified diff) or applied:

1. How the kubelet starts (node/kubelet.py: k3s and RKE2, else systemd's kubelet.service and the flags
   its units give it). Every path is the node's, resolved inside --root (node/rootfs.py): a file that is a
   link is changed where it leads and the link kept.
2. The provider in the kubelet's bin dir (the one it has, or ours): a file copied as it is; a bundle
   directory (the PyInstaller onedir bundle, the zipapp) copied to /opt/quay-cred-helper/provider and
   linked by name (both find their files through the link).
3. /etc/quay-cred-helper/kubelet.ini (0600, as the provider's own check wants it) and, given one, the
   robot token beside it.
4. Our provider merged into the kubelet's CredentialProviderConfig in its own format, every other provider
   kept. YAML keeps its comments and layout: our entry is a marked block of lines, taken out again by
   --uninstall; a layout that cannot take one (flow style) is rewritten whole, and the run says so.
   The result is checked as the kubelet checks it (node/kubelet_config.py) before anything is written.
5. The two flags, only when missing: KUBELET_EXTRA_ARGS in /etc/default/kubelet or /etc/sysconfig/kubelet
   when kubelet.service reads it there (kubeadm's packages), else a drop-in repeating ExecStart with them.

A plan with nothing to do is empty: a second run writes nothing. --uninstall plans the reverse: our entry,
our files, our flags out; a config left with no provider is deleted with the flags we added (the kubelet
refuses an empty one).

The cold path of one command: this module may import json, re and PyYAML.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, NamedTuple, Union

import yaml  # PyYAML (Debian python3-yaml): only node and doctor --kubelet import this module

from quay_cred_helper import files
from quay_cred_helper.errors import HelperError, InputError
from quay_cred_helper.names import registry_key
from quay_cred_helper.node import kubelet_config, rootfs
from quay_cred_helper.node.kubelet import (
    BIN_DIR_FLAG,
    CONFIG_FLAG,
    DROP_IN,
    EXTRA_ARGS,
    EXTRA_VAR,
    RANCHER,
    Kubelet,
    find_kubelet,
)

NAME = "quay-credential-provider"  # the provider's name in the config, and its file in the bin dir
PROVIDER_API = "credentialprovider.kubelet.k8s.io/v1"
CONFIG_API = "kubelet.config.k8s.io/v1"
ETC = "/etc/quay-cred-helper"
INI = f"{ETC}/kubelet.ini"
TOKEN = f"{ETC}/robot-token"
STAGED = ".rotating"  # beside a robot token file, a rotation's new token (credentials/rotation.py)
CACHE = "/var/cache/quay-cred-helper"
LIB = "/opt/quay-cred-helper/provider"  # a bundle directory's copy
BIN = "/opt/quay-cred-helper/bin"
CONFIG = "/etc/kubernetes/credential-provider-config.yaml"
DIR_CONFIG = f"{NAME}.yaml"  # our file in a config directory (Kubernetes 1.34+)
MARK = "# added by quay-cred-helper node install; node install --uninstall takes it out"
WAS = "# quay-cred-helper node install added its flags to the next line, which --uninstall puts back as it was: "
ANNOTATION = "quay-cred-helper/robot"


class Link(NamedTuple):
    """A symlink on the node, to `target`."""

    target: str


State = Union[bytes, Link, None]  # a path's content: bytes, a link, or nothing there


@dataclasses.dataclass
class Change:
    """One path on the node, from `old` to `new` (None: removed)."""

    path: str
    old: State
    new: State
    mode: int = 0o644
    secret: bool = False  # never shown in a diff

    def diff(self) -> str:
        """A unified diff; a binary or secret file as one line saying what happens to it."""
        old, new = _shown(self.old, self.secret), _shown(self.new, self.secret)
        if old is None or new is None:
            size = len(self.new if isinstance(self.new, bytes) else self.old if isinstance(self.old, bytes) else b"")
            what = "secret" if self.secret else "binary"
            verb = "removed" if self.new is None else "written"
            return f"--- a{self.path}\n+++ b{self.path}\n{what} file, {size} bytes, {verb}\n"
        lines = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a{self.path}", f"b{self.path}"
        )
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        return text or f"--- a{self.path}\n+++ b{self.path}\nmode {self.mode:04o}\n"


def _shown(state: State, secret: bool) -> str | None:
    if state is None:
        return ""
    if isinstance(state, Link):
        return f"symlink to {state.target}\n"
    if secret or b"\0" in state:
        return None
    try:
        return state.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclasses.dataclass
class Options:
    root: str = "/"
    provider: str | None = None  # a file, or a bundle directory holding NAME
    bin_dir: str | None = None
    kubelet_config: str | None = None
    ini: bytes | None = None  # the provider's kubelet.ini
    token: bytes | None = None  # the robot token, written beside it
    match_images: list[str] = dataclasses.field(default_factory=list)
    audience: str | None = None  # per-pod service-account tokens for this audience
    uninstall: bool = False
    no_flags: bool = False


@dataclasses.dataclass
class Plan:
    kubelet: Kubelet | None
    changes: list[Change] = dataclasses.field(default_factory=list)
    rmdirs: list[str] = dataclasses.field(default_factory=list)  # left empty by --uninstall: removed
    notes: list[str] = dataclasses.field(default_factory=list)
    flags: list[str] = dataclasses.field(default_factory=list)  # --no-flags: what to add by hand
    reads: list[str] = dataclasses.field(default_factory=list)  # what the kubelet and the provider read


# -- the provider's own config -----------------------------------------------------------------------


def provider_ini(registries: list[str], robot: str, token: bool, oidc: str | None, service_account: bool) -> bytes:
    """kubelet.ini for `registries`: one robot, its token file, its OIDC source or each pod's token."""
    if not registries:
        raise InputError("no registry for the provider", "give --config FILE or --registry HOST (repeatable)")
    if not robot:
        raise InputError("no robot for the provider", "give --robot NAMESPACE+NAME")
    if sum((token, bool(oidc), service_account)) != 1:
        raise InputError(
            "the provider needs one source of credentials",
            "give one of --robot-token-file FILE, --oidc SOURCE or --service-account",
        )
    lines = ["# Written by quay-cred-helper node; the kubelet's image credential provider reads it."]
    for registry in registries:
        lines += ["", f"[{_section(registry)}]", f"robot = {robot}"]
        if token:
            lines.append(f"robot_token_file = {TOKEN}")
        elif oidc:
            lines.append(f"oidc = {oidc}")
        else:
            lines.append("service_account = true")
    return ("\n".join(lines) + "\n").encode()


def _section(registry: str) -> str:
    """`host[:port]` or `host[:port]/prefix`, as kubelet.ini names a registry."""
    host, _, prefix = registry.strip().partition("/")
    key = registry_key(host)
    return f"{key}/{prefix.strip('/')}" if prefix.strip("/") else key


def ini_registries(ini: bytes) -> tuple[list[str], bool]:
    """The registries kubelet.ini names (its sections: our matchImages), and whether any is per-pod."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(ini.decode("utf-8"))
    except (UnicodeDecodeError, configparser.Error) as exc:
        raise InputError(
            f"the provider's config does not parse: {type(exc).__name__}", "check its INI syntax"
        ) from None
    if not parser.sections():
        raise InputError("the provider's config names no registry", "add a [quay.example.com] section")
    per_pod = any(parser.getboolean(s, "service_account", fallback=False) for s in parser.sections())
    return parser.sections(), per_pod


def provider_entry(match_images: list[str], audience: str | None) -> dict[str, Any]:
    """Our provider's entry in a CredentialProviderConfig."""
    entry: dict[str, Any] = {
        "name": NAME,
        "matchImages": list(match_images),
        "defaultCacheDuration": "10m",
        "apiVersion": PROVIDER_API,
        "args": ["--config", INI, "--cache-dir", CACHE],
    }
    if audience:
        entry["tokenAttributes"] = {
            "serviceAccountTokenAudience": audience,
            "cacheType": "ServiceAccount",
            "requireServiceAccount": False,
            "optionalServiceAccountAnnotationKeys": [ANNOTATION],
        }
    return entry


def config_document(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": CONFIG_API, "kind": "CredentialProviderConfig", "providers": entries}


# -- reading the node ----------------------------------------------------------------------------------


def _read(root: str, path: str, follow: bool = True) -> State:
    """What is at `path` on the node: with `follow`, the file its links lead to."""
    full = rootfs.resolve(root, path, follow)
    if os.path.islink(full):
        return Link(os.readlink(full))
    try:
        with open(full, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory on the node, not a file", "move it aside") from None
    except OSError as exc:
        raise InputError(f"cannot read {path} on the node: {exc.strerror}", "run as root") from None


def _text(root: str, path: str) -> str | None:
    state = _read(root, path)
    return state.decode("utf-8", "replace") if isinstance(state, bytes) else None


def _mode(root: str, path: str) -> int | None:
    """The mode of the file `path` leads to (never a link's own, 0777), as it is."""
    try:
        return os.stat(rootfs.resolve(root, path)).st_mode & 0o7777
    except OSError:
        return None


# -- the CredentialProviderConfig: merged in its own format ---------------------------------------------------


def _is_json(path: str, text: str | None) -> bool:
    return text.lstrip().startswith("{") if text and text.strip() else path.endswith(".json")


def _load_config(path: str, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if _is_json(path, text) else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise InputError(f"the kubelet's credential provider config {path} does not parse", "fix it first") from None
    if not isinstance(data, dict) or not isinstance(data.get("providers") or [], list):
        raise InputError(f"{path} is not a CredentialProviderConfig", "fix it first: the kubelet refuses it too")
    return data


def _json_text(data: dict[str, Any], like: str | None) -> str:
    """JSON laid out like the file it replaces: its indent, its final newline."""
    indent: int | str | None = 2
    if like is not None:
        first = next((line for line in like.splitlines()[1:] if line.strip()), None)
        if first is None:
            indent = None
        else:
            lead = first[: len(first) - len(first.lstrip())]
            indent = lead if "\t" in lead else len(lead)
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    return text + ("\n" if like is None or like.endswith("\n") else "")


def _yaml_text(data: dict[str, Any]) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True))


def _yaml_block(entry: dict[str, Any], indent: str) -> list[str]:
    body = yaml.safe_dump([entry], sort_keys=False, default_flow_style=False, allow_unicode=True)
    return [indent + MARK] + [indent + line for line in body.splitlines()]


def _providers_block(lines: list[str]) -> tuple[int, int, str] | None:
    """The top-level `providers:` block sequence: its key's line, its last item line + 1, the items' indent."""
    start = next((i for i, line in enumerate(lines) if re.fullmatch(r"providers\s*:\s*(#.*)?", line)), None)
    if start is None:
        return None
    end, indent = start + 1, None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            break
        if indent is None:
            if not stripped.startswith("- ") and stripped != "-":
                return None
            indent = line[: len(line) - len(line.lstrip())]
        end = i + 1
    return (start, end, indent) if indent is not None else None


def _our_block(lines: list[str]) -> tuple[int, int] | None:
    """Where our marked entry is: its mark's line and the line after its last."""
    for i, line in enumerate(lines):
        if line.strip() == MARK and i + 1 < len(lines):
            indent = line[: len(line) - len(line.lstrip())]
            if not lines[i + 1].startswith(indent + "- "):
                return None
            end = i + 2
            while end < len(lines) and lines[end].startswith(indent + "  ") and lines[end].strip():
                end += 1
            return i, end
    return None


def merge_config(path: str, text: str | None, entry: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The config's new text with our entry in (None: taken out), and a note when its layout was not kept.
    A config left with no provider is None: delete it."""
    data = _load_config(path, text) if text is not None and text.strip() else config_document([])
    providers = list(data.get("providers") or [])
    mine = [i for i, p in enumerate(providers) if isinstance(p, dict) and p.get("name") == NAME]
    if entry is not None and len(mine) == 1 and providers[mine[0]] == entry:
        return text, None
    if entry is None and not mine:
        return text, None
    kept = [p for i, p in enumerate(providers) if i not in mine]
    wanted = [*kept, entry] if entry is not None else kept
    if not wanted:
        return None, None
    new = dict(data, providers=wanted)
    if text is None or not text.strip():
        return (_json_text(new, None) if path.endswith(".json") else _yaml_text(new)), None
    if _is_json(path, text):
        return _json_text(new, text), None
    lines = text.splitlines()
    ours = _our_block(lines)
    if ours:
        lines = lines[: ours[0]] + lines[ours[1] :]
    if entry is not None:
        block = _providers_block(lines)
        if block:
            lines = lines[: block[1]] + _yaml_block(entry, block[2]) + lines[block[1] :]
    candidate = "\n".join(lines) + ("\n" if text.endswith("\n") or not lines else "")
    try:
        if yaml.safe_load(candidate) == new:
            return candidate, None
    except yaml.YAMLError:
        pass
    return _yaml_text(new), f"{path}: rewritten whole (its layout could not take a marked entry): comments dropped"


def _kubelet_problems(path: str, text: str) -> set[str]:
    """What the kubelet would refuse in this config text, as kubelet_config reads it."""
    suffix = ".json" if _is_json(path, text) else ".yaml"
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "config" + suffix)
        with open(probe, "w", encoding="utf-8") as f:
            f.write(text)
        return {f"{p.detail} ({p.fix})" for p in kubelet_config.read(probe).problems}


# -- the kubelet's flags --------------------------------------------------------------------------------------


def _our_flags(config: str, bin_dir: str) -> list[str]:
    return [f"{CONFIG_FLAG}={config}", f"{BIN_DIR_FLAG}={bin_dir}"]


def _extra_args(line: str) -> tuple[str, list[str]]:
    """A KUBELET_EXTRA_ARGS= line's quote ('', " or ') and words."""
    value = line.split("=", 1)[1].strip()
    quote = value[0] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else ""
    return quote, (value[1:-1] if quote else value).split()


def edit_extra_args(text: str | None, flags: list[str], remove: bool) -> str | None:
    """The extra-args file with our flags added to (or taken from) KUBELET_EXTRA_ARGS; None: delete it.

    A line we added carries MARK above it; a line of the admin's we added to carries WAS, with the line as it
    was, which --uninstall puts back byte for byte (unless the admin changed its other words since). The
    file's final newline, or its lack of one, is kept."""
    lines = (text or "").splitlines()
    end = "\n" if not text or text.endswith("\n") else ""
    at = max((i for i, line in enumerate(lines) if re.match(rf"\s*{EXTRA_VAR}=", line)), default=None)
    if at is None:
        if remove:
            return text
        lines += [MARK, f'{EXTRA_VAR}="{" ".join(flags)}"']
        return "\n".join(lines) + end
    quote, words = _extra_args(lines[at])
    above = lines[at - 1] if at > 0 else ""
    was = above[len(WAS) :] if above.startswith(WAS) else None  # verbatim, its spaces too
    if not remove:
        if all(f in words for f in flags):
            return text
        words += [f for f in flags if f not in words]
        if above.strip() != MARK and was is None:
            lines.insert(at, WAS + lines[at])
            at += 1
        quote = quote or '"'
        lines[at] = f"{EXTRA_VAR}={quote}{' '.join(words)}{quote}"
        return "\n".join(lines) + end
    words = [w for w in words if w not in flags]
    if was is not None and _extra_args(was)[1] == words:
        lines[at - 1 : at + 1] = [was]
    elif above.strip() == MARK and not words:
        lines[at - 1 : at + 1] = []
        if not any(line.strip() for line in lines):
            return None
    else:
        if was is not None:  # changed since: its other words stay, the old line is no longer true
            del lines[at - 1]
            at -= 1
        quote = (quote or '"') if len(words) > 1 else quote
        lines[at] = f"{EXTRA_VAR}={quote}{' '.join(words)}{quote}"
    return "\n".join(lines) + (end if lines else "")


def drop_in_text(exec_start: str, unit: str, flags: list[str]) -> str:
    """A drop-in that repeats ExecStart with our flags (systemd keeps no other way to add arguments)."""
    return (
        f"{MARK}.\n"
        f"# ExecStart of {unit}, with the kubelet's image credential provider flags added:\n"
        "# when that unit's ExecStart changes, run node install again.\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={exec_start} {' '.join(flags)}\n"
    )


# -- the plan -----------------------------------------------------------------------------------------------------


class _Planner:
    def __init__(self, root: str, kubelet: Kubelet | None) -> None:
        self.root = root
        self.plan = Plan(kubelet)

    def put(self, path: str, new: State, mode: int = 0o644, secret: bool = False, follow: bool = True) -> None:
        """`path` made `new`. With `follow`, a link there stays and the file it leads to is changed (the
        change names that file); without, the link itself is replaced or removed."""
        if follow:
            path = rootfs.node_path(self.root, rootfs.resolve(self.root, path))
        old = _read(self.root, path, follow=False)
        if old == new and (new is None or isinstance(new, Link) or _mode(self.root, path) == mode):
            return
        self.plan.changes.append(Change(path, old, new, mode, secret))

    def text(self, path: str, new: str | None, mode: int = 0o644) -> None:
        """A text file the kubelet or systemd reads: its mode kept (never group or other write)."""
        old = _mode(self.root, path)
        self.put(path, new.encode("utf-8") if new is not None else None, mode if old is None else old & ~0o022)

    def tree(self, source: str, target: str) -> None:
        """`target` on the node made a copy of the directory `source` (stale files removed)."""
        # As remove_tree names what is there: resolved (with /opt -> var/opt, /var/opt/...), else none would match.
        target = rootfs.node_path(self.root, rootfs.resolve(self.root, target))
        wanted: set[str] = set()
        for directory, dirs, names in os.walk(source):
            dirs.sort()
            for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
                full = os.path.join(directory, name)
                path = f"{target}/{os.path.relpath(full, source)}"
                wanted.add(path)
                if os.path.islink(full):
                    self.put(path, Link(os.readlink(full)), follow=False)
                else:
                    with open(full, "rb") as f:
                        self.put(path, f.read(), 0o755 if os.access(full, os.X_OK) else 0o644)
        self.remove_tree(target, keep=wanted)

    def remove_tree(self, target: str, keep: set[str] | None = None, secret: bool = False) -> None:
        full = rootfs.resolve(self.root, target)
        for directory, dirs, names in os.walk(full, topdown=False):
            for name in names + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
                path = rootfs.node_path(self.root, os.path.join(directory, name))
                if path not in (keep or ()):
                    self.put(path, None, secret=secret, follow=False)
            if not keep:
                self.plan.rmdirs.append(rootfs.node_path(self.root, directory))


def plan(options: Options) -> Plan:
    """Everything one run would change on the node (nothing for a second run)."""
    root = options.root
    if not os.path.isdir(root):
        raise InputError(f"--root {root} is not a directory", "give the node's root: / or where it is mounted")
    kubelet = find_kubelet(root)
    if kubelet is None and not options.no_flags:
        raise InputError(
            f"no kubelet found under {root} (no kubelet.service, k3s or RKE2 unit)",
            "give --no-flags to install the files only and add the two flags yourself",
        )
    planner = _Planner(root, kubelet)
    config, bin_dir = _paths(kubelet, options)
    ours_flags = kubelet is None or kubelet.config is None or _flags_are_ours(kubelet, options)
    if options.uninstall:
        _uninstall(planner, kubelet, config, bin_dir, ours_flags)
    else:
        _install(planner, kubelet, options, config, bin_dir)
    return planner.plan


def _paths(kubelet: Kubelet | None, options: Options) -> tuple[str, str]:
    """The config and bin dir to use: the kubelet's own when it has them, else the options' or ours."""
    if kubelet is not None and kubelet.config and kubelet.bin_dir:
        for given, has, what in (
            (options.kubelet_config, kubelet.config, "--kubelet-config"),
            (options.bin_dir, kubelet.bin_dir, "--bin-dir"),
        ):
            if given and given.rstrip("/") != has.rstrip("/"):
                raise InputError(
                    f"the kubelet already uses {has} (from {kubelet.flags_from}), not {given}",
                    f"leave out {what}: the provider joins what the kubelet has",
                )
        return kubelet.config, kubelet.bin_dir
    return options.kubelet_config or CONFIG, options.bin_dir or BIN


def _flags_are_ours(kubelet: Kubelet, options: Options) -> bool:
    """Whether we put the kubelet's flags where they are: our drop-in, k3s's own defaults, or in the
    extra-args file with the paths we would choose."""
    if kubelet.flags_from in (DROP_IN, kubelet.kind):
        return True
    ours = (options.kubelet_config or CONFIG, options.bin_dir or BIN)
    return kubelet.flags_from in EXTRA_ARGS and (kubelet.config, kubelet.bin_dir) == ours


def _config_file(root: str, config: str) -> str:
    """The file our entry lives in: the config itself, or in a config directory the file holding it (else ours)."""
    if not os.path.isdir(rootfs.resolve(root, config)):
        return config
    for name in sorted(os.listdir(rootfs.resolve(root, config))):
        path = f"{config.rstrip('/')}/{name}"
        text = _text(root, path) if os.path.splitext(name)[1] in kubelet_config.EXTENSIONS else None
        if text and NAME in text:
            try:
                if any(p.get("name") == NAME for p in _load_config(path, text).get("providers") or []):
                    return path
            except HelperError:
                continue
    return f"{config.rstrip('/')}/{DIR_CONFIG}"


def _install(planner: _Planner, kubelet: Kubelet | None, options: Options, config: str, bin_dir: str) -> None:
    root = options.root
    if options.ini is None:
        raise InputError("no config for the provider", "give --config FILE, or --registry HOST with --robot")
    sections, per_pod = ini_registries(options.ini)
    # The provider: a file as it is; a bundle directory copied beside the bin dir and linked.
    source = options.provider
    if source is None:
        raise InputError("no provider to install", "give --provider PATH (a file, the bundle or the zipapp directory)")
    if os.path.isdir(source):
        if not os.access(os.path.join(source, NAME), os.X_OK):
            raise InputError(f"{source} has no executable {NAME}", "give the bundle's or the zipapp's directory")
        planner.tree(source, LIB)
        planner.put(f"{bin_dir}/{NAME}", Link(f"{LIB}/{NAME}"), follow=False)
    elif os.path.isfile(source):
        with open(source, "rb") as f:
            planner.put(f"{bin_dir}/{NAME}", f.read(), 0o755, follow=False)
        if os.path.isdir(rootfs.resolve(root, LIB)):
            planner.remove_tree(LIB)  # a bundle from an earlier run
    else:
        raise InputError(f"--provider {source} does not exist", "give the provider's file or bundle directory")
    planner.put(INI, options.ini, 0o600)
    if options.token is not None:
        planner.put(TOKEN, options.token, 0o600, secret=True)
    # Our entry in the kubelet's config.
    audience = options.audience or (_audience(sections) if per_pod else None)
    entry = provider_entry(options.match_images or sections, audience)
    path = _config_file(root, config)
    planner.plan.reads = [path, f"{bin_dir}/{NAME}", INI, *([TOKEN] if options.token is not None else [])]
    old = _text(root, path)
    new, note = merge_config(path, old, entry)
    if new is not None and new != old:
        before = _kubelet_problems(path, old) if old and old.strip() else set()
        added = sorted(_kubelet_problems(path, new) - before)
        if added:
            raise InputError(f"the kubelet would refuse {path} with our provider: {added[0]}", "nothing was written")
    planner.text(path, new)
    if note:
        planner.plan.notes.append(note)
    # The flags, where they are missing (or in our own drop-in, refreshed from the unit's ExecStart).
    flags = _our_flags(config, bin_dir)
    if kubelet is None or options.no_flags:
        if kubelet is None or kubelet.config is None:
            planner.plan.flags = flags
        return
    if kubelet.kind in RANCHER or (kubelet.config and kubelet.flags_from != DROP_IN):
        return
    if kubelet.extra_args and kubelet.flags_from != DROP_IN:
        planner.text(kubelet.extra_args, edit_extra_args(_text(root, kubelet.extra_args), flags, remove=False))
    elif kubelet.exec_start:
        planner.text(DROP_IN, drop_in_text(kubelet.exec_start, kubelet.unit or "kubelet.service", flags))
    else:
        raise InputError(
            "kubelet.service has no ExecStart under the root", "give --no-flags and add the flags yourself"
        )


def _audience(sections: list[str]) -> str:
    return sections[0].partition("/")[0]


def _uninstall(planner: _Planner, kubelet: Kubelet | None, config: str, bin_dir: str, ours_flags: bool) -> None:
    root = planner.root
    planner.put(f"{bin_dir}/{NAME}", None, follow=False)
    planner.remove_tree(LIB)
    planner.put(INI, None)
    # The token, and the new one an interrupted `robot rotate` staged beside the file the token's links lead to.
    staged = rootfs.node_path(root, rootfs.resolve(root, TOKEN)) + STAGED
    for token in (TOKEN, staged):
        planner.put(token, None, secret=True)
    if os.path.islink(rootfs.resolve(root, TOKEN, follow=False)):
        planner.put(TOKEN, None, follow=False)  # and the link itself, left dangling
    planner.remove_tree(CACHE, secret=True)  # the provider's cached JWTs
    path = _config_file(root, config)
    old = _text(root, path)
    new, note = merge_config(path, old, None) if old is not None else (None, None)
    planner.text(path, new)
    if note:
        planner.plan.notes.append(note)
    emptied = old is not None and new is None
    if kubelet is not None and emptied and not ours_flags:
        planner.plan.notes.append(
            f"{path} had only our provider: its flags (in {kubelet.flags_from}) are not ours: remove them"
        )
    if kubelet is not None and kubelet.kind == "systemd" and ours_flags and (emptied or old is None):
        planner.put(DROP_IN, None)
        if kubelet.extra_args:
            text = _text(root, kubelet.extra_args)
            planner.text(kubelet.extra_args, edit_extra_args(text, _our_flags(config, bin_dir), remove=True))
    planner.plan.rmdirs += [ETC, os.path.dirname(LIB)]  # only if left empty
    if emptied and ours_flags:
        planner.plan.rmdirs += [bin_dir, os.path.dirname(path)]
    if any(c.path == DROP_IN and c.new is None for c in planner.plan.changes):
        planner.plan.rmdirs.append(os.path.dirname(DROP_IN))


# -- applying it -------------------------------------------------------------------------------------------------


def apply(plan: Plan, root: str) -> None:
    """Write the plan, every path resolved in the node's root: parents made (0700 for ours in /etc), each
    file atomically with its mode and its former owner; then check that the kubelet finds what it reads."""
    for change in plan.changes:
        full = rootfs.resolve(root, change.path, follow=False)
        if change.new is None:
            if os.path.lexists(full):
                os.unlink(full)
            continue
        parent = os.path.dirname(full)
        if change.path.startswith(ETC + "/"):
            files.private_dir(parent)
        else:
            os.makedirs(parent, 0o755, exist_ok=True)
        if isinstance(change.new, Link):
            tmp = f"{full}.quay-cred-helper-tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(change.new.target, tmp)
            os.replace(tmp, full)
            continue
        before = os.lstat(full) if isinstance(change.old, bytes) else None
        files.write_atomic(full, change.new, change.mode)
        if before is not None and sys.platform != "win32":
            after = os.lstat(full)
            if (after.st_uid, after.st_gid) != (before.st_uid, before.st_gid):
                os.chown(full, before.st_uid, before.st_gid)  # the admin's file keeps its owner
    for directory in sorted(set(plan.rmdirs), key=len, reverse=True):
        with contextlib.suppress(OSError, InputError):  # not empty, or not there: someone else's files stay
            os.rmdir(rootfs.resolve(root, directory, follow=False))
    missing = [path for path in plan.reads if not os.path.isfile(rootfs.resolve(root, path))]
    if missing:
        raise HelperError(
            f"after writing, the node does not see {', '.join(missing)}, which its kubelet reads",
            "nothing was restarted: check the links under the node's root, then run node install again",
        )


def restart(plan: Plan, root: str) -> list[str]:
    """systemctl daemon-reload and restart of the kubelet's unit, in the node's root (chroot). The commands run."""
    if plan.kubelet is None:
        return []
    commands = [["systemctl", "daemon-reload"], ["systemctl", "restart", plan.kubelet.service]]
    real = os.path.realpath(root)

    def enter() -> None:
        if sys.platform == "win32":  # no nodes of ours there: node install is for Linux kubelets
            return
        if real != "/":
            os.chroot(real)
            os.chdir("/")

    for command in commands:
        try:
            result = subprocess.run(command, preexec_fn=enter, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise HelperError(
                f"could not run {' '.join(command)} in {root}: {type(exc).__name__}",
                "restart the kubelet yourself",
            ) from None
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise HelperError(f"{' '.join(command)} failed in {root}: {detail[0]}", "restart the kubelet yourself")
    return [" ".join(c) for c in commands]

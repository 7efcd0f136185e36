"""How this node's kubelet starts: one model for `node install` and `doctor --kubelet`.

Two ways to find it, both giving a `Kubelet`:

* `running()`: the kubelet process, from /proc, trusted only when root could not have been fooled: owned
  by uid 0, its /proc/PID/exe a root-owned file that no group or other may write, in our PID namespace (a
  container's process shows in the host's /proc too, and a process of another user can call itself
  anything). Its argv are the flags.
* `find_kubelet(root)`: from its units and files under the node's root. k3s and RKE2 pass
  /var/lib/rancher/credentialprovider/bin and .../config.yaml to their kubelet whenever both exist (k3s
  pkg/daemons/agent: ImageCredProvAvailable), unless their config.yaml names other paths (their own
  options, or kubelet-arg). Elsewhere systemd's kubelet.service: the unit, its drop-ins, their
  Environment= and EnvironmentFile= values and the ExecStart they expand into.

Every path under the root is resolved as the node sees it (node/rootfs.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import stat
from typing import NamedTuple

import yaml  # PyYAML (Debian python3-yaml): only node and doctor --kubelet import this module

from quay_cred_helper.errors import InputError
from quay_cred_helper.node import rootfs
from quay_cred_helper.node.kubelet_config import GATE

CONFIG_FLAG = "--image-credential-provider-config"
BIN_DIR_FLAG = "--image-credential-provider-bin-dir"
GATES_FLAG = "--feature-gates"
DROP_IN = "/etc/systemd/system/kubelet.service.d/90-quay-cred-helper.conf"  # ours: node install writes it
EXTRA_ARGS = ("/etc/default/kubelet", "/etc/sysconfig/kubelet")  # kubeadm's .deb and .rpm
EXTRA_VAR = "KUBELET_EXTRA_ARGS"
RANCHER = {"k3s": ("k3s.service", "k3s-agent.service"), "rke2": ("rke2-server.service", "rke2-agent.service")}
RANCHER_BIN = "/var/lib/rancher/credentialprovider/bin"
RANCHER_CONFIG = "/var/lib/rancher/credentialprovider/config.yaml"
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system")
UNIT_DIRS_LEGACY = ("/lib/systemd/system",)


@dataclasses.dataclass
class Kubelet:
    """How the node's kubelet starts, as far as the credential-provider flags go."""

    kind: str  # "k3s", "rke2", "systemd", or "process" (found running)
    service: str  # the unit to restart
    config: str | None = None  # the flags' values, when it has both
    bin_dir: str | None = None
    flags_from: str | None = None  # the file on the node they come from
    exec_start: str | None = None  # systemd: ExecStart as the units give it, our drop-in aside
    unit: str | None = None  # systemd: the unit file
    extra_args: str | None = None  # systemd: the extra-args file ExecStart reads KUBELET_EXTRA_ARGS from
    argv: list[str] = dataclasses.field(default_factory=list)  # its command line, as far as known
    source: str = ""  # where this came from, said by doctor: "pid N" or the units' files

    def flag(self, name: str) -> str | None:
        """The last value of a flag in argv, as pflag reads it: `--name=value` or `--name value`."""
        found = _flag([(word, None) for word in self.argv], name)
        return found[0] if found else None

    def gate(self) -> tuple[bool, str]:
        """Whether the service-account token gate is on, and where that came from."""
        value: bool | None = None
        where = "its default since Kubernetes 1.34 (beta, on)"
        config = self.flag("--config")  # its KubeletConfiguration file: flags override its featureGates
        if config:
            try:
                with open(config, encoding="utf-8") as f:
                    document = yaml.safe_load(f)
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                document = None  # the kubelet's own file to judge, not ours
            gates = document.get("featureGates") if isinstance(document, dict) else None
            if isinstance(gates, dict) and isinstance(gates.get(GATE), bool):
                value, where = gates[GATE], f"featureGates in {config}"
        for arg in self.argv:
            if arg.startswith(GATES_FLAG + "="):
                for item in arg.partition("=")[2].split(","):
                    name, _, setting = item.partition("=")
                    if name.strip() == GATE:
                        value, where = setting.strip().lower() == "true", GATES_FLAG
        return (True if value is None else value), where


# -- from /proc: only a process root can trust ----------------------------------------------------------


def running(proc: str = "/proc") -> tuple[Kubelet | None, list[str]]:
    """The running kubelet (argv[0] named kubelet) that passes `untrusted`, and why each other one did not."""
    try:
        entries = sorted((e for e in os.listdir(proc) if e.isdigit()), key=int)
    except OSError:
        return None, []
    refused: list[str] = []
    for entry in entries:
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as f:
                raw = f.read()
        except OSError:
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]] if raw.endswith(b"\0") else []
        if not argv or os.path.basename(argv[0]) != "kubelet":
            continue
        why = untrusted(os.path.join(proc, entry), os.path.join(proc, "self"))
        if why:
            refused.append(f"pid {entry}: {why}")
            continue
        found = Kubelet("process", "kubelet.service", argv=argv, source=f"the running kubelet, pid {entry}")
        found.config, found.bin_dir = found.flag(CONFIG_FLAG), found.flag(BIN_DIR_FLAG)
        return found, refused
    return None, refused


def untrusted(process: str, own: str) -> str | None:
    """Why the process at /proc/PID cannot be taken for the node's kubelet; None when it can."""
    try:
        # Real, effective, saved and file-system ids: /proc/PID's owner is only the effective uid, and a
        # setuid-root program a user started (su at its prompt, named kubelet) has that one 0.
        with open(os.path.join(process, "status"), encoding="ascii", errors="replace") as f:
            ids = {k: v.split() for k, _, v in (line.partition(":") for line in f) if k in ("Uid", "Gid")}
        namespace, ours = os.readlink(os.path.join(process, "ns", "pid")), os.readlink(os.path.join(own, "ns", "pid"))
        exe = os.stat(os.path.join(process, "exe"))
    except OSError as exc:
        return f"cannot inspect it ({exc.strerror})"
    if len(ids) != 2 or any(n != "0" for values in ids.values() for n in values):
        shown = ", ".join(f"{k.lower()} {' '.join(v)}" for k, v in sorted(ids.items(), reverse=True))
        return f"its user and group ids are not all root's ({shown or 'none shown'})"
    if namespace != ours:
        return "in another PID namespace (a container's)"
    if exe.st_uid != 0 or exe.st_mode & 0o022 or not stat.S_ISREG(exe.st_mode):
        return "its executable is not a root-owned file that only root may write"
    if exe.st_mode & (stat.S_ISUID | stat.S_ISGID):
        return "its executable is set-user-ID or set-group-ID (a kubelet never is)"
    return None


# -- from the units and files under the node's root ------------------------------------------------------


def _text(root: str, path: str) -> str | None:
    """A file on the node, as text; None when there is none (or it is not a file)."""
    try:
        with open(rootfs.resolve(root, path), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path} on the node: {exc.strerror}", "run as root") from None


def _listdir(root: str, path: str) -> list[str]:
    try:
        return sorted(os.listdir(rootfs.resolve(root, path)))
    except OSError:
        return []


def logical_lines(text: str) -> list[str]:
    """A unit file's lines, continuations joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped[0] in "#;"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _env_assignments(text: str) -> list[tuple[str, str]]:
    """NAME=VALUE pairs in an Environment= value: space-separated, each optionally quoted."""
    try:
        words = shlex.split(text)
    except ValueError:
        return []
    return [(w.partition("=")[0], w.partition("=")[2]) for w in words if "=" in w]


def _env_file(text: str) -> dict[str, str]:
    found = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        found[name.strip()] = value
    return found


def _unit_files(root: str, name: str) -> tuple[str | None, list[str]]:
    """The unit file systemd would load for `name` under `root`, and its drop-ins in the order applied."""
    unit = None
    dropins: dict[str, str] = {}
    for directory in (*UNIT_DIRS, *UNIT_DIRS_LEGACY):
        path = f"{directory}/{name}"
        if unit is None and os.path.isfile(rootfs.resolve(root, path)):
            unit = path
        entries = _listdir(root, path + ".d")
        for entry in entries:
            if entry.endswith(".conf"):
                dropins.setdefault(entry, f"{path}.d/{entry}")
    return unit, [dropins[k] for k in sorted(dropins)]


class _Service(NamedTuple):
    exec_start: str | None
    exec_from: str | None  # the file that set ExecStart
    env_files: list[str]  # EnvironmentFile= values, `-` kept
    env: dict[str, tuple[str, str]]  # Environment= values: name -> (value, file)


def _service_settings(root: str, paths: list[str]) -> _Service:
    """[Service]'s ExecStart, EnvironmentFile= and Environment= over the unit and its drop-ins."""
    exec_start: str | None = None
    exec_from: str | None = None
    env_files: list[str] = []
    env: dict[str, tuple[str, str]] = {}
    for path in paths:
        section = ""
        for line in logical_lines(_text(root, path) or ""):
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]" or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if key == "ExecStart":
                exec_start, exec_from = (value or None), path  # an empty ExecStart= resets the list
            elif key == "EnvironmentFile":
                if value:
                    env_files.append(value)
                else:
                    env_files = []
            elif key == "Environment":
                env.update({n: (v, path) for n, v in _env_assignments(value)})
    return _Service(exec_start, exec_from, env_files, env)


def _expand(exec_start: str, env: dict[str, tuple[str, str]]) -> list[tuple[str, str | None]]:
    """ExecStart's words as systemd passes them: `$NAME` split at whitespace, `${NAME}` one word; each with
    the file whose variable gave it (None: the unit itself)."""
    try:
        words = shlex.split(exec_start)
    except ValueError:
        words = exec_start.split()
    out: list[tuple[str, str | None]] = []
    for word in words:
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            value, source = env.get(bare.group(1), ("", None))
            out += [(w, source) for w in value.split()]
            continue
        names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", word)
        expanded = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ("", ""))[0], word)
        out.append((expanded, next((env[n][1] for n in names if n in env), None)))
    return out


def _flag(words: list[tuple[str, str | None]], name: str) -> tuple[str, str | None] | None:
    """The last value of a flag (`--name=value` or `--name value`), with where it came from."""
    found = None
    for i, (word, source) in enumerate(words):
        if word.startswith(name + "="):
            found = (word[len(name) + 1 :], source)
        elif word == name and i + 1 < len(words):
            found = (words[i + 1][0], source)
    return found


def _rancher(root: str) -> Kubelet | None:
    for kind, services in RANCHER.items():
        units = [s for s in services if _unit_files(root, s)[0]]
        if not units and not os.path.isdir(rootfs.resolve(root, f"/etc/rancher/{kind}")):
            continue
        kubelet = Kubelet(kind, units[0] if units else services[0], RANCHER_CONFIG, RANCHER_BIN, kind)
        kubelet.source = f"{kind}'s units and /etc/rancher/{kind}"
        base = f"/etc/rancher/{kind}/config.yaml"
        extra = _listdir(root, base + ".d")
        for path in [base, *(f"{base}.d/{e}" for e in extra if e.endswith((".yaml", ".yml")))]:
            text = _text(root, path)
            if text is None:
                continue
            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError:
                raise InputError(f"{path} is not YAML", f"fix it: {kind} cannot start with it either") from None
            if not isinstance(data, dict):
                continue
            # k3s's own options, then kubelet-arg (passed last, so it wins).
            kubelet.config = str(data.get("image-credential-provider-config", kubelet.config))
            kubelet.bin_dir = str(data.get("image-credential-provider-bin-dir", kubelet.bin_dir))
            args = data.get("kubelet-arg") or []
            for arg in args if isinstance(args, list) else [args]:
                name, _, value = str(arg).lstrip("-").partition("=")
                if name == CONFIG_FLAG[2:]:
                    kubelet.config, kubelet.flags_from = value, path
                elif name == BIN_DIR_FLAG[2:]:
                    kubelet.bin_dir, kubelet.flags_from = value, path
                kubelet.argv.append("--" + str(arg).lstrip("-"))
        kubelet.argv[:0] = [kind, f"{CONFIG_FLAG}={kubelet.config}", f"{BIN_DIR_FLAG}={kubelet.bin_dir}"]
        return kubelet
    return None


def find_kubelet(root: str) -> Kubelet | None:
    """How the kubelet under `root` starts; None when there is none to be found."""
    found = _rancher(root)
    if found:
        return found
    unit, dropins = _unit_files(root, "kubelet.service")
    if unit is None and not dropins:
        return None
    files_ = ([unit] if unit else []) + dropins
    service = _service_settings(root, files_)
    base_start = _service_settings(root, [p for p in files_ if p != DROP_IN]).exec_start
    env = dict(service.env)
    for spec in service.env_files:  # EnvironmentFile= values override Environment= ones
        path = spec.lstrip("-")
        text = _text(root, path)
        if text is not None:
            env.update({n: (v, path) for n, v in _env_file(text).items()})
    words = _expand((service.exec_start or "").lstrip("-@:+!"), env)
    kubelet = Kubelet("systemd", "kubelet.service", exec_start=base_start, unit=unit or dropins[0])
    kubelet.argv, kubelet.source = [word for word, _ in words], f"kubelet.service's units ({', '.join(files_)})"
    config, bin_dir = _flag(words, CONFIG_FLAG), _flag(words, BIN_DIR_FLAG)
    if config and bin_dir:
        kubelet.config, kubelet.bin_dir = config[0], bin_dir[0]
        kubelet.flags_from = config[1] or bin_dir[1] or service.exec_from
    elif config or bin_dir:
        raise InputError(
            f"the kubelet has only one of {CONFIG_FLAG} and {BIN_DIR_FLAG} (from {(config or bin_dir or ('', ''))[1]})",
            "it needs both or neither: fix that first",
        )
    reads_extra = re.search(r"\$\{?" + EXTRA_VAR + r"\b", base_start or "")
    listed = [s.lstrip("-") for s in service.env_files if s.lstrip("-") in EXTRA_ARGS]
    if reads_extra and listed:
        kubelet.extra_args = listed[-1]
    return kubelet

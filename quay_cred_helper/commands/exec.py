"""quay-cred-helper exec: run a command with a throwaway docker config holding fresh short-lived credentials.

For clients that never call a credential helper and read only `auths` (docs/exec.md says which). The
config lives in a private directory (0700; the file 0600) under $XDG_RUNTIME_DIR, or under a private
directory of the temp dir, named `<our pid>-<random>`; it is removed when CMD ends, whatever the cause,
and a later `exec` removes the directories of an `exec` that was killed (its lock, held while CMD runs,
free). `--print-env` directories are named `env-<until>-<random>` and removed by a later `exec` once past `<until>`.

The credentials are what `get` gives (credential.fetch): a robot's or keyless robot's one-hour JWT, a
user's stored secret. Only paths go into CMD's environment, never a secret.

Windows: the config is written and removed the same way (privacy from the profile's ACL, as for all our
files); Ctrl+C and Ctrl+Break reach CMD through the console, so `exec` only waits for it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from types import FrameType

from quay_cred_helper import files
from quay_cred_helper.client_configs import HELPER, credential_key, docker_config_path
from quay_cred_helper.commands.credential import Credential, fetch, rfc3339
from quay_cred_helper.context import Context
from quay_cred_helper.errors import ConfigError, HelperError, InputError
from quay_cred_helper.names import registry_key

LOCK = "lock"  # in each exec's directory: held for CMD's lifetime (sweep)
STARTING = 60.0  # seconds: a directory without its lock file yet is a starting exec's for this long
ENV_LIFETIME = 3600  # seconds: the most a --print-env directory is kept (a robot's JWT lives an hour)
# Which variable each client reads its credentials from (docs/exec.md has the whole table).
VARIABLES = ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "HELM_REGISTRY_CONFIG")
if sys.platform == "win32":
    FORWARDED: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGBREAK)
    TERMINAL: tuple[signal.Signals, ...] = ()
else:
    FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    TERMINAL = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)  # what a terminal sends its foreground group


def base_dir() -> str:
    """Where every exec's directory goes: ours alone, 0700. $XDG_RUNTIME_DIR only when it is our own
    directory (root keeps a user's after `su` or `sudo -E`: a link the user planted there must not lead
    root's chmod and sweep elsewhere); else a private directory of the temp dir."""
    if sys.platform == "win32":  # the temp dir is the user's own there
        return files.private_dir(os.path.join(tempfile.gettempdir(), "quay-cred-helper-exec"))
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and _owned(runtime, 0o022):
        base = os.path.join(runtime, "quay-cred-helper-exec")
    else:
        base = os.path.join(tempfile.gettempdir(), f"quay-cred-helper-exec-{os.geteuid()}")
    files.private_dir(base, tighten=False)
    if not _owned(base, 0):  # a shared temp dir: someone else may have made this name first
        raise ConfigError(f"{base} is not a private directory of ours", "remove it, or set XDG_RUNTIME_DIR")
    if os.lstat(base).st_mode & 0o077:
        os.chmod(base, 0o700)  # ours, not a link, in a directory nobody else writes
    return base


def _owned(path: str, unwritable: int) -> bool:
    """Whether `path` itself (not a link) is a directory of our uid without the `unwritable` mode bits."""
    if sys.platform == "win32":
        return False  # no uid there; base_dir does not ask
    try:
        found = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(found.st_mode) and found.st_uid == os.geteuid() and not found.st_mode & unwritable


def _running(directory: str, now: float) -> bool:
    """Whether an exec still uses `directory`: it holds the lock file there, exclusively, while CMD runs.
    A lock, not a pid: a reused pid or another PID namespace sharing the directory cannot fool it, and
    Windows can test it (msvcrt). A directory without its lock file yet is a starting exec's for a while."""
    lock = os.path.join(directory, LOCK)
    if not os.path.exists(lock):
        return now - os.lstat(directory).st_mtime < STARTING
    try:
        with files.Lock(lock, timeout=0):
            return False
    except files.LockTimeout:
        return True


def sweep(base: str, now: float) -> None:
    """Remove the directories of exec runs that are over: a killed exec's (its lock free) and --print-env
    ones past their time."""
    for name in os.listdir(base):
        owner, _, rest = name.partition("-")
        path = os.path.join(base, name)
        with contextlib.suppress(FileNotFoundError):  # another exec's sweep was first
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                continue  # a directory, never what a link leads to
            if owner == "env":
                until = rest.partition("-")[0]
                stale = until.isdigit() and int(until) < now
            else:
                stale = owner.isdigit() and not _running(path, now)
            if stale:
                shutil.rmtree(path, ignore_errors=True)


def _auth(found: Credential) -> dict[str, str]:
    if found.username == "<token>":
        return {"identitytoken": found.secret}
    return {"auth": base64.b64encode(f"{found.username}:{found.secret}".encode()).decode()}


def _ours(name: str, keys: set[str]) -> bool:
    """Whether a config entry's name (any form: URL, host, podman's `host/ns/repo`) is a registry we write."""
    try:
        return registry_key(name) in keys
    except InputError:
        return False  # not a registry name: the user's, kept as it is


def build_config(user: dict[str, object], found: list[Credential]) -> dict[str, object]:
    """The user's docker config with our credentials in `auths`; without credsStore, our credHelpers
    entries, and any helper or other entry for a registry we write (a client would ask that helper, or
    podman take a `host/ns` entry, before our `auths`)."""
    keys = {item.registry for item in found}
    names = {credential_key(item.registry, True): item for item in found}  # Docker Hub: docker's index URL
    names.update({item.registry: item for item in found})  # and podman's docker.io
    config = {k: v for k, v in user.items() if k != "credsStore"}
    helpers = user.get("credHelpers")
    if isinstance(helpers, dict):
        config["credHelpers"] = {k: v for k, v in helpers.items() if v != HELPER and not _ours(k, keys)}
    auths = user.get("auths")
    kept = {k: v for k, v in auths.items() if not _ours(k, keys)} if isinstance(auths, dict) else {}
    config["auths"] = {**kept, **{name: _auth(item) for name, item in names.items()}}
    return config


def _credentials(args: argparse.Namespace, ctx: Context) -> list[Credential]:
    if args.registry:
        keys = [registry_key(name) for name in args.registry]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise InputError(f"{', '.join(twice)} named twice: clients read one credential per registry")
        return [fetch(ctx, key, _repository(name)) for key, name in zip(keys, args.registry)]
    found = []
    for key in sorted(ctx.store.list()):
        try:
            found.append(fetch(ctx, key))
        except HelperError as exc:  # one registry's trouble does not stop the others
            ctx.warn(f"{key} left out: {exc}")
    return found


def _repository(name: str) -> str:
    """The `ns/repo` of a `host/ns/repo` name, which routes to its prefix section's robot as
    `credential host/ns/repo` does; "" for a bare host."""
    text = name.strip()
    return (text.partition("://")[2] or text).partition("/")[2].strip("/")


def _write(directory: str, config: dict[str, object]) -> str:
    """The config under `directory`/home/.docker (a HOME of its own for --home); its path."""
    docker = files.private_dir(os.path.join(directory, "home", ".docker"))
    path = os.path.join(docker, "config.json")
    files.write_json(path, config)
    return path


def _variables(path: str, home: bool) -> dict[str, str]:
    found = {"DOCKER_CONFIG": os.path.dirname(path), "REGISTRY_AUTH_FILE": path, "HELM_REGISTRY_CONFIG": path}
    if home:
        found["HOME"] = os.path.dirname(os.path.dirname(path))
        if sys.platform == "win32":
            found["USERPROFILE"] = found["HOME"]  # what Node's os.homedir() reads there
    return found


def _terminal_foreground() -> bool:
    """Whether we are in the foreground process group of our controlling terminal, whose Ctrl+C, Ctrl+\\
    and hang-up reach CMD (in our group) without us (as sudo and uv decide)."""
    if sys.platform == "win32":
        return False
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class Child:
    """CMD, with our signals forwarded to it (a shell starts background jobs with SIGINT ignored, so
    the handlers are ours, not inherited)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []

    def forward(self, signum: int, frame: FrameType | None) -> None:
        if sys.platform == "win32":
            return  # the console sent it to CMD too: wait for CMD
        if self.proc is None:
            self.pending.append(signum)  # before CMD: nobody else got it
        elif signum in TERMINAL and _terminal_foreground():
            return  # the terminal sent it to our whole process group, CMD too: once is enough
        elif self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def run(self, argv: list[str], env: dict[str, str]) -> int:
        previous = {signum: signal.signal(signum, self.forward) for signum in FORWARDED}
        try:
            try:
                self.proc = subprocess.Popen(argv, env=env)
            except FileNotFoundError:
                raise _NotRun(127, f"{argv[0]}: command not found") from None
            except PermissionError:
                raise _NotRun(126, f"{argv[0]}: permission denied") from None
            except OSError as exc:  # not runnable for another reason: ENOEXEC (no #!), a bad ELF, ...
                raise _NotRun(126, f"{argv[0]}: {exc.strerror}") from None
            for signum in self.pending:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signum)
            code = self.proc.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 128 - code if code < 0 else code  # killed by signal N: 128+N, as shells say it


class _NotRun(HelperError):
    def __init__(self, code: int, problem: str) -> None:
        super().__init__(problem)
        self.code = code


def run(args: argparse.Namespace, ctx: Context) -> int:
    argv = list(args.cmd)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if args.print_env and (argv or args.home):
        raise InputError("--print-env runs nothing: give it no command and no --home")
    if not args.print_env and not argv:
        raise InputError("no command: quay-cred-helper exec [--registry REG]... -- CMD [ARGS...]")
    found = _credentials(args, ctx)
    if not found:
        ctx.warn("no credentials to hand out: CMD runs with only your other settings")
    config = build_config(files.read_json(docker_config_path()) or {}, found)
    now = time.time()
    base = base_dir()
    sweep(base, now)
    expiries = [item.expires_at for item in found if item.expires_at is not None]
    if args.print_env:
        until = int(min([now + ENV_LIFETIME, *expiries]))
        directory = tempfile.mkdtemp(prefix=f"env-{until}-", dir=base)
        variables = _variables(_write(directory, config), home=False)
        registries = ", ".join(item.registry for item in found) or "no registry"
        print(f"# quay-cred-helper exec: credentials for {registries}, valid until {rfc3339(until)};")
        print("# a later `quay-cred-helper exec` removes them after that time.")
        for name, value in variables.items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    directory = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base)
    try:
        with files.Lock(os.path.join(directory, LOCK)):  # held while CMD runs: the sweep leaves the directory
            env = dict(os.environ, **_variables(_write(directory, config), home=args.home))
            return Child().run(argv, env)
    except _NotRun as exc:
        ctx.warn(str(exc))
        return exc.code
    finally:
        shutil.rmtree(directory, ignore_errors=True)

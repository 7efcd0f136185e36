"""How docker-credential-quay and quay-credential-provider start: `run()`.

A helper's cost is its start-up (docker runs `get` and `list` on every pull and
build step, the kubelet the provider for each image it has not cached), so
the launchers in bin/ are two lines: a script's source is compiled on every
run, a module's comes from its cache. `run()` serves the hot modules, runs
the front door's `main`, flushes, and leaves with os._exit: the interpreter's
teardown (about 2 ms) does nothing these paths need (no atexit work: the
debug log flushes each line).

The hot modules from one file: for each module Python's path finder runs
about a dozen system calls and the Python code of importlib around them (stat
the candidate names, list the directory, open, fstat, read and close the
.pyc, check its header), and these paths import about 18 of ours. `serve()`
reads the index of one file, `__pycache__/hot.<cache tag>.bundle` beside the
.pyc files (the same directory, so the same trust: whoever may write one may
write the other), and serves each module in `HOT` from it: one stat of its
source, one read of its code.

Never stale: an entry is served only while its source's inode, size,
modification and change times (to the nanosecond) are those it was compiled
from. Every write to a file changes its change time, which no user can set,
and a file put in its place has another inode. Two writes within one tick of
the file system's clock could still leave all four unchanged (git's "racy"
case), so a source changed less than RACY_NS before compiling, or dated in the future, is left
out, and its entry says so: no run rewrites the bundle for it until its times have aged.
An entry that is stale, missing or unreadable is imported the normal way,
and `finish()` rewrites the file at exit where Python would write .pyc files
(the directory writable, no PYTHONDONTWRITEBYTECODE): once after an upgrade
or an edit. Packages build it at install time with
`python3 -m quay_cred_helper.hotbuild`, which holds the writer: a run that
only reads loads none of it.

Only plain files: run from a zip (the node's zipapp) or frozen (the node
bundle), `serve()` finds no file and nothing changes. Nothing here may import
our other modules before `serve()`: they are what it serves.
"""

# No `from __future__ import annotations` here: it would import __future__, which the served modules do
# without (hotbuild.py compiles them with that future's flag instead). Annotations that Python 3.9 cannot
# evaluate are quoted.
import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.abc import Loader as LoaderBase
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import NoReturn

    Key = tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns of a source
    # its path, its key, where its marshalled code is after the index, and that code's checksum()
    Entry = tuple[str, Key, int, int, int]
else:
    LoaderBase = object  # importlib.abc to mypy; importing it would cost what this module saves

# The modules a cached `get` (robot, keyless, CI token, a user's from the Secret Service), `list`,
# `version` and a cached provider answer import; tests/test_launch.py keeps this list exact.
HOT = (
    "quay_cred_helper.config",
    "quay_cred_helper.context",
    "quay_cred_helper.credentials",
    "quay_cred_helper.credentials.index",
    "quay_cred_helper.credentials.keyring_backend",
    "quay_cred_helper.credentials.keyring_store",
    "quay_cred_helper.credentials.secretservice",
    "quay_cred_helper.errors",
    "quay_cred_helper.fastjson",
    "quay_cred_helper.files",
    "quay_cred_helper.helper",
    "quay_cred_helper.kubelet",
    "quay_cred_helper.kubelet.main",
    "quay_cred_helper.kubelet.protocol",
    "quay_cred_helper.kubelet.sources",
    "quay_cred_helper.log",
    "quay_cred_helper.names",
    "quay_cred_helper.paths",
    "quay_cred_helper.protocol",
    "quay_cred_helper.registry",
    "quay_cred_helper.registry.cache",
    "quay_cred_helper.registry.jwt",
    "quay_cred_helper.sources",
    "quay_cred_helper.sources.keyless",
    "quay_cred_helper.sources.robot_token",
    "quay_cred_helper.store",
)

FORMAT = 3
RACY_NS = 2_000_000_000  # two seconds: the coarsest timestamps (FAT's) and a clock tick, with room

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ModuleSpec = type(__spec__)  # importlib's ModuleSpec, without importing importlib


def bundle_path() -> str:
    optimize = sys.flags.optimize
    suffix = f".opt-{optimize}" if optimize else ""
    return os.path.join(PACKAGE_DIR, "__pycache__", f"hot.{sys.implementation.cache_tag}{suffix}.bundle")


def header() -> tuple[int, str, int, int, str]:
    # The exact interpreter build (its version line names the build), and what compiling depended on.
    return (FORMAT, sys.version, sys.hexversion, sys.flags.optimize, PACKAGE_DIR)


def checksum() -> "Callable[[bytes], int]":
    """What the bundle's index and each entry's code are checked with, before marshal reads them (damaged
    code can crash the interpreter): zlib's CRC-32 where zlib is built into the interpreter (Debian's
    python3: about 0.3 us a KiB, nothing to load); elsewhere, where importing zlib loads an extension
    (about 0.6 ms, twice what it saves), the bytes as one integer, hashed: Python hashes an int modulo
    the Mersenne prime 2**61 - 1, in C, the same in every process (no hash seed), and any single
    flipped bit changes it (about 2 us a KiB). The writer and the reader are the same interpreter."""
    if "zlib" in sys.builtin_module_names:
        import zlib

        return zlib.crc32
    return _int_hash


def _int_hash(data: bytes) -> int:
    return hash(int.from_bytes(data, "little"))


def _now_ns() -> int:
    import time  # built in: nothing to load, and only for a module hotbuild left out

    return time.time_ns()


def key(path: str) -> "Key":
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Finder(LoaderBase):
    """A meta path finder (and loader) for the entries of one bundle whose sources are unchanged."""

    def __init__(
        self, entries: "dict[str, Entry]", fd: int = -1, base: int = 0, check: "Callable[[bytes], int] | None" = None
    ) -> None:
        self.entries = entries
        self.fd, self.base = fd, base  # the open bundle, and where its code starts
        self.check = check  # launch.checksum(), once the bundle is found
        self.stale = False  # something in HOT was imported the normal way: the bundle wants rewriting

    def find_spec(
        self, name: str, path: "Sequence[str] | None" = None, target: "ModuleType | None" = None
    ) -> "ModuleSpec | None":
        entry = self.entries.get(name)
        if entry is None:
            if name in HOT:
                self.stale = True
            return None
        origin, stamp = entry[0], entry[1]
        try:
            if key(origin) != stamp:
                self.stale = True
                return None
        except OSError:
            self.stale = True
            return None
        if entry[2] < 0:  # left out by hotbuild: its times were too recent (or in the future) to trust
            self.stale = self.stale or max(stamp[2], stamp[3]) <= _now_ns() - RACY_NS  # rewrite once they age
            return None
        package = os.path.basename(origin) == "__init__.py"
        spec = _ModuleSpec(name, self, origin=origin, is_package=package)
        if package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        spec.has_location = True  # __file__ is the source, as for a normal import
        return spec

    def create_module(self, spec: "ModuleSpec") -> None:
        return None  # the default module

    def exec_module(self, module: "ModuleType") -> None:
        if sys.platform == "win32":  # unreachable (serve() returns first there); says so to mypy --platform win32
            raise ImportError(module.__name__)
        origin, _, offset, size, expected = self.entries[module.__name__]
        try:
            data = os.pread(self.fd, size, self.base + offset)
            if self.check is None or len(data) != size or self.check(data) != expected:
                raise ValueError("damaged")  # checked before marshal sees it: damaged code can crash the interpreter
            code = marshal.loads(data)
        except (OSError, ValueError, EOFError, TypeError):  # cut short or damaged: Python's own loader
            self.stale = True
            from importlib.machinery import SourceFileLoader

            SourceFileLoader(module.__name__, origin).exec_module(module)
            return
        exec(code, module.__dict__)


_finder: "Finder | None" = None
# The file starts with the index's length (4 bytes) and its whole checksum (8 bytes: an int hash has 61 bits,
# and cut to 32 it would miss a flipped bit whose weight modulo 2**61 - 1 falls in the upper ones).
PREFIX = 12
_INDEX_READ = 16384  # the first read: the index's length, its checksum and the index (a few KiB)
_REGULAR, _FORMAT_BITS = 0o100000, 0o170000  # S_IFREG and S_IFMT, as os.stat's st_mode holds them
_MAX_INDEX = 1 << 20


def run(front_door: str) -> "NoReturn":
    """The launchers' body: `front_door` is the module whose `main` runs (quay_cred_helper.helper for
    docker-credential-quay, quay_cred_helper.kubelet.main for quay-credential-provider)."""
    serve()
    # The builtin __import__: importlib would cost what serve() saves.
    main: Callable[[], int] = __import__(front_door, fromlist=("main",)).main
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: what the interpreter itself exits with when its final flush fails
        code = 120
    finish()
    os._exit(code)


def serve() -> None:
    """Serve HOT modules from the bundle, when there is one for this interpreter."""
    global _finder
    if _finder is not None or getattr(sys, "frozen", False) or sys.platform == "win32":
        return  # Windows runs pip's .exe launchers, which never call this; and it has no os.pread
    entries: dict[str, Entry] = {}
    fd = length = -1
    check: Callable[[bytes], int] | None = None
    try:
        # Never blocks (a FIFO put in its place), and only a regular file is read.
        fd = os.open(bundle_path(), os.O_RDONLY | os.O_NONBLOCK)
        if os.fstat(fd).st_mode & _FORMAT_BITS != _REGULAR:
            raise ValueError("not a regular file")
        start = os.read(fd, _INDEX_READ)
        length, index_sum = int.from_bytes(start[:4], "little"), int.from_bytes(start[4:PREFIX], "little")
        if length > _MAX_INDEX:
            raise ValueError("not an index")
        if len(start) < PREFIX + length:
            start += os.read(fd, PREFIX + length - len(start))
        index = start[PREFIX : PREFIX + length]
        check = checksum()
        if check(index) != index_sum:
            raise ValueError("a damaged index")
        written_by, loaded = marshal.loads(index)
        if written_by == header() and isinstance(loaded, dict):
            entries = loaded
    except (OSError, ValueError, EOFError, TypeError, ImportError):
        entries = {}  # none yet, damaged, or not one we wrote: the normal import, and finish() writes one
        if fd >= 0:
            os.close(fd)
            fd = -1
    _finder = Finder(entries, fd, PREFIX + length, check)
    sys.meta_path.insert(0, _finder)


def finish() -> None:
    """At exit: rewrite the bundle if a HOT module had to be imported the normal way, where and when
    Python itself would write a .pyc. Never raises, never prints: the run's answer is already out."""
    if _finder is None or not _finder.stale or sys.dont_write_bytecode:
        return
    try:
        from quay_cred_helper import hotbuild  # the writer: not loaded by runs that only read

        hotbuild.build(wait=False)
    except Exception:  # only an optimisation: the next run imports the normal way, as this one did
        return

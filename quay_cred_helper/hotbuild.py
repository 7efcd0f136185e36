"""Writes the bundle launch.py serves: `python3 -m quay_cred_helper.hotbuild [--remove]`.

The .deb and .rpm install scripts and scripts/setup run it (it waits out the racy window, at most
launch.RACY_NS, so that nothing just installed is left out); launch.finish() runs `build(wait=False)`
at the exit of a run that found the bundle missing or stale.

The file: the index's length (4 bytes) and its checksum (launch.checksum(), 8 bytes), little-endian, the index,
marshalled (launch.header() and name -> (source, key, offset, size, the code's checksum); offset -1 for
a module left out because its times are too recent), then each module's code,
marshalled, at its offset from the index's end.
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import marshal
import os
import sys
import time

from quay_cred_helper.launch import HOT, PACKAGE_DIR, PREFIX, RACY_NS, bundle_path, checksum, header, key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType

    from quay_cred_helper.launch import Entry, Key

    Compiled = dict[str, tuple[str, Key, "bytes | None"]]  # None: left out (its times too recent)


def source(name: str) -> str:
    """Where the normal import finds `name`: a HOT module lives in this package's directory tree."""
    base = os.path.join(PACKAGE_DIR, *name.split(".")[1:])
    return os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"


def build(wait: bool = True) -> bool:
    """Compile HOT into the bundle, atomically. With `wait`, first let any source that changed less than
    RACY_NS ago age past it (at most that long); without, leave such modules out. False if the directory
    is not writable (nothing written)."""
    target = bundle_path()
    directory = os.path.dirname(target)
    if not os.access(directory if os.path.isdir(directory) else PACKAGE_DIR, os.W_OK):
        return False  # where Python could not write a .pyc either
    if wait:
        # At most RACY_NS: a source dated in the future (a clock that was ahead) is left out, not waited for.
        newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for st in map(os.stat, map(source, HOT)))
        time.sleep(min(RACY_NS, max(0, newest + RACY_NS - time.time_ns())) / 1e9)
    entries = _compile_all()
    os.makedirs(directory, exist_ok=True)
    temporary = f"{target}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    # Readable by all, like a .pyc (files.write_atomic writes private files).
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_layout(entries))
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return True


def _layout(compiled: Compiled) -> bytes:
    """The file: the index's length and checksum (launch.PREFIX: 4 and 8 bytes), the index (header,
    name -> entry), then the code, each module's at its offset from the end of the index."""
    index: dict[str, Entry] = {}
    offset = 0
    check = checksum()
    for name, (origin, stamp, code) in compiled.items():
        if code is None:  # left out while its times are that recent: no code, and no rewrite until they age
            index[name] = (origin, stamp, -1, 0, 0)
            continue
        index[name] = (origin, stamp, offset, len(code), check(code))
        offset += len(code)
    head = marshal.dumps((header(), index))
    prefix = len(head).to_bytes(4, "little") + check(head).to_bytes(PREFIX - 4, "little")
    return prefix + head + b"".join(code for _, _, code in compiled.values() if code is not None)


def _compile_all() -> Compiled:
    entries: Compiled = {}
    for name in HOT:
        origin = source(name)
        try:
            before = key(origin)  # stat before reading: a write after it makes the entry stale, not wrong
            with open(origin, "rb") as f:
                text = f.read()
        except OSError:
            continue
        if key(origin) != before:
            continue  # changed while read: left to the normal import, and the next run rewrites
        if max(before[2], before[3]) > time.time_ns() - RACY_NS:
            entries[name] = (origin, before, None)  # changed just now, or dated in the future: left out
            continue
        entries[name] = (origin, before, marshal.dumps(_compiled(text, origin)))
    return entries


def _compiled(text: bytes, origin: str) -> CodeType:
    """The module's code as the normal import compiles it, but for one thing: `from __future__ import
    annotations` becomes the compiler flag that statement sets, without the import it also makes at run
    time (a module of the stdlib, found and loaded on every run, to bind a name no code reads). The line
    is blanked, not removed, and the source compiled as text: every line number and every function's
    code stay those of the normal compile, and each annotation the same string."""
    lines = text.splitlines(keepends=True)
    future = [
        node
        for node in ast.parse(text, origin).body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__" and _alone(node, lines)
    ]
    if len(future) != 1:
        return compile(text, origin, "exec", dont_inherit=True)
    lines[future[0].lineno - 1] = b"\n"
    flags = __future__.annotations.compiler_flag
    code: CodeType = compile(b"".join(lines), origin, "exec", flags=flags, dont_inherit=True)
    return code


def _alone(node: ast.ImportFrom, lines: list[bytes]) -> bool:
    """`from __future__ import annotations`, alone on its line."""
    names = [(alias.name, alias.asname) for alias in node.names]
    line = lines[node.lineno - 1].rstrip(b"\r\n")
    return names == [("annotations", None)] and line == b"from __future__ import annotations"


def remove() -> None:
    """Delete the bundles of every interpreter (a package's removal script; harmless when there are none)."""
    directory = os.path.dirname(bundle_path())
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            if name.startswith("hot.") and name.endswith(".bundle"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, name))


def main(argv: list[str]) -> int:
    if argv == ["--remove"]:
        remove()
        return 0
    if argv:
        sys.stderr.write("usage: python3 -m quay_cred_helper.hotbuild [--remove]\n")
        return 2
    if not build():
        sys.stderr.write(f"quay_cred_helper.hotbuild: {os.path.dirname(bundle_path())} is not writable\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

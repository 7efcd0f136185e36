"""Paths on a node mounted at --root, resolved as the node itself sees them.

`resolve(root, path)` walks `path` one name at a time under `root` with the semantics of openat2's
RESOLVE_IN_ROOT: a symlink's absolute target starts again at the root (never at the installer's own /),
`..` stops at the root, and more than MAX_LINKS links (a loop) is refused, as the kernel's ELOOP. A link
whose target climbs above the root with `..` is refused too: on the node it would name something the
admin did not mean, and with --root=/host we would write inside the container. A name that does not exist
yet ends the walk: the rest is taken as written, for a file or directory to be made.

Pure path arithmetic over lstat and readlink (openat2 itself has no binding in the standard library):
a race with someone who can write the node's directories is beyond it, as it is for root's own tools.
"""

from __future__ import annotations

import os
import stat

from quay_cred_helper.errors import InputError

MAX_LINKS = 40  # the kernel's limit (MAXSYMLINKS) before ELOOP


def resolve(root: str, path: str, follow: bool = True) -> str:
    """The host path of the node's `path`. `follow=False` leaves a link in the last name unfollowed."""
    base = os.path.abspath(root)
    done: list[str] = []  # names resolved so far, under the root, none a link
    todo = [n for n in path.split("/") if n][::-1]  # a stack: the next name last
    links = 0
    missing = False  # a name did not exist: the rest is taken as written
    while todo:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(base, *done, name)
        try:
            found = None if missing else os.lstat(here)
        except FileNotFoundError:
            found = None
        except OSError as exc:
            raise InputError(f"cannot read {_node(done + [name])} on the node: {exc.strerror}", "run as root") from None
        if found is None:
            missing = True
            done.append(name)
            continue
        if not stat.S_ISLNK(found.st_mode) or (not todo and not follow):
            done.append(name)
            continue
        links += 1
        if links > MAX_LINKS:
            raise InputError(f"{path} on the node: too many levels of symlinks (a loop)", "fix the links")
        target = os.readlink(here)
        if target.startswith("/"):
            done = []
        elif _climbs(done, target):
            raise InputError(
                f"{_node(done + [name])} on the node links to {target}, outside the node's root",
                "make the link stay inside the node's file system",
            )
        todo += [n for n in target.split("/") if n][::-1]
    return os.path.join(base, *done)


def _climbs(done: list[str], target: str) -> bool:
    """Whether a relative target's `..` go above the root from the directory `done`."""
    depth = len(done)
    for name in target.split("/"):
        if name == "..":
            depth -= 1
            if depth < 0:
                return True
        elif name and name != ".":
            depth += 1
    return False


def _node(names: list[str]) -> str:
    return "/" + "/".join(names)


def node_path(root: str, host: str) -> str:
    """The node's name for a host path under `root`."""
    relative = os.path.relpath(host, os.path.abspath(root)).replace(os.sep, "/")
    return "/" if relative == "." else "/" + relative

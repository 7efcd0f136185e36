"""What packaging/build-node-bundle needs from Python: the modules the provider can import, and the zipapp.

    python3 node_bundle.py closure SRC MODULE [--prune MODULE...]
        The package's modules MODULE can import at run time, one a line: every import statement at any
        depth (the provider imports lazily), except those under `if TYPE_CHECKING:` (annotations only),
        and not following into the --prune modules.
    python3 node_bundle.py launcher MODULE:FUNCTION OUT
        The PyInstaller bundle's launcher script.
    python3 node_bundle.py zipapp OUTDIR --src SRC --entry MODULE:FUNCTION --wheels WHL... --stub NAME=FILE
            [--modules FILE] [--license NAME=FILE] [--interpreter LINE] [--pyc-python PY --pyc-for NAMES]
            [--unbundled NAMES]
        OUTDIR/quay-credential-provider.pyz (the modules and the wheels' packages, their licenses in LICENSES/)
        and OUTDIR/quay-credential-provider, a launcher that puts the .pyz beside its real path on sys.path.
        Every dependency a wheel declares must be among the wheels or in --unbundled.

The zip is deterministic (sorted entries, one timestamp, deflate level 9). --pyc-python writes a .pyc next
to each .py of the --pyc-for packages with that interpreter, unchecked-hash: zipimport never caches what it
compiles, so without them every run compiles every module it imports; another Python version (another magic
number) reads the .py instead.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import stat
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator

STAMP = (1980, 1, 1, 0, 0, 0)
NAME = "quay-credential-provider"


# -- closure ---------------------------------------------------------------------------------------


def _source(root: str, name: str) -> str | None:
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.exists(path):
            return path
    return None


def _imports(name: str, path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    here = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from package import module`
        visit(node)

    visit(tree)
    return found


def closure(root: str, entry: str, prune: frozenset[str] = frozenset()) -> list[str]:
    """The package's modules `entry` can import, not following into the `prune` modules."""
    package = entry.split(".")[0]
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        path = None if name in seen or name in prune else _source(root, name)
        if path is None:
            continue  # seen, pruned, or `from module import attribute`
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        todo.extend(found for found in _imports(name, path) if found.split(".")[0] == package)
    return sorted(seen)


# -- zipapp ----------------------------------------------------------------------------------------


def launcher(module: str, function: str, interpreter: str | None = None) -> bytes:
    """The provider's launcher: as bin/quay-credential-provider ends (flush, then os._exit: no teardown);
    with an interpreter, a script that finds the .pyz beside its real path."""
    lines = []
    if interpreter:
        lines += [
            f"#!{interpreter}",
            f"# {NAME} for nodes that have Python 3.9+ and nothing else (RHCOS): the provider and the",
            f"# pure-Python libraries it imports are in {NAME}.pyz beside this file's real path (a link works).",
        ]
    lines += ["import os", "import sys", ""]
    if interpreter:
        lines += ['sys.path.insert(0, os.path.realpath(__file__) + ".pyz")']
    lines += [
        f"from {module} import {function}" + ("  # noqa: E402" if interpreter else ""),
        "",
        f"code = {function}()",
        "try:",
        "    sys.stdout.flush()",
        "    sys.stderr.flush()",
        "except OSError:  # a closed pipe: what the interpreter itself exits with when its final flush fails",
        "    code = 120",
        "os._exit(code)",
    ]
    return ("\n".join(lines) + "\n").encode()


def _wheel_members(path: str) -> Iterator[tuple[str, bytes]]:
    """(name in the zip, bytes): a wheel's importable files, and its license files under LICENSES/DIST/."""
    with zipfile.ZipFile(path) as wheel:
        for name in sorted(wheel.namelist()):
            top, _, rest = name.partition("/")
            if top.endswith(".dist-info"):
                leaf = rest.rsplit("/", 1)[-1]
                if rest.startswith("licenses/") or leaf.upper().startswith(("LICENSE", "COPYING", "NOTICE")):
                    yield f"LICENSES/{top[: -len('.dist-info')]}/{leaf}", wheel.read(name)
                continue
            if name.endswith(("/", ".pyc", "py.typed")) or "__pycache__" in name:
                continue
            yield name, wheel.read(name)


def _compile(python: str, files: dict[str, bytes], tops: set[str]) -> None:
    sources = [rel for rel in files if rel.endswith(".py") and rel.split("/")[0].removesuffix(".py") in tops]
    script = (
        "import py_compile, sys\n"
        "mode = py_compile.PycInvalidationMode.UNCHECKED_HASH\n"
        "for rel in sys.argv[2:]:\n"
        "    path = sys.argv[1] + '/' + rel\n"
        "    py_compile.compile(path, cfile=path + 'c', dfile=rel, doraise=True, invalidation_mode=mode)\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for rel in sources:
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "wb") as f:
                f.write(files[rel])
        # A fixed hash seed: frozenset constants (`x in {...}`) are marshalled in hash order.
        subprocess.run([python, "-S", "-s", "-c", script, tmp, *sources], check=True, env={"PYTHONHASHSEED": "0"})
        for rel in sources:
            with open(os.path.join(tmp, rel + "c"), "rb") as f:
                files[rel + "c"] = f.read()


def _requires(path: str) -> tuple[str, list[str]]:
    """A wheel's distribution name and the names it requires outside extras (markers not evaluated: a
    dependency for some Python versions only counts, so that someone decides about it)."""
    with zipfile.ZipFile(path) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        text = wheel.read(meta).decode("utf-8")
    headers = text.split("\n\n", 1)[0].splitlines()
    name = next(line.split(":", 1)[1].strip() for line in headers if line.startswith("Name:"))
    needs = []
    for line in headers:
        if line.startswith("Requires-Dist:"):
            spec = line.split(":", 1)[1]
            if "extra ==" in spec.partition(";")[2]:
                continue
            found = re.match(r"\s*([A-Za-z0-9._-]+)", spec)
            if found:
                needs.append(found.group(1))
    return name, needs


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def check_requirements(wheels: list[str], unbundled: set[str]) -> None:
    """Every dependency of a bundled wheel is bundled too, or named as deliberately left out."""
    found = dict(_requires(path) for path in wheels)
    bundled = {_normal(name) for name in found}
    missing = sorted(
        {
            f"{_normal(need)} (for {name})"
            for name, needs in found.items()
            for need in needs
            if _normal(need) not in bundled | unbundled
        }
    )
    if missing:
        raise SystemExit(f"node_bundle: dependencies neither bundled nor left out on purpose: {', '.join(missing)}")


def zipapp(opts: argparse.Namespace) -> None:
    check_requirements(opts.wheels, {_normal(name) for name in opts.unbundled.split(",") if name})
    module, _, function = opts.entry.partition(":")
    package = module.split(".")[0]
    if opts.modules is None:
        wanted = set(closure(opts.src, module))
    else:
        with open(opts.modules) as f:
            wanted = set(f.read().split())
    files: dict[str, bytes] = {}
    for name in sorted(wanted):
        path = _source(opts.src, name)
        if path is not None and name.split(".")[0] == package:
            with open(path, "rb") as f:
                files[os.path.relpath(path, opts.src).replace(os.sep, "/")] = f.read()
    for wheel in opts.wheels:
        files.update(_wheel_members(wheel))
    for spec in opts.stub:
        name, _, path = spec.partition("=")
        with open(path, "rb") as f:
            files[f"{name}.py"] = f.read()
    for spec in opts.license:
        name, _, path = spec.partition("=")
        with open(path, "rb") as f:
            files[f"LICENSES/{name}/{os.path.basename(path)}"] = f.read()
    # Runnable by itself too (python3 quay-credential-provider.pyz --version), though through runpy, which
    # costs Python 3.9 about 25 ms more than the launcher (importlib.util brings typing).
    files["__main__.py"] = launcher(module, function)
    if opts.pyc_python:
        _compile(opts.pyc_python, files, set(opts.pyc_for.split(",")))
    os.makedirs(opts.outdir, exist_ok=True)
    pyz = os.path.join(opts.outdir, f"{NAME}.pyz")
    with open(pyz, "wb") as out:
        out.write(b"#!" + opts.interpreter.encode() + b"\n")
        with zipfile.ZipFile(out, "w") as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, STAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, files[name], compresslevel=9)
    os.chmod(pyz, 0o755)
    run = os.path.join(opts.outdir, NAME)
    with open(run, "wb") as f:
        f.write(launcher(module, function, opts.interpreter))
    os.chmod(run, 0o755)


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    find = commands.add_parser("closure")
    find.add_argument("src")
    find.add_argument("module")
    find.add_argument("--prune", nargs="*", default=[], help="modules not to follow (nor include)")
    plain = commands.add_parser("launcher")
    plain.add_argument("entry")
    plain.add_argument("out")
    build = commands.add_parser("zipapp")
    build.add_argument("outdir")
    build.add_argument("--src", required=True)
    build.add_argument("--entry", required=True)
    build.add_argument("--modules", help="the package's modules to include, one a line (default: the closure)")
    build.add_argument("--wheels", nargs="*", default=[])
    build.add_argument("--stub", action="append", default=[], help="NAME=FILE: FILE as the top-level module NAME")
    build.add_argument("--license", action="append", default=[], help="NAME=FILE: a license file of our own")
    build.add_argument("--interpreter", default="/usr/bin/python3 -IS")
    build.add_argument("--pyc-python", help="the node's Python version, to write .pyc files with")
    build.add_argument("--pyc-for", default="", help="comma-separated top-level names to compile")
    build.add_argument("--unbundled", default="", help="comma-separated dependencies left out on purpose")
    opts = parser.parse_args()
    if opts.command == "closure":
        print("\n".join(closure(opts.src, opts.module, frozenset(opts.prune))))
    elif opts.command == "launcher":
        module, _, function = opts.entry.partition(":")
        with open(opts.out, "wb") as f:
            f.write(launcher(module, function))
    else:
        zipapp(opts)


if __name__ == "__main__":
    main()

"""The documentation cannot drift: every message and setting in the code is documented."""

import ast
import re
from pathlib import Path

import pytest

from quay_cred_helper import config

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "quay_cred_helper"
ERRORS = {
    "HelperError",
    "InputError",
    "ConfigError",
    "KeyringError",
    "KeyringLocked",
    "RegistryError",
    "TLSError",
    "Unreachable",
    "DeadlineExceeded",
    "NotFound",
    "SourceError",
    "FederationRefused",
    "ApiRefused",
    "IdPError",
    "SessionExpired",
    "OAuthError",
}


def literal_parts(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    return []


def messages():
    """(file:line, longest literal run) of every message an error is raised with."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            candidates = []
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ERRORS:
                # The problem and the fix: each is a message the guide must explain.
                candidates = [*node.args[:2], *(k.value for k in node.keywords if k.arg == "fix")]
            for candidate in candidates:
                variants = [candidate.body, candidate.orelse] if isinstance(candidate, ast.IfExp) else [candidate]
                for variant in variants:
                    parts = [p.strip(" :;,()") for p in literal_parts(variant)]
                    longest = max(parts, key=len, default="")
                    if len(longest) >= 6:
                        found.append((f"{path.relative_to(PACKAGE)}:{variant.lineno}", longest))
    return found


def test_the_scan_finds_the_messages():
    assert len(messages()) > 50


@pytest.mark.parametrize("where, text", messages())
def test_every_message_is_in_troubleshooting(where, text):
    doc = (ROOT / "docs" / "troubleshooting.md").read_text()
    assert text in doc, f"{where}: {text!r} is not explained in docs/troubleshooting.md"


def test_every_setting_and_variable_is_in_the_configuration_reference():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for name, (default, _, _) in config.SETTINGS.items():
        assert re.search(rf"\| `{name}` \| [^|]*{re.escape(default) if default else 'none'}", doc), name
    variables = set()
    for path in PACKAGE.rglob("*.py"):
        variables |= set(re.findall(r'^\w+_ENV = "(\w+)"', path.read_text(), re.M))
    assert len(variables) >= 6
    for variable in variables:
        assert f"`{variable}`" in doc, variable


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)]+)\)", readme)
    assert len(links) >= 7
    for link in links:
        assert (ROOT / link).exists(), link


def test_architecture_names_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for path in PACKAGE.rglob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            assert f"{path.stem}" in doc, f"docs/architecture.md does not mention {path.relative_to(PACKAGE)}"
    for package in (p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        assert f"`{package.name}/`" in doc, package.name


def _layers():
    """The layers docs/architecture.md draws, top to bottom: {name: depth}."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    listed = doc.split("<!-- layers -->")[1].split("<!-- /layers -->")[0]
    layers = {}
    for depth, line in enumerate(line for line in listed.splitlines() if line.strip()):
        for name in re.findall(r"`([\w]+)/?`", line):
            layers[name] = depth
    return layers


def _imports(path):
    """Every quay_cred_helper name a module imports: at run time, inside functions and for types."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("quay_cred_helper."))
        elif isinstance(node, ast.ImportFrom) and node.module == "quay_cred_helper":
            yield from (f"quay_cred_helper.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("quay_cred_helper."):
            yield node.module


def test_imports_go_only_downward_through_the_drawn_layers():
    layers = _layers()
    assert len(set(layers.values())) >= 6
    seen = 0
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        assert own in layers, f"docs/architecture.md's layers do not name {own}"
        for imported in _imports(path):
            name = imported.split(".")[1]
            target = name if name in layers else "__init__"  # `from quay_cred_helper import __version__`
            seen += 1
            assert layers[target] >= layers[own], f"{path.relative_to(PACKAGE)} imports {imported}, a layer above"
    assert seen > 80


# -- docs/architecture.md's claims that a test can hold ------------------------------------------------------


def test_only_the_front_doors_print():
    """The page: only helper.py, cli.py, commands/, kubelet/main.py and hotbuild.py print; launch.py flushes;
    log.py's debug log may go to stderr. No other
    module calls print() or touches sys.stdout / sys.stderr (protocol.serve writes to the stream it is given)."""
    import ast

    allowed = {"helper.py", "cli.py", "kubelet/main.py", "hotbuild.py", "launch.py", "log.py"}  # log: its debug log
    seen = set()
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            prints = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
            streams = (
                isinstance(node, ast.Attribute)
                and node.attr in ("stdout", "stderr")
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            )
            if prints or streams:
                seen.add(name)
                assert name in allowed or name.startswith("commands/"), f"{name} prints ({node.lineno})"
    assert {"helper.py", "cli.py", "kubelet/main.py", "hotbuild.py"} <= seen  # the check sees what it looks for


def test_every_fake_is_in_the_architecture_page():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    fakes = ROOT / "tests" / "fakes"
    for path in fakes.iterdir():
        if path.name.startswith(("_", ".")):
            continue
        named = f"`{path.name}/`" if path.is_dir() else f"`{path.name}`"
        assert named in doc, f"docs/architecture.md does not list tests/fakes/{path.name}"


def test_the_hot_modules_are_the_drawn_ones():
    """Every module a hot path loads (launch.HOT) is named on the page, and `sources/robot_token` is not loaded
    by `store` at import: the promise that only a held token's `get` imports it."""
    import ast

    from quay_cred_helper import launch

    doc = (ROOT / "docs" / "architecture.md").read_text()
    for module in launch.HOT:
        stem = module.rsplit(".", 1)[-1]
        assert stem in doc or module.count(".") == 1, module
    tree = ast.parse((PACKAGE / "store.py").read_text())
    top_level = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module is not None}
    assert "quay_cred_helper.sources.robot_token" not in top_level and "quay_cred_helper.store" in launch.HOT


def test_tests_mirror_the_code_as_the_architecture_page_says():
    """Test files are named for a subject (no file per issue, review or pass), every test in them can be found,
    and every fixture conftest.py shares is named in the page's Tests section, defined there once."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc[doc.index("## Tests") :]
    tests = ROOT / "tests"
    for path in tests.glob("test_*.py"):
        subject = path.stem[len("test_") :]
        assert not re.search(r"\d|hardening|review|issue|findings", subject), (
            f"tests/{path.name}: name it for its subject"
        )
    tree = ast.parse((tests / "conftest.py").read_text())
    shared = []
    for node in tree.body:
        decorators = [ast.unparse(d) for d in getattr(node, "decorator_list", [])]
        if any("fixture" in d for d in decorators) and not any("autouse=True" in d for d in decorators):
            shared.append(node.name)
    assert {"home", "file_keyring", "env", "quay"} <= set(shared)
    for name in shared:
        assert f"`{name}`" in section, f"the Tests section of docs/architecture.md does not name conftest's {name}"

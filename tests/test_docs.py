"""The documentation cannot drift: every message and setting in the code is documented."""

import ast
import re
from pathlib import Path

import pytest

from quay_cred_helper import config

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "quay_cred_helper"
ERRORS = {"HelperError", "InputError", "KeyringError", "RegistryError", "Unreachable", "NotFound"}
MESSAGE_FUNCTIONS = {"_describe", "_connect_message"}  # they build messages the error classes then carry


def literal_parts(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    return []


def messages():
    """(file:line, longest literal run) of every message an error is raised with."""
    found = []
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            candidates = []
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ERRORS and node.args:
                candidates = [node.args[0]]
            elif isinstance(node, ast.FunctionDef) and node.name in MESSAGE_FUNCTIONS:
                candidates = [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
                candidates = [c for v in candidates for c in ([v.body, v.orelse] if isinstance(v, ast.IfExp) else [v])]
            for candidate in candidates:
                parts = [p.strip(" :;,()") for p in literal_parts(candidate)]
                longest = max(parts, key=len, default="")
                if len(longest) >= 6:
                    found.append((f"{path.name}:{candidate.lineno}", longest))
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
    for path in PACKAGE.glob("*.py"):
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

"""Run tests/test_contracts.py's checks inside CPython for Windows, against keyring's WinVaultKeyring.

python.exe runs this file (under Wine) with argv: the repository, a directory holding pytest (installed
there for Windows by pip --target), a scratch directory. It imports the contract module itself and calls
every test function, giving each what its fixtures give on Linux: `store` (our KeyringStore over the
Windows Credential Manager, or the helper's exchanging store in front of it, built by the module's own
helpers), `tmp_path`, `clock` and the parametrized arguments. It prints one JSON object:
{"backend": keyring's choice, "results": {"kind::test[arg]": "passed" | "ExceptionType: message"},
"details": [traceback, ...]}.
"""

import inspect
import itertools
import json
import sys
import tempfile
import traceback
import types
from pathlib import Path

repo, tools, scratch = sys.argv[1:4]
sys.path[:0] = [tools]
sys.path.append(repo)  # for `tests` only: quay_cred_helper is the one pip installed, found first

import keyring  # noqa: E402
from keyring.backends.Windows import WinVaultKeyring  # noqa: E402

from quay_cred_helper.config import Config  # noqa: E402
from quay_cred_helper.registry.cache import FileTokenCache  # noqa: E402
from quay_cred_helper.store import HelperStore  # noqa: E402
from tests import test_contracts as contract  # noqa: E402

KINDS = ("keyring-wincred", "exchanging-keyring-wincred")


def build(kind, tmp):
    """The store of `kind` as the contract's `store` fixture builds its keyring kinds, over WinVaultKeyring."""
    backend = WinVaultKeyring()
    inner, _ = contract.keyring_store(tmp, backend)
    if kind == "keyring-wincred":
        return inner, backend
    use = types.SimpleNamespace(
        config=Config(str(tmp / "none.ini")),
        cache=FileTokenCache(str(tmp / "tokens")),
        keyring_store=inner,
        tokens=contract._no_exchange,
    )
    return HelperStore(inner.index, use, warn=contract._no_warning), backend


def cases(function):
    """[(id suffix, {argument: value})] from the function's parametrize marks."""
    marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
    if not marks:
        return [("", {})]
    grids = []
    for mark in marks:
        names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) else list(mark.args[0])
        grids.append([(names, v if len(names) > 1 else (v,)) for v in mark.args[1]])
    found = []
    for combination in itertools.product(*grids):
        arguments, ids = {}, []
        for names, values in combination:
            arguments.update(zip(names, values))
            ids.extend(str(v)[:20] for v in values)
        found.append((f"[{'-'.join(ids)}]", arguments))
    return found


def outcome(function, arguments, details):
    try:
        function(**arguments)
    except BaseException as exc:  # a failed check: report it, go on with the next
        details.append(traceback.format_exc()[-1500:])
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return "passed"


def main():
    chosen = type(keyring.get_keyring())  # keyring's own choice, before the stores set theirs
    results, details = {}, []
    root = Path(tempfile.mkdtemp(dir=scratch))
    tests = [(n, f) for n, f in vars(contract).items() if n.startswith("test_") and inspect.isfunction(f)]
    # The stores' and caches' checks; the credential sources' (a `source` fixture of env and file sources
    # built by conftest) are not about the Credential Manager and run on Linux only.
    tests = [(n, f) for n, f in tests if "source" not in inspect.signature(f).parameters]
    for (name, function), (suffix, arguments) in ((t, c) for t in tests for c in cases(t[1])):
        wanted = inspect.signature(function).parameters
        for kind in KINDS if "store" in wanted else [None]:
            tmp = Path(tempfile.mkdtemp(dir=root))
            given = dict(arguments, tmp_path=tmp, clock=[1_000_000.0])
            backend = None
            if kind:
                given["store"], backend = build(kind, tmp)
            label = f"{kind}::{name}{suffix}" if kind else f"{name}{suffix}"
            results[label] = outcome(function, {k: v for k, v in given.items() if k in wanted}, details)
            for key in contract.KEYS if backend else ():  # leave the Credential Manager as found
                if backend.get_password("quay-cred-helper", key) is not None:
                    backend.delete_password("quay-cred-helper", key)
    print(json.dumps({"backend": f"{chosen.__module__}.{chosen.__name__}", "results": results, "details": details}))


main()

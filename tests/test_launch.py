"""The launchers and the hot modules served from one file (quay_cred_helper/launch.py): every hot path
served whole, byte-identical answers, and never a stale, damaged or foreign bundle served."""

import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import quay_cred_helper
from quay_cred_helper import launch
from tests.support import (
    CI_ROBOT,
    CI_ROBOT_TOKEN,
    CLI,
    HELPER,
    PROVIDER,
    ROBOT,
    ROBOT_TOKEN,
    ROBOTS,
    USERS,
    cli,
    helper,
    launch_probe,
    probe_argv,
)

SUBJECT = "system:serviceaccount:ci:builder"
NOT_SERVED = {"quay_cred_helper", "quay_cred_helper.launch", "__future__ imported"}  # imported to serve the rest
V1 = "credentialprovider.kubelet.k8s.io/v1"


def kubelet_request(image, **more):
    return json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": image, **more}).encode()


CACHE_DURATION = re.compile(rb'"cacheDuration":"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?"')


def durations(*answers):
    """The cacheDuration of each provider answer, in seconds (0 for the helper's answers)."""
    found = [CACHE_DURATION.search(answer) for answer in answers]
    return [sum(int(n or 0) * f for n, f in zip(m.groups(), (3600, 60, 1))) if m else 0 for m in found]


def undated(answer):
    return CACHE_DURATION.sub(b'"cacheDuration":"-"', answer)


def private(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


def hot_paths(tmp_path, home, issuer, quay, secret_keyring):
    """(name, env, launcher, args, stdin) of every hot path, each run once so that its cache is warm."""
    issuer.trusted_by(quay, tmp_path)
    quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": SUBJECT}]
    keyring = dict(home, PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring")
    keyring["QUAY_CRED_HELPER_ALLOW_PLAINTEXT"] = "1"
    stored = json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN})
    assert helper(keyring, "store", stored).returncode == 0
    # A keyless robot on the same registry under its other loopback name.
    keyless_host = f"localhost:{quay.port}"
    keyless = dict(keyring, ID_TOKEN=issuer.token(SUBJECT))
    assert cli(keyless, "login", keyless_host, "-u", ROBOT, "--oidc", "env:ID_TOKEN").returncode == 0
    # A CI job's robot token in its environment, no keyring.
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    ci_config = private(etc / "ci.ini", f"[{quay.host}]\nrobot = {CI_ROBOT}\nrobot_token_env = JOB_TOKEN\n")
    ci = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", JOB_TOKEN=CI_ROBOT_TOKEN)
    ci.update(QUAY_CRED_HELPER_CONFIG=str(ci_config))
    # A user's secret in the Secret Service.
    user = json.dumps({"ServerURL": "user.example.com", "Username": "alice", "Secret": "alice-secret"})
    assert helper(secret_keyring, "store", user).returncode == 0
    # The provider: a robot token file, per registry and per namespace.
    node = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    token = private(etc / "robot-token", ROBOT_TOKEN + "\n")
    plain = private(etc / "kubelet.ini", f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")
    routed = private(etc / "routed.ini", f"[{quay.host}/org]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")
    pods = private(etc / "pods.ini", f"[{quay.host}]\nservice_account = true\nrobot = {ROBOT}\n")
    image = f"{quay.host}/org/app"
    request = kubelet_request(image)
    pod = kubelet_request(
        image, serviceAccountToken=issuer.token(SUBJECT, audience="quay"), serviceAccountAnnotations={}
    )
    paths = [
        ("version", keyring, HELPER, ["version"], b""),
        ("list", keyring, HELPER, ["list"], b""),
        ("robot get", keyring, HELPER, ["get"], quay.host.encode()),
        ("keyless get", keyless, HELPER, ["get"], keyless_host.encode()),
        ("CI token get", ci, HELPER, ["get"], quay.host.encode()),
        ("Secret Service get", secret_keyring, HELPER, ["get"], b"user.example.com"),
        ("provider", node, PROVIDER, ["--config", str(plain), "--cache-dir", str(etc / "c1")], request),
        ("provider per namespace", node, PROVIDER, ["--config", str(routed), "--cache-dir", str(etc / "c2")], request),
        ("provider per pod", node, PROVIDER, ["--config", str(pods), "--cache-dir", str(etc / "c3")], pod),
    ]
    for _, env, launcher, args, stdin in paths:
        warm = subprocess.run([launcher, *args], input=stdin, env=env, capture_output=True, timeout=30)
        assert warm.returncode == 0, (args, warm.stdout, warm.stderr)
    return paths


@pytest.fixture
def quay(issuer):
    from tests.fakes.quay_registry import QuayRegistry

    with QuayRegistry(users=USERS, robots=dict(ROBOTS, **{CI_ROBOT: CI_ROBOT_TOKEN})) as registry:
        yield registry


@pytest.mark.slow  # over half a second: the full suite
def test_every_hot_path_is_served_whole_and_answers_as_without_the_bundle(tmp_path, home, issuer, quay, secret_keyring):
    used = set()
    paths = hot_paths(tmp_path, home, issuer, quay, secret_keyring)
    auth_before = quay.count("/v2/auth")
    for name, env, launcher, args, stdin in paths:
        served, loaders = launch_probe(env, launcher, args, stdin)
        plain, plain_loaders = launch_probe(dict(env, QCH_PROBE_PLAIN="1"), launcher, args, stdin)
        # Byte for byte what the normal import gives, exit code included (the provider's cacheDuration
        # counts down by the second between the two runs).
        (a, b), (out, plain_out) = (
            durations(served.stdout, plain.stdout),
            (undated(served.stdout), undated(plain.stdout)),
        )
        assert (served.returncode, out, served.stderr) == (plain.returncode, plain_out, plain.stderr)
        assert 0 <= a - b <= 1, (a, b)
        assert served.returncode == 0, (name, served.stdout, served.stderr)
        ours = set(loaders) - NOT_SERVED
        assert {m for m in ours if loaders[m] != "Finder"} == set(), name  # all served from the bundle
        assert set(plain_loaders) == set(loaders) and "Finder" not in plain_loaders.values()
        assert loaders["__future__ imported"] is False and plain_loaders["__future__ imported"] is True
        assert ours <= set(launch.HOT), (name, ours - set(launch.HOT))
        used |= ours
    assert used == set(launch.HOT)  # HOT holds nothing these paths do not use
    assert quay.count("/v2/auth") == auth_before  # every one of them answered from its cache


def test_served_code_is_the_normal_compile_but_for_the_future_import():
    """hotbuild compiles `from __future__ import annotations` as its flag, without the import: every
    function and class the same code, annotations the same strings, and only the module global
    `annotations` missing, which no hot module reads."""
    import dis

    from quay_cred_helper import hotbuild

    def nested(code):
        return [const for const in code.co_consts if hasattr(const, "co_code")]

    def global_loads(code):
        for instruction in dis.get_instructions(code):
            if instruction.opname in ("LOAD_NAME", "LOAD_GLOBAL"):
                yield instruction.argval
        for inner in nested(code):
            yield from global_loads(inner)

    for name in launch.HOT:
        origin = hotbuild.source(name)
        text = Path(origin).read_bytes()
        served, normal = hotbuild._compiled(text, origin), compile(text, origin, "exec", dont_inherit=True)
        # (CPython 3.11 compiles `x.items()` differently, yet to the same effect, for a local `x` named like a
        # module global the future import binds: hot modules name no local `annotations`.)
        assert nested(served) == nested(normal), name
        assert "annotations" not in set(global_loads(normal)), name


def test_launchers_are_short_and_end_in_launch_run():
    for launcher, door in ((HELPER, "quay_cred_helper.helper"), (PROVIDER, "quay_cred_helper.kubelet.main")):
        lines = Path(launcher).read_text().splitlines()
        assert lines[0].startswith("#!") and "python" in lines[0]
        code = [line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")]
        assert code[0] == "import sys" and code[1] == "if sys.flags.no_site:"  # the .deb/.rpm's -IS names its dirs
        assert code[-2:] == ["from quay_cred_helper.launch import run  # noqa: E402", f'run("{door}")']
        assert len(code) <= 9  # a script is compiled on every run
    assert "importlib.metadata" not in Path(CLI).read_text()  # a legacy install would use it


# -- a private copy of the package, which the tests below edit ------------------------------------


@pytest.fixture
def package(tmp_path):
    """A copy of the package: (the root to put first on sys.path, the copy's own dir)."""
    root = tmp_path / "site"
    copy = root / "quay_cred_helper"
    shutil.copytree(Path(quay_cred_helper.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return root, copy


def build(root):
    r = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import runpy; "
            "sys.argv[1:] = []; runpy.run_module('quay_cred_helper.hotbuild', run_name='__main__')",
            str(root),
        ],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def bundle_of(copy):
    (found,) = (copy / "__pycache__").glob("hot.*.bundle")
    return found


def copy_env(home, root):
    """`home` for running the copy under `root`, where Python would write .pyc files."""
    env = {k: v for k, v in home.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["QCH_PROBE_ROOT"] = str(root)
    return env


def run_copy(root, home, *args, plain=False):
    """A run of the copy's docker-credential-quay, where Python would write .pyc files."""
    env = copy_env(home, root)
    if plain:
        env["QCH_PROBE_PLAIN"] = "1"
    return launch_probe(env, HELPER, list(args))


def edit_in_place(path, old, new):
    """Change `path` keeping its size, inode and modification time: only its change time tells."""
    assert len(old) == len(new)
    before = path.stat()
    text = path.read_bytes()
    assert text.count(old) == 1
    with open(path, "r+b") as f:
        f.write(text.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


USAGE = b"Usage: docker-credential-quay"


@pytest.mark.slow  # waits out the racy window: the full suite
def test_an_edit_that_keeps_size_inode_and_mtime_is_never_served_stale(package, home):
    root, copy = package
    build(root)
    r, loaders = run_copy(root, home, "nonsense")
    assert r.stdout.startswith(USAGE) and loaders["quay_cred_helper.helper"] == "Finder"
    edit_in_place(copy / "helper.py", USAGE, b"USAGE: docker-credential-quay")
    r, loaders = run_copy(root, home, "nonsense")
    assert r.stdout.startswith(b"USAGE: ") and loaders["quay_cred_helper.helper"] == "SourceFileLoader"
    assert r.stderr == b"" and r.returncode == 1
    # Just changed: the rewrite at exit leaves it out (racy) and serves the rest; once it has settled,
    # the next rewrite takes it in, edited.
    r, loaders = run_copy(root, home, "list")
    assert loaders["quay_cred_helper.helper"] == "SourceFileLoader" and loaders["quay_cred_helper.log"] == "Finder"
    time.sleep(launch.RACY_NS / 1e9)
    run_copy(root, home, "nonsense")
    r, loaders = run_copy(root, home, "nonsense")
    assert r.stdout.startswith(b"USAGE: ") and loaders["quay_cred_helper.helper"] == "Finder"


@pytest.mark.slow  # builds a bundle from a fresh copy: waits out the racy window
def test_a_file_put_in_the_sources_place_is_never_served_stale(package, home):
    root, copy = package
    build(root)
    source = copy / "helper.py"
    before = source.stat()
    replacement = copy / "helper.py.new"
    replacement.write_bytes(source.read_bytes().replace(USAGE, b"Usage: DOCKER-credential-quay"))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, source)
    r, loaders = run_copy(root, home, "nonsense")
    assert r.stdout.startswith(b"Usage: DOCKER-") and loaders["quay_cred_helper.helper"] == "SourceFileLoader"


def damaged(data):
    half = len(data) // 2
    return {
        "empty": b"",
        "cut in the index": data[:20],
        "cut in the code": data[:half],
        "code overwritten": data[:half] + bytes(len(data) - half),
        "garbage": os.urandom(len(data)),
        "a huge index length": (1 << 62).to_bytes(8, "little") + data[8:],
    }


@pytest.mark.slow  # builds a bundle from a fresh copy: waits out the racy window
@pytest.mark.parametrize("damage", list(damaged(b"x" * 64)))
def test_a_damaged_bundle_is_imported_around_and_rewritten(package, home, damage):
    root, copy = package
    build(root)
    expected, _ = run_copy(root, home, "list", plain=True)
    bundle = bundle_of(copy)
    bundle.write_bytes(damaged(bundle.read_bytes())[damage])
    r, loaders = run_copy(root, home, "list")
    assert (r.returncode, r.stdout, r.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert expected.returncode == 0
    # Rewritten at exit (nothing in the copy changed lately), and served whole again.
    r, loaders = run_copy(root, home, "list")
    assert (r.returncode, r.stdout, r.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert {loaders[m] for m in set(loaders) - NOT_SERVED} == {"Finder"}


@pytest.mark.slow  # builds a bundle from a fresh copy: waits out the racy window
def test_another_interpreters_bundle_is_not_used(package, home):
    root, copy = package
    build(root)
    bundle = bundle_of(copy)
    data = bundle.read_bytes()
    stamp = sys.version.encode()
    assert data.count(stamp) == 1
    bundle.write_bytes(data.replace(stamp, stamp.replace(b"3.", b"4.", 1)))
    r, loaders = run_copy(root, home, "list")
    assert r.returncode == 0 and loaders["quay_cred_helper.helper"] == "SourceFileLoader"


def test_no_bundle_is_written_where_python_would_write_no_pyc(package, home):
    root, copy = package
    r, loaders = launch_probe(dict(home, QCH_PROBE_ROOT=str(root), PYTHONDONTWRITEBYTECODE="1"), HELPER, ["list"])
    assert r.returncode == 0 and loaders["quay_cred_helper.helper"] == "SourceFileLoader"
    assert not list(copy.glob("__pycache__/hot.*"))


@pytest.mark.slow  # waits out the racy window: the full suite
def test_a_read_only_install_runs_the_normal_way_and_says_nothing(package, home):
    root, copy = package
    time.sleep(launch.RACY_NS / 1e9)  # the copy is fresh: let it settle, so that a write would happen
    argv = probe_argv(HELPER, ["version"])
    env = dict(copy_env(home, root), QCH_PROBE_REPORT=str(root.parent / "report.json"))
    if os.geteuid() == 0:  # root writes anywhere, but not on a read-only mount (a system's /usr)
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(root), *argv]
    else:
        for path in (root, *root.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)
    r = subprocess.run(argv, env=env, capture_output=True, timeout=30)
    assert (r.returncode, r.stderr) == (0, b"") and r.stdout.startswith(b"docker-credential-quay")
    assert not list(copy.glob("__pycache__/hot.*"))
    assert json.loads((root.parent / "report.json").read_text())["quay_cred_helper.helper"] == "SourceFileLoader"


@pytest.mark.slow  # eight processes at once: the full suite
def test_concurrent_first_runs_all_answer_and_leave_one_good_bundle(package, home):
    root, copy = package
    time.sleep(launch.RACY_NS / 1e9)
    env = copy_env(home, root)
    runs = [
        subprocess.Popen(
            probe_argv(HELPER, ["list"]),
            env=dict(env, QCH_PROBE_REPORT=str(copy.parent / f"report{i}.json")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    answers = {(*p.communicate(timeout=60), p.returncode) for p in runs}
    assert answers == {(b"{}\n", b"", 0)}
    assert not list(copy.glob("__pycache__/*.tmp"))
    r, loaders = run_copy(root, home, "list")
    assert {loaders[m] for m in set(loaders) - NOT_SERVED} == {"Finder"}


# -- failing safe: a bundle that is not a file, or damaged; sources dated in the future ----------------------


def index_of(data):
    """A bundle's index: name -> (source, key, offset, size, checksum); offset -1 for a module left out."""
    import marshal

    return marshal.loads(data[launch.PREFIX : launch.PREFIX + int.from_bytes(data[:4], "little")])[1]


def regions(data):
    """A bit to flip in each region of a bundle: the index's length, its checksum, the index, and the code
    of quay_cred_helper.helper (which every run loads)."""
    length = int.from_bytes(data[:4], "little")
    _, _, offset, size, _ = index_of(data)["quay_cred_helper.helper"]
    return {
        "length": 1,
        "index crc": 5,
        "index": launch.PREFIX + length // 2,
        "code": launch.PREFIX + length + offset + size // 2,
    }


@pytest.mark.slow  # builds a bundle from a fresh copy: waits out the racy window
@pytest.mark.parametrize("region", ["length", "index crc", "index", "code"])
def test_a_flipped_bit_is_never_run(package, home, region):
    """Main ran a flipped bit in the code as damaged bytecode (internal errors, a segfault)."""
    root, copy = package
    build(root)
    expected, _ = run_copy(root, home, "nonsense", plain=True)
    bundle = bundle_of(copy)
    data = bytearray(bundle.read_bytes())
    at = regions(bytes(data))[region]
    data[at] ^= 0x10
    bundle.write_bytes(bytes(data))
    r, _ = run_copy(root, home, "nonsense")
    assert (r.returncode, r.stdout, r.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert bundle.read_bytes() != bytes(data)  # noticed: rewritten at that run's exit
    r, loaders = run_copy(root, home, "nonsense")
    assert (r.returncode, r.stdout) == (expected.returncode, expected.stdout)
    assert loaders["quay_cred_helper.helper"] == "Finder"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_bundle_that_is_not_a_file_never_blocks(package, home, kind):
    """Main opened a FIFO in the bundle's place for reading, and every run hung."""
    root, copy = package
    expected, _ = run_copy(root, home, "list", plain=True)
    target = copy / "__pycache__" / os.path.basename(launch.bundle_path())
    target.parent.mkdir(exist_ok=True)
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    r, loaders = launch_probe(copy_env(home, root), HELPER, ["list"], timeout=20)
    assert (r.returncode, r.stdout, r.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert loaders["quay_cred_helper.helper"] == "SourceFileLoader"


def future_dated(copy, name="helper.py"):
    """One source of the copy dated an hour ahead (built on a machine whose clock was ahead)."""
    ahead = time.time_ns() + 3600 * 10**9
    os.utime(copy / name, ns=(ahead, ahead))


@pytest.mark.slow  # waits the racy window, at most
def test_hotbuild_never_waits_for_a_source_dated_in_the_future(package, home):
    """Main slept until that mtime plus 2 s: an install script hung for as long as the clock was off."""
    root, copy = package
    future_dated(copy)
    started = time.monotonic()
    build(root)  # (a minute's timeout)
    assert time.monotonic() - started < launch.RACY_NS / 1e9 + 5
    written = bundle_of(copy).stat().st_ino
    for _ in range(2):
        r, loaders = run_copy(root, home, "list")
        assert r.returncode == 0 and loaders["quay_cred_helper.helper"] == "SourceFileLoader"
        assert loaders["quay_cred_helper.log"] == "Finder"  # the rest is served
    assert bundle_of(copy).stat().st_ino == written  # not rewritten at every run while the clock is off


@pytest.mark.slow  # waits the racy window, at most
def test_the_deb_postinst_with_a_future_dated_source_finishes(package, tmp_path):
    """packaging/debian's postinst, as dpkg runs it (`configure`), its python3 the copy's interpreter."""
    root, copy = package
    future_dated(copy)
    shims = tmp_path / "shims"
    shims.mkdir()
    python3 = shims / "python3"
    hotbuild = f"import sys, runpy; sys.path.insert(0, {str(root)!r}); sys.argv[1:] = []; "
    hotbuild += "runpy.run_module('quay_cred_helper.hotbuild', run_name='__main__')"
    python3.write_text(
        '#!/bin/sh\n[ "$*" = "-I -m quay_cred_helper.hotbuild" ] || exit 9\n'
        f'exec "{sys.executable}" -I -c "{hotbuild}"\n'
    )
    python3.chmod(0o755)
    postinst = Path(quay_cred_helper.__file__).parents[1] / "packaging/debian/quay-cred-helper.postinst"
    if not postinst.exists():
        pytest.skip("packaging/ is not beside the installed package")
    started = time.monotonic()
    r = subprocess.run(
        ["sh", str(postinst), "configure"], env={"PATH": f"{shims}:/usr/bin:/bin"}, capture_output=True, timeout=30
    )
    assert r.returncode == 0 and time.monotonic() - started < launch.RACY_NS / 1e9 + 10, r.stderr
    index = index_of(bundle_of(copy).read_bytes())
    assert index["quay_cred_helper.helper"][2] == -1 and index["quay_cred_helper.log"][2] >= 0  # left out


@pytest.mark.parametrize("check", [launch._int_hash, launch.checksum()], ids=["int hash", "this interpreter's"])
def test_the_checksum_notices_every_flipped_bit_of_an_index(check):
    """Cut to 32 bits, the int hash missed flips whose weight modulo 2**61 - 1 fell in its upper bits: the
    index's checksum is stored whole (launch.PREFIX), and every single flipped bit of an index changes it."""
    data = marshal.dumps(
        ("an index", {f"quay_cred_helper.m{n}": ("/x/m.py", (n, n, n, n), n, n, n) for n in range(40)})
    )
    expected = check(data)
    assert expected < 1 << (8 * (launch.PREFIX - 4))  # fits where hotbuild stores it
    for at in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[at] ^= 1 << bit
            assert check(bytes(flipped)) != expected, (at, bit)

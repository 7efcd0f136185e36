"""Windows for real: the official CPython for Windows, pip, the .exe launchers and the Credential Manager API.

Everything here runs under Debian's wine64 (tests/fakes/windows): python.org's embeddable CPython 3.13
for Windows, our win_amd64 wheel installed by pip under Wine (so pip writes Scripts\\*.exe), keyring's
WinVaultKeyring over Wine's advapi32 Cred* functions. It is not Windows itself, Docker Desktop or
docker.exe: docker's lookup and protocol come from docker-credential-helpers' Go client built for
GOOS=windows. Each test gets its own WINEPREFIX (a hard-linked clone of one set up per session), so its
Credential Manager, %LOCALAPPDATA% and %USERPROFILE% are its own.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from inspect import signature
from pathlib import Path

import pytest

from tests import test_contracts as contract
from tests.fakes import windows
from tests.fakes.hostile import DripServer
from tests.fakes.quay_registry import QuayRegistry
from tests.support import ROBOT, ROBOT_TOKEN, USERS

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,  # seconds per Wine call: the full suite only
    pytest.mark.skipif(
        not (windows.WINE and windows.WINESERVER and shutil.which("go") and windows.GOCODE.is_dir())
        and not os.environ.get("CI"),
        reason="needs wine64, go and docker-credential-helpers' Go source (scripts/setup installs them on amd64)",
    ),
]


def requirements(wheel):
    """Our wheel's Requires-Dist, without the extras'."""
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        lines = z.read(name).decode().splitlines()
    return [
        line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A `windows.Wine` whose python.exe has our win_amd64 wheel, installed by pip under Wine."""
    out = tmp_path_factory.mktemp("windows")
    option = "-C--build-option=--plat-name=win_amd64"  # as tests/test_packaging.py builds the Windows wheels
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", option, "--outdir", str(out / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (out / "dist").glob("*-win_amd64.whl")
    return windows.install(sys.executable, wheel, requirements(wheel), out)


@pytest.fixture
def win(installed, tmp_path):
    """This test's own WINEPREFIX: its own Credential Manager, %LOCALAPPDATA% and %USERPROFILE%."""
    return installed.clone(tmp_path / "prefix")


def user_dir(win):
    """%USERPROFILE% of the prefix, as a Linux path."""
    (home,) = [p for p in (win.prefix / "drive_c" / "users").iterdir() if p.name != "Public"]
    return home


def text(result):
    """A Windows program's output: CRLF line ends (its streams are in text mode) as plain lines."""
    return result.decode().replace("\r\n", "\n")


def ok(result):
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def one_line(result):
    """The one line a failed command printed on stderr, with nothing on stdout."""
    assert result.returncode == 1 and result.stdout == b"", (result.stdout, result.stderr)
    message = text(result.stderr)
    assert message.count("\n") == 1, message
    return message.rstrip("\n")


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- 1. docker's lookup and protocol: docker-credential-helpers' client built for Windows --------------

DOCKER_CLIENT = r"""
package main

import ("bufio"; "encoding/json"; "fmt"; "os"; "os/exec"
	"github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials")

func text(err error) string { if err == nil { return "" }; return err.Error() }

func main() {
	os.Setenv("PATH", os.Args[1]+";"+os.Getenv("PATH"))
	secret, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	out := map[string]interface{}{}
	path, err := exec.LookPath("docker-credential-quay")
	out["lookpath"], out["lookpath error"] = path, text(err)
	program := client.NewShellProgramFunc("docker-credential-quay")
	creds := &credentials.Credentials{ServerURL: "https://quay.example.com", Username: "alice",
		Secret: secret[:len(secret)-1]}
	out["store"] = text(client.Store(program, creds))
	got, err := client.Get(program, "quay.example.com")
	if err == nil { out["get"] = []string{got.ServerURL, got.Username, got.Secret} } else { out["get"] = text(err) }
	listed, err := client.List(program)
	out["list"], out["list error"] = listed, text(err)
	_, err = client.Get(program, "missing.example.com")
	out["missing"], out["missing is not-found"] = text(err), credentials.IsErrCredentialsNotFound(err)
	out["erase"] = text(client.Erase(program, "quay.example.com"))
	_, err = client.Get(program, "quay.example.com")
	out["erased is not-found"] = credentials.IsErrCredentialsNotFound(err)
	out["erase nothing"] = text(client.Erase(program, "quay.example.com"))
	found, _ := json.Marshal(out)
	fmt.Println(string(found))
}
"""


def go_build(tmp_path, name, source):
    go = dict(os.environ, GOOS="windows", GOARCH="amd64", GO111MODULE="off", GOFLAGS="")
    go |= {"GOCACHE": str(tmp_path / "gocache"), "GOPATH": f"{tmp_path / 'gopath'}:/usr/share/gocode"}
    package = tmp_path / "gopath" / "src" / name
    package.mkdir(parents=True)
    (package / "main.go").write_text(source)
    exe = tmp_path / f"{name}.exe"
    built = subprocess.run(["go", "build", "-o", str(exe), name], env=go, cwd=package, capture_output=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    return exe


def test_docker_client_finds_the_exe_by_pathext_and_speaks_the_protocol(win, tmp_path):
    exe = go_build(tmp_path, "dockerclient", DOCKER_CLIENT)
    r = ok(win.run(str(exe), windows.windows_path(win.scripts), stdin="s3cret\n"))
    found = json.loads(r.stdout)
    assert found["lookpath"].lower() == windows.windows_path(win.scripts / "docker-credential-quay.exe").lower()
    assert found["lookpath error"] == "" and found["store"] == ""
    assert found["get"] == ["quay.example.com", "alice", "s3cret"]  # the name asked for, as on Linux
    assert found["list"] == {"https://quay.example.com": "alice"} and found["list error"] == ""
    assert found["missing"] == "credentials not found in native keychain" and found["missing is not-found"]
    assert found["erase"] == "" and found["erased is not-found"]
    assert found["erase nothing"] == ""  # an erase of nothing succeeds, as on Linux


# -- 2. quay-cred-helper on Windows ---------------------------------------------------------------------


def test_login_get_token_list_doctor_configure_logout(win):
    home = user_dir(win)
    local = home / "AppData" / "Local"
    docker_config = home / ".docker" / "config.json"
    docker_config.parent.mkdir()
    docker_config.write_text(json.dumps({"credsStore": "desktop", "auths": {}}))  # as Docker Desktop leaves it
    with (
        QuayRegistry(users=USERS, robots={ROBOT: ROBOT_TOKEN}) as users,
        QuayRegistry(users=USERS, robots={ROBOT: ROBOT_TOKEN}) as robots,
    ):
        ok(
            win.run(
                "quay-cred-helper", "login", users.host, "-u", "alice", "--password-stdin", stdin="alice-password\n"
            )
        )
        ok(win.run("quay-cred-helper", "login", robots.host, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN))
        assert users.count("/v2/auth") == 1 and robots.count("/v2/auth") == 1  # each login verified once

        user = json.loads(ok(win.run("docker-credential-quay", "get", stdin=users.host)).stdout)
        assert (user["Username"], user["Secret"]) == ("alice", "alice-password")
        robot = json.loads(ok(win.run("docker-credential-quay", "get", stdin=robots.host)).stdout)
        claims = jwt_claims(robot["Secret"])
        assert robot["Username"] == ROBOT and claims["exp"] - claims["iat"] == 3600  # a one-hour JWT
        exchanges = robots.count("/v2/auth")
        cached = [p for p in (local / "quay-cred-helper").rglob("*.json") if p.name not in ("challenge.json",)]
        assert any(robot["Secret"] in p.read_text() for p in cached), cached  # the token cache in %LOCALAPPDATA%
        again = json.loads(ok(win.run("docker-credential-quay", "get", stdin=robots.host)).stdout)
        assert again == robot and robots.count("/v2/auth") == exchanges  # from the cache: no exchange

        token = ok(win.run("quay-cred-helper", "token", robots.host))
        assert text(token.stdout).strip() == robot["Secret"]

        listed = text(ok(win.run("quay-cred-helper", "list", "--long")).stdout).splitlines()
        assert listed[0].split()[:2] == ["REGISTRY", "USERNAME"]
        assert sorted(line.split()[:2] for line in listed[1:]) == sorted([[users.host, "alice"], [robots.host, ROBOT]])

        configured = ok(win.run("quay-cred-helper", "configure", "--docker", users.host, robots.host))
        assert "sets credsStore 'desktop': left alone" in text(configured.stderr + configured.stdout)
        config = json.loads(docker_config.read_text())
        assert config["credsStore"] == "desktop"  # never touched
        assert config["credHelpers"] == {users.host: "quay", robots.host: "quay"}

        # WINEPATH: Scripts\ on the Windows PATH, as a user adds it. No Docker Desktop here, so its
        # docker-credential-desktop.exe is missing: doctor must say so (credsStore is every registry's fallback).
        doctor = win.run(
            "quay-cred-helper", "doctor", "--json", robots.host, env={"WINEPATH": windows.windows_path(win.scripts)}
        )
        checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["helper on PATH"]["status"] == "OK", checks["helper on PATH"]  # the .exe, by PATHEXT
        assert checks["client helpers"]["status"] == "FAIL"
        assert "docker-credential-desktop, which is not on PATH" in checks["client helpers"]["detail"]
        for name in ("clients", "credentials"):
            assert checks[f"{robots.host} {name}"]["status"] == "OK", checks[f"{robots.host} {name}"]

        ok(win.run("quay-cred-helper", "logout", users.host))
        assert win.run("docker-credential-quay", "get", stdin=users.host).returncode == 1


# -- 3. the Windows-only code paths, for real -----------------------------------------------------------


def robot_logged_in(win, quay):
    ok(win.run("quay-cred-helper", "login", quay.host, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN))


def drop_token_caches(win):
    for found in list((user_dir(win) / "AppData" / "Local" / "quay-cred-helper").rglob("tokens")):
        shutil.rmtree(found)


def test_eight_concurrent_cold_gets_make_one_exchange_under_msvcrt_locks(win, quay):
    robot_logged_in(win, quay)
    drop_token_caches(win)  # cold: every get needs a token, one of them asks Quay
    before = quay.count("/v2/auth")
    answers = win.finish([win.start("docker-credential-quay", "get", stdin=quay.host) for _ in range(8)])
    secrets = {json.loads(ok(r).stdout)["Secret"] for r in answers}
    assert len(secrets) == 1 and quay.count("/v2/auth") == before + 1


# Holds a file open (Python opens without FILE_SHARE_DELETE, so Windows refuses to replace it) until a
# writer's temp file (files.write_atomic: .tmp-*.part beside it) shows up, then 0.3 s longer: the writer's
# first os.replace is refused. It reports whether the temp file was still waiting when it let go.
HOLDER = r"""
import glob, os, sys, time
path = sys.argv[1]
pattern = os.path.join(os.path.dirname(path), ".tmp-*.part")
with open(path, "rb"):
    print("holding", flush=True)
    end = time.monotonic() + 120
    while not glob.glob(pattern) and time.monotonic() < end:
        time.sleep(0.005)
    time.sleep(0.3)
    print("writer waited" if glob.glob(pattern) else "writer did not wait", flush=True)
"""

PROBE_REPLACE = r"""
import os, sys
path = sys.argv[1]
with open(path + ".new", "w") as f:
    f.write("{}")
with open(path, "rb"):
    try:
        os.replace(path + ".new", path)
        print("replaced")
    except PermissionError as exc:
        print("refused", exc.winerror)
os.remove(path + ".new")
"""


def test_a_write_waits_out_a_reader_holding_the_file_open(win, quay):
    robot_logged_in(win, quay)
    (index,) = (user_dir(win) / "AppData" / "Local" / "quay-cred-helper").rglob("index.json")
    before = index.read_text()
    probe = ok(win.run("python", "-c", PROBE_REPLACE, windows.windows_path(index)))
    assert text(probe.stdout) == "refused 5\n"  # Wine refuses as Windows does: ERROR_ACCESS_DENIED
    assert index.read_text() == before

    holder = win.start("python", "-c", HOLDER, windows.windows_path(index))
    for _ in range(1200):  # until the holder has the file (a cold Wine start takes seconds)
        if b"holding" in b"".join(holder.collected["stdout"]) or holder.poll() is not None:
            break
        time.sleep(0.05)
    writer = win.start("quay-cred-helper", "logout", quay.host)
    held, wrote = win.finish([holder, writer])
    assert text(ok(held).stdout) == "holding\nwriter waited\n"  # refused at least once, for 0.3 s
    assert text(ok(wrote).stderr) == f"Removed credentials for {quay.host}\n"
    assert quay.host not in index.read_text()


CHALLENGE = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
    b'WWW-Authenticate: Bearer realm="http://127.0.0.1:1/v2/auth",service="s"\r\n\r\n'
)


def test_the_deadline_holds_without_sigalrm_against_a_dripping_registry(win, tmp_path):
    config = tmp_path / "config.ini"
    with DripServer(CHALLENGE, interval=0.5) as drip:
        config.write_text(f"[{drip.host}]\ndeadline = 2\n")
        env = {"QUAY_CRED_HELPER_CONFIG": windows.windows_path(config)}
        stored = json.dumps({"ServerURL": drip.host, "Username": ROBOT, "Secret": ROBOT_TOKEN})
        ok(win.run("docker-credential-quay", "store", stdin=stored, env=env))
        start = time.monotonic()
        r = win.run("docker-credential-quay", "get", stdin=drip.host, env=env)
        elapsed = time.monotonic() - start
    assert r.returncode == 0 and json.loads(r.stdout)["Secret"] == ROBOT_TOKEN
    assert f"{drip.host} did not finish within 2 s" in text(r.stderr)
    assert elapsed < 30  # a cold Wine start (seconds on a loaded machine) and the 2 s deadline; the drip takes 65 s


def test_the_debug_log_is_set_aside_when_full(win, tmp_path):
    log = tmp_path / "logs" / "helper.log"
    log.parent.mkdir()
    log.write_bytes(b"old line\n" * (1 << 17) + b"x")  # just over the 1 MiB limit
    full = log.read_bytes()
    env = {"QUAY_CRED_HELPER_LOG": "debug", "QUAY_CRED_HELPER_LOG_FILE": windows.windows_path(log)}
    r = win.run("docker-credential-quay", "get", stdin="missing.example.com", env=env)
    assert (r.returncode, text(r.stdout)) == (1, "credentials not found in native keychain\n")
    assert Path(f"{log}.1").read_bytes() == full  # set aside whole, one old file kept
    assert 0 < log.stat().st_size < 4096 and b"old line" not in log.read_bytes()


LONG_TOKEN = "windows-long-token-"  # a secret the watcher knows: never in any argv


def test_a_secret_too_large_for_the_credential_manager_is_refused_with_one_line(win):
    secret = LONG_TOKEN + "x" * 1300  # over 2,560 bytes in UTF-16
    stored = json.dumps({"ServerURL": "quay.example.com", "Username": "alice", "Secret": secret})
    r = win.run("docker-credential-quay", "store", stdin=stored)
    assert r.returncode == 1
    (line,) = text(r.stdout).splitlines()
    assert re.fullmatch(
        r"the credential for quay\.example\.com is \d{4} bytes as Windows Credential Manager stores it \(UTF-16\), "
        r"over its limit of 2560: nothing was stored: .*PYTHON_KEYRING_BACKEND",
        line,
    ), line
    assert LONG_TOKEN not in text(r.stdout + r.stderr)
    missing = win.run("docker-credential-quay", "get", stdin="quay.example.com")
    assert (missing.returncode, text(missing.stdout)) == (1, "credentials not found in native keychain\n")
    # Our own check: Wine's CredWriteW takes it (Windows refuses over CRED_MAX_CREDENTIAL_BLOB_SIZE).
    direct = (
        "import sys, keyring; keyring.set_password('probe', 'alice', sys.stdin.read()); "
        "print(len(keyring.get_password('probe', 'alice')))"
    )
    assert text(ok(win.run("python", "-c", direct, stdin=secret)).stdout) == f"{len(secret)}\n"


# -- 4. keyring's Windows backend through our store: the stores' contract suite ---------------------------


def test_the_store_contract_holds_over_the_windows_credential_manager(win, tmp_path):
    tools = tmp_path / "tools"
    ok(win.pip("install", "--target", windows.windows_path(tools), *windows.TEST_TOOLS))
    driver = Path(windows.__file__).with_name("contracts.py")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    paths = [windows.windows_path(p) for p in (driver, ROOT, tools, scratch)]
    found = json.loads(ok(win.run("python", *paths, timeout=600)).stdout)
    assert found["backend"] == "keyring.backends.Windows.WinVaultKeyring"
    results = found["results"]
    ran = {label.split("::")[-1].split("[")[0] for label in results}
    stores = {n for n, f in vars(contract).items() if n.startswith("test_") and "source" not in signature(f).parameters}
    assert ran == stores  # every check of the stores' and caches' contract (the sources' is not this tier's)
    # The one difference from Linux: the contract's JWT-sized secret (4,003 characters) is over what
    # Windows Credential Manager holds, and our store refuses it before writing (Wine would take it).
    too_large = {label for label in results if "test_list_shows" in label or "[eyJ" in label}
    assert len(too_large) == 4
    for label in too_large:
        assert re.fullmatch(
            r"KeyringError: the credential for \S+ is 80\d\d bytes .* over its limit of 2560: .*", results[label]
        )
    failed = {label: results[label] for label in set(results) - too_large if results[label] != "passed"}
    assert not failed, (failed, found["details"])
    assert len(results) == 19  # 8 store cases (parameters included) for each of 2 stores, 3 cache checks

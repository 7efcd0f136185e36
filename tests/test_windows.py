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
from pathlib import Path

import pytest

from tests.fakes import windows
from tests.fakes.hostile import DripServer
from tests.fakes.quay_registry import QuayRegistry
from tests.support import ROBOT, ROBOT_TOKEN, USERS

ROOT = Path(__file__).resolve().parent.parent
GOCODE = Path("/usr/share/gocode/src/github.com/docker/docker-credential-helpers/client")

pytestmark = [
    pytest.mark.slow,  # seconds per Wine call: the full suite only
    pytest.mark.skipif(
        not (windows.WINE and windows.WINESERVER and shutil.which("go") and GOCODE.is_dir())
        and not os.environ.get("CI"),
        reason="needs wine64, go and docker-credential-helpers' Go source (scripts/setup installs them on amd64)",
    ),
]


def requirements(wheel):
    """Our wheel's Requires-Dist, without the extras'."""
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        lines = z.read(name).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:") and "extra ==" not in line]


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
	creds := &credentials.Credentials{ServerURL: "https://quay.example.com", Username: "alice", Secret: secret[:len(secret)-1]}
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
        ok(win.run("quay-cred-helper", "login", users.host, "-u", "alice", "--password-stdin", stdin="alice-password\n"))
        ok(win.run("quay-cred-helper", "login", robots.host, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN))
        assert users.count("/v2/auth") == 1 and robots.count("/v2/auth") == 1  # each login verified once

        user = json.loads(ok(win.run("docker-credential-quay", "get", stdin=users.host)).stdout)
        assert (user["Username"], user["Secret"]) == ("alice", "alice-password")
        robot = json.loads(ok(win.run("docker-credential-quay", "get", stdin=robots.host)).stdout)
        claims = jwt_claims(robot["Secret"])
        assert robot["Username"] == "<token>" and claims["exp"] - claims["iat"] == 3600  # a one-hour JWT
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

        doctor = win.run("quay-cred-helper", "doctor", "--json", robots.host, env={"WINEPATH": str(win.scripts)})
        checks = json.loads(doctor.stdout)
        assert checks, doctor.stderr

        ok(win.run("quay-cred-helper", "configure", "--docker", users.host, robots.host))
        config = json.loads(docker_config.read_text())
        assert config["credsStore"] == "desktop"  # never touched
        assert config["credHelpers"] == {users.host: "quay", robots.host: "quay"}

        ok(win.run("quay-cred-helper", "logout", users.host))
        assert win.run("docker-credential-quay", "get", stdin=users.host).returncode == 1
    print(json.dumps(checks, indent=1))

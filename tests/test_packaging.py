"""Packages: wheel and sdist, the .deb on Debian's own Python libraries, the RPM; man pages, completion.

Each builds the real artefact with the real tools and inspects or installs it.
"""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from quay_cred_helper import __version__
from tests.conftest import needs
from tests.fakes.windows import GOCODE, WINE, windows_path
from tests.support import ROBOT, ROBOT_TOKEN

pytestmark = pytest.mark.slow  # real clients, packages and builds: the full suite only

ROOT = Path(__file__).resolve().parent.parent


def sh(argv, **kwargs):
    kwargs.setdefault("timeout", 600)
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-2000:])
    return result


# -- generated files stay in sync with the code --------------------------------------------------


def test_man_pages_match_the_commands(tmp_path):
    sh([sys.executable, str(ROOT / "packaging" / "manpages.py"), str(tmp_path)])
    for page in ("quay-cred-helper.1", "docker-credential-quay.1", "quay-credential-provider.1"):
        assert (tmp_path / page).read_text() == (ROOT / "docs" / "man" / page).read_text(), (
            f"docs/man/{page} is stale: run python3 packaging/manpages.py"
        )
    text = (ROOT / "docs" / "man" / "quay-cred-helper.1").read_text()
    for command in ("login", "logout", "list", "token", "referrers", "configure", "doctor", "completion"):
        assert f".SS {command}" in text


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_files_match_the_commands(shell):
    from quay_cred_helper.cli import build_parser
    from quay_cred_helper.commands.completion import SHELLS

    committed = (ROOT / "packaging" / "completions" / f"quay-cred-helper.{shell}").read_text()
    assert committed == SHELLS[shell](build_parser()), f"regenerate with quay-cred-helper completion {shell}"


def complete_bash(env, line):
    script = (ROOT / "packaging" / "completions" / "quay-cred-helper.bash").read_text()
    words = line.split(" ")
    program = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\nCOMP_CWORD={len(words) - 1}\n"
        '_quay_cred_helper\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    return sorted(sh(["bash", "-c", program], env=env).stdout.split())


def test_bash_completion_completes(file_keyring):
    from tests.support import helper

    helper(file_keyring, "store", json.dumps({"ServerURL": "quay.example.com", "Username": "u", "Secret": "s"}))
    assert "referrers" in complete_bash(file_keyring, "quay-cred-helper re")
    assert complete_bash(file_keyring, "quay-cred-helper login --pa") == ["--password-stdin"]
    assert complete_bash(file_keyring, "quay-cred-helper --debug token q") == ["quay.example.com"]
    assert complete_bash(file_keyring, "quay-cred-helper completion f") == ["fish"]


@needs("zsh", "fish")
def test_zsh_and_fish_scripts_parse():
    sh(["zsh", "-n", str(ROOT / "packaging" / "completions" / "quay-cred-helper.zsh")])
    sh(["fish", "--no-execute", str(ROOT / "packaging" / "completions" / "quay-cred-helper.fish")])


# -- one version everywhere ----------------------------------------------------------------------


def test_version_is_single_sourced():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: quay_cred_helper.__version__"
    changelog = (ROOT / "packaging" / "debian" / "changelog").read_text()
    assert changelog.startswith(f"quay-cred-helper ({__version__}) ")
    spec = (ROOT / "packaging" / "rpm" / "quay-cred-helper.spec").read_text()
    assert re.search(rf"^Version:\s+{re.escape(__version__)}$", spec, re.M)


# -- wheel and sdist -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    sh([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    return out


def test_wheel_and_sdist(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    sh([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    top = f"quay_cred_helper-{__version__}"
    for needed in (
        "LICENSE",
        "tests/test_protocol.py",
        "docs/man/quay-cred-helper.1",
        "packaging/rpm/quay-cred-helper.spec",
        "packaging/debian/control",
        "bin/docker-credential-quay",
        "bin/quay-credential-provider",
    ):
        assert f"{top}/{needed}" in names, needed
    metadata = zipfile.ZipFile(wheel).read(f"quay_cred_helper-{__version__}.dist-info/METADATA").decode()
    assert "Requires-Dist: PyYAML>=5.1" in metadata  # doctor --kubelet reads the kubelet's YAML

    venv = tmp_path / "venv"
    sh([sys.executable, "-m", "venv", str(venv)])
    sh([str(venv / "bin" / "pip"), "install", "-q", str(wheel)])
    helper_script = (venv / "bin" / "docker-credential-quay").read_text()
    cli_script = (venv / "bin" / "quay-cred-helper").read_text()
    assert helper_script.startswith(f"#!{venv}/bin/python") and "import re" not in helper_script.split("\n", 5)[-1]
    assert "importlib.metadata" not in cli_script and "pkg_resources" not in cli_script
    env = dict(os.environ, PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    assert shutil.which("docker-credential-quay", path=env["PATH"]) == str(venv / "bin" / "docker-credential-quay")
    assert sh(["docker-credential-quay", "version"], env=env).stdout.strip().endswith(__version__)
    assert sh(["quay-cred-helper", "--version"], env=env).stdout.strip() == f"quay-cred-helper {__version__}"
    provider_script = (venv / "bin" / "quay-credential-provider").read_text()
    assert (
        provider_script.startswith(f"#!{venv}/bin/python") and 'run("quay_cred_helper.kubelet.main")' in provider_script
    )
    assert sh(["quay-credential-provider", "--version"], env=env).stdout.strip().endswith(__version__)
    # pip runs no install script: the first run that may write .pyc files writes the hot modules' bundle
    # (quay_cred_helper/launch.py), once what pip wrote has aged past the racy window.
    time.sleep(2)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sh(["docker-credential-quay", "version"], env=env)
    (bundle,) = venv.glob("lib/python*/site-packages/quay_cred_helper/__pycache__/hot.*.bundle")
    assert b"quay_cred_helper.helper" in bundle.read_bytes()


# -- the RPM -------------------------------------------------------------------------------------


@needs("rpmbuild")
def test_rpm_builds_with_its_check_and_lists_everything(tmp_path):
    built = sh(["bash", str(ROOT / "packaging" / "build-rpm"), str(tmp_path)])
    assert re.search(r"%check: =+ \d+ passed", built.stdout), built.stdout
    (rpm,) = tmp_path.glob("*.rpm")
    assert rpm.name == f"quay-cred-helper-{__version__}-1.noarch.rpm"
    files = sh(["rpm", "-qlp", str(rpm)]).stdout.split()
    for path in (
        "/usr/bin/docker-credential-quay",
        "/usr/bin/quay-cred-helper",
        "/usr/bin/quay-credential-provider",
        "/usr/share/bash-completion/completions/quay-cred-helper",
        "/usr/share/zsh/site-functions/_quay-cred-helper",
        "/usr/share/fish/vendor_completions.d/quay-cred-helper.fish",
    ):
        assert path in files, path
    assert any(f.startswith("/usr/share/man/man1/quay-cred-helper.1") for f in files)
    assert any(f.startswith("/usr/share/man/man1/docker-credential-quay.1") for f in files)
    assert any(f.startswith("/usr/share/man/man1/quay-credential-provider.1") for f in files)

    def packaged(path):
        extract = f"rpm2cpio {rpm} | cpio -i --quiet --to-stdout .{path}"
        return subprocess.run(extract, shell=True, capture_output=True, text=True, timeout=60).stdout

    wrapper = packaged("/usr/bin/quay-cred-helper")
    assert "from quay_cred_helper.cli import main" in wrapper and "importlib.metadata" not in wrapper
    for launcher in ("docker-credential-quay", "quay-credential-provider"):
        text = packaged(f"/usr/bin/{launcher}")
        assert text.startswith("#!/usr/bin/python3 -IS\n") and "sys.flags.no_site" in text, launcher
    requires = sh(["rpm", "-qp", "--requires", str(rpm)]).stdout
    assert "python3-keyring >= 23.9" in requires and "python3-httpx >= 0.23" in requires
    assert "python3-pyyaml >= 5.1" in requires


# -- the .deb, installed on the system Python with Debian's own libraries -------------------------


@needs("dpkg-buildpackage")
def test_deb_installs_and_works_on_debians_python(tmp_path, secret_service, quay, home):
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root")
    sh(["bash", str(ROOT / "packaging" / "build-deb"), str(tmp_path)])
    (deb,) = tmp_path.glob("*.deb")
    assert deb.name == f"quay-cred-helper_{__version__}_all.deb"
    assert "python3-yaml (>= 5.1)" in sh(["dpkg-deb", "-f", str(deb), "Depends"]).stdout
    sh(["apt-get", "install", "-y", "-qq", str(deb)], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    try:
        env = secret_service.apply(dict(home, PATH="/usr/bin:/bin"))
        helper_bin = "/usr/bin/docker-credential-quay"
        for launcher in (helper_bin, "/usr/bin/quay-credential-provider"):  # no `site`: they name dist-packages
            assert Path(launcher).read_text().startswith("#!/usr/bin/python3 -IS\n"), launcher
        cli_wrapper = Path("/usr/bin/quay-cred-helper").read_text()
        assert "from quay_cred_helper.cli import main" in cli_wrapper and "importlib.metadata" not in cli_wrapper
        assert sh([helper_bin, "version"], env=env).stdout.strip().endswith(__version__)
        assert sh(["/usr/bin/quay-cred-helper", "--version"], env=env).stdout.strip().endswith(__version__)
        assert sh(["/usr/bin/quay-credential-provider", "--version"], env=env).stdout.strip().endswith(__version__)
        assert Path("/usr/share/man/man1/quay-credential-provider.1.gz").exists()

        def run(verb, stdin):
            return subprocess.run([helper_bin, verb], input=stdin.encode(), env=env, capture_output=True, timeout=60)

        assert (
            run(
                "store",
                json.dumps({"ServerURL": "https://quay.example.com", "Username": "alice", "Secret": "deb-secret"}),
            ).returncode
            == 0
        )
        assert json.loads(run("get", "quay.example.com").stdout)["Secret"] == "deb-secret"
        assert json.loads(run("list", "").stdout) == {"https://quay.example.com": "alice"}
        assert run("erase", "quay.example.com").returncode == 0
        assert run("get", "quay.example.com").stdout == b"credentials not found in native keychain\n"
        # The token exchange on Debian's httpx 0.23: a robot gets its JWT.
        assert (
            run("store", json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN})).returncode == 0
        )
        got = json.loads(run("get", quay.host).stdout)
        assert got["Username"] == ROBOT and got["Secret"].count(".") == 2 and got["Secret"] != ROBOT_TOKEN
        versions = sh(
            ["/usr/bin/python3", "-c", "import httpx, platformdirs; print(httpx.__version__, platformdirs.__version__)"]
        ).stdout.split()
        print(f"deb tested against Debian's httpx {versions[0]} and platformdirs {versions[1]}")
        # postinst wrote the hot modules' bundle (quay_cred_helper/launch.py), and the launchers use it.
        (bundle,) = DEB_PYCACHE.glob("hot.*.bundle")
        served = "from quay_cred_helper import launch; launch.serve(); import quay_cred_helper.helper as h; "
        served += "print(type(h.__spec__.loader).__name__)"
        assert (
            sh(["/usr/bin/python3", "-IS", "-c", f"import sys; sys.path.append({DIST!r}); {served}"]).stdout
            == "Finder\n"
        )
    finally:
        subprocess.run(["apt-get", "remove", "-y", "-qq", "quay-cred-helper"], capture_output=True, timeout=300)
    assert not DEB_PYCACHE.exists() or not list(DEB_PYCACHE.glob("hot.*"))  # prerm took it away


DIST = "/usr/lib/python3/dist-packages"
DEB_PYCACHE = Path(DIST, "quay_cred_helper", "__pycache__")


# -- Windows: console_scripts there (.exe launchers), plain bin/ launchers everywhere else ---------
#
# Nothing here runs on Windows: the wheels are built here, pip chooses among them for each
# platform, and `installer` lays a Windows wheel out as a Windows install does (Scripts\*.exe from
# the launchers it bundles, the same kind pip writes). See README: Platforms.

WINDOWS = {  # wheel platform tag -> (installer's launcher kind, PE machine of that launcher)
    "win_amd64": ("win-amd64", 0x8664),
    "win32": ("win-ia32", 0x014C),
    "win_arm64": ("win-arm64", 0xAA64),
}
PROGRAMS = ("docker-credential-quay", "quay-credential-provider")  # bin/ launchers on POSIX, .exe on Windows
INTERPRETER = r"C:\Program Files\Python312\python.exe"  # a space in it, as in a default Windows install


def launcher_module(program):
    """The module whose main bin/PROGRAM runs (its last line: `run("M")`)."""
    (module,) = re.findall(r'^run\("([\w.]+)"\)$', (ROOT / "bin" / program).read_text(), re.M)
    return module


def console_scripts(wheel):
    """{name: target} of the wheel's entry_points.txt [console_scripts]."""
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # names keep their case
    parser.read_string(dist_info(wheel, "entry_points.txt"))
    return dict(parser["console_scripts"]) if parser.has_section("console_scripts") else {}


def dist_info(wheel, name):
    with zipfile.ZipFile(wheel) as z:
        (path,) = [n for n in z.namelist() if n.endswith(f".dist-info/{name}")]
        return z.read(path).decode()


def expected_console_scripts():
    return {
        "quay-cred-helper": "quay_cred_helper.cli:main",
        **{program: f"{launcher_module(program)}:main" for program in PROGRAMS},
    }


@pytest.fixture(scope="module")
def wheels(dist, tmp_path_factory):
    """{"any" or a Windows platform tag: wheel}, the Windows ones built as a release builds them."""
    out = tmp_path_factory.mktemp("windows-wheels")
    for plat in WINDOWS:
        option = f"-C--build-option=--plat-name={plat}"  # one word: build's argparse takes -C's value glued on
        sh([sys.executable, "-m", "build", "--wheel", option, "--outdir", str(out / plat), str(ROOT)])
    found = {plat: next((out / plat).glob("*.whl")) for plat in WINDOWS}
    (found["any"],) = dist.glob("*.whl")
    return found


def test_posix_wheel_has_plain_launchers_and_one_console_script(wheels):
    wheel = wheels["any"]
    assert wheel.name == f"quay_cred_helper-{__version__}-py3-none-any.whl"
    assert "Tag: py3-none-any" in dist_info(wheel, "WHEEL").splitlines()
    assert console_scripts(wheel) == {"quay-cred-helper": "quay_cred_helper.cli:main"}
    with zipfile.ZipFile(wheel) as z:
        data = sorted(n for n in z.namelist() if ".data/" in n)
        assert data == [f"quay_cred_helper-{__version__}.data/scripts/{p}" for p in sorted(PROGRAMS)]
        for name in data:
            text = z.read(name).decode()
            assert text.startswith("#!python\n")  # the installer writes the interpreter's path here
            program = name.rsplit("/", 1)[1]
            assert text.endswith(f'run("{launcher_module(program)}")\n')
            assert "import re" not in [li for li in text.splitlines() if not li.startswith("#")]


@pytest.mark.parametrize("plat", WINDOWS)
def test_windows_wheel_declares_console_scripts_and_ships_no_launchers(wheels, plat):
    wheel = wheels[plat]
    assert wheel.name == f"quay_cred_helper-{__version__}-py3-none-{plat}.whl"
    info = dist_info(wheel, "WHEEL").splitlines()
    assert f"Tag: py3-none-{plat}" in info and "Root-Is-Purelib: true" in info
    assert console_scripts(wheel) == expected_console_scripts()
    with zipfile.ZipFile(wheel) as z, zipfile.ZipFile(wheels["any"]) as posix:
        assert not [n for n in z.namelist() if ".data/" in n]
        package = sorted(n for n in z.namelist() if n.startswith("quay_cred_helper/"))
        assert package and package == sorted(n for n in posix.namelist() if n.startswith("quay_cred_helper/"))
        assert all(z.read(n) == posix.read(n) for n in package)
    assert dist_info(wheel, "METADATA") == dist_info(wheels["any"], "METADATA")  # one distribution


def test_every_console_script_names_a_main_that_exists(wheels):
    import importlib

    for target in console_scripts(wheels["win_amd64"]).values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("win_amd64", "win_amd64"),
        ("win32", "win32"),
        ("win_arm64", "win_arm64"),
        ("manylinux2014_x86_64", "any"),
        ("macosx_11_0_arm64", "any"),
    ],
)
def test_pip_picks_the_windows_wheel_only_on_windows(wheels, tmp_path, platform, expected):
    links = tmp_path / "links"
    links.mkdir()
    for wheel in wheels.values():
        shutil.copy(wheel, links)
    sh(
        [sys.executable, "-m", "pip", "download", "-q", "--no-index", "--find-links", str(links), "--no-deps"]
        + ["--only-binary=:all:", "--platform", platform, "--python-version", "3.12", "-d", str(tmp_path / "got")]
        + ["quay-cred-helper"]
    )
    (got,) = (tmp_path / "got").iterdir()
    assert got.name == f"quay_cred_helper-{__version__}-py3-none-{expected}.whl"


def pe_machine(data):
    """The Machine field of a PE image; fails on anything that is not one."""
    import struct

    assert data[:2] == b"MZ"
    (offset,) = struct.unpack_from("<I", data, 0x3C)
    assert data[offset : offset + 4] == b"PE\0\0"
    return struct.unpack_from("<H", data, offset + 4)[0]


def install_windows(wheel, target, kind, interpreter=INTERPRETER):
    """Install `wheel` into `target` laid out as a Windows venv (Lib\\site-packages, Scripts)."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    lib = str(target / "Lib" / "site-packages")
    scheme = {"purelib": lib, "platlib": lib, "headers": str(target / "Include"), "scripts": str(target / "Scripts")}
    scheme["data"] = str(target)
    destination = SchemeDictionaryDestination(scheme, interpreter=interpreter, script_kind=kind)
    with WheelFile.open(wheel) as source:
        install(source, destination, {"INSTALLER": b"test\n"})
    return target / "Scripts"


@pytest.mark.parametrize("plat", WINDOWS)
def test_windows_install_has_exe_launchers(wheels, tmp_path, plat):
    import io

    kind, machine = WINDOWS[plat]
    scripts = install_windows(wheels[plat], tmp_path, kind)
    expected = {name: target.partition(":")[0] for name, target in expected_console_scripts().items()}
    assert sorted(p.name for p in scripts.iterdir()) == sorted(f"{name}.exe" for name in expected)
    for name, module in expected.items():
        data = (scripts / f"{name}.exe").read_bytes()
        assert pe_machine(data) == machine, name
        # The launcher reads the #! line before its appended zip, and runs that interpreter on the zip.
        shebang = f"#!{INTERPRETER}\n".encode()
        assert data[data.rindex(shebang) + len(shebang) :].startswith(b"PK\x03\x04"), name
        archive = zipfile.ZipFile(io.BytesIO(data))
        assert archive.namelist() == ["__main__.py"]
        main = archive.read("__main__.py").decode()
        assert f"from {module} import main" in main and "sys.exit(main())" in main, name
    (record,) = tmp_path.glob("Lib/site-packages/*.dist-info/RECORD")
    recorded = {line.split(",")[0] for line in record.read_text().splitlines()}
    assert {f"../../Scripts/{name}.exe" for name in expected} <= recorded


@pytest.mark.parametrize(
    ("how", "env", "options"),
    [
        # sysconfig.get_platform() reads _PYTHON_HOST_PLATFORM: setup.py then sees a Windows host,
        # as when pip on Windows builds from the sdist.
        ("built on Windows", {"_PYTHON_HOST_PLATFORM": "win-amd64"}, []),
        # pip prepares the metadata (dist_info, no --build-option) before bdist_wheel: setup.py has
        # bdist_wheel write its own rather than reuse that.
        ("pip wheel --plat-name", {}, ["-C--build-option=--plat-name=win_amd64"]),
    ],
)
def test_pip_wheel_from_the_sdist_for_windows(dist, tmp_path, how, env, options):
    (sdist,) = dist.glob("*.tar.gz")
    sh(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "out"), *options, str(sdist)],
        env=dict(os.environ, **env),
    )
    (wheel,) = (tmp_path / "out").glob("*.whl")
    assert wheel.name == f"quay_cred_helper-{__version__}-py3-none-win_amd64.whl", how
    assert console_scripts(wheel) == expected_console_scripts(), how
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if ".data/" in n], how


# -- what docker does on Windows, under Wine: find the .exe by PATHEXT and run it ------------------

# Stands in for python.exe, so that this check needs no download (tests/test_windows.py runs the real
# CPython for Windows): it answers `get` with its arguments, its
# stdin and the import line of the __main__.py in the zip it is given (the launcher passes its own path).
PYTHON_STANDIN = r"""
package main

import ("archive/zip"; "encoding/json"; "fmt"; "io"; "os"; "strings")

func main() {
	zr, err := zip.OpenReader(os.Args[1])
	if err != nil { fmt.Println("not a zip:", err); os.Exit(3) }
	imports := ""
	for _, f := range zr.File {
		if f.Name == "__main__.py" {
			rc, _ := f.Open(); body, _ := io.ReadAll(rc)
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "from ") { imports = strings.TrimSpace(line) }
			}
		}
	}
	stdin, _ := io.ReadAll(os.Stdin)
	if strings.TrimSpace(string(stdin)) == "missing.example.com" {
		fmt.Println("credentials not found in native keychain"); os.Exit(1)
	}
	out, _ := json.Marshal(map[string]string{"ServerURL": strings.TrimSpace(string(stdin)),
		"Username": strings.Join(os.Args[2:], ","), "Secret": imports})
	fmt.Println(string(out))
}
"""

# What docker does on Windows: exec.LookPath (PATHEXT), then docker-credential-helpers' client.
DOCKER_PROBE = r"""
package main

import ("fmt"; "os"; "os/exec"
	"github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials")

func main() {
	os.Setenv("PATH", os.Args[1]+";"+os.Getenv("PATH"))
	path, err := exec.LookPath("docker-credential-quay")
	if err != nil { fmt.Println("lookpath:", err); os.Exit(1) }
	fmt.Println("found", path)
	program := client.NewShellProgramFunc("docker-credential-quay")
	if _, err := client.Get(program, "missing.example.com"); !credentials.IsErrCredentialsNotFound(err) {
		fmt.Println("not-found answer lost:", err); os.Exit(1)
	}
	creds, err := client.Get(program, "quay.example.com")
	if err != nil { fmt.Println("get:", err); os.Exit(1) }
	fmt.Printf("server=%s args=%s main=%s\n", creds.ServerURL, creds.Username, creds.Secret)
}
"""


@pytest.mark.skipif(
    not (WINE and shutil.which("go") and GOCODE.is_dir()) and not os.environ.get("CI"),
    reason="needs wine64, go and docker-credential-helpers' Go source (scripts/setup installs them on amd64)",
)
def test_docker_on_windows_finds_and_runs_the_exe_launcher_under_wine(wheels, tmp_path):
    go = dict(os.environ, GOOS="windows", GOARCH="amd64", GO111MODULE="off", GOCACHE=str(tmp_path / "gocache"))
    go["GOPATH"] = f"{tmp_path / 'gopath'}:/usr/share/gocode"
    python = tmp_path / "Program Files" / "python.exe"  # a space in the interpreter's path, as on Windows
    for name, source, exe in (("standin", PYTHON_STANDIN, python), ("probe", DOCKER_PROBE, tmp_path / "probe.exe")):
        package = tmp_path / "gopath" / "src" / name
        package.mkdir(parents=True)
        (package / "main.go").write_text(source)
        sh(["go", "build", "-o", str(exe), name], env=go, cwd=package)
    scripts = install_windows(wheels["win_amd64"], tmp_path / "venv", "win-amd64", windows_path(python))
    posix = tmp_path / "posix"  # the POSIX wheel's launchers, as they would land in Scripts\ without .exe
    posix.mkdir()
    with zipfile.ZipFile(wheels["any"]) as z:
        for name in z.namelist():
            if ".data/scripts/" in name:
                (posix / name.rsplit("/", 1)[1]).write_bytes(z.read(name))
    wine = dict(os.environ, WINEDEBUG="-all", WINEPREFIX=str(tmp_path / "wineprefix"))
    probe = [WINE, str(tmp_path / "probe.exe")]
    ran = subprocess.run([*probe, windows_path(scripts)], capture_output=True, text=True, env=wine, timeout=600)
    assert ran.returncode == 0, (ran.stdout, ran.stderr[-2000:])
    assert ran.stdout.splitlines()[:2] == [
        f"found {windows_path(scripts / 'docker-credential-quay.exe')}",
        "server=quay.example.com args=get main=from quay_cred_helper.helper import main",
    ]
    missed = subprocess.run([*probe, windows_path(posix)], capture_output=True, text=True, env=wine, timeout=600)
    assert missed.returncode == 1 and "executable file not found in %PATH%" in missed.stdout, missed.stdout

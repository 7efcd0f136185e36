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
import zipfile
from pathlib import Path

import pytest

from quay_cred_helper import __version__
from tests.conftest import needs
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
        provider_script.startswith(f"#!{venv}/bin/python")
        and "from quay_cred_helper.kubelet.main import main" in provider_script
    )
    assert sh(["quay-credential-provider", "--version"], env=env).stdout.strip().endswith(__version__)


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
    wrapper = subprocess.run(
        f"rpm2cpio {rpm} | cpio -i --quiet --to-stdout ./usr/bin/quay-cred-helper",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "from quay_cred_helper.cli import main" in wrapper and "importlib.metadata" not in wrapper
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
        assert Path(helper_bin).read_text().startswith("#!/usr/bin/python3\n")
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
    finally:
        subprocess.run(["apt-get", "remove", "-y", "-qq", "quay-cred-helper"], capture_output=True, timeout=300)

"""packaging/build-node-bundle: the provider for nodes without our Python environment, as the kubelet runs it.

The onedir bundle answers with no Python visible at all (root: a mount namespace with a tmpfs over every
Python install), through a symlink in the kubelet's bin dir; the zipapp answers on Python 3.9 with the
standard library only (-I -S). Both: cold and cached, http and https, keyless, and neither carries keyring
or CA certificates.
"""

import glob
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import trustme

from tests.fakes import fake_kubelet as kubelet
from tests.fakes.quay_registry import QuayRegistry, b64url_decode
from tests.support import ROBOT, ROBOT_TOKEN, ROBOTS, USERS

pytestmark = pytest.mark.slow  # builds with PyInstaller (a minute or two)

ROOT = Path(__file__).resolve().parent.parent
V1 = "credentialprovider.kubelet.k8s.io/v1"
PY39 = next(iter(sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))), None)
NAME = "quay-credential-provider"


def sub(response, host):
    return json.loads(b64url_decode(response["auth"][host]["password"].split(".")[1]))["sub"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("node-bundle")
    env = dict(os.environ, QCH_BUILD_PYTHON=sys.executable, QCH_PYC_PYTHON=PY39 or "none")
    subprocess.run(["bash", str(ROOT / "packaging" / "build-node-bundle"), str(out)], env=env, check=True, timeout=900)
    (tarball,) = out.glob(f"{NAME}-*-linux-*-glibc*.tar.gz")
    subprocess.run(["tar", "-C", str(out), "-xzf", str(tarball)], check=True)
    (zipapp,) = out.glob(f"{NAME}-*-zipapp")
    return {"bundle": out / NAME / NAME, "zipapp": zipapp / NAME, "pyz": zipapp / f"{NAME}.pyz", "tarball": tarball}


def no_python(tmp_path, node_ca=None):
    """A wrapper that runs its arguments where no Python install is visible (and, with node_ca, where the
    node's only trust store is that CA at a path the build host's OpenSSL does not look at)."""
    dirs = {sys.prefix, sys.base_prefix, *glob.glob("/usr/lib/python3*"), *glob.glob("/usr/local/lib/python3*")}
    if os.path.isdir(os.path.expanduser("~/.pyenv")):
        dirs.add(os.path.expanduser("~/.pyenv"))
    files = glob.glob("/usr/bin/python3*") + glob.glob("/usr/lib/*/libpython3*") + glob.glob("/usr/local/bin/python3*")
    dirs = {d for d in dirs if os.path.isdir(d) and not any(d.startswith(o + "/") for o in dirs)}  # outermost only
    lines = ["#!/bin/sh", "set -eu"]
    lines += [f"mount -t tmpfs -o ro,size=4k none '{d}'" for d in sorted(dirs)]
    lines += [f"mount --bind /dev/null '{f}'" for f in sorted(files) if os.path.isfile(f) and not os.path.islink(f)]
    if node_ca:
        lines += [f"mount -t tmpfs none '{d}'" for d in ("/usr/lib/ssl", "/etc/ssl") if os.path.isdir(d)]
        lines += [f"cp '{node_ca}' /etc/ssl/ca-bundle.pem"]
    lines += ["if python3 -c pass 2>/dev/null; then exit 99; fi", 'exec "$@"']
    inner = tmp_path / ("inner-ca" if node_ca else "inner")
    inner.write_text("\n".join(lines) + "\n")
    inner.chmod(0o755)
    return ["unshare", "-m", "--propagation", "private", str(inner)]


@pytest.fixture
def node(tmp_path, home):
    """Registries over http and https, a robot token file, and the provider's config for both."""
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    with (
        QuayRegistry(users=USERS, robots=ROBOTS) as plain,
        QuayRegistry(users=USERS, robots=ROBOTS, ssl_context=server) as tls,
    ):
        etc = tmp_path / "etc"
        etc.mkdir(mode=0o700)
        token, ca_file, config = etc / "robot-token", etc / "ca.pem", etc / "kubelet.ini"
        token.write_text(ROBOT_TOKEN + "\n")
        ca.cert_pem.write_to_path(str(ca_file))
        config.write_text(
            f"[{plain.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n\n"
            f"[{tls.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\nca_bundle = {ca_file}\n\n"
            f"[localhost:{tls.port}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n"
        )
        for path in (token, config):
            path.chmod(0o600)
        env = dict(home, PATH="/usr/sbin:/usr/bin:/sbin:/bin")  # the kubelet's PATH: no venv, no pyenv
        yield {
            "plain": plain,
            "tls": tls,
            "ca": ca_file,
            "env": env,
            "args": ["--config", str(config)],
            "tmp": tmp_path,
        }


def answers(node, run):
    """The provider, through `run(image, extra_env, cache_dir)`, answers cold and cached, over http and https."""
    plain, tls = node["plain"], node["tls"]
    assert sub(run(f"{plain.host}/org/app"), plain.host) == ROBOT and plain.count("/v2/auth") == 1
    run(f"{plain.host}/org/other")  # cached: no request
    assert plain.count("/v2/auth") == 1
    assert sub(run(f"{tls.host}/org/app"), tls.host) == ROBOT  # ca_bundle =
    trusted = run(f"localhost:{tls.port}/org/app", {"SSL_CERT_FILE": str(node["ca"])})  # the trust store
    assert sub(trusted, f"localhost:{tls.port}") == ROBOT
    with pytest.raises(kubelet.Rejected, match="TLS verification failed"):
        run(f"localhost:{tls.port}/org/app", {}, node["tmp"] / "fresh-cache")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a mount namespace")
def test_the_bundle_answers_with_no_python_visible_through_a_symlink_in_the_bin_dir(built, node):
    bin_dir = node["tmp"] / "credential-provider-bin"
    bin_dir.mkdir()
    (bin_dir / NAME).symlink_to(built["bundle"])
    wrapper = no_python(node["tmp"])

    def run(image, extra=None, cache=None):
        more = ["--cache-dir", str(cache)] if cache else []
        env = dict(node["env"], **(extra or {}))
        return kubelet.run(wrapper[0], [*wrapper[1:], str(bin_dir / NAME), *node["args"], *more], env, V1, image)

    answers(node, run)
    # The node's trust store where the build host's OpenSSL does not look (the certifi stub finds it).
    moved = no_python(node["tmp"], node_ca=node["ca"])
    tls = node["tls"]
    args = [*moved[1:], str(bin_dir / NAME), *node["args"], "--cache-dir", str(node["tmp"] / "moved-cache")]
    assert (
        sub(kubelet.run(moved[0], args, node["env"], V1, f"localhost:{tls.port}/org/app"), f"localhost:{tls.port}")
        == ROBOT
    )


@pytest.mark.skipif(PY39 is None, reason="needs pyenv's Python 3.9")
def test_the_zipapp_answers_on_python_3_9_with_the_standard_library_only(built, node):
    def run(image, extra=None, cache=None):
        more = ["--cache-dir", str(cache)] if cache else []
        env = dict(node["env"], **(extra or {}))
        return kubelet.run(PY39, ["-I", "-S", str(built["zipapp"]), *node["args"], *more], env, V1, image)

    answers(node, run)


def test_the_zipapp_runs_by_name_through_a_symlink_with_the_nodes_python3(built, node, tmp_path):
    (tmp_path / NAME).symlink_to(built["zipapp"])
    plain = node["plain"]
    assert (
        sub(kubelet.run(str(tmp_path / NAME), node["args"], node["env"], V1, f"{plain.host}/org/app"), plain.host)
        == ROBOT
    )


def test_neither_carries_keyring_the_cli_or_ca_certificates(built):
    names = zipfile.ZipFile(built["pyz"]).namelist()
    listing = subprocess.run(["tar", "-tzf", str(built["tarball"])], capture_output=True, text=True, check=True).stdout
    # The bundle's Python modules are in an archive inside its executable, whose table names them in clear.
    pattern = rb"\b(?:quay_cred_helper|keyring|jeepney|secretstorage|cryptography)[a-z_.]*"
    archive = re.findall(pattern, built["bundle"].read_bytes())
    modules = sorted({m.decode() for m in archive})
    for found in (names, listing.splitlines(), modules):
        assert not [n for n in found if n.endswith((".pem", ".crt")) or "cacert" in n]
        ours = [n.replace("/", ".") for n in found if n.startswith("quay_cred_helper")]
        assert not [n for n in found if "keyring" in n or "secretservice" in n]
        assert not [n for n in ours if ".cli" in n or ".commands" in n or n.startswith("quay_cred_helper.store")]
    assert "quay_cred_helper.kubelet.main" in modules
    assert not [m for m in modules if not m.startswith("quay_cred_helper")]
    assert built["pyz"].stat().st_size < 400 * 1024  # rides in a MachineConfig: base64 adds a third
    assert {"LICENSES/httpx-0.28.1/LICENSE.md", "LICENSES/quay-cred-helper/LICENSE"} <= set(names)

"""The DaemonSet's installer image: built with buildah from scratch (packaging/kubernetes/build-image), run
with podman against a fake host root as the DaemonSet runs it, then the installed provider answers the kubelet.

podman here (a VM without CAP_SYS_RESOURCE, cgroups v1 and v2 mixed) needs: its own storage (vfs), runc (crun
refuses the mixed cgroups) with cgroupfs, rlimits no higher than ours, and no network (none is reachable)."""

import json
import os
import shutil
import subprocess

import pytest

from tests.fakes.quay_registry import QuayRegistry
from tests.support import BIN, ROBOT, ROBOT_TOKEN, ROBOTS, USERS
from tests.test_node_install import kubelet_of, node_root, snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "packaging", "kubernetes", "build-image")
TAG = "localhost/quay-cred-helper-node:test"

pytestmark = [pytest.mark.slow, pytest.mark.posix]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if os.geteuid() != 0 or not (shutil.which("buildah") and shutil.which("podman") and shutil.which("runc")):
        pytest.skip("needs root, buildah, podman and runc")
    storage = tmp_path_factory.mktemp("containers")
    options = ["--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", "vfs"]
    env = dict(os.environ, QCH_BUILD_PYTHON=os.path.join(BIN, "python"), QCH_STORAGE=" ".join(options))
    provider = os.path.join(BIN, "quay-credential-provider")  # runs on this host: the "node" here
    build = subprocess.run(
        ["bash", BUILD, "--provider", provider, "--tag", TAG], env=env, capture_output=True, timeout=600, cwd=ROOT
    )
    assert build.returncode == 0, build.stderr.decode()[-3000:]
    print(build.stdout.decode().strip())
    yield options
    subprocess.run(["podman", *options, "rmi", "-f", TAG], capture_output=True, timeout=120)
    subprocess.run(["buildah", *options, "rm", "--all"], capture_output=True, timeout=120)
    shutil.rmtree(storage / "root", ignore_errors=True)


def podman_run(options, root, secret, *args):
    command = [
        "podman", *options, "run", "--rm", "--network", "none", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
        "-v", f"{root}:/host", "-v", f"{secret}:/secret:ro", TAG, *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, timeout=300)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_the_installer_image_installs_on_a_fake_host_and_the_provider_answers(image, tmp_path, home):
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    root = node_root(tmp_path, "eks")
    before = snapshot(root)
    secret = tmp_path / "secret"
    secret.mkdir()
    with QuayRegistry(users=USERS, robots=ROBOTS) as quay:
        (secret / "robot-token").write_text(ROBOT_TOKEN + "\n")
        # The ini names the token where it lands under the fake root: this host runs the provider unchrooted.
        (secret / "kubelet.ini").write_text(
            f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {root}/etc/quay-cred-helper/robot-token\n"
        )
        install = ["node", "install", "--root", "/host", "--provider", "/opt/quay-cred-helper/provider",
                   "--config", "/secret/kubelet.ini", "--robot-token-file", "/secret/robot-token"]  # fmt: skip
        code, out, err = podman_run(image, root, secret, *install)
        assert code == 0, err
        assert "linked /etc/eks/image-credential-provider/quay-credential-provider" in out
        installed = snapshot(root)
        node = kubelet_of(
            root, "/etc/eks/image-credential-provider/config.json", "/etc/eks/image-credential-provider", env
        )
        credentials = node.credentials(f"{quay.host}/org/app")
        assert credentials and credentials[0]["username"] == ROBOT
        assert quay.check_password(ROBOT, credentials[0]["password"]) is None
        assert [p.runs for p in node.providers] == [0, 1]  # ECR's provider never ran
    # Again, as a restarted DaemonSet pod does: nothing changes.
    shutil.rmtree(root / "var/cache/quay-cred-helper")
    code, out, err = podman_run(image, root, secret, *install)
    assert code == 0 and "nothing to change" in err and snapshot(root) == installed
    code, out, err = podman_run(image, root, secret, "node", "install", "--root", "/host", "--uninstall")
    assert code == 0, err
    assert snapshot(root) == before


def test_the_installer_image_resolves_an_absolute_link_in_the_host_root(image, tmp_path):
    """/etc/eks -> /var/lib/eks on the host: main followed it inside the container, wrote the config there,
    and pointed the node's kubelet at a file that did not exist on the node."""
    root = node_root(tmp_path, "eks")
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    os.replace(root / "etc/eks", root / "var/lib/eks")
    (root / "etc/eks").symlink_to("/var/lib/eks")
    before = snapshot(root)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "robot-token").write_text(ROBOT_TOKEN + "\n")
    (secret / "kubelet.ini").write_text(f"[quay.example.com]\nrobot = {ROBOT}\nrobot_token_file = /etc/x/robot-token\n")
    install = ["node", "install", "--root", "/host", "--provider", "/opt/quay-cred-helper/provider",
               "--config", "/secret/kubelet.ini", "--robot-token-file", "/secret/robot-token"]  # fmt: skip
    code, out, err = podman_run(image, root, secret, *install)
    assert code == 0, err
    config = json.loads((root / "var/lib/eks/image-credential-provider/config.json").read_text())
    assert [p["name"] for p in config["providers"]] == ["ecr-credential-provider", "quay-credential-provider"]
    assert os.readlink(root / "etc/eks") == "/var/lib/eks"
    assert os.path.lexists(root / "var/lib/eks/image-credential-provider/quay-credential-provider")
    code, out, err = podman_run(image, root, secret, "node", "install", "--root", "/host", "--uninstall")
    assert code == 0, err
    assert snapshot(root) == before

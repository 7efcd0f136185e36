"""node install on nodes whose files are symlinks (config tools, NixOS): every path resolved inside --root
as the node sees it, links kept, modes never taken from a link, --uninstall byte for byte.

Every node is a scratch directory; no test writes outside it. Where main followed an absolute link on the
installer's own file system, the link points under /proc, where nothing can be created: main fails there
instead of writing to this machine."""

import os
import stat

import pytest

from quay_cred_helper.errors import HelperError, InputError
from quay_cred_helper.node import install, rootfs
from tests.test_node_install import (
    ECR_YAML,
    PROVIDER,
    ROBOT,
    ROBOT_TOKEN,
    cli,
    node_install,
    node_root,
    providers_of,
    snapshot,
    write,
)

pytestmark = pytest.mark.posix
ECR_CONFIG = "/etc/kubernetes/credential-provider/config.yaml"


# -- resolving inside the root, as openat2 RESOLVE_IN_ROOT -----------------------------------------------------


def test_resolve_follows_links_inside_the_root(tmp_path):
    root = tmp_path / "node"
    (root / "srv/k8s").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/kubernetes").symlink_to("/srv/k8s")  # absolute: the node's /srv, not ours
    (root / "etc/relative").symlink_to("../srv/k8s")
    (root / "srv/k8s/config.yaml").symlink_to("real.yaml")
    base = str(root)
    assert rootfs.resolve(base, "/etc/kubernetes/config.yaml") == f"{root}/srv/k8s/real.yaml"
    assert rootfs.resolve(base, "/etc/kubernetes/config.yaml", follow=False) == f"{root}/srv/k8s/config.yaml"
    assert rootfs.resolve(base, "/etc/relative/new/file") == f"{root}/srv/k8s/new/file"
    assert rootfs.resolve(base, "/../../etc/../../srv") == f"{root}/srv"  # `..` stops at the root
    assert rootfs.node_path(base, rootfs.resolve(base, "/etc/kubernetes")) == "/srv/k8s"


def test_resolve_refuses_loops_and_links_that_climb_out(tmp_path):
    root = tmp_path / "node"
    (root / "etc").mkdir(parents=True)
    (root / "etc/a").symlink_to("b")
    (root / "etc/b").symlink_to("/etc/a")
    (root / "etc/out").symlink_to("../../outside")
    with pytest.raises(InputError, match="too many levels of symlinks"):
        rootfs.resolve(str(root), "/etc/a/x")
    with pytest.raises(InputError, match=r"/etc/out on the node links to \.\./\.\./outside, outside the node's root"):
        rootfs.resolve(str(root), "/etc/out")


# -- node install through links ---------------------------------------------------------------------------------


@pytest.mark.slow  # node install runs: the full suite
def test_a_symlinked_provider_config_is_merged_into_and_kept(env, tmp_path):
    """Main took the link for 'nothing there': ECR dropped, the link replaced by a 0777 file."""
    root = node_root(tmp_path, "yaml-ecr")
    target = root / "etc/nix/store/ecr.yaml"
    target.parent.mkdir(parents=True)
    os.replace(root / ECR_CONFIG.lstrip("/"), target)
    target.chmod(0o640)
    (root / ECR_CONFIG.lstrip("/")).symlink_to("/etc/nix/store/ecr.yaml")  # absolute: re-rooted
    before = snapshot(root)
    first = node_install(env, root)
    assert first.returncode == 0, first.stderr
    assert os.readlink(root / ECR_CONFIG.lstrip("/")) == "/etc/nix/store/ecr.yaml"
    names = [p["name"] for p in providers_of(root, "/etc/nix/store/ecr.yaml")]
    assert names == ["ecr-credential-provider", install.NAME]
    assert target.read_text().startswith(ECR_YAML) and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert "wrote /etc/nix/store/ecr.yaml (0640)" in first.stdout
    assert node_install(env, root).stderr.strip().endswith("nothing to change")
    assert node_install(env, root, "--uninstall").returncode == 0
    assert snapshot(root) == before


@pytest.mark.slow  # node install runs: the full suite
def test_a_symlinked_extra_args_file_keeps_the_admins_flags(env, tmp_path):
    """Main wrote an extra-args file with only our two flags over the link (0777), dropping the admin's."""
    root = node_root(tmp_path, "kubeadm")
    write(root, "/etc/nixos/kubelet-args", 'KUBELET_EXTRA_ARGS="--node-ip=10.0.0.5 --max-pods=50"\n', 0o644)
    (root / "etc/default/kubelet").unlink()
    (root / "etc/default/kubelet").symlink_to("../nixos/kubelet-args")  # relative
    before = snapshot(root)
    assert node_install(env, root).returncode == 0
    assert os.readlink(root / "etc/default/kubelet") == "../nixos/kubelet-args"
    text = (root / "etc/nixos/kubelet-args").read_text()
    assert text.splitlines()[1].startswith(
        'KUBELET_EXTRA_ARGS="--node-ip=10.0.0.5 --max-pods=50 --image-credential-provider-config='
    )
    assert stat.S_IMODE((root / "etc/nixos/kubelet-args").stat().st_mode) == 0o644
    assert node_install(env, root, "--uninstall").returncode == 0
    assert snapshot(root) == before


@pytest.mark.slow  # node install runs: the full suite
def test_group_or_world_writable_files_are_written_without_it(env, tmp_path):
    root = node_root(tmp_path, "kubeadm")
    (root / "etc/default/kubelet").chmod(0o666)
    assert node_install(env, root).returncode == 0
    assert stat.S_IMODE((root / "etc/default/kubelet").stat().st_mode) == 0o644


@pytest.mark.slow  # node install runs: the full suite
def test_a_symlinked_directory_with_an_absolute_target_stays_in_the_root(env, tmp_path):
    """/etc/kubernetes -> /proc/quay-node/kubernetes: the node's, never this machine's /proc."""
    root = node_root(tmp_path, "yaml-ecr")
    moved = root / "proc/quay-node/kubernetes"
    moved.parent.mkdir(parents=True)
    os.replace(root / "etc/kubernetes", moved)
    (root / "etc/kubernetes").symlink_to("/proc/quay-node/kubernetes")
    before = snapshot(root)
    first = node_install(env, root)
    assert first.returncode == 0, first.stderr
    names = [p["name"] for p in providers_of(root, "/proc/quay-node/kubernetes/credential-provider/config.yaml")]
    assert names == ["ecr-credential-provider", install.NAME]
    assert os.readlink(root / "etc/kubernetes") == "/proc/quay-node/kubernetes"
    assert node_install(env, root, "--uninstall").returncode == 0
    assert snapshot(root) == before


@pytest.mark.parametrize("link", ["../../../../../../../../outside", "kubelet"])
def test_a_link_out_of_the_root_or_a_loop_is_one_line_and_nothing_is_written(env, tmp_path, link):
    root = node_root(tmp_path, "kubeadm")
    (root / "etc/default/kubelet").unlink()
    (root / "etc/default/kubelet").symlink_to(link)
    before = snapshot(root)
    r = node_install(env, root)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "outside the node's root" in r.stderr or "too many levels of symlinks" in r.stderr
    assert snapshot(root) == before


@pytest.mark.slow  # node install runs: the full suite
def test_uninstall_removes_a_staged_token_and_our_directories(env, tmp_path):
    """Main left robot-token.rotating (a live token an interrupted `robot rotate` staged) and our directory."""
    root = node_root(tmp_path, "kubeadm")
    before = snapshot(root)
    token = tmp_path / "token"
    token.write_text(ROBOT_TOKEN + "\n")
    source = ("--registry", "quay.example.com")
    r = cli(env, "node", "install", "--root", str(root), "--provider", PROVIDER, *source, "--robot", ROBOT,
            "--robot-token-file", str(token))  # fmt: skip
    assert r.returncode == 0, r.stderr
    write(root, install.TOKEN + install.STAGED, "staged-new-token\n", 0o600)
    assert node_install(env, root, "--uninstall").returncode == 0
    assert snapshot(root) == before


def test_what_the_kubelet_reads_is_checked_after_writing(tmp_path):
    """Before any --restart: a file the kubelet reads that the node does not see stops the run."""
    root = tmp_path / "node"
    root.mkdir()
    plan = install.Plan(None, changes=[install.Change("/etc/kubernetes/config.yaml", None, b"x\n")])
    plan.reads = ["/etc/kubernetes/config.yaml", "/opt/quay-cred-helper/bin/quay-credential-provider"]
    with pytest.raises(HelperError, match="does not see /opt/quay-cred-helper/bin/quay-credential-provider"):
        install.apply(plan, str(root))
    assert (root / "etc/kubernetes/config.yaml").read_bytes() == b"x\n"

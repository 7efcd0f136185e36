"""node install run twice on nodes an earlier run (or an admin) left in a state a single run never makes:
/opt as a link (ostree hosts), files made group- or world-writable. In process: plan() and apply()."""

import os
import stat

import pytest

from quay_cred_helper.node import install, rootfs
from tests.support import ROBOT
from tests.test_node_install import node_root, write

pytestmark = pytest.mark.posix


def options(root, provider, **extra):
    ini = install.provider_ini(["quay.example.com"], ROBOT, False, None, True)
    return install.Options(root=str(root), provider=str(provider), ini=ini, audience="quay.example.com", **extra)


def run(opts):
    plan = install.plan(opts)
    install.apply(plan, opts.root)
    return plan


def bundle(tmp_path):
    source = tmp_path / "bundle"
    write(source, "/quay-credential-provider", "#!/bin/sh\nexit 0\n", 0o755)
    write(source, "/_internal/lib.so", b"\0lib")
    return source


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_second_bundle_install_keeps_the_bundle_when_opt_is_a_link(tmp_path):
    """Fedora CoreOS, RHCOS: /opt -> var/opt. The second run used to plan every file of the bundle for removal."""
    root = node_root(tmp_path, "kubeadm")
    (root / "opt").rmdir()
    (root / "var/opt").mkdir()
    (root / "opt").symlink_to("var/opt")
    opts = options(root, bundle(tmp_path))
    run(opts)
    second = run(opts)
    assert second.changes == []
    provider = root / "var/opt/quay-cred-helper/provider"
    assert (provider / "quay-credential-provider").read_bytes() == b"#!/bin/sh\nexit 0\n"
    assert (provider / "_internal/lib.so").read_bytes() == b"\0lib"
    assert os.path.isfile(rootfs.resolve(str(root), "/opt/quay-cred-helper/bin/quay-credential-provider"))


def test_group_or_world_writable_files_with_the_right_content_are_fixed(tmp_path):
    """What main's bug left on nodes: our files right but 0666. A second run takes the write bits away (the
    extra-args file stays the admin's while our flags are in it: not ours to touch)."""
    root = node_root(tmp_path, "kubeadm")
    provider = tmp_path / "provider"
    write(provider, "", "#!/bin/sh\nexit 0\n", 0o755)
    opts = options(root, provider)
    run(opts)
    config = root / "etc/kubernetes/credential-provider-config.yaml"
    ini = root / install.INI.lstrip("/")
    config.chmod(0o666)
    ini.chmod(0o622)
    second = run(opts)
    assert sorted(c.path for c in second.changes) == sorted(["/" + str(p.relative_to(root)) for p in (config, ini)])
    assert (mode(config), mode(ini)) == (0o644, 0o600)
    assert run(opts).changes == []


FLAGS = ["--image-credential-provider-config=/etc/c.yaml", "--image-credential-provider-bin-dir=/opt/b"]


@pytest.mark.parametrize(
    "text",
    [
        'KUBELET_EXTRA_ARGS=""\n',
        'KUBELET_EXTRA_ARGS="--foo"\n',
        "KUBELET_EXTRA_ARGS='--foo'\n",
        'KUBELET_EXTRA_ARGS="--a  --b"\n',
        'KUBELET_EXTRA_ARGS= "--a --b" \n',
        "KUBELET_EXTRA_ARGS=--foo",
        "KUBELET_EXTRA_ARGS=\n",
        "# kubelet\nKUBELET_EXTRA_ARGS=--foo\nOTHER=1",
        "OTHER=1",
        "OTHER=1\n",
        "",
    ],
)
def test_uninstall_gives_the_extra_args_file_back_byte_for_byte(text):
    """Main gave back KUBELET_EXTRA_ARGS="" as KUBELET_EXTRA_ARGS=, "--foo" unquoted, two spaces as one and a
    final newline that was not there."""
    added = install.edit_extra_args(text, FLAGS, remove=False)
    assert added is not None and all(flag in added for flag in FLAGS)
    assert install.edit_extra_args(added, FLAGS, remove=False) == added  # a second install changes nothing
    assert install.edit_extra_args(added, FLAGS, remove=True) == (text or None)


def test_an_extra_args_line_the_admin_changed_since_keeps_the_change():
    added = install.edit_extra_args('KUBELET_EXTRA_ARGS="--foo"\n', FLAGS, remove=False)
    changed = added.replace("--foo", "--foo --max-pods=50")
    assert install.edit_extra_args(changed, FLAGS, remove=True) == 'KUBELET_EXTRA_ARGS="--foo --max-pods=50"\n'


def test_uninstall_removes_a_staged_token_beside_the_file_a_linked_token_leads_to(tmp_path):
    """robot rotate stages beside os.path.realpath(robot_token_file); uninstall looked beside the link."""
    root = node_root(tmp_path, "kubeadm")
    provider = tmp_path / "provider"
    write(provider, "", "#!/bin/sh\nexit 0\n", 0o755)
    run(options(root, provider, token=b"token\n"))
    token = root / install.TOKEN.lstrip("/")
    write(root, "/etc/quay-cred-helper/secrets/robot-token", token.read_bytes(), 0o600)
    token.unlink()
    token.symlink_to("secrets/robot-token")
    staged = root / ("etc/quay-cred-helper/secrets/robot-token" + install.STAGED)
    write(root, "/etc/quay-cred-helper/secrets/robot-token" + install.STAGED, "staged-new-token\n", 0o600)
    run(options(root, provider, uninstall=True))
    assert not staged.exists() and not os.path.lexists(token)

"""quay-cred-helper node install against fake node roots: kubeadm, EKS-like (JSON ECR config), a hand-made
YAML ECR config, k3s and a plain kubelet.service; then the installed provider as the kubelet runs it."""

import json
import os
import stat
import subprocess

import pytest
import yaml

from quay_cred_helper.node import install
from quay_cred_helper.node import kubelet as node_kubelet
from quay_cred_helper.node.kubelet import RANCHER_BIN, RANCHER_CONFIG
from tests.fakes import fake_kubelet as kubelet
from tests.fakes.quay_registry import QuayRegistry
from tests.support import BIN, ROBOT, ROBOT_TOKEN, ROBOTS, USERS
from tests.support import cli as run_cli

pytestmark = pytest.mark.posix
PROVIDER = os.path.join(BIN, "quay-credential-provider")
V1 = "credentialprovider.kubelet.k8s.io/v1"
ECR = {
    "name": "ecr-credential-provider",
    "matchImages": ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"],
    "defaultCacheDuration": "12h",
    "apiVersion": V1,
}
ECR_YAML = """# ECR, set up by hand: these comments stay.
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  # the cloud's own provider
  - name: ecr-credential-provider
    matchImages:
      - "*.dkr.ecr.*.amazonaws.com"
      - "*.dkr.ecr.*.amazonaws.com.cn"
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
"""
KUBEADM_DROP_IN = """[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\
 --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""
UNIT = "[Unit]\nDescription=kubelet\n\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n"


def write(root, path, text, mode=0o644):
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(text.encode() if isinstance(text, str) else text)
    full.chmod(mode)


def node_root(tmp_path, kind):
    """A node's root with a kubelet set up the way `kind` sets it up (and /opt, /var as every node has)."""
    root = tmp_path / f"root-{kind}"
    for directory in ("opt", "var/cache", "etc/kubernetes"):
        (root / directory).mkdir(parents=True)
    write(root, "/etc/kubernetes/kubelet.conf", "apiVersion: v1\nkind: Config\n")
    if kind in ("kubeadm", "yaml-ecr"):
        write(root, "/usr/lib/systemd/system/kubelet.service", UNIT)
        write(root, "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROP_IN)
        write(root, "/var/lib/kubelet/kubeadm-flags.env", 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=x"\n')
        write(root, "/etc/default/kubelet", "KUBELET_EXTRA_ARGS=\n")
    if kind == "yaml-ecr":  # flags of the admin's own, in the extra-args file
        write(root, "/etc/kubernetes/credential-provider/config.yaml", ECR_YAML)
        write(root, "/usr/local/lib/credential-providers/ecr-credential-provider", "#!/bin/sh\nexit 1\n", 0o755)
        write(
            root,
            "/etc/default/kubelet",
            'KUBELET_EXTRA_ARGS="--node-ip=10.0.0.5 --image-credential-provider-config=/etc/kubernetes/'
            "credential-provider/config.yaml "
            '--image-credential-provider-bin-dir=/usr/local/lib/credential-providers"\n',
        )
    if kind == "eks":  # as nodeadm: flags in an environment file, the ECR config in JSON
        write(
            root,
            "/etc/systemd/system/kubelet.service",
            "[Service]\nEnvironmentFile=/etc/eks/kubelet/environment\n"
            "ExecStart=/usr/bin/kubelet $NODEADM_KUBELET_ARGS\n",
        )
        write(
            root,
            "/etc/eks/kubelet/environment",
            "NODEADM_KUBELET_ARGS=--node-ip=10.0.0.5 --image-credential-provider-bin-dir=/etc/eks/image-credential-"
            "provider --image-credential-provider-config=/etc/eks/image-credential-provider/config.json\n",
        )
        config = {"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [ECR]}
        write(root, "/etc/eks/image-credential-provider/config.json", json.dumps(config, indent=2) + "\n")
        write(root, "/etc/eks/image-credential-provider/ecr-credential-provider", "#!/bin/sh\nexit 1\n", 0o755)
    if kind == "plain":  # literal flags only: ExecStart is repeated in a drop-in
        unit = UNIT.replace("kubelet\n", "kubelet --v=2 \\\n  --max-pods=50\n")
        write(root, "/etc/systemd/system/kubelet.service", unit)
    if kind == "k3s":
        write(root, "/etc/systemd/system/k3s-agent.service", "[Service]\nExecStart=/usr/local/bin/k3s agent\n")
        write(root, "/etc/rancher/k3s/config.yaml", "# mine\nnode-label:\n  - role=edge\n")
        (root / "var/lib/rancher/k3s").mkdir(parents=True)
    return root


def cli(env, *args):
    """The CLI's result with stdout and stderr as text."""
    result = run_cli(env, *args)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def snapshot(root):
    """Every path under root: a file's bytes and mode, a link's target, a directory."""
    found = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            key = os.path.relpath(full, root)
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                found[key] = ("dir",)
            else:
                with open(full, "rb") as f:
                    found[key] = (f.read(), stat.S_IMODE(info.st_mode))
    return found


def node_install(env, root, *extra, provider=PROVIDER, source=("--registry", "quay.example.com")):
    args = ["node", "install", "--root", str(root), *extra]
    if "--uninstall" not in extra:
        args += ["--provider", str(provider), *source]
        if "--config" not in source:
            args += ["--robot", ROBOT, "--service-account"]
    return cli(env, *args)


def providers_of(root, path):
    text = (root / path.lstrip("/")).read_text()
    return (json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text))["providers"]


# -- merging into an existing provider config -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, config, bin_dir",
    [
        ("eks", "/etc/eks/image-credential-provider/config.json", "/etc/eks/image-credential-provider"),
        ("yaml-ecr", "/etc/kubernetes/credential-provider/config.yaml", "/usr/local/lib/credential-providers"),
    ],
)
def test_joins_an_existing_ecr_config_leaves_ecr_alone_and_a_second_run_changes_nothing(
    env, tmp_path, kind, config, bin_dir
):
    root = node_root(tmp_path, kind)
    before = snapshot(root)
    first = node_install(env, root)
    assert first.returncode == 0, first.stderr
    providers = providers_of(root, config)
    assert providers[0] == ECR and providers[1]["name"] == install.NAME and len(providers) == 2
    assert providers[1]["matchImages"] == ["quay.example.com"] and "tokenAttributes" in providers[1]
    # Its bin dir, its flags: the kubelet's own, not a line changed where they are set.
    assert os.access(root / bin_dir.lstrip("/") / install.NAME, os.X_OK)
    flags_file = "etc/eks/kubelet/environment" if kind == "eks" else "etc/default/kubelet"
    after = snapshot(root)
    assert after[flags_file] == before[flags_file]
    assert not (root / node_kubelet.DROP_IN.lstrip("/")).exists()
    text = (root / config.lstrip("/")).read_text()
    if kind == "yaml-ecr":  # every line of the admin's file is still there, comments included
        assert text.startswith(ECR_YAML) and install.MARK in text
    else:  # JSON laid out as it was
        assert text.startswith(before[config.lstrip("/")][0].decode()[:40])
    assert after[os.path.relpath(root / "etc/quay-cred-helper/kubelet.ini", root)][1] == 0o600
    # A second run: byte for byte the same tree, and it says so.
    second = node_install(env, root)
    assert second.returncode == 0 and "nothing to change" in second.stderr and second.stdout == ""
    assert snapshot(root) == after


@pytest.mark.parametrize("kind", ["eks", "yaml-ecr", "kubeadm", "plain", "k3s"])
@pytest.mark.slow  # over half a second: the full suite
def test_uninstall_restores_the_node_byte_for_byte(env, tmp_path, kind):
    root = node_root(tmp_path, kind)
    before = snapshot(root)
    assert node_install(env, root).returncode == 0
    assert snapshot(root) != before
    (root / "var/cache/quay-cred-helper/tokens").mkdir(parents=True)  # what the provider leaves
    (root / "var/cache/quay-cred-helper/tokens/x.json").write_text('{"token": "cached"}')
    dry = node_install(env, root, "--uninstall", "--dry-run")
    assert dry.returncode == 0 and "cached" not in dry.stdout  # a cached JWT is never shown
    gone = node_install(env, root, "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert snapshot(root) == before
    again = node_install(env, root, "--uninstall")
    assert again.returncode == 0 and "nothing to change" in again.stderr


def test_dry_run_writes_nothing_and_shows_a_diff_of_every_file(env, tmp_path):
    root = node_root(tmp_path, "eks")
    before = snapshot(root)
    dry = node_install(env, root, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert snapshot(root) == before
    for path in ("etc/eks/image-credential-provider/config.json", "etc/quay-cred-helper/kubelet.ini"):
        assert f"--- a/{path}\n+++ b/{path}\n" in dry.stdout
    assert f'+      "name": "{install.NAME}",' in dry.stdout  # our entry, in the file's own indent
    assert f"+++ b/etc/eks/image-credential-provider/{install.NAME}\n" in dry.stdout
    # Applied, the same plan: each file the diff named is written.
    node_install(env, root)
    assert node_install(env, root, "--dry-run").stdout == ""


# -- the flags: added once, where the distribution keeps them --------------------------------------------------


def test_kubeadm_gets_the_flags_once_in_its_extra_args_file(env, tmp_path):
    root = node_root(tmp_path, "kubeadm")
    for _ in range(3):
        assert node_install(env, root).returncode == 0
    text = (root / "etc/default/kubelet").read_text()
    assert text == (
        f"{install.WAS}KUBELET_EXTRA_ARGS=\n"
        f'KUBELET_EXTRA_ARGS="{node_kubelet.CONFIG_FLAG}={install.CONFIG} {node_kubelet.BIN_DIR_FLAG}={install.BIN}"\n'
    )
    found = node_kubelet.find_kubelet(str(root))
    assert (found.config, found.bin_dir, found.flags_from) == (install.CONFIG, install.BIN, "/etc/default/kubelet")
    assert providers_of(root, install.CONFIG)[0]["name"] == install.NAME


def test_a_plain_unit_gets_a_drop_in_repeating_its_exec_start(env, tmp_path):
    root = node_root(tmp_path, "plain")
    for _ in range(2):
        assert node_install(env, root).returncode == 0
    drop_in = (root / node_kubelet.DROP_IN.lstrip("/")).read_text()
    lines = [line for line in drop_in.splitlines() if line.startswith("ExecStart=")]
    assert lines == [
        "ExecStart=",
        f"ExecStart=/usr/bin/kubelet --v=2 --max-pods=50 {node_kubelet.CONFIG_FLAG}={install.CONFIG} "
        f"{node_kubelet.BIN_DIR_FLAG}={install.BIN}",
    ]
    assert drop_in.count(node_kubelet.CONFIG_FLAG) == 1
    assert node_kubelet.find_kubelet(str(root)).flags_from == node_kubelet.DROP_IN


def test_k3s_uses_the_paths_it_passes_to_its_kubelet_by_itself(env, tmp_path):
    root = node_root(tmp_path, "k3s")
    before = snapshot(root)
    result = node_install(env, root)
    assert result.returncode == 0 and "restart k3s-agent.service" in result.stderr
    assert providers_of(root, RANCHER_CONFIG)[0]["name"] == install.NAME
    assert os.access(root / RANCHER_BIN.lstrip("/") / install.NAME, os.X_OK)
    assert snapshot(root)["etc/rancher/k3s/config.yaml"] == before["etc/rancher/k3s/config.yaml"]


def test_a_yaml_config_in_flow_style_is_rewritten_and_the_run_says_so(env, tmp_path):
    root = node_root(tmp_path, "yaml-ecr")
    path = root / "etc/kubernetes/credential-provider/config.yaml"
    head = ECR_YAML.split("providers:")[0]
    path.write_text(head + "providers: [{name: ecr-credential-provider, apiVersion: " + V1 + ", matchImages: []}]\n")
    result = node_install(env, root)
    assert result.returncode == 0 and "rewritten whole" in result.stderr
    assert [p["name"] for p in providers_of(root, "/" + str(path.relative_to(root)))] == [ECR["name"], install.NAME]


def test_refuses_what_the_kubelet_would_refuse_and_writes_nothing(env, tmp_path):
    root = node_root(tmp_path, "eks")
    config = root / "etc/eks/image-credential-provider/config.json"
    config.write_text(config.read_text().replace("kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1"))
    before = snapshot(root)
    result = node_install(env, root)  # per pod: tokenAttributes, which only v1 has
    assert result.returncode == 1 and "the kubelet would refuse" in result.stderr and "tokenAttributes" in result.stderr
    assert snapshot(root) == before


def test_bad_input_is_one_line(env, tmp_path):
    root = node_root(tmp_path, "kubeadm")
    for extra, text in [
        ((), "no registry for the provider"),
        (("--registry", "quay.example.com"), "no robot for the provider"),
    ]:
        result = cli(env, "node", "install", "--root", str(root), "--provider", PROVIDER, *extra)
        assert result.returncode == 1 and text in result.stderr and len(result.stderr.splitlines()) == 1
    result = node_install(env, tmp_path / "empty")
    assert result.returncode == 1 and "is not a directory" in result.stderr
    (tmp_path / "bare").mkdir()
    result = node_install(env, tmp_path / "bare")
    assert result.returncode == 1 and "no kubelet found" in result.stderr


# -- the installed provider, as the kubelet runs it --------------------------------------------------------------


def on_node(root, path):
    return str(root / path.lstrip("/")) if path.startswith("/") else path


def kubelet_of(root, config, bin_dir, env):
    """fake_kubelet's Kubelet over every provider of the installed config, run from the installed bin dir;
    the node's absolute paths in their args mapped under root (what a chroot would do)."""
    providers = []
    for entry in providers_of(root, config):
        attributes = entry.get("tokenAttributes")
        path = on_node(root, f"{bin_dir}/{entry['name']}")
        if os.path.islink(path) and os.readlink(path).startswith("/"):  # a link as the node resolves it
            path = on_node(root, os.readlink(path))
        providers.append(
            kubelet.Provider(
                path,
                [on_node(root, a) for a in entry.get("args", [])],
                env,
                entry["apiVersion"],
                entry["matchImages"],
                kubelet.seconds(entry["defaultCacheDuration"]),
                attributes
                and {
                    "audience": attributes["serviceAccountTokenAudience"],
                    "cacheType": attributes["cacheType"],
                    "optional": attributes.get("optionalServiceAccountAnnotationKeys", []),
                },
            )
        )
    return kubelet.Kubelet(providers)


@pytest.mark.parametrize("kind", ["eks", "kubeadm"])
@pytest.mark.slow  # over half a second: the full suite
def test_the_installed_provider_answers_the_kubelet_beside_ecr(env, tmp_path, kind):
    root = node_root(tmp_path, kind)
    with QuayRegistry(users=USERS, robots=ROBOTS) as quay:
        token = tmp_path / "robot-token"
        token.write_text(ROBOT_TOKEN + "\n")
        ini = tmp_path / "kubelet.ini"
        ini.write_text(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {root}{install.TOKEN}\n")
        result = node_install(env, root, source=("--config", str(ini), "--robot-token-file", str(token)))
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(os.stat(root / install.TOKEN.lstrip("/")).st_mode) == 0o600
        found = node_kubelet.find_kubelet(str(root))
        node = kubelet_of(root, found.config, found.bin_dir, env)
        credentials = node.credentials(f"{quay.host}/org/app")
        assert credentials and credentials[0]["username"] == ROBOT and credentials[0]["password"] != ROBOT_TOKEN
        assert quay.check_password(ROBOT, credentials[0]["password"]) is None
        # ECR's provider matched nothing and never ran; ours ran once, and no error anywhere.
        assert [p.runs for p in node.providers] == ([0, 1] if kind == "eks" else [1])
        assert not any(p.errors for p in node.providers)
        assert os.listdir(root / "var/cache/quay-cred-helper")


def test_restart_runs_systemctl_in_the_nodes_root_and_only_after_a_change(env, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    import shutil

    root = node_root(tmp_path, "kubeadm")
    # A node's /bin/sh and a systemctl that logs what it is asked: chroot runs them from the node's root.
    shell = os.path.realpath(shutil.which("sh"))
    libraries = subprocess.run(["ldd", shell], capture_output=True, text=True, check=True).stdout
    for path in [shell, *(word for word in libraries.split() if word.startswith("/"))]:
        with open(path, "rb") as f:
            write(root, path, f.read(), 0o755)
    if shell != "/bin/sh":
        (root / "bin").mkdir(exist_ok=True)
        (root / "bin/sh").symlink_to(shell)
    write(root, "/usr/bin/systemctl", '#!/bin/sh\necho "$@" >> /systemctl.log\n', 0o755)
    result = node_install(env, root, "--restart")
    assert result.returncode == 0, result.stderr
    assert (root / "systemctl.log").read_text() == "daemon-reload\nrestart kubelet.service\n"
    assert "ran systemctl restart kubelet.service" in result.stderr
    assert node_install(env, root, "--restart").returncode == 0  # nothing changed: no restart
    assert (root / "systemctl.log").read_text() == "daemon-reload\nrestart kubelet.service\n"

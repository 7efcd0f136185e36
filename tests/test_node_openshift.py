"""quay-cred-helper node openshift: the MachineConfig parses, holds each file with its mode and its exact bytes,
and the kubelet drop-in carries the two flags; the link unit's script links the node's own providers."""

import base64
import json
import os
import subprocess

import pytest
import yaml

from quay_cred_helper.node import install, kubelet, openshift
from tests.support import ROBOT, ROBOT_TOKEN
from tests.support import cli as run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "packaging", "build-node-bundle")
# kubelet.service as the MCO renders it on AWS (templates/worker/01-worker-kubelet/_base, release-4.16+).
AWS_UNIT = """[Unit]
Description=Kubernetes Kubelet
Requires=crio.service kubelet-dependencies.target

[Service]
Type=notify
EnvironmentFile=/etc/os-release
EnvironmentFile=-/etc/kubernetes/kubelet-workaround
EnvironmentFile=-/etc/kubernetes/kubelet-env
ExecStart=/usr/local/bin/kubenswrapper \\
    /usr/bin/kubelet \\
      --config=/etc/kubernetes/kubelet.conf \\
      --config-dir=/etc/openshift/kubelet.conf.d \\
      --node-labels=node-role.kubernetes.io/worker,node.openshift.io/os_id=${ID},${CUSTOM_KUBELET_LABELS} \\
      --node-ip=${KUBELET_NODE_IP} \\
      --cloud-provider=external \\
      --image-credential-provider-bin-dir=/usr/libexec/kubelet-image-credential-provider-plugins \
--image-credential-provider-config=/etc/kubernetes/credential-providers/ecr-credential-provider.yaml \\
      --hostname-override=${KUBELET_NODE_NAME} \\
      --v=${KUBELET_LOG_LEVEL}

Restart=always
"""


def cli(env, *args):
    result = run_cli(env, *args)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def zipapp(tmp_path, size=300_000):
    """A zipapp directory as build-node-bundle writes it: the launcher and the archive (any bytes will do)."""
    directory = tmp_path / "zipapp"
    directory.mkdir()
    (directory / install.NAME).write_text("#!/usr/bin/python3 -IS\nimport sys\n")
    (directory / (install.NAME + ".pyz")).write_bytes(os.urandom(size))
    return directory


def decoded(entry):
    source = entry["contents"]["source"]
    assert source.startswith("data:;base64,")
    return base64.b64decode(source.split(",", 1)[1], validate=True)


def machine_config(env, tmp_path, *extra, role="worker"):
    directory = zipapp(tmp_path)
    args = ["node", "openshift", "--role", role, "--zipapp", str(directory), "--registry", "quay.example.com"]
    result = cli(env, *args, "--robot", ROBOT, *(extra or ("--service-account",)))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout), result, directory


def test_the_machine_config_holds_each_file_with_its_mode_and_its_bytes(env, tmp_path):
    mc, result, directory = machine_config(env, tmp_path)
    assert (mc["apiVersion"], mc["kind"]) == ("machineconfiguration.openshift.io/v1", "MachineConfig")
    assert mc["metadata"] == {"name": "99-worker-quay-cred-helper", "labels": {openshift.ROLE_LABEL: "worker"}}
    config = mc["spec"]["config"]
    assert config["ignition"] == {"version": "3.2.0"}
    files = {f["path"]: f for f in config["storage"]["files"]}
    modes = {path: f["mode"] for path, f in files.items()}
    assert modes == {
        f"{openshift.BIN}/{install.NAME}": 493,  # 0755, decimal as Ignition's JSON has it
        f"{openshift.BIN}/{install.NAME}.pyz": 420,
        openshift.LINKER: 493,
        install.INI: 384,  # 0600: the provider refuses a config others can write
        f"{openshift.CONFIG_DIR}/{install.NAME}.yaml": 420,
    }
    assert all(f["overwrite"] is True for f in files.values())
    assert decoded(files[f"{openshift.BIN}/{install.NAME}"]) == (directory / install.NAME).read_bytes()
    assert decoded(files[f"{openshift.BIN}/{install.NAME}.pyz"]) == (directory / f"{install.NAME}.pyz").read_bytes()
    assert b"service_account = true" in decoded(files[install.INI])
    provider = yaml.safe_load(decoded(files[f"{openshift.CONFIG_DIR}/{install.NAME}.yaml"]))["providers"]
    assert provider[0]["name"] == install.NAME and provider[0]["args"][:2] == ["--config", install.INI]
    assert provider[0]["tokenAttributes"]["serviceAccountTokenAudience"] == "quay.example.com"
    # The drop-in: the variable on-prem ExecStart reads, both flags in it; after the link unit.
    units = {u["name"]: u for u in config["systemd"]["units"]}
    assert units[openshift.LINK_UNIT]["enabled"] is True
    assert (
        f"ExecStart={openshift.LINKER} {openshift.SYSTEM_BIN} {openshift.BIN}" in units[openshift.LINK_UNIT]["contents"]
    )
    (drop_in,) = units["kubelet.service"]["dropins"]
    assert drop_in["name"] == "50-quay-cred-helper.conf" and "contents" not in units["kubelet.service"]
    assert (
        f'Environment="KUBELET_CRIO_IMAGE_CREDENTIAL_PROVIDER_FLAGS={kubelet.BIN_DIR_FLAG}={openshift.BIN} '
        f'{kubelet.CONFIG_FLAG}={openshift.CONFIG_DIR}"'
    ) in drop_in["contents"]
    assert f"After={openshift.LINK_UNIT}" in drop_in["contents"]
    # Its size, as stored (JSON), is what it reports.
    size = len(json.dumps(mc, separators=(",", ":")).encode())
    assert (
        f": {size} bytes as JSON" in result.stderr
        and f"# quay-cred-helper node openshift: {size} bytes" in result.stdout
    )


def test_master_pool_and_a_robot_token_riding_along(env, tmp_path):
    token = tmp_path / "token"
    token.write_text(ROBOT_TOKEN + "\n")
    mc, result, _ = machine_config(env, tmp_path, "--robot-token-file", str(token), role="master")
    assert mc["metadata"]["labels"] == {openshift.ROLE_LABEL: "master"}
    files = {f["path"]: f for f in mc["spec"]["config"]["storage"]["files"]}
    assert files[install.TOKEN]["mode"] == 384 and decoded(files[install.TOKEN]) == (ROBOT_TOKEN + "\n").encode()
    assert f"robot_token_file = {install.TOKEN}".encode() in decoded(files[install.INI])
    assert "it carries the robot token" in result.stderr


def test_execstart_mode_repeats_the_pools_exec_start_with_our_flags_in_place_of_the_platforms(env, tmp_path):
    unit = tmp_path / "kubelet.service"
    unit.write_text(AWS_UNIT)
    mc, result, _ = machine_config(
        env, tmp_path, "--service-account", "--kubelet-flags", "execstart", "--kubelet-unit", str(unit)
    )
    (drop_in,) = next(u for u in mc["spec"]["config"]["systemd"]["units"] if u["name"] == "kubelet.service")["dropins"]
    text = drop_in["contents"]
    assert "\nExecStart=\nExecStart=/usr/local/bin/kubenswrapper" in text
    words = " ".join(line.rstrip("\\").strip() for line in text.split("ExecStart=/", 1)[1].splitlines()).split()
    assert "ecr-credential-provider.yaml" not in text and "/usr/libexec/kubelet-image" not in text
    assert words[-2:] == [f"{kubelet.BIN_DIR_FLAG}={openshift.BIN}", f"{kubelet.CONFIG_FLAG}={openshift.CONFIG_DIR}"]
    for kept in ("--node-ip=${KUBELET_NODE_IP}", "--v=${KUBELET_LOG_LEVEL}", "--cloud-provider=external"):
        assert kept in words
    assert "generate it again after each upgrade" in result.stderr


def test_refuses_a_machine_config_over_one_mib_in_one_line(env, tmp_path):
    directory = zipapp(tmp_path, size=800_000)  # base64: more than 1 MiB
    args = ["node", "openshift", "--role", "worker", "--zipapp", str(directory), "--registry", "q.example"]
    result = cli(env, *args, "--robot", ROBOT, "--service-account")
    assert result.returncode == 1 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert "over the 1 MiB this command allows" in result.stderr


def test_not_a_zipapp_directory_is_one_line(env, tmp_path):
    result = cli(env, "node", "openshift", "--role", "worker", "--zipapp", str(tmp_path), "--config", "/dev/null")
    assert result.returncode == 1 and "is not the zipapp's directory" in result.stderr


@pytest.mark.posix
def test_the_link_script_links_the_nodes_own_providers_and_drops_stale_links(tmp_path):
    system, ours = tmp_path / "usr-libexec", tmp_path / "usr-local-libexec"
    system.mkdir()
    ours.mkdir()
    (system / "ecr-credential-provider").write_text("#!/bin/sh\n")
    (system / "ecr-credential-provider").chmod(0o755)
    (system / "README").write_text("not a provider\n")
    (ours / install.NAME).write_text("#!/usr/bin/python3\n")
    (ours / "gone-provider").symlink_to(system / "gone-provider")
    script = tmp_path / "link-providers"
    script.write_text(openshift.LINK_SCRIPT)
    for _ in range(2):  # at every boot: the same result
        subprocess.run(["sh", str(script), str(system), str(ours)], check=True, timeout=30)
    assert sorted(os.listdir(ours)) == ["ecr-credential-provider", install.NAME]
    assert os.readlink(ours / "ecr-credential-provider") == str(system / "ecr-credential-provider")
    assert (ours / install.NAME).read_text() == "#!/usr/bin/python3\n"


@pytest.mark.slow  # builds the zipapp: pip downloads five wheels
def test_the_real_zipapp_fits_and_its_size_is_reported(env, tmp_path):
    if not os.path.exists(BUILD):
        pytest.skip("packaging/build-node-bundle is not on this branch: no zipapp to measure")
    out = tmp_path / "dist"
    build = subprocess.run(["bash", BUILD, "--form", "zipapp", str(out)], capture_output=True, timeout=600, cwd=ROOT)
    assert build.returncode == 0, build.stderr.decode()[-2000:]
    (directory,) = [p for p in out.iterdir() if p.name.endswith("-zipapp")]
    args = ["node", "openshift", "--role", "worker", "--zipapp", str(directory), "--registry", "quay.example.com"]
    result = cli(env, *args, "--robot", ROBOT, "--service-account")
    assert result.returncode == 0, result.stderr
    size = int(result.stderr.split(" bytes as JSON")[0].rsplit(" ", 1)[1])
    print(f"MachineConfig with the real zipapp: {size} bytes as JSON")
    assert size <= openshift.LIMIT


@pytest.mark.slow  # over half a second: the full suite
def test_ignitions_own_validator_accepts_the_config(env, tmp_path):
    """Debian's ignition-validate (Ignition 2.14, specs up to 3.4): the config a MachineConfig carries."""
    import shutil

    validator = shutil.which("ignition-validate")
    if validator is None:
        pytest.skip("no ignition-validate (Debian package ignition; scripts/setup installs it)")
    mc, _, _ = machine_config(env, tmp_path)
    config = tmp_path / "ignition.json"
    config.write_text(json.dumps(mc["spec"]["config"]))
    result = subprocess.run([validator, str(config)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    mc["spec"]["config"]["storage"]["files"][0]["path"] = "usr/local/x"  # the check can fail: not absolute
    config.write_text(json.dumps(mc["spec"]["config"]))
    assert subprocess.run([validator, str(config)], capture_output=True, timeout=60).returncode != 0

"""quay-cred-helper node openshift: a MachineConfig that installs the provider on one pool's RHCOS nodes.

What it lays down (facts from openshift/machine-config-operator; docs/kubernetes.md names the sources):

* The zipapp (launcher and .pyz, run by RHCOS's /usr/bin/python3) in BIN, under /usr/local: on RHCOS a
  link into /var (/var/usrlocal), so writable, and labelled like the MCO's own /usr/local/bin/kubenswrapper,
  which the MCO writes through storage.files the same way. /usr itself is read-only.
* The kubelet takes one bin dir, and on AWS, GCP and Azure its own providers live in read-only
  /usr/libexec/kubelet-image-credential-provider-plugins. A MachineConfig cannot create links (the MCO
  refuses added storage.links and directories day 2), so a oneshot unit links them into BIN before the
  kubelet starts.
* kubelet.ini (0600) and the robot token (0600) in /etc/quay-cred-helper; our CredentialProviderConfig in
  /etc/kubernetes/credential-providers, the directory the kubelet's flag then names (Kubernetes 1.34+,
  OpenShift 4.21+): the MCO's own files there (ecr/gcr/acr, and CRIOCredentialProviderConfig's) are
  merged with ours by the kubelet, not copied by us.
* A kubelet.service drop-in with the two flags. `env` (on-prem 4.22+: BareMetal, vSphere, OpenStack, oVirt,
  Nutanix): Environment= sets $KUBELET_CRIO_IMAGE_CREDENTIAL_PROVIDER_FLAGS, which their ExecStart reads
  unbraced, exactly as the MCO's own 40- drop-in does. `execstart` (every other platform and release: their
  ExecStart has the flags, if any, written out): ExecStart cleared and repeated from the unit you give,
  our flags in place of the platform's; regenerate it after each upgrade.

Ignition spec 3.2.0 (parsed by the MCO since 4.7); modes are decimal integers; contents are base64
data: URLs. The MachineConfig is refused above 1 MiB (the MCO's limit is 1.5 MiB for the whole rendered
config of the pool, etcd's request limit).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import yaml  # PyYAML: only `node` imports this module

from quay_cred_helper.errors import InputError
from quay_cred_helper.node import install, kubelet

IGNITION = "3.2.0"
ROLE_LABEL = "machineconfiguration.openshift.io/role"
BIN = "/usr/local/libexec/kubelet-image-credential-provider-plugins"
SYSTEM_BIN = "/usr/libexec/kubelet-image-credential-provider-plugins"
CONFIG_DIR = "/etc/kubernetes/credential-providers"
LINKER = "/usr/local/libexec/quay-cred-helper/link-providers"
LINK_UNIT = "quay-cred-helper-provider-links.service"
DROP_IN = "50-quay-cred-helper.conf"
FLAGS_VAR = "KUBELET_CRIO_IMAGE_CREDENTIAL_PROVIDER_FLAGS"
LIMIT = 1 << 20  # bytes: ours; the MCO's is 1.5 MiB for the pool's whole rendered config
MODES = ("env", "execstart")

LINK_SCRIPT = """#!/bin/sh
# Written by quay-cred-helper node openshift. The kubelet takes one credential-provider bin dir: this
# links the node's own providers (FROM) into ours (TO), beside quay-credential-provider. A MachineConfig
# cannot create links, so this runs before the kubelet, at every boot.
set -eu
from="$1"
to="$2"
mkdir -p "$to"
for link in "$to"/*; do  # providers gone with an OS update
    if [ -L "$link" ] && [ ! -e "$link" ]; then rm -f "$link"; fi
done
for provider in "$from"/*; do
    [ -f "$provider" ] && [ -x "$provider" ] || continue
    name="${provider##*/}"
    if [ -e "$to/$name" ] && [ ! -L "$to/$name" ]; then continue; fi  # a file of ours: kept
    ln -sfn "$provider" "$to/$name"
done
"""

LINK_UNIT_TEXT = f"""[Unit]
Description=Link the node's kubelet image credential providers beside quay-credential-provider
Before=kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={LINKER} {SYSTEM_BIN} {BIN}

[Install]
WantedBy=multi-user.target
"""


def _flags() -> list[str]:
    return [f"{kubelet.BIN_DIR_FLAG}={BIN}", f"{kubelet.CONFIG_FLAG}={CONFIG_DIR}"]


def _drop_in_head() -> str:
    return f"# Written by quay-cred-helper node openshift.\n[Unit]\nWants={LINK_UNIT}\nAfter={LINK_UNIT}\n\n[Service]\n"


def env_drop_in() -> str:
    """On-prem 4.22+: the variable their ExecStart reads unbraced (split into arguments)."""
    return _drop_in_head() + f'Environment="{FLAGS_VAR}={" ".join(_flags())}"\n'


def exec_start(unit_text: str) -> list[str]:
    """The words of the last ExecStart= in a kubelet.service's [Service] (continuations joined)."""
    found: str | None = None
    section = ""
    for line in kubelet.logical_lines(unit_text):
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.partition("=")[0].strip() == "ExecStart":
            found = line.partition("=")[2].strip() or None
    if not found:
        raise InputError("the kubelet unit given has no ExecStart in [Service]", "give the node's kubelet.service")
    return found.split()


def execstart_drop_in(unit_text: str) -> str:
    """ExecStart cleared and repeated with our flags in place of any credential-provider flags."""
    words, kept = exec_start(unit_text), []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        name = word.partition("=")[0]
        if name in (kubelet.CONFIG_FLAG, kubelet.BIN_DIR_FLAG):
            skip = "=" not in word  # `--flag value`: the value goes too
            continue
        if word in (f"${FLAGS_VAR}", f"${{{FLAGS_VAR}}}"):
            continue
        kept.append(word)
    command = " \\\n    ".join([*kept, *_flags()])
    return (
        _drop_in_head()
        + "# kubelet.service's ExecStart with quay-credential-provider's flags: regenerate after each upgrade.\n"
        + f"ExecStart=\nExecStart={command}\n"
    )


def _file(path: str, data: bytes, mode: int) -> dict[str, Any]:
    source = "data:;base64," + base64.b64encode(data).decode("ascii")
    return {"path": path, "mode": mode, "overwrite": True, "contents": {"source": source}}


def zipapp_files(directory: str) -> tuple[bytes, bytes]:
    """The zipapp's launcher and archive, from the directory build-node-bundle --form zipapp writes."""
    launcher, archive = os.path.join(directory, install.NAME), os.path.join(directory, install.NAME + ".pyz")
    if not (os.path.isfile(launcher) and os.path.isfile(archive)):
        raise InputError(
            f"{directory} is not the zipapp's directory (no {install.NAME} and {install.NAME}.pyz)",
            "build it: bash packaging/build-node-bundle --form zipapp DIR",
        )
    with open(launcher, "rb") as f, open(archive, "rb") as g:
        return f.read(), g.read()


def machine_config(
    role: str,
    zipapp: tuple[bytes, bytes],
    ini: bytes,
    token: bytes | None,
    entry: dict[str, Any],
    mode: str = "env",
    kubelet_unit: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The MachineConfig, as a dict ready for YAML or JSON."""
    launcher, archive = zipapp
    config = yaml.safe_dump(install.config_document([entry]), sort_keys=False, default_flow_style=False)
    files = [
        _file(f"{BIN}/{install.NAME}", launcher, 0o755),
        _file(f"{BIN}/{install.NAME}.pyz", archive, 0o644),
        _file(LINKER, LINK_SCRIPT.encode(), 0o755),
        _file(install.INI, ini, 0o600),
        _file(f"{CONFIG_DIR}/{install.DIR_CONFIG}", config.encode(), 0o644),
    ]
    if token is not None:
        files.insert(4, _file(install.TOKEN, token, 0o600))
    if mode == "env":
        drop_in = env_drop_in()
    elif kubelet_unit is None:
        raise InputError("--kubelet-flags execstart needs the kubelet's unit", "give --kubelet-unit FILE")
    else:
        drop_in = execstart_drop_in(kubelet_unit)
    return {
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": name or f"99-{role}-quay-cred-helper", "labels": {ROLE_LABEL: role}},
        "spec": {
            "config": {
                "ignition": {"version": IGNITION},
                "storage": {"files": files},
                "systemd": {
                    "units": [
                        {"name": LINK_UNIT, "enabled": True, "contents": LINK_UNIT_TEXT},
                        {"name": "kubelet.service", "dropins": [{"name": DROP_IN, "contents": drop_in}]},
                    ]
                },
            }
        },
    }


def size(mc: dict[str, Any]) -> int:
    """Bytes as the API server stores it (JSON), which the MCO's size check measures too."""
    return len(json.dumps(mc, separators=(",", ":")).encode())


def render(mc: dict[str, Any]) -> str:
    """YAML for `oc apply -f -`, a header saying what it is and how large."""
    body = yaml.safe_dump(mc, sort_keys=False, default_flow_style=False, width=1 << 30)
    head = (
        f"# quay-cred-helper node openshift: {size(mc)} bytes as JSON (the MCO allows 1.5 MiB for the\n"
        "# pool's whole rendered config). oc apply -f this file; the pool's nodes then drain and reboot.\n"
    )
    return head + str(body)


def check_size(mc: dict[str, Any]) -> int:
    found = size(mc)
    if found > LIMIT:
        raise InputError(
            f"the MachineConfig would be {found} bytes, over the 1 MiB this command allows",
            "etcd refuses objects over 1.5 MiB and the pool's other MachineConfigs share it: build a smaller zipapp",
        )
    return found

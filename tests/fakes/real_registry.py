"""Debian's docker-registry (distribution 2.8) on 127.0.0.1, trusting a QuayRegistry's tokens."""

import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

from tests.fakes.quay_registry import ISSUER, QuayRegistry

BINARY = "/usr/bin/docker-registry"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DockerRegistry:
    """A real registry whose token server is a QuayRegistry (`.quay`)."""

    def __init__(self, workdir, users, robots, public_namespaces=()):
        self.workdir = str(workdir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        # Quay's tokens carry aud = SERVER_HOSTNAME: here the registry's service name.
        self.quay = QuayRegistry(
            users=users, robots=robots, public_namespaces=public_namespaces, server_hostname=self.host
        )
        self.proc = None

    def __enter__(self):
        self.quay.__enter__()
        cert = os.path.join(self.workdir, "token-signer.pem")
        with open(cert, "wb") as f:
            f.write(self.quay.key.cert_pem)
        config = os.path.join(self.workdir, "registry.json")  # YAML is a superset of JSON
        with open(config, "w") as f:
            json.dump(
                {
                    "version": 0.1,
                    "log": {"level": "error", "accesslog": {"disabled": True}},
                    "storage": {"filesystem": {"rootdirectory": os.path.join(self.workdir, "data")}},
                    "http": {"addr": self.host},
                    "auth": {
                        "token": {
                            "realm": f"{self.quay.url}/v2/auth",
                            "service": self.host,
                            "issuer": ISSUER,
                            "rootcertbundle": cert,
                        }
                    },
                },
                f,
            )
        self.log = open(os.path.join(self.workdir, "registry.log"), "wb")
        self.proc = subprocess.Popen([BINARY, "serve", config], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401: up and asking for a token
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"docker-registry did not start: see {self.log.name}") from None
                time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.quay.__exit__(*exc)


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(path, tag="latest", text=b"hello from quay-cred-helper\n"):
    """Write a tiny one-layer image as an OCI layout; returns the manifest digest."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(text)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(text))
    layer_desc = dict(_blob(path, layer.getvalue()), mediaType="application/vnd.oci.image.layer.v1.tar")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "config": {},
    }
    config_desc = dict(_blob(path, json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = dict(
        _blob(path, json.dumps(manifest).encode()),
        mediaType="application/vnd.oci.image.manifest.v1+json",
        annotations={"org.opencontainers.image.ref.name": tag},
    )
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest_desc]}, f)
    return manifest_desc["digest"]

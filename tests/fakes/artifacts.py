"""Pushing an image and its referrers (signature-, SBOM- and attestation-like artifacts) over HTTP.

Works against the Quay-compatible test registry and Debian's docker-registry:
it answers the Bearer challenge with Basic credentials at the realm, like any client.
"""

import hashlib
import json

import httpx

from quay_cred_helper.registry.challenge import bearer

EMPTY = "application/vnd.oci.empty.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
ATTESTATION = "application/vnd.in-toto+json"
CREATED = "org.opencontainers.image.created"


class Pusher:
    def __init__(self, base, username, password):
        self.base, self.auth = base, (username, password)
        self.client = httpx.Client(timeout=30)
        self.token = None

    def close(self):
        self.client.close()

    def request(self, method, path, **kwargs):
        url = path if path.startswith("http") else self.base + path
        for _ in range(2):
            headers = dict(kwargs.pop("headers", {}))
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            response = self.client.request(method, url, headers=headers, **kwargs)
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response.status_code != 401:
                response.raise_for_status()
                return response
            params = bearer(response.headers.get_list("www-authenticate"))
            got = self.client.get(
                params["realm"], params={"service": params["service"], "scope": params["scope"]}, auth=self.auth
            )
            got.raise_for_status()
            self.token = got.json()["token"]
        response.raise_for_status()
        return response

    def blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = self.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
        # The upload URL carries the registry's own state in its query: append, never replace.
        location += ("&" if "?" in location else "?") + "digest=" + digest
        self.request("PUT", location, content=data, headers={"Content-Type": "application/octet-stream"})
        return digest

    def manifest(self, repo, ref, manifest, media_type=MANIFEST):
        body = json.dumps(manifest).encode()
        self.request("PUT", f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type})
        return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body)}


def _descriptor(pusher, repo, data, media_type):
    return {"mediaType": media_type, "digest": pusher.blob(repo, data), "size": len(data)}


def artifact(pusher, repo, subject, artifact_type, payload, created):
    """An OCI 1.1 artifact manifest whose subject is `subject`."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type,
        "config": _descriptor(pusher, repo, b"{}", EMPTY),
        "layers": [_descriptor(pusher, repo, payload, artifact_type)],
        "subject": subject,
        "annotations": {CREATED: created},
    }
    descriptor = pusher.manifest(repo, descriptor_ref(manifest), manifest)
    return dict(descriptor, artifactType=artifact_type, annotations={CREATED: created})


def descriptor_ref(manifest):
    return "sha256:" + hashlib.sha256(json.dumps(manifest).encode()).hexdigest()


def push_demo(base, repo, username, password, tag="1.0", tag_schema=False):
    """An image with a signature, an SBOM and an attestation of the SBOM.

    Returns {"image", "signature", "sbom", "attestation"} descriptors. With
    tag_schema, also writes the `sha256-<hex>` index tags a registry without
    the referrers API needs.
    """
    pusher = Pusher(base, username, password)
    try:
        layer = b"hello from quay-cred-helper\n"
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        image = pusher.manifest(
            repo,
            tag,
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": _descriptor(pusher, repo, config.encode(), "application/vnd.oci.image.config.v1+json"),
                "layers": [_descriptor(pusher, repo, layer, "application/vnd.oci.image.layer.v1.tar")],
            },
        )
        signature = artifact(pusher, repo, image, SIGNATURE, b'{"critical": {}}', "2026-11-01T10:00:00Z")
        sbom = artifact(pusher, repo, image, SBOM, b'{"spdxVersion": "SPDX-2.3"}', "2026-11-01T10:05:00Z")
        attestation = artifact(pusher, repo, sbom, ATTESTATION, b'{"_type": "statement"}', "2026-11-01T10:06:00Z")
        if tag_schema:
            for subject, children in ((image, [signature, sbom]), (sbom, [attestation])):
                index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": children}
                pusher.manifest(repo, subject["digest"].replace(":", "-"), index, INDEX)
        return {"image": image, "signature": signature, "sbom": sbom, "attestation": attestation}
    finally:
        pusher.close()

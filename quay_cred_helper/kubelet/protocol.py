"""The kubelet's image credential provider protocol (credentialprovider.kubelet.k8s.io), as one pure module.

The kubelet writes one CredentialProviderRequest on stdin (compact JSON and a
newline) and decodes our stdout STRICTLY: apiVersion equal to the one it sent,
no unknown or wrong-case fields, auth entries of exactly username and password,
cacheDuration a Go duration string. So: lenient on input (unknown request
fields are ignored), exact on output. A cached answer is the hot path: no
`json`, `re` or httpx here.
"""

from __future__ import annotations

from quay_cred_helper import fastjson
from quay_cred_helper.errors import InputError
from quay_cred_helper.protocol import MAX_INPUT, bounded_text

GROUP = "credentialprovider.kubelet.k8s.io"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta1", f"{GROUP}/v1alpha1")
MAX_REQUEST = MAX_INPUT  # the helper's bound: one reader for both front doors (protocol.bounded_text)


class Request:
    """What the kubelet asks: credentials for `image` (host[:port]/path, no tag), perhaps as a pod's
    service account (token mode, KEP-4412)."""

    __slots__ = ("api_version", "image", "host", "repository", "service_account_token", "annotations")

    def __init__(self, api_version: str, image: str, service_account_token: str, annotations: dict[str, str]) -> None:
        self.api_version, self.image = api_version, image
        self.host, _, self.repository = image.partition("/")
        self.service_account_token, self.annotations = service_account_token, annotations


def parse_request(data: bytes) -> Request:
    """The request in `data`; InputError for anything the kubelet would never send."""
    text = bounded_text(data, "request")
    try:
        request = fastjson.loads(text)  # one JSON document: anything after it is an error
    except ValueError as exc:
        raise InputError(f"request is not one JSON object: {exc}") from None
    if not isinstance(request, dict):
        raise InputError("request is not a JSON object")
    if request.get("kind") != "CredentialProviderRequest":
        raise InputError("request kind is not CredentialProviderRequest")
    api_version = request.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise InputError(f"unsupported apiVersion {str(api_version)[:100]!r}: use one of {', '.join(API_VERSIONS)}")
    image = request.get("image")
    if not isinstance(image, str) or not image.strip() or "/" not in image.strip():
        raise InputError("request has no image (host[:port]/repository)")
    token = request.get("serviceAccountToken") or ""
    pod_annotations = request.get("serviceAccountAnnotations") or {}
    if not isinstance(token, str) or not isinstance(pod_annotations, dict):
        raise InputError("request's serviceAccountToken or serviceAccountAnnotations has the wrong type")
    return Request(api_version, image.strip(), token, {str(k): str(v) for k, v in pod_annotations.items()})


def format_go_duration(seconds: float) -> str:
    """A whole number of seconds as Go's time.Duration.String() writes it: 1h0m0s, 55m0s, 40s, 0s."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def response(
    api_version: str,
    auth_key: str,
    username: str,
    password: str,
    cache_seconds: float,
    cache_key_type: str = "Registry",
) -> str:
    """The CredentialProviderResponse: exactly the fields the kubelet decodes, compact, one line.

    `auth_key` is the kubelet's match key (its path a plain string prefix); `cache_key_type` where the
    kubelet keeps the answer: `Registry` serves every image of the host until cacheDuration ends,
    `Image` only this image (kubelet/main.py chooses)."""
    auth = "{" + fastjson.quote(auth_key) + ":" + fastjson.dumps_strings({"username": username, "password": password})
    return (
        '{"kind":"CredentialProviderResponse","apiVersion":'
        + fastjson.quote(api_version)
        + ',"cacheKeyType":'
        + fastjson.quote(cache_key_type)
        + ',"cacheDuration":'
        + fastjson.quote(format_go_duration(cache_seconds))
        + ',"auth":'
        + auth
        + "}}\n"
    )

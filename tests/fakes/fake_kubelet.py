"""The kubelet's side of an image credential provider, as its plugin code runs one (KEP-2133, KEP-4412).

It execs the provider by path (no shell) with the config's args and its own environment plus the
config's env, writes the request as compact JSON and a newline, allows a minute, and decodes stdout
strictly: anything it would reject raises Rejected. Auth keys and matchImages are matched by the
kubelet's rules (scheme and /v1/ /v2/ dropped; port equal; host labels globbed one by one; path prefix).
"""

import fnmatch
import json
import re
import subprocess

TOP_LEVEL = ("kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth")
CACHE_KEY_TYPES = ("Image", "Registry", "Global")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+|0")


class Rejected(Exception):
    """The kubelet would discard this response (or log the provider's failure)."""


def request(api_version, image, service_account_token=None, annotations=None):
    """The exact bytes the kubelet writes: keys in this order, compact, one newline."""
    body = {"kind": "CredentialProviderRequest", "apiVersion": api_version, "image": image}
    if service_account_token is not None:
        body["serviceAccountToken"] = service_account_token
        body["serviceAccountAnnotations"] = annotations or {}
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def run(path, args, env, api_version, image, service_account_token=None, annotations=None, cache_type=None):
    """Exec the provider for one image; the strictly decoded response, or Rejected with its stderr."""
    stdin = request(api_version, image, service_account_token, annotations)
    result = subprocess.run([path, *args], input=stdin, env=env, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise Rejected(f"exit {result.returncode}: {result.stderr.decode()}", result)
    return decode(result.stdout, api_version, service_account_token, cache_type)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Rejected(f"duplicate keys {keys}")
    return dict(pairs)


def decode(stdout, api_version, service_account_token=None, cache_type=None):
    try:
        data = json.loads(stdout, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise Rejected(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) - set(TOP_LEVEL):
        raise Rejected(f"unknown fields: {sorted(set(data) - set(TOP_LEVEL)) if isinstance(data, dict) else data}")
    if data.get("kind") != "CredentialProviderResponse":
        raise Rejected(f"kind {data.get('kind')!r}")
    if data.get("apiVersion") != api_version:
        raise Rejected(f"apiVersion {data.get('apiVersion')!r} is not the configured {api_version!r}")
    if data.get("cacheKeyType") not in CACHE_KEY_TYPES:
        raise Rejected(f"cacheKeyType {data.get('cacheKeyType')!r}")
    if "cacheDuration" in data:
        duration = data["cacheDuration"]
        if not isinstance(duration, str) or not _DURATION.fullmatch(duration):
            raise Rejected(f"cacheDuration {duration!r} is not a Go duration string")
    auth = data.get("auth", {})
    if not isinstance(auth, dict):
        raise Rejected("auth is not a map")
    for key, entry in auth.items():
        if not isinstance(entry, dict) or set(entry) - {"username", "password"}:
            raise Rejected(f"auth[{key!r}] has fields other than username and password")
        if not all(isinstance(v, str) for v in entry.values()):
            raise Rejected(f"auth[{key!r}] values are not strings")
        if service_account_token and entry.get("password") == service_account_token and cache_type != "Token":
            raise Rejected("the password is the service-account token, and cacheType is not Token")
    return data


def seconds(duration):
    """A Go duration string in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", duration))


def _split(text):
    text = re.sub(r"^[a-z]+://", "", text)
    host, _, path = text.partition("/")
    path = re.sub(r"^v[12](/|$)", "", path)  # a key may name the API root: /v1/ or /v2/
    name, _, port = host.partition(":")
    return name, port, path


def matches(glob, image):
    """The kubelet's URLsMatchStr: port equal (none only none), same number of host labels each
    matched as a glob, the glob's path a plain prefix of the image's."""
    g_name, g_port, g_path = _split(glob)
    i_name, i_port, i_path = _split(image)
    if g_port != i_port:
        return False
    g_labels, i_labels = g_name.split("."), i_name.split(".")
    if len(g_labels) != len(i_labels):
        return False
    if not all(fnmatch.fnmatchcase(i, g) for g, i in zip(g_labels, i_labels)):
        return False
    return i_path.startswith(g_path)


def credentials_for(response, image):
    """What the kubelet would use for `image`: the longest matching auth key's entry, or None."""
    found = sorted((key for key in response.get("auth", {}) if matches(key, image)), key=len, reverse=True)
    return response["auth"][found[0]] if found else None

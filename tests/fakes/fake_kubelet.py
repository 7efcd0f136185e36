"""The kubelet's side of an image credential provider, as its plugin code runs one (KEP-2133, KEP-4412).

It execs the provider by path (no shell) with the config's args and its own environment plus the
config's env, writes the request as compact JSON and a newline, allows a minute, and decodes stdout
strictly: anything it would reject raises Rejected. matchImages and auth keys are matched by the
kubelet's rules (port equal; host labels globbed one by one; the path a plain string prefix); auth keys
are first normalised as BasicDockerKeyring.Add does (scheme dropped, a leading /v1/ or /v2/ too).

`Kubelet` models what it does with the answers (pkg/credentialprovider/plugin/plugin.go, keyring.go):
one cache per provider, looked up by the image, then its registry, then "<global>", each combined with
the service-account part in token mode; stored under the key the answer's cacheKeyType picks, until
cacheDuration ends (0: not stored; absent: defaultCacheDuration); a hit is final, even when none of its
auth keys matches the image. Every provider whose matchImages match answers; all answers go into one
keyring whose keys are tried in reverse byte order, every matching key's credentials in turn.
"""

import fnmatch
import hashlib
import json
import re
import subprocess
import time

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
    if annotations:  # omitempty
        body["serviceAccountAnnotations"] = annotations
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
    """URLsMatchStr's view of a string: https:// prepended, then host labels, port and path."""
    host, _, path = text.partition("/")
    name, _, port = host.partition(":")
    return name, port, "/" + path if path else ""


def matches(glob, image):
    """The kubelet's URLsMatchStr: port equal (none only none), same number of host labels each
    matched as a glob, the glob's path a plain prefix of the image's (not segment-aware)."""
    g_name, g_port, g_path = _split(glob)
    i_name, i_port, i_path = _split(image)
    if g_port != i_port:
        return False
    g_labels, i_labels = g_name.split("."), i_name.split(".")
    if len(g_labels) != len(i_labels):
        return False
    if not i_path.startswith(g_path):
        return False
    return all(fnmatch.fnmatchcase(i, g) for g, i in zip(g_labels, i_labels))


def normalise_key(key):
    """An auth key as BasicDockerKeyring.Add stores it: no scheme; a leading /v1/ or /v2/ loses 3
    characters; nothing (or "/") left of the path means the host alone."""
    rest = re.sub(r"^https?://", "", key)
    host, slash, path = rest.partition("/")
    path = slash + path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return host + path if path and path != "/" else host


class Keyring:
    """BasicDockerKeyring: credentials by normalised key, the index deduplicated and reverse-sorted."""

    def __init__(self):
        self.creds = {}

    def add(self, docker_config):
        for key, entry in docker_config.items():
            self.creds.setdefault(normalise_key(key), []).append(entry)

    def lookup(self, image):
        """Every matching key's credentials, keys in reverse byte order (what the kubelet tries, in turn)."""
        found = []
        for key in sorted(self.creds, reverse=True):
            if matches(key, image):
                found.extend(self.creds[key])
        return found


def lookup(response, image):
    """The credentials the kubelet would try for `image` from one response, in its order."""
    keyring = Keyring()
    keyring.add(response.get("auth", {}))
    return keyring.lookup(image)


def credentials_for(response, image):
    """The credentials the kubelet would try first for `image`, or None."""
    found = lookup(response, image)
    return found[0] if found else None


class Pod:
    """A pod, as token mode sees it: namespace, name and UID, its service account (name, UID and
    annotations) and a way to get a token bound to it for an audience (`token(audience)`)."""

    def __init__(self, namespace, name, service_account="", annotations=None, token=None, uid=None, sa_uid=None):
        self.namespace, self.name, self.service_account = namespace, name, service_account
        self.annotations = annotations or {}
        self.token = token
        self.uid = uid or f"pod-uid-{namespace}-{name}"
        self.sa_uid = sa_uid or f"sa-uid-{namespace}-{service_account}"


class Clock:
    """The kubelet's clock, moved by hand."""

    def __init__(self, now=None):
        self.now = time.time() if now is None else now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Provider:
    """One configured provider (pluginProvider): its matchImages, its run, its own cache."""

    def __init__(
        self,
        path,
        args,
        env,
        api_version,
        match_images,
        default_cache_duration=600,
        token_attributes=None,
        clock=time.time,
        rewrite=None,
    ):
        self.path, self.args, self.env, self.api_version = path, args, env, api_version
        self.match_images, self.default_cache_duration = match_images, default_cache_duration
        self.token_attributes = token_attributes  # {"audience", "cacheType", "requireServiceAccount", keys...}
        self.clock = clock
        self.rewrite = rewrite  # a function changing each decoded answer: to model another provider's choices
        self.cache = {}  # cache key -> (docker config, expires at)
        self.runs, self.errors, self.requests = 0, [], []

    def _sa_part(self, pod):
        """(service-account cache part, token, annotations), or None when the kubelet runs nothing."""
        attributes = self.token_attributes
        if attributes is None:
            return "", None, None
        if not pod.service_account:
            return None if attributes.get("requireServiceAccount") else ("", None, None)
        annotations = {}
        for key in attributes.get("required", []):
            if key not in pod.annotations:
                return None
            annotations[key] = pod.annotations[key]
        for key in attributes.get("optional", []):
            if key in pod.annotations:
                annotations[key] = pod.annotations[key]
        token = pod.token(attributes["audience"])  # a token on every provide call, before the cache lookup
        part = (pod.namespace, pod.service_account, pod.sa_uid, tuple(sorted(annotations.items())))
        if attributes["cacheType"] == "Token":
            part += ("token", "sha256:" + hashlib.sha256(token.encode()).hexdigest())
        return part, token, annotations

    def provide(self, image, pod=None):
        """The DockerConfig this provider gives the kubelet for `image` (pluginProvider.provide)."""
        if not any(matches(glob, image) for glob in self.match_images):
            return {}
        found = self._sa_part(pod or Pod("default", "static"))
        if found is None:
            return {}
        part, token, annotations = found
        now = self.clock()
        for base in (image, image.split("/")[0], "<global>"):
            entry = self.cache.get((base, part))
            if entry is not None:
                if now > entry[1]:  # expired entries are dropped on Get
                    del self.cache[(base, part)]
                    continue
                return entry[0]  # a hit is final, whatever its keys match
        self.runs += 1
        self.requests.append((image, annotations))
        try:
            response = run(
                self.path,
                self.args,
                self.env,
                self.api_version,
                image,
                token,
                annotations,
                (self.token_attributes or {}).get("cacheType"),
            )
        except Rejected as exc:
            self.errors.append(exc)
            return {}
        if self.rewrite is not None:
            response = self.rewrite(response)
        docker_config = response.get("auth", {})
        # Absent: the configured default; "0s": used once, never stored.
        duration = seconds(response["cacheDuration"]) if "cacheDuration" in response else self.default_cache_duration
        if duration == 0:
            return docker_config
        base = {"Image": image, "Registry": image.split("/")[0], "Global": "<global>"}[response["cacheKeyType"]]
        self.cache[(base, part)] = (docker_config, now + duration)
        return docker_config


class Kubelet:
    """The kubelet's external credential providers for one pull: every provider in config order."""

    def __init__(self, providers):
        self.providers = providers

    def credentials(self, image, pod=None):
        """The credentials the kubelet tries for `image`, in order (one CRI pull each, until one works)."""
        keyring = Keyring()
        for provider in self.providers:
            keyring.add(provider.provide(image, pod))
        return keyring.lookup(image)

"""quay-cred-helper doctor: what works, what does not, and how to fix it.

One line per check with OK, WARN or FAIL, and a fix for each that is not OK.
Registry checks use short timeouts and no retries, so a registry that does
not answer costs a few seconds, not minutes; credentials are tried once,
never again after a 401 (Quay throttles failed logins).
"""

import email.utils
import os
import stat
import time
from urllib.parse import urlsplit, urlunsplit

from quay_cred_helper import config, configure, files, paths
from quay_cred_helper.errors import HelperError
from quay_cred_helper.names import is_loopback

MAX_SKEW = 30  # seconds: Quay's JWTs are checked with 30 s of leeway
PROBE_DIGEST = "sha256:" + "0" * 64
ENVIRONMENT = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PYTHON_KEYRING_BACKEND",
    config.CONFIG_ENV,
    config.NO_CACHE_ENV,
)


class Report:
    def __init__(self):
        self.checks = []

    def add(self, status, check, detail, fix=None):
        self.checks.append({"check": check, "status": status, "detail": detail, "fix": fix})

    @property
    def failed(self):
        return any(c["status"] == "FAIL" for c in self.checks)

    def lines(self):
        for c in self.checks:
            yield f"{c['status']:<4}  {c['check']}: {c['detail']}"
            if c["fix"]:
                yield f"      fix: {c['fix']}"


def _hide_userinfo(value):
    parts = urlsplit(value)
    if parts.username or parts.password:
        return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    return value


def check_keyring(report):
    from quay_cred_helper.backend import Keyring, is_plaintext, name
    from quay_cred_helper.errors import KeyringError
    from quay_cred_helper.store import SERVICE

    keyring = Keyring()
    try:
        backend = keyring.backend()
        keyring.get(SERVICE, "quay-cred-helper-doctor-probe")  # a locked keyring raises, it never prompts
    except KeyringError as exc:
        report.add("FAIL", "keyring", str(exc), "see README: Keyring backends")
        return
    if is_plaintext(backend):
        report.add(
            "WARN",
            "keyring",
            f"{name(backend)} stores secrets in plaintext (allowed by opt-in)",
            "use a secure backend (Secret Service, Keychain, Credential Manager)",
        )
    else:
        report.add("OK", "keyring", f"{name(backend)}, answering and unlocked")


def check_files(report):
    problem = configure.helper_on_path()
    report.add(
        "FAIL" if problem else "OK",
        "helper on PATH",
        problem or "docker-credential-quay is this installation",
        problem and problem.split(": ", 1)[-1],
    )
    for label, path in (("config dir", paths.config_dir()), ("cache dir", paths.cache_dir())):
        if not os.path.isdir(path):
            report.add("OK", label, f"{path} (not created yet)")
            continue
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if os.name == "posix" and mode & 0o077:
            report.add("WARN", label, f"{path} is {mode:o}, readable by others", f"chmod 700 {path}")
        else:
            report.add("OK", label, path)
    seen = [f"{n}={_hide_userinfo(os.environ[n])}" for n in ENVIRONMENT if os.environ.get(n)]
    report.add("OK", "environment", ", ".join(seen) if seen else "no proxy, CA or keyring variables set")


def _routes(key):
    """Which client configs send `key` to this helper."""
    found = []
    for label, path, docker in (
        ("docker", configure.docker_config_path(), True),
        ("podman", configure.podman_auth_path(), False),
    ):
        data = files.read_json(path) or {}
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict) and helpers.get(configure.credential_key(key, docker)) == configure.HELPER:
            found.append(f"{label} ({path})")
    if os.path.exists(configure.registries_conf_drop_in()):
        found.append(f"registries.conf ({configure.registries_conf_drop_in()})")
    return found


def check_registry(report, key):
    from quay_cred_helper.auth import Session, make_client
    from quay_cred_helper.cache import NullCache
    from quay_cred_helper.index import Index
    from quay_cred_helper.store import credentials_for
    from quay_cred_helper.tokens import Tokens

    routes = _routes(key)
    report.add(
        "OK" if routes else "WARN",
        f"{key} clients",
        ", ".join(routes) if routes else "no client config sends this registry to the helper",
        None if routes else f"quay-cred-helper configure {key}",
    )
    settings = config.load(key)
    # Doctor must answer quickly: short timeouts, no retries.
    settings.timeout, settings.connect_timeout, settings.retries = (
        min(settings.timeout, 2.5),
        min(settings.connect_timeout, 2.5),
        0,
    )
    client = make_client(key, settings)
    try:
        session = Session(client, key, settings)
        try:
            found = session.discover()
        except HelperError as exc:
            report.add("FAIL", f"{key} reachable", str(exc), _fix_for(str(exc), key))
            return
        scheme = urlsplit(found["base"]).scheme
        tls = "TLS verified" if scheme == "https" else "plain http"
        report.add(
            "OK" if scheme == "https" or is_loopback(key) else "WARN",
            f"{key} reachable",
            f"{found['base']} ({tls})",
        )
        _check_clock(report, key, session.last_headers)
        if found["realm"] is None:
            report.add("OK", f"{key} auth", "no authentication required")
            return
        report.add("OK", f"{key} auth", f"realm {found['realm']}, service {found['service']}")
        entry = Index().get(key)
        if entry:
            identity, credentials = credentials_for(key)
            try:
                Tokens(cache=NullCache(), client=client).get(key, identity, credentials=credentials)
                report.add("OK", f"{key} credentials", f"{entry['username']} accepted")
            except HelperError as exc:
                report.add("FAIL", f"{key} credentials", str(exc), f"quay-cred-helper login {key}")
        else:
            report.add("WARN", f"{key} credentials", "none stored", f"quay-cred-helper login {key}")
        _check_referrers(report, key, session, found)
    finally:
        client.close()


def _fix_for(message, key):
    if "TLS" in message:
        return f"set ca_bundle under [{key}] in {config.config_path()}"
    if "resolve" in message:
        return "check the registry name and DNS"
    return "check that the registry is up and reachable from here (proxy settings included)"


def _check_clock(report, key, headers):
    date = headers.get("date") if headers is not None else None
    if not date:
        report.add("WARN", f"{key} clock", "the registry sent no Date header: skew unknown")
        return
    try:
        skew = time.time() - email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        report.add("WARN", f"{key} clock", f"unreadable Date header {date!r}")
        return
    if abs(skew) > MAX_SKEW:
        report.add(
            "WARN",
            f"{key} clock",
            f"this machine is {skew:+.0f} s off the registry's clock",
            "synchronise the clock (NTP): tokens are checked with 30 s of leeway",
        )
    else:
        report.add("OK", f"{key} clock", f"skew {skew:+.0f} s")


def _check_referrers(report, key, session, found):
    response, body = session.send(f"{found['base']}/v2/quay-cred-helper/doctor/referrers/{PROBE_DIGEST}")
    from quay_cred_helper.auth import json_body, server_error

    code, _ = server_error(json_body(body))
    # With the API, the route exists: it asks for a token or names the unknown repository.
    if response.status_code in (400, 401, 403) or code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN", "MANIFEST_INVALID"):
        report.add("OK", f"{key} referrers API", "available")
    else:
        report.add(
            "WARN",
            f"{key} referrers API",
            f"not available (HTTP {response.status_code}); `referrers` falls back to the sha256-<digest> tag schema",
            "on Quay, set FEATURE_REFERRERS_API: true",
        )


def run(registries):
    report = Report()
    check_keyring(report)
    check_files(report)
    if not registries:
        from quay_cred_helper.index import Index

        registries = sorted(Index().entries())
    for key in registries:
        start = time.monotonic()
        check_registry(report, key)
        elapsed = time.monotonic() - start
        if elapsed > 10:  # pragma: no cover - a promise kept by the timeouts above
            report.add("WARN", f"{key} doctor", f"checks took {elapsed:.0f} s")
    return report

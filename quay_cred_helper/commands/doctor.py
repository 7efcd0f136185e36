"""quay-cred-helper doctor: what works, what does not, and how to fix it.

One line per check with OK, WARN or FAIL, and a fix for each that is not OK.
Registry checks use short timeouts and no retries, so a registry that does
not answer costs a few seconds, not minutes; credentials are tried once,
never again after a 401 (Quay throttles failed logins). Each check that
talks to a registry has a budget of its own: one that stalls is a FAIL
with its fix, and the checks after it still run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.utils
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from quay_cred_helper import client_configs, config, paths
from quay_cred_helper.config import Settings
from quay_cred_helper.context import Context
from quay_cred_helper.credentials import rotation
from quay_cred_helper.credentials.index import IndexEntry, app_token_expiry
from quay_cred_helper.credentials.keyring_backend import is_plaintext, name
from quay_cred_helper.credentials.keyring_store import SERVICE
from quay_cred_helper.errors import HelperError, KeyringError, printable
from quay_cred_helper.names import is_loopback, is_robot, registry_key
from quay_cred_helper.node.explain import explain
from quay_cred_helper.registry import jwt
from quay_cred_helper.registry.session import Session, json_body, server_error
from quay_cred_helper.registry.tokens import TokenExchange
from quay_cred_helper.sources.keyless import Keyless
from quay_cred_helper.sources.robot_token import RobotToken
from quay_cred_helper.sso import idp, session
from quay_cred_helper.sso import quay as sso_quay
from quay_cred_helper.store import KEYRING, SSO, source_of

MAX_SKEW = 30  # seconds: Quay's JWTs are checked with 30 s of leeway
QUICK = 2.5  # seconds: doctor's timeouts for each request
BUDGET = 8.0  # seconds: each check that talks to a registry, retries included (doctor promises under 10 each)
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


def limits(configured: Settings) -> Settings:
    """Doctor must answer quickly: short timeouts, no retries (cli.py builds the context with this)."""
    return configured.replace(
        timeout=min(configured.timeout, QUICK),
        connect_timeout=min(configured.connect_timeout, QUICK),
        retries=0,
        deadline=min(configured.deadline, BUDGET),
    )


@dataclasses.dataclass(frozen=True)
class Check:
    status: str  # OK, WARN or FAIL
    check: str
    detail: str
    fix: str | None = None


class Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, status: str, check: str, detail: str, fix: str | None = None) -> None:
        self.checks.append(Check(status, check, detail, fix))

    def failure(self, check: str, error: HelperError, fallback_fix: str) -> None:
        self.add("FAIL", check, error.problem, error.fix or fallback_fix)

    @property
    def failed(self) -> bool:
        return any(c.status == "FAIL" for c in self.checks)

    def lines(self) -> Iterator[str]:
        for c in self.checks:
            yield f"{c.status:<4}  {c.check}: {c.detail}"
            if c.fix:
                yield f"      fix: {c.fix}"


def _hide_userinfo(value: str) -> str:
    """A proxy URL without its user and password, however it is written (scheme-less, odd ports, ...)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def check_keyring(report: Report, ctx: Context, needed: bool = True) -> bool:
    """Whether the keyring answers. Unusable, it is a FAIL only where a registry needs it (`needed`): a CI
    job's keyless robots and robot tokens never do."""
    try:
        backend = ctx.keyring.backend()
        ctx.keyring.get(SERVICE, "quay-cred-helper-doctor-probe")  # a locked keyring raises, it never prompts
    except KeyringError as exc:
        if needed:
            report.failure("keyring", exc, "see README: Keyring backends")
        else:
            detail = f"{exc.problem} (no registry checked here needs it: nothing of theirs is in the keyring)"
            report.add("WARN", "keyring", detail, exc.fix or "see README: Keyring backends")
        return False
    if is_plaintext(backend):
        report.add(
            "WARN",
            "keyring",
            f"{name(backend)} stores secrets in plaintext (allowed by opt-in)",
            "use a secure backend (Secret Service, Keychain, Credential Manager)",
        )
    else:
        report.add("OK", "keyring", f"{name(backend)}, answering and unlocked")
    return True


def needs_keyring(ctx: Context, key: str) -> bool:
    """Whether a registry's credential is the keyring's (a stored secret, or an SSO session's refresh token):
    not for a keyless robot or a token the job holds."""
    try:
        return source_of(ctx.index.get(key), ctx.settings(key)) in (KEYRING, SSO)
    except HelperError:  # a config file it cannot read: the registry's checks say so
        return True


def check_files(report: Report) -> None:
    problem = client_configs.helper_on_path()
    if problem:
        report.add("FAIL", "helper on PATH", f"{problem[0]}: {problem[1]}", problem[1])
    else:
        report.add("OK", "helper on PATH", "docker-credential-quay is this installation")
    for path, where, helper in client_configs.missing_helpers():
        # credsStore is every registry's fallback: without its helper, logins fail everywhere.
        report.add(
            "FAIL" if where == "credsStore" else "WARN",
            "client helpers",
            f"{path}: {where} names docker-credential-{helper}, which is not on PATH",
            f"install docker-credential-{helper}, or remove {where} from {path}",
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


def check_prefix_sections(report: Report, ctx: Context, key: str) -> None:
    """Robots per namespace serve the kubelet provider, `token` and `referrers`: the helper protocol
    passes clients' requests with the host alone."""
    prefixes = ctx.config.prefixes(key)
    if prefixes:
        report.add(
            "WARN",
            f"{key} robots per namespace",
            f"docker, podman and skopeo send the helper only the host: they get [{key}]'s credentials, "
            f"never those of {', '.join(f'[{p}]' for p in prefixes)}",
            f"for these clients log in to {key} with one robot or user that can read each of them; the "
            "prefix sections serve quay-credential-provider, token and referrers",
        )


def check_registry(report: Report, ctx: Context, key: str) -> None:
    check_prefix_sections(report, ctx, key)
    routes = client_configs.routes(key)
    report.add(
        "OK" if routes else "WARN",
        f"{key} clients",
        ", ".join(routes) if routes else "no client config sends this registry to the helper",
        None if routes else f"quay-cred-helper configure {key}",
    )
    exchange = ctx.tokens(cached=False)
    with exchange.opened(key) as session:
        session.deadline.restart()  # a registry named twice gets its checks twice, each bounded
        try:
            found = session.discover()
        except HelperError as exc:
            report.failure(
                f"{key} reachable",
                exc,
                "check that the registry is up and reachable from here (proxy settings included)",
            )
            return
        scheme = urlsplit(found.base).scheme
        tls = "TLS verified" if scheme == "https" else "plain http"
        report.add(
            "OK" if scheme == "https" or is_loopback(key) else "WARN", f"{key} reachable", f"{found.base} ({tls})"
        )
        _check_clock(report, key, session)
        if found.realm is None:
            report.add("OK", f"{key} auth", "no authentication required")
            return
        report.add("OK", f"{key} auth", f"realm {found.realm}, service {found.service}")
        entry = ctx.index.get(key)
        keyless = ctx.store.keyless(key, entry)
        session.deadline.restart()  # each check within its own bound (the exchanges share the session's)
        try:
            held = None if keyless else ctx.store.robot_token(key, entry)
        except HelperError as exc:
            report.failure(f"{key} robot token", exc, "see docs/ci.md")
            return
        prefixes = ctx.config.prefixes(key)
        if keyless:
            _check_keyless(report, ctx, key, keyless)
        elif held:
            _check_robot_token(report, key, key, held, exchange)
        elif entry and entry.sso:
            _check_sso(report, ctx, key, entry)
        elif entry:
            identity, credentials = ctx.store.token_credentials(key)
            try:
                exchange.get(key, identity, credentials=credentials)
                report.add("OK", f"{key} credentials", f"{entry.username} accepted")
            except HelperError as exc:
                report.failure(f"{key} credentials", exc, f"quay-cred-helper login {key}")
            if entry.app_token:
                _check_app_token(report, key, entry.app_token)
        elif prefixes:  # a node's provider config: its prefix sections' robots serve the repositories
            report.add("OK", f"{key} credentials", "none for the host itself: its prefix sections' robots follow")
        else:
            report.add("WARN", f"{key} credentials", "none stored", f"quay-cred-helper login {key}")
        for section in prefixes:
            session.deadline.restart()
            _check_routed(report, ctx, key, section, exchange)
        session.deadline.restart()
        try:
            _check_referrers(report, key, session, found.base)
        except HelperError as exc:
            report.failure(f"{key} referrers API", exc, "check the registry's logs")


def _check_routed(report: Report, ctx: Context, key: str, section: str, exchange: TokenExchange) -> None:
    """A prefix section's robot, checked as a host's: its source, then one exchange (`section` the label)."""
    settings = ctx.config.settings(key, section.partition("/")[2])
    try:
        keyless = ctx.store.keyless(key, None, settings)
        held = None if keyless else ctx.store.robot_token(key, None, settings)
    except HelperError as exc:
        report.failure(f"{section} robot token", exc, "see docs/kubernetes.md")
        return
    if keyless:
        _check_keyless(report, ctx, key, keyless, section)
    elif held:
        _check_robot_token(report, section, key, held, exchange)
    elif settings.service_account:
        detail = f"each pod's service-account token, as the robot it names (default {settings.robot or 'none'})"
        report.add("OK", f"{section} credentials", detail + ": doctor --kubelet runs one as the kubelet does")
    else:
        report.add(
            "WARN",
            f"{section} credentials",
            f"{settings.robot or 'no robot'} with no source: its repositories get [{key}]'s credentials",
            settings.where("robot_token_file, robot_token_env, oidc or service_account", section),
        )


def _check_robot_token(report: Report, label: str, key: str, held: RobotToken, exchange: TokenExchange) -> None:
    """The robot token the job holds (readable, not empty; never shown), then one exchange."""
    try:
        token = held.read()
    except HelperError as exc:
        report.failure(f"{label} robot token", exc, f"check the source {held.source}")
        return
    report.add("OK", f"{label} robot token", f"{held.robot}'s token from {held.source} ({len(token)} characters)")
    try:
        exchange.get(key, held.identity(), credentials=lambda: (held.robot, token))
        report.add("OK", f"{label} credentials", f"{held.robot} accepted")
    except HelperError as exc:
        report.failure(f"{label} credentials", exc, "check the robot's token in Quay (Robot Accounts)")


def _check_sso(report: Report, ctx: Context, key: str, entry: IndexEntry) -> None:
    """An SSO login: the IdP's discovery, the session (the cached ID token, else one refresh), one /v2/auth."""
    sso = entry.sso or {}
    issuer = sso.get("issuer", "")
    try:
        with idp.opened(issuer, ctx.settings(key)) as found:
            idp.discover(found, issuer)
        report.add("OK", f"{key} SSO identity provider", f"{issuer}: discovery answered")
    except HelperError as exc:
        report.failure(f"{key} SSO identity provider", exc, "check sso_issuer and the way to the IdP (proxy, CA)")
        return
    try:
        token = session.id_token(ctx, key, entry)
    except HelperError as exc:
        report.failure(f"{key} SSO session", exc, f"quay-cred-helper login {key} --sso")
        return
    left = token.expires_at - time.time()
    report.add("OK", f"{key} SSO session", f"{sso.get('user')} via {issuer}: ID token good for {left:.0f} s more")
    try:
        sso_quay.verify(ctx.tokens(cached=False), key, token.token, sso.get("client", ""), issuer)
        report.add("OK", f"{key} credentials", f"$oauthtoken accepted (SSO user {sso.get('user')})")
    except HelperError as exc:
        report.failure(f"{key} credentials", exc, "see docs/sso.md")


def _check_app_token(report: Report, key: str, record: dict[str, str]) -> None:
    """An app token made at an SSO login: its expiry at Quay, WARN when due (renewal is a login)."""
    ends, due = app_token_expiry(record, time.time())
    what = f'app token "{record.get("title", "")}" of SSO user {record.get("user", "?")}'
    if not ends:
        report.add("OK", f"{key} app token", f"{what}: no expiry (Quay's APP_SPECIFIC_TOKEN_EXPIRATION is unset)")
        return
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends))
    fix = f"quay-cred-helper login {key} --sso --app-token (a new one; the old one is revoked)"
    report.add("WARN" if due else "OK", f"{key} app token", f"{what}: expires {when}", fix if due else None)


def _check_keyless(report: Report, ctx: Context, key: str, keyless: Keyless, label: str = "") -> None:
    """The source, what its OIDC token says (decoded, not verified), one exchange, what the JWT says."""
    label = label or key
    try:
        token = keyless.oidc_token(key, ctx.settings(key))
    except HelperError as exc:
        report.failure(f"{label} OIDC token", exc, f"check the source {keyless.oidc}")
        return
    claims = jwt.claims(token) or {}
    left = (jwt.number(claims, "exp") or 0) - time.time()
    detail = f"from {keyless.oidc}: iss {claims.get('iss')}, sub {claims.get('sub')}, aud {claims.get('aud')}, " + (
        f"{left:.0f} s left" if left > 0 else "expired"
    )
    report.add(
        "OK" if left > 0 else "FAIL", f"{label} OIDC token", detail, None if left > 0 else "the source must renew it"
    )
    try:
        issued = ctx.store.federated(key, keyless, cached=False)
    except HelperError as exc:
        report.failure(f"{label} keyless exchange", exc, "see docs/keyless.md")
        return
    quay = jwt.claims(issued.token) or {}
    report.add(
        "OK",
        f"{label} keyless exchange",
        f"{keyless.robot} accepted: Quay JWT sub {quay.get('sub')}, aud {quay.get('aud')}",
    )


def _check_clock(report: Report, key: str, session: Session) -> None:
    headers = session.last_headers
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


def _check_referrers(report: Report, key: str, session: Session, base: str) -> None:
    response, body = session.send(f"{base}/v2/quay-cred-helper/doctor/referrers/{PROBE_DIGEST}")
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


def check_ages(report: Report, ctx: Context, key: str, keyring: bool = True) -> None:
    """How old each secret kept for the registry is (its credential, the API token, a robot token file),
    WARN past max_secret_age; FAIL for an interrupted robot rotation."""
    settings = ctx.settings(key)
    entry = ctx.index.get(key)
    secrets: list[tuple[str, float, str]] = []  # (which, when stored (0: unknown), the fix when too old)
    if entry is not None and not entry.oidc:
        fix = f"quay-cred-helper robot rotate {key} {entry.username}" if is_robot(entry.username) else ""
        secrets.append(
            (
                f"{entry.username}'s secret",
                entry.stored,
                fix or f"quay-cred-helper login {key} (a new password or token)",
            )
        )
    api = pending = None
    if keyring:  # else the keyring check says why
        try:
            api = rotation.ApiTokens(ctx.keyring).get(key)
            pending = rotation.KeyringStaging(ctx.keyring, key).load()
        except KeyringError:
            pass
    if api is not None:
        secrets.append(
            ("the Quay API token", api[1], f"store a new OAuth token: quay-cred-helper robot api-token {key}")
        )
    if settings.robot_token_file:
        with contextlib.suppress(OSError):  # a missing file is the provider's error to report
            stored = os.stat(settings.robot_token_file).st_mtime
            secrets.append(
                (f"{settings.robot}'s token file", stored, f"quay-cred-helper robot rotate {key} {settings.robot}")
            )
        pending = pending or rotation.FileStaging(settings.robot_token_file).load()
    if pending is not None:
        report.add(
            "FAIL",
            f"{key} rotation",
            f"a rotation of {pending.robot} was interrupted",
            f"quay-cred-helper robot rotate {key} {pending.robot} (it finishes the rotation)",
        )
    limit = settings.max_secret_age
    for what, stored, fix in secrets:
        age = time.time() - stored
        if not stored and limit:
            report.add("WARN", f"{key} secret age", f"{what}: age unknown (stored before ages were kept)", fix)
        elif limit and age > limit:
            detail = f"{what} was stored {config.format_duration(age)} ago, past max_secret_age"
            report.add("WARN", f"{key} secret age", f"{detail} ({config.format_duration(limit)})", fix)
        elif stored:
            report.add("OK", f"{key} secret age", f"{what}: stored {config.format_duration(age)} ago")


def diagnose(ctx: Context, registries: list[str]) -> Report:
    report = Report()
    keys = registries or sorted(ctx.index.entries())
    # With no registry at all, a first login needs the keyring.
    keyring = check_keyring(report, ctx, needed=not keys or any(needs_keyring(ctx, key) for key in keys))
    check_files(report)
    for key in keys:
        check_ages(report, ctx, key, keyring)
        check_registry(report, ctx, key)
    return report


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.kubelet:
        report = Report()
        for finding in explain(args.registries, args.kubelet_config, args.bin_dir, args.service_account_token):
            report.add(*finding)
    else:
        report = diagnose(ctx, [registry_key(r) for r in args.registries])
    if args.json:
        checks = [dataclasses.asdict(c) for c in report.checks]
        json.dump({"ok": not report.failed, "checks": checks}, sys.stdout, indent=2)
        print()
    else:
        for line in report.lines():
            print(printable(line))
    return 1 if report.failed else 0

"""Where a keyless robot's OIDC token comes from: the CI job's or the pod's own identity.

    auto        the first of the sources below whose CI this is, by the CI's documented marker
                (GITHUB_ACTIONS, GITLAB_CI, TF_BUILD, BITBUCKET_BUILD_NUMBER, CIRCLECI, BUILDKITE),
                then a Kubernetes pod's projected token: explicit CI markers first, because CI jobs
                often run in pods (a GitHub runner on Kubernetes is a GitHub job)
    github      GitHub Actions (`permissions: id-token: write`): GET $ACTIONS_ID_TOKEN_REQUEST_URL
                (+ &audience=...) with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` -> {"value"}
    gitlab      GitLab CI: the job's `id_tokens:` variable <AUDIENCE>_ID_TOKEN (the audience upper-cased,
                every character but A-Z, 0-9 and _ as _, as PyPA's `id` and sigstore name it), or
                QUAY_ID_TOKEN when no audience is set
    azure       Azure Pipelines: POST $SYSTEM_OIDCREQUESTURI?api-version=7.1-preview.1 with
                `Authorization: Bearer $SYSTEM_ACCESSTOKEN` -> {"oidcToken"} (no audience parameter)
    bitbucket   Bitbucket Pipelines (a step with `oidc: true`): $BITBUCKET_STEP_OIDC_TOKEN
    circleci    CircleCI: $CIRCLE_OIDC_TOKEN_V2, else $CIRCLE_OIDC_TOKEN (audience: the organization id)
    buildkite   Buildkite: `buildkite-agent oidc request-token [--audience AUD]`, killed at the deadline,
                its output capped
    kubernetes  a projected service-account token file: $QUAY_CRED_HELPER_OIDC_TOKEN_FILE, else
                /var/run/secrets/quay-cred-helper/token. Never the pod's default token: its audience is
                the API server, and whoever receives it could replay it there
    env:NAME    the token is in environment variable NAME
    file:PATH   the token is in a file, read afresh every time (a projected token is rotated in place)

The token is read when an exchange is due (never on a cache hit), never written anywhere, and
registered with the log's redaction. A token service is asked through the same machinery as a
registry (registry/session.py): the registry's deadline, timeouts and retries, a 64 KiB cap on
the answer, and the proxy rules of registry/transport.py. Sources are checked against each
vendor's documentation: docs/keyless.md lists them with their links.

Why not PyPA's `id` package (twine's trusted publishing), which detects GitHub, GitLab, Buildkite,
CircleCI and Google Cloud: its requests have a 30 s timeout each and urllib3's default retries but
no overall deadline, it reads whole answers into memory (no cap), it ignores proxy settings
altogether, it runs `buildkite-agent` and `circleci` without a timeout, it asks Google's metadata
server before Buildkite, GitLab and CircleCI (a runner on a GCE VM would present the VM's identity),
it does not know Azure Pipelines, Bitbucket or Kubernetes, and it brings urllib3 (~150 ms of imports).
The conventions it follows (GitLab's variable name, GitHub's `value`) are kept here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from quay_cred_helper import log
from quay_cred_helper.config import Settings
from quay_cred_helper.errors import DeadlineExceeded, InputError, RegistryError, SourceError, printable
from quay_cred_helper.names import is_loopback_host
from quay_cred_helper.registry.session import Session, json_body
from quay_cred_helper.registry.transport import make_client
from quay_cred_helper.sources import MAX_TOKEN, jwt, read_file, read_variable

TOKEN_FILE_ENV = "QUAY_CRED_HELPER_OIDC_TOKEN_FILE"
TOKEN_FILE = "/var/run/secrets/quay-cred-helper/token"  # where docs/ci.md mounts a pod's projected token
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # the default token: never sent
AZURE_API_VERSION = "7.1-preview.1"
FILE_FIX = "check the path (a pod mounts a projected service-account token) and its permissions"


@dataclass(frozen=True)
class CI:
    """One CI system (or a pod) as a source of OIDC tokens: adding one is one record in SYSTEMS and its test.

    `marked` says this is its CI (its documented marker); `available(audience)` whether its token can be
    had; `looked_for(audience)` and `fix(audience)` what `auto` reports; `read(audience, key, bounds)` the
    token (a SourceError with the fix when it cannot)."""

    source: str  # the name `--oidc` and `oidc =` take
    name: str  # as a person reads it
    job: str  # "a GitHub Actions job"
    marked: Callable[[], bool]
    available: Callable[[str], bool]
    looked_for: Callable[[str], str]
    fix: Callable[[str], str]
    read: Callable[[str, str, Settings], str]


def check(spec: str) -> str:
    """`spec` if it names a source; raises InputError otherwise."""
    kind, _, rest = spec.partition(":")
    if spec == "auto" or spec in BY_SOURCE or (kind in ("env", "file") and rest):
        return spec
    raise InputError(f"unknown OIDC source {spec!r}", f"use one of {', '.join(KINDS)}")


def describe(spec: str) -> str:
    """The source as a person reads it: `github (GitHub Actions)`."""
    return f"{spec} ({BY_SOURCE[spec].name})" if spec in BY_SOURCE else spec


def read(spec: str, audience: str, key: str = "", bounds: Settings | None = None) -> str:
    """The OIDC token from its source, asked within `bounds` (registry `key`'s settings)."""
    bounds = bounds or Settings()
    spec = check(spec)
    if spec == "auto":
        spec = detect(audience)
    kind, _, rest = spec.partition(":")
    if kind == "env":
        token = read_variable(
            (rest,),
            f"the OIDC token variable {rest} is not set or empty",
            f"GitLab CI: declare it under id_tokens: {{{rest}: {{aud: ...}}}} in the job",
        )
    elif kind == "file":  # checked as every file a source names, at every door (files.check_private)
        token = read_file(rest, "OIDC token file", FILE_FIX, "check what mounts it")
    else:
        token = BY_SOURCE[kind].read(audience, key, bounds)
    log.secret(token)
    return jwt(token, spec)


# -- detection -------------------------------------------------------------------------------------


def gitlab_variable(audience: str) -> str:
    """The `id_tokens:` variable a GitLab job declares for `audience`: <AUDIENCE>_ID_TOKEN, as PyPA's `id`
    and sigstore name it (every character but A-Z, 0-9 and _ as _, and a leading digit too)."""
    if not audience:
        return "QUAY_ID_TOKEN"
    name = "".join(c if ("A" <= c <= "Z" or "0" <= c <= "9" or c == "_") else "_" for c in audience.upper())
    return ("_" + name[1:] if name[0].isdigit() else name) + "_ID_TOKEN"


def token_file() -> str:
    """Where a pod's projected token is looked for: $QUAY_CRED_HELPER_OIDC_TOKEN_FILE, else TOKEN_FILE."""
    return os.environ.get(TOKEN_FILE_ENV) or TOKEN_FILE


def here() -> str | None:
    """The CI system (or Kubernetes) whose marker is set here, whether or not its token can be had."""
    return next((ci.name for ci in SYSTEMS if ci.marked()), None)


def detect(audience: str) -> str:
    """The source `auto` stands for here: the first CI whose marker is set decides; a SourceError saying
    what that CI lacks, or what was looked for, when there is none."""
    for ci in SYSTEMS:
        if ci.marked():
            if not ci.available(audience):
                raise SourceError(f"this is {ci.job} without an OIDC token", ci.fix(audience))
            log.debug("OIDC source auto: %s", describe(ci.source))
            return ci.source
    looked = "; ".join(ci.looked_for(audience) for ci in SYSTEMS)
    raise SourceError(
        f"no CI OIDC token found here: looked for {looked}",
        "run where one of these is, or name the source (--oidc env:NAME or file:PATH): see docs/ci.md",
    )


# -- the CI systems, in the order `auto` tries them -------------------------------------------------


def _env(name: str) -> str:
    return os.environ.get(name, "")


def _github(audience: str, key: str, bounds: Settings) -> str:
    url = _env("ACTIONS_ID_TOKEN_REQUEST_URL")
    request_token = _env("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not request_token:
        raise SourceError(
            "ACTIONS_ID_TOKEN_REQUEST_URL is not set: this is not a GitHub Actions job allowed OIDC tokens",
            GITHUB_FIX,
        )
    if audience:
        # The URL carries a query already (api-version=...): the audience is one more parameter.
        url += ("&" if "?" in url else "?") + "audience=" + quote(audience, safe="")
    log.secret(request_token)
    what = "the GitHub Actions token service"
    data = _ask(what, url, {"Authorization": f"bearer {request_token}"}, key, bounds)
    return _field(data, "value", what, "check the job's `permissions: id-token: write`")


def _gitlab_fix(audience: str) -> str:
    return f"declare it in the job: id_tokens: {{{gitlab_variable(audience)}: {{aud: {audience or 'AUDIENCE'}}}}}"


def _gitlab(audience: str, key: str, bounds: Settings) -> str:
    name = gitlab_variable(audience)
    return read_variable(
        (name,), f"the GitLab CI OIDC token variable {name} is not set or empty", _gitlab_fix(audience)
    )


def _azure(audience: str, key: str, bounds: Settings) -> str:
    url = _env("SYSTEM_OIDCREQUESTURI")
    access_token = _env("SYSTEM_ACCESSTOKEN")
    if not url or not access_token:
        raise SourceError(
            "SYSTEM_OIDCREQUESTURI or SYSTEM_ACCESSTOKEN is not set: Azure Pipelines maps neither on its own",
            AZURE_FIX,
        )
    url += ("&" if "?" in url else "?") + "api-version=" + AZURE_API_VERSION
    log.secret(access_token)
    what = "the Azure Pipelines OIDC token service"
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Content-Type": "application/json",
        "X-TFS-FedAuthRedirect": "Suppress",  # an error, not a redirect to a sign-in page
    }
    data = _ask(what, url, headers, key, bounds, method="POST")
    return _field(data, "oidcToken", what, "check that SYSTEM_ACCESSTOKEN is the job's $(System.AccessToken)")


def _bitbucket(audience: str, key: str, bounds: Settings) -> str:
    return read_variable(
        ("BITBUCKET_STEP_OIDC_TOKEN",),
        "BITBUCKET_STEP_OIDC_TOKEN is not set: this Bitbucket Pipelines step has no OIDC token",
        BITBUCKET_FIX,
    )


def _circleci(audience: str, key: str, bounds: Settings) -> str:
    return read_variable(
        CIRCLECI_VARIABLES,
        "CIRCLE_OIDC_TOKEN_V2 and CIRCLE_OIDC_TOKEN are not set: this CircleCI job has no OIDC token",
        CIRCLECI_FIX,
    )


def _buildkite(audience: str, key: str, bounds: Settings) -> str:
    agent = shutil.which("buildkite-agent")
    if agent is None:
        raise SourceError("buildkite-agent is not on PATH: this is not a Buildkite job", BUILDKITE_FIX)
    argv = [agent, "oidc", "request-token", *(["--audience", audience] if audience else [])]
    return _run_capped(argv, bounds.deadline, key, bounds)


def _kubernetes_fix(audience: str = "") -> str:
    """Names the file looked for: $QUAY_CRED_HELPER_OIDC_TOKEN_FILE's path when it is set."""
    if os.environ.get(TOKEN_FILE_ENV):
        return f"mount a projected service-account token with Quay's audience at {token_file()} ({TOKEN_FILE_ENV})"
    return f"mount a projected service-account token with Quay's audience at {TOKEN_FILE} (or set {TOKEN_FILE_ENV})"


def _kubernetes(audience: str, key: str, bounds: Settings) -> str:
    path = token_file()
    fix = _kubernetes_fix()
    if os.path.realpath(os.path.dirname(path)) == os.path.realpath(SERVICE_ACCOUNT_DIR):
        raise SourceError(
            f"refusing the pod's default service-account token {path}: its audience is the Kubernetes API server, "
            "where whoever receives it could replay it",
            fix,
        )
    return _projected(path, fix)


def _projected(path: str, fix: str) -> str:
    """A pod's projected token (`kubernetes`, not `file:`): read as before this module checked `file:`
    sources with files.check_private, capped at MAX_TOKEN. The kubelet's atomic writer owns that tree;
    whether its modes pass check_private in every pod (fsGroup) is not verified, so it is left as it was."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN + 1)
    except OSError as exc:
        raise SourceError(
            f"cannot read the OIDC token file {path}: {exc.strerror or type(exc).__name__}", fix
        ) from None
    token = data.decode("utf-8", "replace").strip()
    if not token or len(data) > MAX_TOKEN:
        raise SourceError(f"the OIDC token file {path} is empty or too large", "check what mounts it")
    return token


GITHUB_FIX = "add `permissions: id-token: write` to the workflow or job"
AZURE_FIX = (
    "map them into the step: env: {SYSTEM_ACCESSTOKEN: $(System.AccessToken), "
    "SYSTEM_OIDCREQUESTURI: $(System.OidcRequestUri)}"
)
BITBUCKET_FIX = "add `oidc: true` to the step"
CIRCLECI_VARIABLES = ("CIRCLE_OIDC_TOKEN_V2", "CIRCLE_OIDC_TOKEN")
CIRCLECI_FIX = (
    "give the job a context (older CircleCI), and for forked pull requests turn on "
    "'Pass secrets to builds from forked pull requests'"
)
BUILDKITE_FIX = "run the step on a Buildkite agent, with buildkite-agent on PATH"

SYSTEMS = (
    CI(
        "github",
        "GitHub Actions",
        "a GitHub Actions job",
        marked=lambda: _env("GITHUB_ACTIONS") == "true",
        available=lambda audience: bool(
            _env("ACTIONS_ID_TOKEN_REQUEST_URL") and _env("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        ),
        looked_for=lambda audience: "GitHub Actions (GITHUB_ACTIONS, ACTIONS_ID_TOKEN_REQUEST_URL)",
        fix=lambda audience: GITHUB_FIX,
        read=_github,
    ),
    CI(
        "gitlab",
        "GitLab CI",
        "a GitLab CI job",
        marked=lambda: _env("GITLAB_CI") == "true",
        available=lambda audience: bool(_env(gitlab_variable(audience)).strip()),
        looked_for=lambda audience: f"GitLab CI (GITLAB_CI, {gitlab_variable(audience)})",
        fix=_gitlab_fix,
        read=_gitlab,
    ),
    CI(
        "azure",
        "Azure Pipelines",
        "an Azure Pipelines job",
        marked=lambda: _env("TF_BUILD").lower() == "true",
        available=lambda audience: bool(_env("SYSTEM_OIDCREQUESTURI") and _env("SYSTEM_ACCESSTOKEN")),
        looked_for=lambda audience: "Azure Pipelines (TF_BUILD, SYSTEM_OIDCREQUESTURI, SYSTEM_ACCESSTOKEN)",
        fix=lambda audience: AZURE_FIX,
        read=_azure,
    ),
    CI(
        "bitbucket",
        "Bitbucket Pipelines",
        "a Bitbucket Pipelines step",
        marked=lambda: bool(_env("BITBUCKET_BUILD_NUMBER")),
        available=lambda audience: bool(_env("BITBUCKET_STEP_OIDC_TOKEN").strip()),
        looked_for=lambda audience: "Bitbucket Pipelines (BITBUCKET_BUILD_NUMBER, BITBUCKET_STEP_OIDC_TOKEN)",
        fix=lambda audience: BITBUCKET_FIX,
        read=_bitbucket,
    ),
    CI(
        "circleci",
        "CircleCI",
        "a CircleCI job",
        marked=lambda: _env("CIRCLECI") == "true",
        available=lambda audience: any(_env(name).strip() for name in CIRCLECI_VARIABLES),
        looked_for=lambda audience: "CircleCI (CIRCLECI, CIRCLE_OIDC_TOKEN_V2)",
        fix=lambda audience: CIRCLECI_FIX,
        read=_circleci,
    ),
    CI(
        "buildkite",
        "Buildkite",
        "a Buildkite job",
        marked=lambda: _env("BUILDKITE") == "true",
        available=lambda audience: shutil.which("buildkite-agent") is not None,
        looked_for=lambda audience: "Buildkite (BUILDKITE, buildkite-agent on PATH)",
        fix=lambda audience: BUILDKITE_FIX,
        read=_buildkite,
    ),
    CI(
        "kubernetes",
        "a Kubernetes pod",
        "a Kubernetes pod",
        marked=lambda: bool(_env("KUBERNETES_SERVICE_HOST") or _env(TOKEN_FILE_ENV)),
        available=lambda audience: os.path.isfile(token_file()),
        looked_for=lambda audience: f"a Kubernetes pod (a projected token at {token_file()})",
        fix=lambda audience: _kubernetes_fix() + ": see docs/ci.md",
        read=_kubernetes,
    ),
)
BY_SOURCE = {ci.source: ci for ci in SYSTEMS}
KINDS = ("auto", *BY_SOURCE, "env:NAME", "file:PATH")  # what --oidc accepts, as its help lists them


# -- asking a token service, or the Buildkite agent, within bounds -------------------------------------


def _ask(what: str, url: str, headers: dict[str, str], key: str, bounds: Settings, method: str = "GET") -> object:
    """The JSON answer of a CI's token service, asked as a registry is: within the registry's deadline,
    timeouts and retries, the answer capped at MAX_TOKEN, proxies as registry/transport.py routes them."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname or "")):
        raise SourceError(f"refusing {what} at a URL that is not https: {printable(url[:200])}")
    client = make_client(bounds.replace(ca_bundle=""))  # the registry's CA bundle is not the service's
    try:
        session = Session(client, parts.netloc, bounds)
        response, body = session.send(
            url, headers=dict(headers, Accept="application/json"), limit=MAX_TOKEN, method=method
        )
    except RegistryError as exc:
        raise SourceError(f"{what} failed: {exc.problem}", _fix(exc, key, bounds)) from None
    finally:
        client.close()
    if response.status_code != 200:
        raise SourceError(f"{what} answered HTTP {response.status_code} without a token", _status_fix(what))
    return json_body(body)


def _status_fix(what: str) -> str:
    return f"check that the job may request OIDC tokens from {what}"


def _fix(exc: RegistryError, key: str, bounds: Settings) -> str | None:
    if isinstance(exc, DeadlineExceeded):
        where = bounds.where("deadline = N", key) if key else "deadline = N in the config file"
        return f"the token service is stalling; raise {where} if it is only slow"
    return exc.fix


def _field(data: object, name: str, what: str, fix: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise SourceError(f"{what} answered without a token ({name})", fix)
    return value


def _run_capped(argv: list[str], seconds: float, key: str, bounds: Settings) -> str:
    """The stdout of `argv`, killed (its process group) when `seconds` pass or it prints over MAX_TOKEN.

    The agent retries on its own for longer than our deadline: we stop it ourselves. Its output is
    the token, never its argv; the environment it needs (BUILDKITE_AGENT_ACCESS_TOKEN) is the job's."""
    end = time.monotonic() + max(seconds, 0.1)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=os.name == "posix",
        )
    except OSError as exc:
        raise SourceError(f"cannot run {argv[0]}: {exc.strerror or type(exc).__name__}") from None
    assert proc.stdout is not None and proc.stderr is not None
    read: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda n=name, p=pipe: read.__setitem__(n, p.read(MAX_TOKEN + 1)), daemon=True)
        for name, pipe in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    problem = ""
    try:
        readers[0].join(max(end - time.monotonic(), 0))
        if readers[0].is_alive():
            problem = f"buildkite-agent did not answer within {seconds:g} s"
        elif len(read.get("out", b"")) > MAX_TOKEN:
            problem = f"buildkite-agent printed over {MAX_TOKEN // 1024} KiB: not a token"
        else:
            try:
                proc.wait(max(end - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                problem = f"buildkite-agent did not finish within {seconds:g} s"
    finally:
        if proc.poll() is None:
            _kill(proc)
        readers[1].join(1.0)
        proc.stdout.close()
        proc.stderr.close()
    if problem:
        where = bounds.where("deadline = N", key) if key else "deadline = N in the config file"
        raise SourceError(problem, f"check the agent; raise {where} if it is only slow")
    if proc.returncode != 0:
        first = (read.get("err", b"").decode("utf-8", "replace").strip().splitlines() or [""])[0][:200]
        raise SourceError(
            f"buildkite-agent oidc request-token failed (exit {proc.returncode}): {printable(first)}",
            "check that the step runs on an agent allowed to request OIDC tokens",
        )
    return read.get("out", b"").decode("utf-8", "replace").strip()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        if sys.platform == "win32":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)  # the agent and whatever it started
    except OSError:
        pass
    proc.wait()

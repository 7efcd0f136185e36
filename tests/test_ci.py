"""CI without a keyring: a robot token from the job's secrets, keyless login detected on every major CI,
one step for a job (ci-login and the GitHub Action), and every CI token request within the deadline.

No Secret Service runs here and keyring's backend is the fail one: nothing may need a keyring. Each
CI is a stand-in made of what its documentation says a job sees (tests/fakes/ci_services.py).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ProcWatcher, descendants, needs
from tests.fakes.ci_services import (
    AZURE_AUDIENCE,
    AzureTokenService,
    GitHubTokenService,
    HugeAnswer,
    bitbucket_env,
    buildkite,
    circleci_env,
    github_env,
    gitlab_env,
    kubernetes_env,
)
from tests.fakes.hostile import DripServer
from tests.fakes.quay_registry import QuayRegistry, b64url_decode
from tests.support import CI_ROBOT, CI_ROBOT_TOKEN, CLI, HELPER, ROBOT, ROBOTS, USERS, claims_of, cli, get, helper

ROOT = Path(__file__).resolve().parent.parent
SUBJECT = "repo:org/app:ref:refs/heads/main"
WRONG_TOKEN = "W" * 64
# What a CI sets that our detection reads: none may leak in from wherever the suite itself runs.
CI_VARIABLES = (
    "CI",
    "GITHUB_ACTIONS",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "GITLAB_CI",
    "QUAY_ID_TOKEN",
    "TF_BUILD",
    "SYSTEM_OIDCREQUESTURI",
    "SYSTEM_ACCESSTOKEN",
    "BITBUCKET_BUILD_NUMBER",
    "BITBUCKET_STEP_OIDC_TOKEN",
    "CIRCLECI",
    "CIRCLE_OIDC_TOKEN",
    "CIRCLE_OIDC_TOKEN_V2",
    "BUILDKITE",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "QUAY_ROBOT_TOKEN",
    "DBUS_SESSION_BUS_ADDRESS",
)


@pytest.fixture
def env(env):
    """A CI job's machine: no keyring at all (conftest's env), no D-Bus, no CI variables but those a test sets."""
    return {k: v for k, v in env.items() if k not in CI_VARIABLES}


@pytest.fixture
def quay():
    with QuayRegistry(
        users=USERS, robots={**ROBOTS, CI_ROBOT: CI_ROBOT_TOKEN}, public_namespaces={"library"}
    ) as registry:
        yield registry


@pytest.fixture
def federation(quay, issuer, tmp_path):
    """The registry's robot ROBOT trusts the test issuer's tokens for SUBJECT."""
    issuer.trusted_by(quay, tmp_path)
    quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": SUBJECT}]


def configure(env, tmp_path, host, **settings):
    path = tmp_path / "config.ini"
    path.write_text(f"[{host}]\n" + "".join(f"{name} = {value}\n" for name, value in settings.items()))
    env["QUAY_CRED_HELPER_CONFIG"] = str(path)
    return path


def failed_get(env, host):
    """The one line a client shows: never the not-found text (it would go on anonymously)."""
    r = helper(env, "get", host)
    assert r.returncode == 1 and r.stdout.count(b"\n") == 1, (r.stdout, r.stderr)
    assert r.stdout != b"credentials not found in native keychain\n"
    return r.stdout.decode().strip()


def exchanges(quay):
    return quay.count("/oauth2/federation/robot/token")


def files_holding(root, *needles):
    found = []
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [str(path) for needle in needles if needle.encode() in data]
    return found


# -- a robot token from the job's secrets: nothing stored, no keyring -----------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_robot_token_env_gets_a_cached_jwt_and_never_the_jwt_of_another_token(env, quay, tmp_path):
    configure(env, tmp_path, quay.host, robot=CI_ROBOT, robot_token_env="QUAY_ROBOT_TOKEN")
    env["QUAY_ROBOT_TOKEN"] = CI_ROBOT_TOKEN
    first = get(env, quay.host)
    claims = claims_of(first["Secret"])
    assert first["Username"] == CI_ROBOT and claims["sub"] == CI_ROBOT and claims["aud"] == quay.server_hostname
    assert [(e["user"], e["credential"], e["status"]) for e in quay.auth_log] == [(CI_ROBOT, "password", 200)]
    assert get(env, quay.host) == first and len(quay.auth_log) == 1  # cached

    # Another token in the variable: its own identity, so the cached JWT is not handed out for it.
    env["QUAY_ROBOT_TOKEN"] = WRONG_TOKEN
    assert "refused the credentials: Could not find robot with username: org+job" in failed_get(env, quay.host)
    assert quay.auth_log[-1]["status"] == 401
    env["QUAY_ROBOT_TOKEN"] = CI_ROBOT_TOKEN
    assert get(env, quay.host) == first and len(quay.auth_log) == 2  # the right token's JWT, still cached

    del env["QUAY_ROBOT_TOKEN"]
    assert failed_get(env, quay.host) == (
        "the robot token variable QUAY_ROBOT_TOKEN is not set or empty: "
        "give the job the robot's token as the secret variable QUAY_ROBOT_TOKEN (docs/ci.md)"
    )
    key_file = Path(env["XDG_CACHE_HOME"], "quay-cred-helper", "robot-token.key")
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_text()) == 64
    assert files_holding(tmp_path, CI_ROBOT_TOKEN) == []  # never written anywhere
    assert helper(env, "list").stdout == b"{}\n"  # the config file's robot is no stored credential


@pytest.mark.slow  # many processes: the full suite
def test_16_concurrent_cold_gets_on_a_fresh_runner_make_one_exchange(env, quay, tmp_path):
    """No cache dir yet: the per-user key is made once (the first process's wins), so all 16 share one
    identity, one lock and one /v2/auth exchange (each made its own key before: 14 to 16 exchanges)."""
    import concurrent.futures

    configure(env, tmp_path, quay.host, robot=CI_ROBOT, robot_token_env="QUAY_ROBOT_TOKEN")
    env["QUAY_ROBOT_TOKEN"] = CI_ROBOT_TOKEN
    cache = Path(env["XDG_CACHE_HOME"], "quay-cred-helper")
    assert not cache.exists()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: helper(env, "get", quay.host, timeout=60), range(16)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    assert len({json.loads(r.stdout)["Secret"] for r in results}) == 1
    assert quay.count("/v2/auth") == 1
    key = (cache / "robot-token.key").read_text()
    assert len(key) == 64 and sorted(p.name for p in cache.iterdir() if p.name.startswith(".tmp-")) == []


@pytest.mark.slow  # waits out Quay's login throttling in real time
def test_robot_token_file_is_known_by_its_stat(env, quay, tmp_path):
    secret = tmp_path / "secrets" / "quay-robot"
    secret.parent.mkdir()
    secret.write_text(CI_ROBOT_TOKEN + "\n")
    secret.chmod(0o600)
    configure(env, tmp_path, quay.host, robot=CI_ROBOT, robot_token_file=secret)
    first = get(env, quay.host)["Secret"]
    assert get(env, quay.host)["Secret"] == first and len(quay.auth_log) == 1
    secret.write_text(WRONG_TOKEN + "\n")  # a new token in the file: a new identity
    assert "refused the credentials" in failed_get(env, quay.host)
    time.sleep(0.6)  # Quay throttles the robot's logins for 0.5 s after a failure
    secret.write_text(CI_ROBOT_TOKEN + "\n")
    assert claims_of(get(env, quay.host)["Secret"])["sub"] == CI_ROBOT and len(quay.auth_log) == 3

    secret.chmod(0o620)
    assert failed_get(env, quay.host) == (
        f"refusing the robot token file {secret}: other users can write it: chmod go-w {secret}"
    )
    secret.unlink()
    assert failed_get(env, quay.host) == (
        f"cannot read the robot token file {secret}: No such file or directory: "
        "check the path, and that the job writes its secret there"
    )


@pytest.mark.slow  # a dozen processes: the full suite
def test_login_token_from_records_the_source_and_stores_nothing(env, quay, tmp_path):
    env["QUAY_ROBOT_TOKEN"] = CI_ROBOT_TOKEN
    r = cli(env, "login", quay.host, "-u", CI_ROBOT, "--token-from", "env:QUAY_ROBOT_TOKEN")
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode() == (
        f"Login Succeeded: {CI_ROBOT} at {quay.host} (robot token from env:QUAY_ROBOT_TOKEN, nothing stored)\n"
    )
    assert [(e["credential"], e["scopes"], e["status"]) for e in quay.auth_log] == [("password", [], 200)]
    index = json.loads(Path(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json").read_text())
    assert index["registries"][quay.host] == {
        "server": quay.host,
        "username": CI_ROBOT,
        "salt": "",
        "identity": "",
        "token_from": "env:QUAY_ROBOT_TOKEN",
    }
    assert json.loads(helper(env, "list").stdout) == {quay.host: CI_ROBOT}
    assert claims_of(get(env, quay.host)["Secret"])["sub"] == CI_ROBOT

    r = cli(env, "token", f"{quay.host}/org/app", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["access"] == [{"type": "repository", "name": "org/app", "actions": ["pull"]}]
    assert cli(env, "logout", quay.host).returncode == 0
    assert helper(env, "list").stdout == b"{}\n"

    # A file source is recorded with its absolute path (the index outlives the working directory).
    (tmp_path / "token").write_text(CI_ROBOT_TOKEN)
    r = subprocess.run(
        [CLI, "login", quay.host, "-u", CI_ROBOT, "--token-from", "file:token"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr
    index = json.loads(Path(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json").read_text())
    assert index["registries"][quay.host]["token_from"] == f"file:{tmp_path}/token"
    assert files_holding(Path(env["XDG_CONFIG_HOME"]), CI_ROBOT_TOKEN) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["-u", CI_ROBOT, "--token-from", "env:NOPE"],
            "the robot token variable NOPE is not set or empty: give the job the robot's token as the secret "
            "variable NOPE (docs/ci.md)",
        ),
        (
            ["-u", CI_ROBOT, "--token-from", "vault:x"],
            "unknown robot token source 'vault:x': use env:NAME or file:PATH",
        ),
        (["-u", "alice", "--token-from", "env:QUAY_ROBOT_TOKEN"], "--token-from needs the robot: pass -u ORG+ROBOT"),
        (["-u", CI_ROBOT, "--oidc", "jenkins"], "unknown OIDC source 'jenkins': use one of auto, github, gitlab"),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_login_refusals_are_one_line_and_store_nothing(env, quay, args, message):
    env["QUAY_ROBOT_TOKEN"] = CI_ROBOT_TOKEN
    r = cli(env, "login", quay.host, *args)
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1
    assert r.stderr.decode().startswith(f"quay-cred-helper: {message}"), r.stderr
    assert helper(env, "list").stdout == b"{}\n" and quay.auth_log == []


def test_an_index_written_by_the_previous_version_is_still_read(env, quay, federation, issuer):
    # Exactly what IndexEntry.to_json wrote before token_from existed: a robot in the keyring, a keyless robot.
    index = Path(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")
    index.parent.mkdir(mode=0o700)
    entries = {
        "quay.example.com": {"server": "quay.example.com", "username": ROBOT, "salt": "ab" * 16, "identity": "cd" * 16},
        quay.host: {"server": quay.host, "username": ROBOT, "salt": "", "identity": "", "oidc": "env:ID_TOKEN"},
    }
    entries[quay.host]["audience"] = ""
    index.write_text(json.dumps({"version": 1, "registries": entries}))
    index.chmod(0o600)
    assert json.loads(helper(env, "list").stdout) == {"quay.example.com": ROBOT, quay.host: ROBOT}
    env["ID_TOKEN"] = issuer.token(SUBJECT)
    assert get(env, quay.host)["Username"] == ROBOT and exchanges(quay) == 1


@pytest.mark.slow  # a dozen processes: the full suite
def test_token_referrers_and_doctor_with_a_robot_token(env, quay, tmp_path):
    from tests.fakes.artifacts import push_demo

    pushed = push_demo(quay.url, "org/demo", "alice", "alice-password")
    configure(env, tmp_path, quay.host, robot=CI_ROBOT, robot_token_env="QUAY_ROBOT_TOKEN")
    env.update(QUAY_ROBOT_TOKEN=CI_ROBOT_TOKEN, QUAY_CRED_HELPER_LOG="debug")
    r = cli(env, "token", f"{quay.host}/org/demo")
    assert r.returncode == 0 and claims_of(r.stdout.decode().strip())["access"][0]["name"] == "org/demo"
    r = cli(env, "referrers", f"{quay.host}/org/demo:1.0", "--format", "digest")
    assert r.returncode == 0, r.stderr
    assert pushed["signature"]["digest"] in r.stdout.decode()
    doctor = cli(env, "doctor", quay.host, "--json")
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    # No keyring in the job, and none needed: not a FAIL (docs/ci.md runs doctor in the job).
    assert doctor.returncode == 0 and checks["keyring"]["status"] == "WARN", checks["keyring"]
    assert "no registry checked here needs it" in checks["keyring"]["detail"]
    assert checks[f"{quay.host} robot token"] == {
        "check": f"{quay.host} robot token",
        "status": "OK",
        "detail": f"{CI_ROBOT}'s token from env:QUAY_ROBOT_TOKEN (64 characters)",
        "fix": None,
    }
    assert checks[f"{quay.host} credentials"]["status"] == "OK"

    del env["QUAY_ROBOT_TOKEN"]
    before = len(quay.auth_log)
    checks = {c["check"]: c for c in json.loads(cli(env, "doctor", quay.host, "--json").stdout)["checks"]}
    assert checks[f"{quay.host} robot token"]["status"] == "FAIL"
    assert checks[f"{quay.host} robot token"]["fix"].startswith("give the job the robot's token as the secret")
    assert len(quay.auth_log) == before  # nothing to exchange
    assert files_holding(tmp_path, CI_ROBOT_TOKEN) == []  # debug log included


def test_config_mistakes_name_the_setting(env, quay, tmp_path):
    configure(env, tmp_path, quay.host, robot_token_env="QUAY_ROBOT_TOKEN")
    env["QUAY_ROBOT_TOKEN"] = CI_ROBOT_TOKEN
    assert failed_get(env, quay.host) == (
        f"robot_token_env for {quay.host} needs the robot it belongs to: "
        f"robot = ORG+NAME under [{quay.host}] in {env['QUAY_CRED_HELPER_CONFIG']}"
    )
    configure(env, tmp_path, quay.host, robot=CI_ROBOT, robot_token_env="A", robot_token_file="/b")
    assert failed_get(env, quay.host).startswith(f"both robot_token_env and robot_token_file are set for {quay.host}")


# -- keyless: each CI's OIDC token, detected --------------------------------------------------------------


def ci_job(kind, env, issuer, tmp_path, stack):
    """Make `env` a job of CI `kind`, its OIDC token for SUBJECT; returns (audience asked for, service)."""
    token = issuer.token(SUBJECT, audience="quay.example.com")
    if kind == "github":
        service = stack.enter_context(GitHubTokenService(issuer, SUBJECT))
        env.update(github_env(service))
        return "quay.example.com", service
    if kind == "azure":
        service = stack.enter_context(AzureTokenService(issuer, SUBJECT))
        env.update(service.env())
        return "", service
    if kind == "gitlab":
        env.update(gitlab_env(token, "QUAY_EXAMPLE_COM_ID_TOKEN"))  # the <AUDIENCE>_ID_TOKEN convention
        return "quay.example.com", None
    if kind == "bitbucket":
        env.update(bitbucket_env(token))
        return "", None
    if kind == "circleci":
        env.update(circleci_env(token))
        return "", None
    if kind == "buildkite":
        env.update(buildkite(str(tmp_path / "agent"), token))
        env["PATH"] = f"{tmp_path / 'agent'}{os.pathsep}{env['PATH']}"
        return "quay.example.com", None
    path = tmp_path / "projected" / "token"
    path.parent.mkdir()
    path.write_text(token)
    env.update(kubernetes_env(path))
    return "", None


SOURCES = ["github", "gitlab", "azure", "bitbucket", "circleci", "buildkite", "kubernetes"]
NAMES = {
    "github": "GitHub Actions",
    "gitlab": "GitLab CI",
    "azure": "Azure Pipelines",
    "bitbucket": "Bitbucket Pipelines",
    "circleci": "CircleCI",
    "buildkite": "Buildkite",
    "kubernetes": "a Kubernetes pod",
}


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.slow) if k not in ("azure", "gitlab") else k for k in SOURCES]
)
def test_login_oidc_auto_detects_each_ci(env, quay, federation, issuer, tmp_path, kind):
    import contextlib

    with contextlib.ExitStack() as stack:
        audience = ci_job(kind, env, issuer, tmp_path, stack)[0]
        args = ["--audience", audience] if audience else []
        r = cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "auto", *args)
        assert r.returncode == 0, r.stderr
        assert r.stderr.decode() == (
            f"Login Succeeded: {ROBOT} at {quay.host} (keyless, OIDC token from {kind} ({NAMES[kind]}))\n"
        )
        index = json.loads(Path(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json").read_text())
        assert index["registries"][quay.host]["oidc"] == kind  # what was detected, not "auto"
        got = get(env, quay.host)
        assert claims_of(got["Secret"])["sub"] == ROBOT and exchanges(quay) == 2
        assert [e["subject"] for e in quay.federation_log] == [SUBJECT, SUBJECT]
    if kind == "buildkite":
        calls = Path(env["FAKE_BUILDKITE_LOG"]).read_text().splitlines()
        assert calls == ["oidc request-token --audience quay.example.com"] * 2


@pytest.mark.slow  # over half a second: the full suite
def test_the_token_services_are_asked_as_documented(env, quay, federation, issuer, tmp_path):
    with AzureTokenService(issuer, SUBJECT) as azure:
        env.update(azure.env())
        assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "azure").returncode == 0
        assert azure.requests == [
            {
                "path": AzureTokenService.PATH,
                "query": {"api-version": ["7.1-preview.1"]},
                "authorization": f"Bearer {azure.access_token}",
                "content_type": "application/json",
                "redirect": "Suppress",
            }
        ]
        assert quay.federation_log[-1]["status"] == 200
    token = json.loads(b64url_decode(issuer.token(SUBJECT, audience=AZURE_AUDIENCE).split(".")[1]))
    assert token["aud"] == AZURE_AUDIENCE
    env = {k: v for k, v in env.items() if k not in ("TF_BUILD", "SYSTEM_OIDCREQUESTURI", "SYSTEM_ACCESSTOKEN")}
    with GitHubTokenService(issuer, SUBJECT) as github:
        env.update(github_env(github))
        assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "auto", "--audience", "q x").returncode == 0
        assert github.requests[-1]["query"] == {"api-version": ["2.0"], "audience": ["q x"]}
        assert github.requests[-1]["authorization"] == f"bearer {github.request_token}"


def test_config_oidc_auto_detects_at_each_exchange(env, quay, federation, issuer, tmp_path):
    configure(env, tmp_path, quay.host, robot=ROBOT, oidc="auto")
    env.update(gitlab_env(issuer.token(SUBJECT)))  # no audience: QUAY_ID_TOKEN
    assert get(env, quay.host)["Username"] == ROBOT and exchanges(quay) == 1


WITHOUT_TOKEN = [
    (
        {},
        "no CI OIDC token found here: looked for GitHub Actions (GITHUB_ACTIONS, ACTIONS_ID_TOKEN_REQUEST_URL); "
        "GitLab CI (GITLAB_CI, QUAY_ID_TOKEN); Azure Pipelines (TF_BUILD, SYSTEM_OIDCREQUESTURI, "
        "SYSTEM_ACCESSTOKEN); Bitbucket Pipelines (BITBUCKET_BUILD_NUMBER, BITBUCKET_STEP_OIDC_TOKEN); "
        "CircleCI (CIRCLECI, CIRCLE_OIDC_TOKEN_V2); Buildkite (BUILDKITE, buildkite-agent on PATH); "
        "a Kubernetes pod (a projected token at /var/run/secrets/quay-cred-helper/token): run where one of "
        "these is, or name the source (--oidc env:NAME or file:PATH): see docs/ci.md",
    ),
    (
        {"GITHUB_ACTIONS": "true", "KUBERNETES_SERVICE_HOST": "10.96.0.1"},
        "this is a GitHub Actions job without an OIDC token: add `permissions: id-token: write` to the workflow",
    ),
    (
        {"GITLAB_CI": "true"},
        "this is a GitLab CI job without an OIDC token: declare it in the job: "
        "id_tokens: {QUAY_ID_TOKEN: {aud: AUDIENCE}}",
    ),
    (
        {"TF_BUILD": "True", "SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/x"},
        "this is an Azure Pipelines job without an OIDC token: map them into the step: "
        "env: {SYSTEM_ACCESSTOKEN: $(System.AccessToken), SYSTEM_OIDCREQUESTURI: $(System.OidcRequestUri)}",
    ),
    ({"BITBUCKET_BUILD_NUMBER": "3"}, "this is a Bitbucket Pipelines step without an OIDC token: add `oidc: true`"),
    ({"CIRCLECI": "true"}, "this is a CircleCI job without an OIDC token: give the job a context (older CircleCI)"),
    ({"BUILDKITE": "true"}, "this is a Buildkite job without an OIDC token: run the step on a Buildkite agent"),
    (
        {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
        "this is a Kubernetes pod without an OIDC token: mount a projected service-account token with Quay's "
        "audience at /var/run/secrets/quay-cred-helper/token",
    ),
    (  # the hint names the file it looked for
        {"QUAY_CRED_HELPER_OIDC_TOKEN_FILE": "/nonexistent/pod-token"},
        "this is a Kubernetes pod without an OIDC token: mount a projected service-account token with Quay's "
        "audience at /nonexistent/pod-token (QUAY_CRED_HELPER_OIDC_TOKEN_FILE): see docs/ci.md",
    ),
]


@pytest.mark.parametrize(
    "job, message",
    [case if n < 2 else pytest.param(*case, marks=pytest.mark.slow) for n, case in enumerate(WITHOUT_TOKEN)],
)
def test_auto_without_a_token_says_what_it_looked_for(env, quay, job, message):
    env.update(job)
    r = cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "auto")
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1
    assert r.stderr.decode().startswith(f"quay-cred-helper: {message}"), r.stderr
    assert exchanges(quay) == 0 and helper(env, "list").stdout == b"{}\n"


def test_the_pods_default_service_account_token_is_never_sent(env, quay, tmp_path):
    configure(env, tmp_path, quay.host, robot=ROBOT, oidc="kubernetes")
    env.update(kubernetes_env("/var/run/secrets/kubernetes.io/serviceaccount/token"))
    assert failed_get(env, quay.host).startswith(
        "refusing the pod's default service-account token /var/run/secrets/kubernetes.io/serviceaccount/token: "
        "its audience is the Kubernetes API server"
    )
    assert exchanges(quay) == 0


@pytest.mark.slow  # waits for the deadline in real time
@pytest.mark.parametrize(
    "mode, message",
    [
        ("hang", "buildkite-agent did not answer within 2 s: check the agent; raise deadline = N under"),
        ("flood", "buildkite-agent printed over 64 KiB: not a token"),
        ("refuse", "buildkite-agent oidc request-token failed (exit 1): fatal: failed to get OIDC token: 403"),
    ],
)
def test_the_buildkite_agent_is_bounded(env, quay, issuer, tmp_path, mode, message):
    configure(env, tmp_path, quay.host, robot=ROBOT, oidc="buildkite", deadline=2)
    env.update(buildkite(str(tmp_path / "agent"), issuer.token(SUBJECT), mode))
    env["PATH"] = f"{tmp_path / 'agent'}{os.pathsep}{env['PATH']}"
    start = time.monotonic()
    assert message in failed_get(env, quay.host)
    assert time.monotonic() - start < 5
    leftovers = [pid for pid in descendants(os.getpid()) if b"sleep\x0060" in _cmdline(pid)]
    assert leftovers == [] and exchanges(quay) == 0


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -- every CI token request within the deadline, its answer capped (hardening issue, item 1) ---------------

DEADLINE = 2


def measured(argv, env, stdin=b""):
    """(result, wall seconds, peak RSS in MiB) of one run, through GNU time (its own small fork)."""
    r = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %M", *argv], input=stdin, env=env, capture_output=True, timeout=60
    )
    lines = r.stderr.decode().splitlines()
    stamp = next(line for line in reversed(lines) if line.startswith("TIME "))
    _, seconds, kib = stamp.split()
    return r, float(seconds), int(kib) / 1024


def token_command(command, host):
    if command == "get":
        return [HELPER, "get"], host.encode()
    if command == "login":
        return [CLI, "login", host, "-u", ROBOT, "--oidc", "github"], b""
    return [CLI, "doctor", host, "--json"], b""


def check_bounded(command, host, r, seconds, rss, expected):
    assert seconds < DEADLINE + 2.5, f"{command} took {seconds} s with deadline = {DEADLINE}"
    assert rss < 120, f"{command} peaked at {rss:.0f} MiB"
    assert r.returncode == 1
    if command == "doctor":
        checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
        line = checks[f"{host} OIDC token"]["detail"]
        assert checks[f"{host} OIDC token"]["status"] == "FAIL"
    else:
        line = (r.stdout if command == "get" else r.stderr).decode()
    assert "the GitHub Actions token service failed: 127.0.0.1:" in line and expected in line, line


@pytest.mark.parametrize("command", ["get", "login", "doctor"])
@pytest.mark.slow  # over half a second: the full suite
def test_a_256_mib_token_answer_is_refused_within_bounds(env, quay, tmp_path, command):
    configure(env, tmp_path, quay.host, robot=ROBOT, oidc="github", deadline=DEADLINE)
    with HugeAnswer() as huge:
        env.update(GITHUB_ACTIONS="true", ACTIONS_ID_TOKEN_REQUEST_TOKEN="runner-request-token")
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f"http://{huge.host}/_apis/idtoken?api-version=2.0"
        argv, stdin = token_command(command, quay.host)
        r, seconds, rss = measured(argv, env, stdin)
        check_bounded(command, quay.host, r, seconds, rss, "sent a response over 64 KiB: refused")
        assert huge.sent < 16 << 20  # it stopped reading long before the end
    assert exchanges(quay) == 0


@pytest.mark.slow  # waits for the deadline in real time
@pytest.mark.parametrize("command", ["get", "login", "doctor"])
def test_a_dripping_token_service_is_stopped_at_the_deadline(env, quay, tmp_path, command):
    configure(env, tmp_path, quay.host, robot=ROBOT, oidc="github", deadline=DEADLINE)
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"value": "a.b.c"}'
    with DripServer(answer, interval=1.0, seconds=15) as drip:
        env.update(GITHUB_ACTIONS="true", ACTIONS_ID_TOKEN_REQUEST_TOKEN="runner-request-token")
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f"http://{drip.host}/_apis/idtoken?api-version=2.0"
        argv, stdin = token_command(command, quay.host)
        r, seconds, rss = measured(argv, env, stdin)
    check_bounded(command, quay.host, r, seconds, rss, f"did not finish within {DEADLINE} s")
    assert exchanges(quay) == 0


@pytest.mark.slow  # real time, two processes
def test_a_slow_token_service_holds_no_other_process_back(env, quay, federation, issuer, tmp_path):
    configure(env, tmp_path, quay.host, robot=ROBOT, oidc="github", deadline=8)
    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"value": "a.b.c"}'
    with DripServer(answer, interval=1.0, seconds=15) as drip, GitHubTokenService(issuer, SUBJECT) as github:
        slow = dict(env, GITHUB_ACTIONS="true", ACTIONS_ID_TOKEN_REQUEST_TOKEN="runner-request-token")
        slow["ACTIONS_ID_TOKEN_REQUEST_URL"] = f"http://{drip.host}/_apis/idtoken?api-version=2.0"
        first = subprocess.Popen([HELPER, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=slow)
        try:
            first.stdin.write(quay.host.encode())
            first.stdin.close()
            waited = time.monotonic() + 10
            while not drip.connections and time.monotonic() < waited:
                time.sleep(0.05)
            assert drip.connections, "the first get never asked its token service"
            time.sleep(0.5)  # well inside its token request now
            start = time.monotonic()
            fast = dict(env, **github_env(github))
            assert claims_of(get(fast, quay.host)["Secret"])["sub"] == ROBOT
            assert time.monotonic() - start < 3, "the second get waited for the first one's token service"
        finally:
            if first.poll() is None:
                first.send_signal(signal.SIGTERM)
            first.wait(timeout=20)


# -- one step for a job: ci-login ----------------------------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_ci_login_keyless_configures_docker_and_podman(env, quay, federation, issuer, tmp_path):
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    with GitHubTokenService(issuer, SUBJECT) as github:
        env.update(github_env(github))
        r = cli(env, "ci-login", quay.host, "--robot", ROBOT, "--audience", "quay.example.com")
        assert r.returncode == 0, r.stderr
        lines = r.stderr.decode().splitlines()
        assert lines[0] == f"Login Succeeded: {ROBOT} at {quay.host} (keyless, OIDC token from github (GitHub Actions))"
        assert f"{env['DOCKER_CONFIG']}/config.json: created" in lines
        assert f"{tmp_path}/auth.json: created" in lines
        assert lines[-1] == f"docker, podman, skopeo and buildah now get one-hour JWTs for {quay.host} from the helper"
        assert r.stdout == b"" and "eyJ" not in r.stderr.decode() and github.request_token not in r.stderr.decode()
        for path in (Path(env["DOCKER_CONFIG"], "config.json"), tmp_path / "auth.json"):
            assert json.loads(path.read_text())["credHelpers"] == {quay.host: "quay"}
        assert get(env, quay.host)["Username"] == ROBOT and exchanges(quay) == 2


@pytest.mark.slow  # over half a second: the full suite
def test_ci_login_with_only_a_robot_token_as_on_jenkins(env, quay):
    # Jenkins: withCredentials([string(credentialsId: 'quay-robot', variable: 'QUAY_ROBOT_TOKEN')]) { ... }
    env.update(QUAY_ROBOT_TOKEN=CI_ROBOT_TOKEN, JENKINS_URL="https://jenkins.example.com/", BUILD_NUMBER="12")
    r = cli(env, "ci-login", quay.host, "--robot", CI_ROBOT)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().splitlines()[:2] == [
        "quay-cred-helper: not keyless: no CI OIDC token here (docs/ci.md); using the robot token from "
        "env:QUAY_ROBOT_TOKEN",
        f"Login Succeeded: {CI_ROBOT} at {quay.host} (robot token from env:QUAY_ROBOT_TOKEN, nothing stored)",
    ]
    assert claims_of(get(env, quay.host)["Secret"])["sub"] == CI_ROBOT
    r = cli(env, "ci-login", quay.host, "--robot", CI_ROBOT, "--oidc", "none")  # no keyless attempt, no warning
    assert r.returncode == 0 and r.stderr.decode().startswith("Login Succeeded: ")
    del env["QUAY_ROBOT_TOKEN"]
    r = cli(env, "ci-login", quay.host, "--robot", CI_ROBOT, "--oidc", "none")
    assert r.returncode == 1 and r.stderr.decode().startswith(
        "quay-cred-helper: the robot token variable QUAY_ROBOT_TOKEN is not set or empty: give the job"
    )


@pytest.mark.slow  # a dozen processes: the full suite
def test_ci_login_falls_back_on_the_robot_token_and_says_why(env, quay, issuer, tmp_path):
    # A GitHub job without `id-token: write`, its robot token in the job's secrets.
    env.update(GITHUB_ACTIONS="true", QUAY_ROBOT_TOKEN=CI_ROBOT_TOKEN)
    r = cli(env, "ci-login", quay.host, "--robot", CI_ROBOT)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.decode().splitlines()
    assert lines[:2] == [
        "quay-cred-helper: not keyless: this is a GitHub Actions job without an OIDC token; "
        "using the robot token from env:QUAY_ROBOT_TOKEN",
        f"Login Succeeded: {CI_ROBOT} at {quay.host} (robot token from env:QUAY_ROBOT_TOKEN, nothing stored)",
    ]
    assert CI_ROBOT_TOKEN not in r.stderr.decode() + r.stdout.decode()
    assert claims_of(get(env, quay.host)["Secret"])["sub"] == CI_ROBOT

    # A GitLab job whose OIDC token Quay refuses (no federation for the robot): the robot token again.
    env = dict(env, **gitlab_env(issuer.token(SUBJECT)))
    del env["GITHUB_ACTIONS"]
    r = cli(env, "ci-login", quay.host, "--robot", CI_ROBOT)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().splitlines()[0] == (
        f"quay-cred-helper: not keyless: {quay.host} refused the OIDC token for {CI_ROBOT}: Robot does not have "
        "federated login configured; using the robot token from env:QUAY_ROBOT_TOKEN"
    )

    # Refused and no robot token: the refusal, which says the most.
    del env["QUAY_ROBOT_TOKEN"]
    r = cli(env, "ci-login", quay.host, "--robot", CI_ROBOT)
    assert r.returncode == 1 and b"Robot does not have federated login configured" in r.stderr
    # Neither: one line with both.
    env = {k: v for k, v in env.items() if k not in ("GITLAB_CI", "QUAY_ID_TOKEN", "CI")}
    r = cli(env, "ci-login", quay.host, "--robot", CI_ROBOT)
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1
    assert r.stderr.decode().startswith(
        f"quay-cred-helper: no way to log in {CI_ROBOT} at {quay.host}: no CI OIDC token found here: looked for "
    )
    assert "; and the robot token variable QUAY_ROBOT_TOKEN is not set or empty: give the job" in r.stderr.decode()


def test_the_watcher_looks_for_a_jobs_secret_in_argv_only():
    needle = f"job-secret-{os.getpid()}"
    watcher = ProcWatcher([], argv_only=[needle])
    with subprocess.Popen(["sleep", "3"], env=dict(os.environ, JOB_SECRET=needle)) as in_env:
        watcher.scan()
        in_env.kill()
    assert watcher.hits == []
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)", needle]) as in_argv:
        deadline = time.monotonic() + 2
        while not watcher.hits and time.monotonic() < deadline:
            watcher.scan()
        in_argv.kill()
    assert watcher.hits and watcher.hits[0][1] == "cmdline"


# -- real clients, no keyring: the registry sees only JWTs from them -------------------------------------


@pytest.fixture
def real_registry(tmp_path, request):
    """Debian's docker-registry trusting a Quay-compatible /v2/auth, or that test registry itself."""
    from tests.fakes.real_registry import BINARY, DockerRegistry

    robots = {**ROBOTS, CI_ROBOT: CI_ROBOT_TOKEN}
    if request.param == "quay":
        with QuayRegistry(users=USERS, robots=robots, public_namespaces={"library"}) as quay:
            yield quay.host, quay
        return
    if not os.path.exists(BINARY) and not os.environ.get("CI"):
        pytest.skip("docker-registry not installed")
    with DockerRegistry(tmp_path, USERS, robots, public_namespaces={"library"}) as registry:
        yield registry.host, registry.quay


def sh(argv, env, timeout=120):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # real clients
@needs("skopeo", "podman")
@pytest.mark.parametrize("real_registry", ["docker-registry", "quay"], indirect=True)
def test_real_clients_with_only_a_robot_token_in_the_environment(env, real_registry, tmp_path, monkeypatch):
    from tests.fakes.real_registry import oci_layout

    host, quay = real_registry
    env.update(QUAY_ROBOT_TOKEN=CI_ROBOT_TOKEN, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"))
    r = cli(env, "ci-login", host, "--robot", CI_ROBOT)
    assert r.returncode == 0, r.stderr
    layout = tmp_path / "image"
    oci_layout(str(layout))
    image = f"{host}/org/ci-app:1"
    r = sh(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{image}"], env)
    assert r.returncode == 0, r.stderr
    r = sh(["skopeo", "copy", "--src-tls-verify=false", f"docker://{image}", f"oci:{tmp_path / 'pulled'}:1"], env)
    assert r.returncode == 0, r.stderr
    runroot = tempfile.mkdtemp(prefix="qch-")  # podman wants a short one
    try:
        storage = ["--root", str(tmp_path / "storage"), "--runroot", runroot, "--storage-driver", "vfs"]
        r = sh(["podman", *storage, "pull", "--tls-verify=false", image], env)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(runroot, ignore_errors=True)

    # docker-py, as its clients resolve a registry's credentials (through docker's config.json).
    import docker.auth

    monkeypatch.setenv("PATH", env["PATH"])
    for name in ("QUAY_ROBOT_TOKEN", "PYTHON_KEYRING_BACKEND", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HOME"):
        monkeypatch.setenv(name, env[name])
    config = docker.auth.load_config(os.path.join(env["DOCKER_CONFIG"], "config.json"))
    found = docker.auth.resolve_authconfig(config, host)
    assert found["Username"] == CI_ROBOT and claims_of(found["Password"])["sub"] == CI_ROBOT

    by_clients = [e for e in quay.auth_log if e["scopes"]]
    assert by_clients and all(e["user"] == CI_ROBOT and e["status"] == 200 for e in by_clients)
    assert {e["credential"] for e in by_clients} == {"jwt"}  # the robot token never left the helper
    assert all(e["credential"] == "password" for e in quay.auth_log if not e["scopes"])  # the helper's own
    assert files_holding(tmp_path, CI_ROBOT_TOKEN) == []


# -- the GitHub Action, its steps run as a runner runs them ----------------------------------------------------


def run_action(action, inputs, job_env, workdir):
    """Run a composite action's `run:` steps as GitHub's runner does: inputs substituted into each step's
    env, `bash --noprofile --norc -eo pipefail` on a script file, $GITHUB_PATH and $GITHUB_ENV applied
    between steps. Returns the job's environment after the action."""
    env = dict(job_env)
    values = {name: inputs.get(name, spec.get("default", "")) for name, spec in action["inputs"].items()}
    for number, step in enumerate(action["runs"]["steps"]):
        assert step["shell"] == "bash" and "${{" not in step["run"]  # inputs go through env, never into scripts
        step_env = {}
        for name, value in step.get("env", {}).items():
            for key, given in values.items():
                value = value.replace("${{ inputs." + key + " }}", given)
            assert "${{" not in value, value
            step_env[name] = value
        script = workdir / f"step-{number}.sh"
        script.write_text(step["run"])
        r = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            env=dict(env, **step_env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            return env, step["name"], r
        added = Path(env["GITHUB_PATH"]).read_text().split()
        env["PATH"] = os.pathsep.join([*reversed(added), job_env["PATH"]])
        for line in Path(env["GITHUB_ENV"]).read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = value
    return env, None, None


@pytest.mark.slow  # builds a wheel, makes a virtualenv and installs into it
@needs("skopeo", "docker-registry")
def test_the_github_action_in_a_github_like_job(env, issuer, tmp_path):
    import yaml

    from tests.fakes.real_registry import DockerRegistry, oci_layout

    action = yaml.safe_load((ROOT / "packaging" / "github-action" / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {"registry", "robot", "audience", "version"}

    # The package as PyPI would serve it: a wheel of this tree, found by pip before any index.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    runner = tmp_path / "runner"
    runner.mkdir()
    (runner / "path").write_text("")
    (runner / "env").write_text("")
    job = dict(env)
    job["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(Path(sys.executable).parent))
    job.update(
        GITHUB_ACTIONS="true",
        CI="true",
        RUNNER_TEMP=str(runner),
        GITHUB_PATH=str(runner / "path"),
        GITHUB_ENV=str(runner / "env"),
        GITHUB_ACTION_PATH=str(ROOT / "packaging" / "github-action"),
        REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"),
        PIP_FIND_LINKS=f"{wheels} {os.environ.get('PIP_FIND_LINKS', '')}".strip(),
    )
    assert shutil.which("quay-cred-helper", path=job["PATH"]) is None  # only the action installs it

    r = run_action(action, {"version": "1.0; curl evil"}, job, tmp_path)[2]
    assert r is not None and "::error::version must be a version number" in r.stdout, r

    robots = {**ROBOTS, CI_ROBOT: CI_ROBOT_TOKEN}
    with DockerRegistry(tmp_path, USERS, robots) as registry, GitHubTokenService(issuer, SUBJECT) as github:
        quay = registry.quay
        issuer.trusted_by(quay, tmp_path)
        quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": SUBJECT}]
        job.update(github_env(github))
        after, failed, r = run_action(
            action, {"registry": registry.host, "robot": ROBOT, "audience": "quay"}, job, tmp_path
        )
        assert failed is None, (failed, r.stdout, r.stderr)
        venv_bin = runner / "quay-cred-helper" / "bin"
        found = shutil.which("docker-credential-quay", path=after["PATH"])
        assert found == str(venv_bin / "docker-credential-quay"), (found, after["PATH"])
        assert github.requests[-1]["query"]["audience"] == ["quay"], github.requests

        # The job's next step: push and pull through the helper the action installed.
        layout = tmp_path / "image"
        oci_layout(str(layout))
        image = f"docker://{registry.host}/org/from-action:1"
        r = sh(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", image], after)
        assert r.returncode == 0, r.stderr
        r = sh(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Name}}", image], after)
        assert (r.returncode, r.stdout.strip()) == (0, f"{registry.host}/org/from-action"), r.stderr
        by_clients = [e for e in quay.auth_log if e["scopes"]]
        assert by_clients and {(e["user"], e["credential"]) for e in by_clients} == {(ROBOT, "jwt")}, quay.auth_log

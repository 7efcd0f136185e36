"""CI systems as a job sees them: their documented environment variables, their token services on
127.0.0.1, and a `buildkite-agent` executable, so that every OIDC source runs for real.

GitHub Actions' token service is tests.fakes.issuer.GitHubTokenService; Azure Pipelines' is here.
The variables are the ones each vendor documents (docs/keyless.md has the links).
"""

import os
import stat
import threading
import urllib.parse

from tests.fakes.hostile import _read_head, _Server
from tests.fakes.issuer import GitHubTokenService, _Handler
from tests.fakes.issuer import _Server as _HTTPServer

AZURE_AUDIENCE = "api://AzureADTokenExchange"  # Azure's token service takes no audience


class _AzureHandler(_Handler):
    def do_POST(self):
        service = self.owner
        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        service.requests.append(
            {
                "path": parts.path,
                "query": urllib.parse.parse_qs(parts.query),
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
                "redirect": self.headers.get("X-TFS-FedAuthRedirect"),
            }
        )
        if self.headers.get("Authorization") != f"Bearer {service.access_token}":
            return self.answer(401, {"message": "TF400813: The user is not authorized to access this resource."})
        return self.answer(200, {"oidcToken": service.issuer.token(service.subject, audience=AZURE_AUDIENCE)})


class AzureTokenService(_HTTPServer):
    """Azure Pipelines' OIDC token endpoint (System.OidcRequestUri): POST with the job's access token."""

    handler = _AzureHandler
    PATH = "/org/project-id/_apis/distributedtask/hubs/build/plans/plan-id/jobs/job-id/oidctoken"

    def __init__(self, issuer, subject, access_token="azure-system-access-token"):
        super().__init__()
        self.issuer, self.subject, self.access_token = issuer, subject, access_token

    def env(self):
        """What a step sees with SYSTEM_ACCESSTOKEN and SYSTEM_OIDCREQUESTURI mapped into its env."""
        return {
            "TF_BUILD": "True",
            "SYSTEM_OIDCREQUESTURI": self.url + self.PATH,
            "SYSTEM_ACCESSTOKEN": self.access_token,
        }


def github_env(service):
    """A GitHub Actions job with `permissions: id-token: write`."""
    return dict(service.env(), GITHUB_ACTIONS="true", CI="true")


def gitlab_env(token, variable="QUAY_ID_TOKEN"):
    """A GitLab CI job whose `id_tokens:` declares `variable`."""
    return {"GITLAB_CI": "true", "CI": "true", variable: token}


def bitbucket_env(token):
    """A Bitbucket Pipelines step with `oidc: true`."""
    return {"CI": "true", "BITBUCKET_BUILD_NUMBER": "7", "BITBUCKET_STEP_OIDC_TOKEN": token}


def circleci_env(token):
    return {"CIRCLECI": "true", "CI": "true", "CIRCLE_OIDC_TOKEN_V2": token, "CIRCLE_OIDC_TOKEN": "not.this.one"}


def kubernetes_env(token_file):
    """A pod (the API server's address injected) with a projected token where docs/ci.md mounts it."""
    return {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "QUAY_CRED_HELPER_OIDC_TOKEN_FILE": str(token_file),
    }


_AGENT = """#!/bin/sh
# A stand-in for buildkite-agent: `oidc request-token [--audience A]` prints the job's OIDC token.
printf '%s\\n' "$*" >> "$FAKE_BUILDKITE_LOG"
if [ "$1 $2" != "oidc request-token" ]; then echo "fake buildkite-agent: unknown command: $*" >&2; exit 2; fi
if [ -z "$BUILDKITE_AGENT_ACCESS_TOKEN" ]; then echo "fatal: missing BUILDKITE_AGENT_ACCESS_TOKEN" >&2; exit 1; fi
case "$FAKE_BUILDKITE_MODE" in
    hang) exec sleep 60 ;;
    flood) exec head -c 100000000 /dev/zero ;;
    refuse) echo "fatal: failed to get OIDC token: 403 Forbidden: OIDC tokens are not enabled" >&2; exit 1 ;;
esac
cat "$FAKE_BUILDKITE_TOKEN_FILE"
"""


def buildkite(directory, token, mode=""):
    """A `buildkite-agent` in `directory` (put it on PATH) and the environment of a Buildkite job.

    The token is in a file the agent prints (never in any argv); every call's argv goes to a log."""
    os.makedirs(directory, exist_ok=True)
    agent = os.path.join(directory, "buildkite-agent")
    with open(agent, "w") as f:
        f.write(_AGENT)
    os.chmod(agent, stat.S_IRWXU)
    token_file = os.path.join(directory, "oidc-token")
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(token + "\n")
    return {
        "BUILDKITE": "true",
        "CI": "true",
        "BUILDKITE_JOB_ID": "0190-job",
        "BUILDKITE_AGENT_ACCESS_TOKEN": "buildkite-agent-session-token",
        "FAKE_BUILDKITE_TOKEN_FILE": token_file,
        "FAKE_BUILDKITE_LOG": os.path.join(directory, "calls.log"),
        "FAKE_BUILDKITE_MODE": mode,
    }


class HugeAnswer(_Server):
    """Answers every request at once with a 200 JSON body of `size` bytes (256 MiB by default), sent as
    fast as the client reads it: a token service gone wrong, or one that is not a token service."""

    def __init__(self, size=256 << 20):
        super().__init__()
        self.size = size
        self.sent = 0
        self.count = threading.Lock()

    def _serve(self, conn):
        if not _read_head(conn):
            return
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {self.size}\r\nConnection: close\r\n\r\n"
        ).encode()
        chunk = b"a" * (1 << 16)
        body = b'{"value": "' + chunk[: (1 << 16) - 11]
        try:
            conn.sendall(head + body)
            left = self.size - len(body) - 2
            while left > 0 and not self.stopped.is_set():
                piece = chunk[: min(left, len(chunk))]
                conn.sendall(piece)
                left -= len(piece)
                with self.count:
                    self.sent += len(piece)
            conn.sendall(b'"}')
        except OSError:
            return


__all__ = [
    "AZURE_AUDIENCE",
    "AzureTokenService",
    "GitHubTokenService",
    "HugeAnswer",
    "bitbucket_env",
    "buildkite",
    "circleci_env",
    "github_env",
    "gitlab_env",
    "kubernetes_env",
]

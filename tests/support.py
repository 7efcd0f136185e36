"""What the tests, the benchmarks and the demo share: accounts, an isolated environment, running
the installed executables as clients do, and in-process collaborators built as the entry points build them."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.fakes.hostile import _read_head, _Server

BIN = os.path.dirname(sys.executable)
HELPER = os.path.join(BIN, "docker-credential-quay")
CLI = os.path.join(BIN, "quay-cred-helper")
PROVIDER = os.path.join(BIN, "quay-credential-provider")
NO_KEYRING = "keyring.backends.fail.Keyring"  # keyring's backend that has no keyring
V1 = "credentialprovider.kubelet.k8s.io/v1"  # the kubelet's CredentialProviderRequest version

USERS = {"alice": ("alice-password", ["alice", "org", "library"])}
ROBOT = "org+ci"
ROBOT_TOKEN = "R0B0T" * 12 + "TOKN"  # 64 characters, like Quay's robot tokens
ROBOTS = {ROBOT: ROBOT_TOKEN}
# OAuth application tokens for Quay's API (40 characters, as Quay makes them; never JWT-shaped), by scopes.
API_TOKEN = "QUAYAPI0AUTH" + "T0KEN" * 4 + "ADMIN000"  # alice: org:admin and user:admin
API_TOKEN_ORG = "QUAYAPI0AUTH" + "T0KEN" * 4 + "0RG0NLY0"  # alice: org:admin only
API_TOKEN_READ = "QUAYAPI0AUTH" + "T0KEN" * 4 + "REP0READ"  # alice: repo:read only
ROTATED_PREFIX = "R0TATEDR0B0T"  # every token the test registry regenerates starts with it
TEAM_A_TOKEN = "T3AMA" * 12 + "TOKN"  # a second organization's robot token (robots per namespace)

# Every secret the suite uses: the watcher looks for them in every process's argv and environment.
SECRETS = [
    "alice-password",
    ROBOT_TOKEN,
    TEAM_A_TOKEN,
    "s3cret",
    "fast-path-secret",
    "migrated-password",
    "py-secret",
    "windows-long-token-",
]
SECRETS += ["QUAYAPI0AUTH", ROTATED_PREFIX]  # every API token and every regenerated robot token
# SSO (tests/fakes/idp.py): every refresh token, and every ID token (by its header's encoding).
SECRETS += ["R3FRESHT0KEN", "eyJpZHAiOiAidGVzdC1pZHAtc3NvIiwg"]
SECRETS += ["4PPT0KEN"]  # every app-specific token (tests/fakes/quay_registry.py APP_TOKEN)

# A robot whose token a CI job holds in its environment, as CI systems hand out secrets: the watcher
# looks for it in every process's argv (never there), not in environments (where the job put it).
CI_ROBOT = "org+job"
CI_ROBOT_TOKEN = "J0B5" * 15 + "CIJB"  # 64 characters
ENV_SECRETS = [CI_ROBOT_TOKEN]


def isolated_env(root):
    """Environment for subprocesses: fresh HOME and XDG dirs under `root`, our bin first on PATH,
    none of the caller's docker, registry, keyring or quay-cred-helper settings."""
    prefixes = ("XDG_", "DOCKER_", "REGISTRY_AUTH", "QUAY_CRED", "PYTHON_KEYRING")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        path = os.path.join(root, name.lower())
        os.makedirs(path, mode=0o700)
        env[name] = path
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["DOCKER_CONFIG"] = os.path.join(env["HOME"], ".docker")
    return env


def secret_service_on_bus(env):
    """Whether a Secret Service owns its name on the session bus of `env` (gnome-keyring 42 crashes after a
    few thousand rapid sessions: a test or benchmark tells that apart from a failure of ours)."""
    probe = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:org.freedesktop.secrets",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return "true" in probe.stdout


def missing(*programs):
    return [p for p in programs if not shutil.which(p)]


def run(argv, env, stdin=b"", timeout=30):
    """Run an installed executable the way a client does."""
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=timeout)


def helper(env, verb, stdin=b"", timeout=30):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return run([HELPER, verb], env, stdin, timeout)


def cli(env, *args, stdin=b"", timeout=30):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return run([CLI, *args], env, stdin, timeout)


def tokens(config_path, cache=None, client=None, sleep=None):
    """An in-process token exchange as the entry points build it (no cache unless given)."""
    from quay_cred_helper.config import Config
    from quay_cred_helper.registry.cache import NullTokenCache
    from quay_cred_helper.registry.tokens import TokenExchange

    return TokenExchange(
        cache if cache is not None else NullTokenCache(), Config(str(config_path)).settings, client, sleep
    )


# -- the two tiers ----------------------------------------------------------------------------------

TIER = {"full": False}  # set by conftest: True when the run selects the slow tests too (-m "")


def examples(n):
    """Generated cases for a property test: all of them in the full suite, a tenth in the fast tier."""
    return n if TIER["full"] else max(n // 10, 20)


# -- counts the suite reports at the end ----------------------------------------------------------

GENERATED = {"cases": 0}
FAULTS = {"kills sent": 0, "processes killed mid-run": 0, "concurrent operations": 0}


def count_case():
    GENERATED["cases"] += 1


PROVIDER = os.path.join(BIN, "quay-credential-provider")

# Runs a launcher as its #! line would (python, no options), and at its os._exit writes which loader served each of
# our modules to the file named by QCH_PROBE_REPORT. QCH_PROBE_ROOT, if set, goes first on sys.path (a
# copy of the package a test may edit); QCH_PROBE_PLAIN=1 imports everything the normal way (as with no
# bundle, and without writing one).
LAUNCH_PROBE = """
import json, os, runpy, sys
launcher = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(launcher)  # as for the script itself, not -c's working directory
if os.environ.get("QCH_PROBE_ROOT"):
    sys.path.insert(0, os.environ["QCH_PROBE_ROOT"])
if os.environ.get("QCH_PROBE_PLAIN"):
    sys.dont_write_bytecode = True
    from quay_cred_helper import launch
    launch._finder = launch.Finder({})
    sys.meta_path.insert(0, launch._finder)
real_exit = os._exit
def report(code):
    loaders = {name: type(module.__spec__.loader).__name__ for name, module in list(sys.modules.items())
               if name.startswith("quay_cred_helper") and getattr(module, "__spec__", None)}
    loaders["__future__ imported"] = "__future__" in sys.modules
    with open(os.environ["QCH_PROBE_REPORT"], "w") as out:
        json.dump(loaders, out)
    real_exit(code)
os._exit = report
runpy.run_path(launcher, run_name="__main__")
"""


def probe_argv(launcher, args):
    """The command line that runs `launcher` with `args` through LAUNCH_PROBE."""
    return [sys.executable, "-c", LAUNCH_PROBE, launcher, *args]


def launch_probe(env, launcher, args, stdin=b"", report=None, timeout=30):
    """(the run, {module: the name of its loader's class}) for one run of `launcher` through LAUNCH_PROBE."""
    report = report or os.path.join(env["HOME"], "launch-probe.json")
    env = dict(env, QCH_PROBE_REPORT=report)
    result = subprocess.run(probe_argv(launcher, args), input=stdin, env=env, capture_output=True, timeout=timeout)
    with open(report) as f:
        return result, json.load(f)


def claims_of(token):
    """The claims of a JWT (a Quay JWT, an OIDC token), decoded and not verified: what the tests assert on."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def get(env, host):
    """`docker-credential-quay get`, which must succeed: its answer, decoded."""
    r = helper(env, "get", host)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return json.loads(r.stdout)


def store(env, server, username="alice", secret="s3cret", check=True):
    """`docker-credential-quay store` of one credential, as a client sends it: the result, which must be a
    success unless `check` is false (a test of a refusal)."""
    r = helper(env, "store", json.dumps({"ServerURL": server, "Username": username, "Secret": secret}))
    assert r.returncode == 0 or not check, (r.stdout, r.stderr)
    return r


def login(env, host, password="alice-password"):
    """`quay-cred-helper login` as alice, the password on stdin: the result, unchecked."""
    return cli(env, "login", host, "-u", "alice", "--password-stdin", stdin=password)


def configured(env, text, name="config.ini"):
    """A config file of `text` in the test's HOME: (the environment that names it, its path)."""
    path = Path(env["HOME"], name)
    path.write_text(text)
    return dict(env, QUAY_CRED_HELPER_CONFIG=str(path)), path


def jwt_with(claims):
    """A JWT-shaped token (an empty header, `claims`, a fake signature), as a registry hands one out."""
    return f"{b64url(b'{}')}.{b64url(json.dumps(claims).encode())}.c2ln"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def timed(run):
    """run(), and the seconds it took: (its result, seconds)."""
    start = time.monotonic()
    result = run()
    return result, time.monotonic() - start


class StallingRegistry(_Server):
    """A registry that answers /v2/ with its challenge and /v2/auth with a token at once, and drips the
    answer to every other path (`drip_auth`: also /v2/auth) one byte every `interval` seconds."""

    def __init__(self, interval=0.25, drip_auth=False):
        super().__init__()
        self.interval, self.drip_auth = interval, drip_auth
        self.paths = []

    def _serve(self, conn):
        if conn.recv(1, socket.MSG_PEEK) == b"\x16":  # a TLS ClientHello: hang up, as a plain-http server does
            conn.close()
            return
        head = _read_head(conn)
        if not head:
            return
        path = head.split(b" ", 2)[1].decode("latin-1").split("?")[0]
        self.paths.append(path)
        if path in ("/v2/", "/v2"):
            realm = f'Bearer realm="http://{self.host}/v2/auth",service="{self.host}"'
            self._answer(conn, f"401 Unauthorized\r\nWWW-Authenticate: {realm}", b"")
        elif path == "/v2/auth" and not self.drip_auth:
            self._answer(
                conn, "200 OK", json.dumps({"token": jwt_with({"exp": int(time.time()) + 3600, "access": []})})
            )
        else:  # the headers, dripped: only a wall-clock bound ends this
            response = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 400 + b"\r\n\r\n"
            for byte in response:
                if self.stopped.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    @staticmethod
    def _answer(conn, status, body):
        """One answer, then the connection closes: the next request comes on a new one, and is seen."""
        body = body.encode() if isinstance(body, str) else body
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)
        conn.close()

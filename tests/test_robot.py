"""Robots' lifecycle: rotating a token through Quay's API (crash-safe), showing a robot, and every secret's age.

The Quay-compatible registry answers the robot API as quay/quay's endpoints/api/robot.py does (OAuth
application tokens, the CSRF check on POSTs, insufficient_scope, unknown robots). Kills are sent from
the registry itself at the instant a request arrives or is answered, so each crash point is exact.
"""

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from quay_cred_helper.errors import ApiRefused
from tests.conftest import needs
from tests.fakes.quay_registry import CSRF, FORBIDDEN, QuayRegistry
from tests.support import (
    API_TOKEN,
    API_TOKEN_ORG,
    API_TOKEN_READ,
    CLI,
    FAULTS,
    ROBOT,
    ROBOT_TOKEN,
    ROBOTS,
    ROTATED_PREFIX,
    USERS,
    cli,
    helper,
    tokens,
)

USER_ROBOT, USER_ROBOT_TOKEN = "alice+bot", "B0TT0KEN" * 8
SCOPES = {
    API_TOKEN: {"org:admin", "user:admin"},
    API_TOKEN_ORG: {"org:admin"},
    API_TOKEN_READ: {"repo:read"},
}
JWT_LOOKING = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2ln"  # no iss: an SSO token to Quay


@pytest.fixture
def quay():
    robots = dict(ROBOTS, **{USER_ROBOT: USER_ROBOT_TOKEN})
    with QuayRegistry(users=USERS, robots=robots, public_namespaces={"library"}) as registry:
        for token, scopes in SCOPES.items():
            registry.api.oauth[token] = ("alice", scopes)
        yield registry


@pytest.fixture
def robot_env(file_keyring, quay):
    """The robot logged in (its token in the keyring) and the API token stored."""
    assert cli(file_keyring, "login", quay.host, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN).returncode == 0
    r = cli(file_keyring, "robot", "api-token", quay.host, stdin=API_TOKEN + "\n")
    assert r.returncode == 0, r.stderr
    return file_keyring


READ_KEYRING = r"""
import json, sys, keyring
def read(username):
    value = keyring.get_password("quay-cred-helper", username)
    return json.loads(value) if value else None
print(json.dumps({name: read(name) for name in sys.argv[1:]}))
"""


def keyring_entries(env, *usernames):
    r = subprocess.run([sys.executable, "-c", READ_KEYRING, *usernames], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def stored(env, key):
    """(the robot token in the keyring, the rotation staged for the registry or None)."""
    found = keyring_entries(env, key, f"rotating:{key}")
    return (found[key] or {}).get("secret"), found[f"rotating:{key}"]


def accepted(quay, robot, token):
    """Whether /v2/auth takes this token for the robot now (asked in-process: no secret in any argv)."""
    basic = base64.b64encode(f"{robot}:{token}".encode()).decode()
    request = urllib.request.Request(
        f"{quay.url}/v2/auth?service={quay.host}", headers={"Authorization": f"Basic {basic}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code == 429:  # a refused token just before: Quay's throttle, wait it out once
            time.sleep(float(exc.headers.get("Retry-After") or 1) + 0.6)
            return accepted(quay, robot, token)
        return False


def regenerations(quay):
    return [entry for entry in quay.api.audit if entry[0] == "regenerate_robot_token"]


def line(r):
    """The one line a failed command printed (stderr), with nothing on stdout."""
    assert r.returncode == 1 and r.stdout == b"", (r.stdout, r.stderr)
    text = r.stderr.decode()
    assert text.count("\n") == 1, text
    return text.removeprefix("quay-cred-helper: ").rstrip("\n")


# -- rotate ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_rotate_an_organization_robot_in_the_keyring(robot_env, quay):
    key = quay.host
    assert helper(robot_env, "get", key).returncode == 0  # a cached JWT for the old token
    cache = Path(robot_env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens", key.replace(":", "_"))
    cached = {p.name for p in cache.glob("*.json")} - {"challenge.json"}
    assert cached
    auths = len(quay.auth_log)

    r = cli(robot_env, "robot", "rotate", key, ROBOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""
    assert (
        r.stderr
        == f"Rotated {ROBOT} at {key}: the new token is in the keyring and works (Quay refuses the old one)\n".encode()
    )
    new = quay.accounts[ROBOT].password
    assert new.startswith(ROTATED_PREFIX) and len(new) == 64
    assert new.encode() not in r.stderr and API_TOKEN.encode() not in r.stderr

    assert stored(robot_env, key) == (new, None)  # committed, nothing left staged
    assert regenerations(quay) == [("regenerate_robot_token", "org", {"robot": "ci"})]
    assert ("POST", "/api/v1/organization/org/robots/ci/regenerate", 200) in quay.api.requests
    proofs = quay.auth_log[auths:]
    assert [(e["user"], e["status"], e["scopes"]) for e in proofs] == [(ROBOT, 200, [])]  # one exchange proves it
    assert not cached & {p.name for p in cache.glob("*.json")}  # the old JWTs were dropped

    assert not accepted(quay, ROBOT, ROBOT_TOKEN) and accepted(quay, ROBOT, new)
    got = json.loads(helper(robot_env, "get", key).stdout)
    assert got["Username"] == ROBOT and got["Secret"].count(".") == 2  # a JWT from the new token
    listed = json.loads(cli(robot_env, "list", "--json").stdout)
    assert listed[0]["username"] == ROBOT and listed[0]["age_seconds"] < 60  # a new secret: a new age


@pytest.mark.slow  # over half a second: the full suite
def test_rotate_a_users_own_robot(file_keyring, quay):
    env, key = file_keyring, quay.host
    assert cli(env, "login", key, "-u", USER_ROBOT, "--password-stdin", stdin=USER_ROBOT_TOKEN).returncode == 0
    r = cli(env, "robot", "rotate", key, USER_ROBOT, "--api-token-stdin", stdin=API_TOKEN)
    assert r.returncode == 0, r.stderr
    # Quay answers a user's namespace on the organization route with 400; the user route is the one.
    assert quay.api.requests[:2] == [
        ("GET", "/api/v1/organization/alice/robots/bot", 400),
        ("GET", "/api/v1/user/robots/bot", 200),
    ]
    assert ("POST", "/api/v1/user/robots/bot/regenerate", 200) in quay.api.requests
    assert regenerations(quay) == [("regenerate_robot_token", "alice", {"robot": "bot"})]
    assert stored(env, key)[0] == quay.accounts[USER_ROBOT].password != USER_ROBOT_TOKEN
    assert keyring_entries(env, f"api:{key}")[f"api:{key}"] is None  # --api-token-stdin stored nothing


@pytest.mark.slow  # over half a second: the full suite
def test_a_users_own_robot_gets_the_user_routes_hint(file_keyring, quay):
    """A token with org:admin only: Quay says "Organization does not exist" on the organization route and
    insufficient_scope on the user's. The user route is the one that applies: user:admin, never org:admin."""
    env, key = file_keyring, quay.host
    assert cli(env, "login", key, "-u", USER_ROBOT, "--password-stdin", stdin=USER_ROBOT_TOKEN).returncode == 0
    for command in ("rotate", "show"):
        r = cli(env, "robot", command, key, USER_ROBOT, "--api-token-stdin", stdin=API_TOKEN_ORG)
        assert line(r) == (
            f"the API token may not administer {USER_ROBOT} at {key} (the robot lookup: insufficient_scope): "
            "the token needs the scope user:admin (Administer User)"
        )
    assert quay.api.requests[-2:] == [
        ("GET", "/api/v1/organization/alice/robots/bot", 400),
        ("GET", "/api/v1/user/robots/bot", 403),
    ]
    assert regenerations(quay) == [] and stored(env, key)[0] == USER_ROBOT_TOKEN


def node_env(home, quay, tmp_path, token_file, mode):
    """A node's environment: ROBOT's token in `token_file` (with `mode`), named by the config, no keyring at all."""
    token_file.write_text(ROBOT_TOKEN + "\n")
    token_file.chmod(mode)
    config = tmp_path / "provider.ini"
    config.write_text(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token_file}\n")
    return dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", QUAY_CRED_HELPER_CONFIG=str(config))


@pytest.mark.posix  # file modes
@pytest.mark.slow  # over half a second: the full suite
def test_rotate_refuses_a_token_file_the_provider_would_refuse(home, quay, tmp_path):
    """Read and rewritten only as the provider reads it (files.check_private): before Quay is asked."""
    token_file = tmp_path / "robot-token"
    env = node_env(home, quay, tmp_path, token_file, 0o620)
    r = cli(env, "robot", "rotate", quay.host, ROBOT, "--api-token-stdin", stdin=API_TOKEN)
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1
    assert r.stderr.decode() == (
        f"quay-cred-helper: refusing the robot token file {token_file}: other users can write it: "
        f"chmod go-w {token_file}\n"
    )
    assert regenerations(quay) == [] and quay.accounts[ROBOT].password == ROBOT_TOKEN
    assert token_file.read_text() == ROBOT_TOKEN + "\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("robot-token")) == ["robot-token"]


@pytest.mark.slow  # over half a second: the full suite
def test_rotate_a_robot_token_file_without_any_keyring(home, quay, tmp_path):
    """A node: the token in robot_token_file, no keyring at all, the API token on stdin."""
    token_file = tmp_path / "node" / "robot-token"
    token_file.parent.mkdir(mode=0o700)
    env = node_env(home, quay, tmp_path, token_file, 0o600)

    r = cli(env, "robot", "rotate", quay.host, ROBOT, "--api-token-stdin", stdin=API_TOKEN)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().startswith(f"Rotated {ROBOT} at {quay.host}: the new token is in {token_file} and works")
    new = quay.accounts[ROBOT].password
    assert token_file.read_text() == new + "\n"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in token_file.parent.iterdir()) == ["robot-token"]  # no staging, no temp file

    # The kubelet provider, with the same file: a JWT obtained with the new token.
    request = json.dumps(
        {
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": f"{quay.host}/org/app",
        }
    )
    p = subprocess.run(
        [os.path.join(os.path.dirname(CLI), "quay-credential-provider"), "--config", env["QUAY_CRED_HELPER_CONFIG"]],
        input=request.encode() + b"\n",
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["auth"][quay.host]["username"] == ROBOT
    assert quay.auth_log[-1]["status"] == 200 and quay.auth_log[-1]["credential"] == "password"


@pytest.mark.slow  # over half a second: the full suite
def test_refusals_are_one_line_and_change_nothing(robot_env, quay):
    key = quay.host
    cases = [
        (
            ["--api-token-stdin"],
            "X" * 40,  # not a token Quay knows: anonymous, so the GET is refused with invalid_token
            f"{key} refused the API token (Requires authentication): generate an OAuth token (Quay: Organization > "
            f"Applications > Generate Token) and store it with quay-cred-helper robot api-token {key}",
        ),
        (
            ["--api-token-stdin"],
            API_TOKEN_READ,
            f"the API token may not administer {ROBOT} at {key} (the robot lookup: insufficient_scope): the token "
            "needs the scope org:admin (Administer Organization), its user an administrator of org, for an "
            "organization's robot; or user:admin (Administer User) for one of its user's own robots",
        ),
        (
            ["--api-token-stdin"],
            JWT_LOOKING,
            f"{key} refused the API token (Token does not contain issuer): generate an OAuth token (Quay: "
            f"Organization > Applications > Generate Token) and store it with quay-cred-helper robot api-token {key}",
        ),
    ]
    for extra, stdin, expected in cases:
        assert line(cli(robot_env, "robot", "rotate", key, ROBOT, *extra, stdin=stdin)) == expected
    assert regenerations(quay) == [] and stored(robot_env, key) == (ROBOT_TOKEN, None)

    assert line(cli(robot_env, "robot", "rotate", key, "org+nope")) == (
        f"no token of org+nope is stored for {key}: log in as the robot first (quay-cred-helper login {key} -u "
        f"org+nope --password-stdin), or set robot = org+nope and robot_token_file = PATH under [{key}] in "
        f"{robot_env['XDG_CONFIG_HOME']}/quay-cred-helper/config.ini"
    )
    assert line(cli(robot_env, "robot", "show", key, "org+nope")) == (
        f"{key} refused the robot lookup for org+nope: Could not find robot with specified username: check the "
        "robot's name: NAMESPACE+NAME, as Quay's Robot Accounts page shows it"
    )
    assert (
        line(cli(robot_env, "robot", "show", key, "Org Bot"))
        == "not a robot name: 'Org Bot': name it NAMESPACE+NAME, e.g. org+ci"
    )
    assert line(cli(robot_env, "robot", "rotate", key)) == (
        f"robot rotate needs the robot: quay-cred-helper robot rotate {key} NAMESPACE+NAME"
    )
    assert line(cli(robot_env, "robot", "rotate", key, ROBOT, "--json")) == "--json goes with robot show"
    assert (
        line(cli(robot_env, "robot", "api-token", key, ROBOT))
        == "robot api-token takes no robot: the token is the registry's"
    )
    assert line(cli(robot_env, "robot", "api-token", key, stdin="two words\n")) == (
        "that is not an OAuth token (spaces, control characters or too long): paste only the token"
    )
    assert regenerations(quay) == [] and stored(robot_env, key) == (ROBOT_TOKEN, None)
    # Nothing stored: say so before asking Quay anything.
    assert cli(robot_env, "robot", "api-token", key, "--remove").returncode == 0
    before = len(quay.api.requests)
    assert line(cli(robot_env, "robot", "rotate", key, ROBOT)) == (
        f"no Quay API token stored for {key}: store an OAuth token with org:admin (an organization's robot) or "
        f"user:admin (one of your own): quay-cred-helper robot api-token {key} (see docs/robots.md)"
    )
    assert len(quay.api.requests) == before
    assert line(cli(robot_env, "robot", "api-token", key, "--remove")) == f"no Quay API token stored for {key}"


def test_keyless_robot_has_no_token_to_rotate(home, quay):
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", CI_TOKEN="x")
    assert cli(env, "login", quay.host, "-u", ROBOT, "--oidc", "env:CI_TOKEN", "--no-verify").returncode == 0
    assert line(cli(env, "robot", "rotate", quay.host, ROBOT, "--api-token-stdin", stdin=API_TOKEN)) == (
        f"{ROBOT} at {quay.host} is keyless: it has no token to rotate"
    )


@pytest.mark.slow  # over half a second: the full suite
def test_api_token_is_stored_apart_and_never_printed(robot_env, quay):
    key = quay.host
    found = keyring_entries(robot_env, key, f"api:{key}")
    assert found[f"api:{key}"]["token"] == API_TOKEN and time.time() - found[f"api:{key}"]["stored"] < 60
    assert found[key] == {"username": ROBOT, "secret": ROBOT_TOKEN}  # the registry credential is untouched
    assert json.loads(helper(robot_env, "list").stdout) == {key: ROBOT}  # not a registry credential to clients
    r = cli(robot_env, "robot", "api-token", key, "--remove")
    assert (r.returncode, r.stderr) == (0, f"Removed the Quay API token for {key}\n".encode())
    assert keyring_entries(robot_env, f"api:{key}") == {f"api:{key}": None}


# -- the exact answers of the test registry, and our line for each ---------------------------------------


def raw(quay, method, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        quay.url + path, method=method, headers=headers, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), json.loads(exc.read())


def test_the_registry_answers_as_quay_does(quay):
    org = "/api/v1/organization/org/robots/ci"
    status, _, body = raw(quay, "POST", org + "/regenerate", API_TOKEN)
    assert status == 200 and set(body) == {"name", "created", "last_accessed", "description", "token"}
    assert body["name"] == ROBOT and len(body["token"]) == 64 and body["created"].endswith(" -0000")
    assert raw(quay, "POST", org + "/regenerate") == (403, "text/html; charset=utf-8", {"error": CSRF})
    assert raw(quay, "POST", org + "/regenerate", "X" * 40)[2] == {"error": CSRF}
    status, _, body = raw(quay, "GET", org)
    assert (status, body["error_type"], body["detail"]) == (401, "invalid_token", "Requires authentication")
    status, _, body = raw(quay, "GET", org, API_TOKEN_READ)
    assert (status, body["error_type"], body["status"]) == (403, "insufficient_scope", 403)
    unknown = raw(quay, "GET", "/api/v1/organization/org/robots/nope", API_TOKEN)
    assert unknown[::2] == (400, {"message": "Could not find robot with specified username"})
    status, _, body = raw(quay, "GET", org, API_TOKEN)
    assert set(body) == {"name", "created", "last_accessed", "description", "token", "unstructured_metadata"}
    assert raw(quay, "GET", org + "/permissions", API_TOKEN_ORG)[2]["error_type"] == "insufficient_scope"
    quay.api.oauth["USERADMIN0" * 4] = ("alice", {"user:admin"})
    assert raw(quay, "GET", org + "/permissions", "USERADMIN0" * 4)[::2] == (403, {"message": FORBIDDEN})
    assert raw(quay, "GET", "/api/v1/organization/alice/robots/bot", API_TOKEN)[::2] == (
        400,
        {"message": "Organization does not exist: alice"},
    )


@pytest.mark.parametrize(
    "call, token, expected",
    [
        ("regenerate", "X" * 40, "{key} refused the API token (CSRF token was invalid or missing.): generate"),
        ("get", "X" * 40, "{key} refused the API token (Requires authentication): generate"),
        ("get", JWT_LOOKING, "{key} refused the API token (Token does not contain issuer): generate"),
        (
            "regenerate",
            API_TOKEN_READ,
            "the API token may not administer org+ci at {key} (the token regeneration: insufficient_scope): the "
            "token needs the scope org:admin (Administer Organization); its user must be an administrator of org",
        ),
        (
            "permissions",
            API_TOKEN_ORG,
            "the API token may not administer org+ci at {key} (the permissions lookup: insufficient_scope): the "
            "token needs the scope user:admin (Administer User) and org:admin (Administer Organization); its user",
        ),
        (
            "permissions",
            "USERADMIN0" * 4,
            "the API token may not administer org+ci at {key} (the permissions lookup: HTTP 403): the token needs "
            "the scope user:admin (Administer User) and org:admin (Administer Organization); its user",
        ),
        (
            "federation",
            API_TOKEN,
            "{key} refused the federation lookup for org+nope: Could not find robot with specified username: check",
        ),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_each_refusal_is_one_line(quay, tmp_path, call, token, expected):
    from quay_cred_helper.registry.api import RobotApi, RobotName

    quay.api.oauth["USERADMIN0" * 4] = ("alice", {"user:admin"})
    robot = RobotName.parse("org+nope" if call == "federation" else ROBOT)
    with tokens(tmp_path / "none.ini").opened(quay.host) as session:
        api = RobotApi(session, quay.url, token, robot)
        with pytest.raises(ApiRefused) as refused:
            getattr(api, call)()
    text = str(refused.value)
    assert text.startswith(expected.format(key=quay.host)) and "\n" not in text, text
    assert regenerations(quay) == []


# -- a rotation interrupted at each step: never a lost token ---------------------------------------------


class Killer:
    """Kills the client from inside the registry at one event (and optionally drops the request)."""

    def __init__(self, quay, event, then=None):
        self.quay, self.event, self.then = quay, event, then
        self.proc = None
        self.started = threading.Event()
        self.killed = False
        quay.hook = self

    def __call__(self, event):
        if event != self.event or self.killed:
            return None
        self.started.wait(30)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.killed = True
        FAULTS["kills sent"] += 1
        FAULTS["processes killed mid-run"] += 1
        return self.then

    def run(self, env, *args, stdin=b""):
        self.proc = subprocess.Popen(
            [CLI, *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.started.set()
        self.proc.stdin.write(stdin)
        self.proc.stdin.close()
        code = self.proc.wait(timeout=60)
        self.quay.hook = None
        return code


def finish(env, quay):
    """The next run: it finishes or recovers what the killed one left, and the token works."""
    r = cli(env, "robot", "rotate", quay.host, ROBOT)
    assert r.returncode == 0, r.stderr
    token, staged = stored(env, quay.host)
    assert staged is None and token == quay.accounts[ROBOT].password and accepted(quay, ROBOT, token)
    return r.stderr.decode()


@pytest.mark.slow  # over half a second: the full suite
def test_killed_before_quay_regenerated_keeps_the_old_token(robot_env, quay):
    killer = Killer(quay, "regenerate received", then="abort")  # Quay never got to regenerate it
    assert killer.run(robot_env, "robot", "rotate", quay.host, ROBOT) == -signal.SIGKILL
    token, staged = stored(robot_env, quay.host)
    assert token == ROBOT_TOKEN == quay.accounts[ROBOT].password and accepted(quay, ROBOT, token)
    assert staged["robot"] == ROBOT and staged["token"] == ""  # the intent, no token
    assert finish(robot_env, quay).startswith(f"Rotated {ROBOT}")  # found nothing to finish: a rotation of its own
    assert len(regenerations(quay)) == 1


@pytest.mark.slow  # over half a second: the full suite
def test_killed_while_quay_regenerated_recovers_the_new_token_from_quay(robot_env, quay):
    killer = Killer(quay, "regenerate received")  # the client dies; Quay regenerates, its answer is lost
    assert killer.run(robot_env, "robot", "rotate", quay.host, ROBOT) == -signal.SIGKILL
    token, staged = stored(robot_env, quay.host)
    new = quay.accounts[ROBOT].password
    assert token == ROBOT_TOKEN != new and staged["token"] == ""  # only Quay knows the new token now
    assert (
        finish(robot_env, quay)
        == f"Finished the interrupted rotation of {ROBOT} at {quay.host}: its new token is in the keyring\n"
    )
    assert quay.accounts[ROBOT].password == new and len(regenerations(quay)) == 1  # recovered, not regenerated


@pytest.mark.slow  # over half a second: the full suite
def test_killed_while_proving_the_new_token(robot_env, quay):
    killer = Killer(quay, "token request")  # after storing: the proof's exchange
    assert killer.run(robot_env, "robot", "rotate", quay.host, ROBOT) == -signal.SIGKILL
    new = quay.accounts[ROBOT].password
    assert stored(robot_env, quay.host) == (new, None)
    assert accepted(quay, ROBOT, new)


@pytest.mark.slow  # over half a second: the full suite
def test_a_token_files_rotation_is_staged_beside_it_and_recovered(home, quay, tmp_path):
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")  # no keyring: staged beside the file
    token_file = tmp_path / "robot-token"
    token_file.write_text(ROBOT_TOKEN)
    token_file.chmod(0o600)
    config = tmp_path / "provider.ini"
    config.write_text(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token_file}\n")
    env["QUAY_CRED_HELPER_CONFIG"] = str(config)
    args = ("robot", "rotate", quay.host, ROBOT, "--api-token-stdin")
    assert Killer(quay, "regenerate done").run(env, *args, stdin=API_TOKEN.encode()) == -signal.SIGKILL
    staging = tmp_path / "robot-token.rotating"
    assert token_file.read_text() == ROBOT_TOKEN and staging.stat().st_mode & 0o777 == 0o600
    intent = json.loads(staging.read_text())
    assert intent["robot"] == ROBOT and intent["token"] == "" and ROBOT_TOKEN not in staging.read_text()
    r = cli(env, *args, stdin=API_TOKEN)
    assert r.returncode == 0 and r.stderr.startswith(b"Finished the interrupted rotation"), r.stderr
    assert token_file.read_text() == quay.accounts[ROBOT].password + "\n" and not staging.exists()
    assert len(regenerations(quay)) == 1


@pytest.mark.slow
def test_sigkill_at_every_step_of_rotate(secret_keyring, quay):
    """Kills at each exact point (from the registry: request arrived, regenerated, answered, the proof;
    from the client's own debug log: intent staged, token staged, stored, unstaged) and at random times.
    After each: some stored or staged token is Quay's current one, or Quay's API still has it (the answer was
    lost before it could be staged); then the next run leaves exactly Quay's token stored and nothing staged."""
    env, key = secret_keyring, quay.host
    assert cli(env, "login", key, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN).returncode == 0
    assert cli(env, "robot", "api-token", key, stdin=API_TOKEN).returncode == 0
    rng = random.Random(24)
    server_points = [("regenerate received", "abort"), ("regenerate received", None), ("regenerate done", None)]
    server_points += [("regenerate answered", None), ("token request", None)]
    log_points = [
        "rotate: intent staged",
        "rotate: the new token is staged",
        "rotate: the new token is stored",
        "rotate: staging cleared",
    ]
    plan = [("server", p) for p in server_points] + [("log", p) for p in log_points] * 2
    plan += [("timer", None)] * int(os.environ.get("QUAY_CRED_HELPER_ROTATE_KILLS", "8"))
    lost_answers = 0
    for kind, point in plan:
        before = quay.accounts[ROBOT].password
        if kind == "server":
            killer = Killer(quay, *point)
            assert killer.run(env, "robot", "rotate", key, ROBOT) == -signal.SIGKILL
        else:
            proc = subprocess.Popen(
                [CLI, "--debug", "robot", "rotate", key, ROBOT],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if kind == "log":
                for text in proc.stderr:  # the kill lands just after the step that logged this line
                    if point in text:
                        break
            else:
                time.sleep(rng.uniform(0.2, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            proc.stderr.close()
            FAULTS["kills sent"] += 1
            FAULTS["processes killed mid-run"] += proc.returncode == -signal.SIGKILL
        current = quay.accounts[ROBOT].password
        token, staged = stored(env, key)
        if current not in (token, (staged or {}).get("token")):
            # Quay made a new token whose answer never reached us: the intent is staged, and the API has it.
            assert current != before and staged is not None and staged["token"] == "", (kind, point)
            lost_answers += 1
        finish(env, quay)
    assert lost_answers >= 2  # the deterministic points where Quay regenerated under a dead client


# -- a real client after the rotation ---------------------------------------------------------------------


@pytest.mark.slow
@needs("skopeo")
def test_skopeo_pulls_with_the_new_token_and_the_old_one_is_refused(robot_env, quay, tmp_path):
    from tests.fakes.artifacts import push_demo

    push_demo(quay.url, "org/app", "alice", "alice-password", tag="1")
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"credHelpers": {quay.host: "quay"}}))
    robot_env = dict(robot_env, REGISTRY_AUTH_FILE=str(auth))
    image = f"docker://{quay.host}/org/app:1"

    def skopeo(*args):
        return subprocess.run(["skopeo", *args], env=robot_env, capture_output=True, text=True, timeout=120)

    assert cli(robot_env, "robot", "rotate", quay.host, ROBOT).returncode == 0
    seen = len(quay.auth_log)
    r = skopeo("copy", "--src-tls-verify=false", image, f"oci:{tmp_path / 'pulled'}:1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pulled" / "index.json").exists()
    by_skopeo = [e for e in quay.auth_log[seen:] if e["scopes"]]
    assert by_skopeo and all(e["user"] == ROBOT and e["status"] == 200 for e in by_skopeo)
    assert {e["credential"] for e in by_skopeo} == {"jwt"}  # a JWT from the new token, never the token

    # The old token, as a client still holding it would present it: refused.
    old = tmp_path / "old-auth.json"
    basic = base64.b64encode(f"{ROBOT}:{ROBOT_TOKEN}".encode()).decode()
    old.write_text(json.dumps({"auths": {quay.host: {"auth": basic}}}))
    r = skopeo("inspect", "--tls-verify=false", "--authfile", str(old), image)
    assert r.returncode != 0 and "Could not find robot" in r.stderr, r.stderr


@pytest.mark.slow
def test_a_registry_without_quays_api_is_one_line(file_keyring, docker_registry):
    env, key = file_keyring, docker_registry.host
    assert cli(env, "login", key, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN).returncode == 0
    assert line(cli(env, "robot", "show", key, ROBOT, "--api-token-stdin", stdin=API_TOKEN)).startswith(
        f"{key} has no Quay API for the robot lookup (HTTP 404): robot commands need Red Hat Quay's API"
    )


# -- show ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_show_a_robot_its_federation_and_permissions(robot_env, quay):
    quay.federation[ROBOT] = [
        {"issuer": "https://token.actions.githubusercontent.com", "subject": "repo:org/app:ref:refs/heads/main"}
    ]
    quay.api.permissions[ROBOT] = [
        {"repository": {"name": "app", "is_public": False}, "role": "write"},
        {"repository": {"name": "site", "is_public": True}, "role": "read"},
    ]
    quay.api.descriptions[ROBOT] = "CI pushes"
    r = cli(robot_env, "robot", "show", quay.host, ROBOT)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert text.splitlines()[0] == f"robot        {ROBOT} (organization robot at {quay.host})"
    assert "description  CI pushes\n" in text and "last used    never (or not recorded)\n" in text
    assert (
        "federation   https://token.actions.githubusercontent.com  subject repo:org/app:ref:refs/heads/main\n" in text
    )
    assert "permission   org/app  write\n" in text and "permission   org/site  read  (public)\n" in text
    shown = json.loads(cli(robot_env, "robot", "show", quay.host, ROBOT, "--json").stdout)
    assert shown["federation"] == quay.federation[ROBOT] and shown["kind"] == "organization"
    assert shown["permissions"][1] == {"repository": "site", "role": "read", "public": True}
    for output in (r.stdout, r.stderr, json.dumps(shown).encode()):
        assert ROBOT_TOKEN.encode() not in output and API_TOKEN.encode() not in output  # never a token

    # A token without user:admin reads the robot, not its permissions: say so, show the rest.
    r = cli(robot_env, "robot", "show", quay.host, ROBOT, "--api-token-stdin", stdin=API_TOKEN_ORG)
    assert r.returncode == 0 and b"federation   https://" in r.stdout and b"permission" not in r.stdout
    assert r.stderr.decode().startswith("quay-cred-helper: the API token may not administer org+ci")


# -- ages -------------------------------------------------------------------------------------------------


def index_path(env):
    return Path(env["XDG_CONFIG_HOME"], "quay-cred-helper", "index.json")


def age_by(env, key, days):
    """Make the registry's stored secret `days` old (as if stored then)."""
    path = index_path(env)
    data = json.loads(path.read_text())
    data["registries"][key]["stored"] = int(time.time() - days * 86400)
    path.write_text(json.dumps(data))


@pytest.mark.slow  # over half a second: the full suite
def test_list_shows_ages_and_reads_an_index_from_before_them(file_keyring, quay):
    env = file_keyring
    payload = json.dumps({"ServerURL": quay.host, "Username": "alice", "Secret": "alice-password"})
    assert helper(env, "store", payload).returncode == 0
    age_by(env, quay.host, 100)
    r = cli(env, "list", "--long")
    header, row = r.stdout.decode().splitlines()
    assert header.split() == ["REGISTRY", "USERNAME", "STORED", "AGE"] and row.split()[-1] == "100d"
    listed = json.loads(cli(env, "list", "--json").stdout)
    assert listed[0]["stored"].endswith("Z") and abs(listed[0]["age_seconds"] - 100 * 86400) < 60

    # The same secret stored again keeps its age; a new one starts again.
    assert helper(env, "store", payload).returncode == 0
    assert json.loads(cli(env, "list", "--json").stdout)[0]["age_seconds"] > 99 * 86400
    new = json.dumps({"ServerURL": quay.host, "Username": "alice", "Secret": "s3cret"})
    assert helper(env, "store", new).returncode == 0
    assert json.loads(cli(env, "list", "--json").stdout)[0]["age_seconds"] < 60

    # An index as written before ages were kept (no "stored"): read as it is, the age unknown.
    data = json.loads(index_path(env).read_text())
    del data["registries"][quay.host]["stored"]
    index_path(env).write_text(json.dumps(data))
    assert json.loads(helper(env, "list").stdout) == {quay.host: "alice"}
    assert json.loads(helper(env, "get", quay.host).stdout)["Secret"] == "s3cret"
    assert cli(env, "list", "--long").stdout.decode().splitlines()[1].split()[-2:] == ["unknown", "-"]
    assert json.loads(cli(env, "list", "--json").stdout)[0]["age_seconds"] is None


def test_max_secret_age_grammar():
    from quay_cred_helper.config import duration, format_duration

    assert [duration(t) for t in ("90d", "2w", "12h", "30m", " 7D ", "", "0")] == [
        90 * 86400,
        14 * 86400,
        12 * 3600,
        1800,
        7 * 86400,
        0,
        0,
    ]
    for bad in ("90", "1.5d", "-1d", "d", "90x", "1d12h", "0d", "１d"):
        with pytest.raises(ValueError, match="not a duration"):
            duration(bad)
    assert [format_duration(s) for s in (90 * 86400, 5 * 3600 + 7, 12 * 60, 40, -3)] == [
        "90d",
        "5h",
        "12m",
        "40s",
        "0s",
    ]


def test_a_bad_max_secret_age_is_one_line(file_keyring, quay, tmp_path):
    config = tmp_path / "config.ini"
    config.write_text(f"[{quay.host}]\nmax_secret_age = 90\n")
    env = dict(file_keyring, QUAY_CRED_HELPER_CONFIG=str(config))
    assert line(cli(env, "doctor", quay.host)) == (
        f"cannot use config file {config}: max_secret_age = 90: not a duration (a whole number and a unit: "
        "90d, 2w, 12h or 30m)"
    )


@pytest.mark.slow  # over half a second: the full suite
def test_get_warns_past_max_secret_age_once_a_day_on_stderr(file_keyring, quay, tmp_path):
    config = tmp_path / "config.ini"
    config.write_text("[DEFAULT]\nmax_secret_age = 30d\n")
    env = dict(file_keyring, QUAY_CRED_HELPER_CONFIG=str(config))
    payload = json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN})
    assert helper(env, "store", payload).returncode == 0
    stamps = Path(env["XDG_CACHE_HOME"], "quay-cred-helper", "age-warnings.json")
    first = helper(env, "get", quay.host)
    assert first.returncode == 0 and first.stderr == b"" and not stamps.exists()  # young: no warning, no file

    age_by(env, quay.host, 40)
    first = helper(env, "get", quay.host)
    assert first.returncode == 0 and json.loads(first.stdout)["Username"] == ROBOT  # stdout: only the answer
    assert (
        first.stderr
        == (
            f"docker-credential-quay: the secret of {ROBOT} for {quay.host} was stored 40d ago, past max_secret_age "
            f"(30d): rotate it: quay-cred-helper robot rotate {quay.host} {ROBOT}\n"
        ).encode()
    )
    assert stamps.stat().st_mode & 0o777 == 0o600
    second = helper(env, "get", quay.host)
    assert second.returncode == 0 and second.stderr == b""  # at most once a day
    stamps.write_text(json.dumps({quay.host: str(int(time.time() - 25 * 3600))}))
    assert helper(env, "get", quay.host).stderr.startswith(b"docker-credential-quay: the secret of")  # a day later


@pytest.mark.slow  # over half a second: the full suite
def test_doctor_warns_past_max_secret_age_and_fails_an_interrupted_rotation(robot_env, quay, tmp_path):
    config = tmp_path / "config.ini"
    config.write_text(f"[{quay.host}]\nmax_secret_age = 90d\n")
    robot_env = dict(robot_env, QUAY_CRED_HELPER_CONFIG=str(config))
    age_by(robot_env, quay.host, 120)
    r = cli(robot_env, "doctor", "--json", quay.host, timeout=60)
    checks = [c for c in json.loads(r.stdout)["checks"] if c["check"] == f"{quay.host} secret age"]
    assert [(c["status"], c["detail"], c["fix"]) for c in checks[:1]] == [
        (
            "WARN",
            f"{ROBOT}'s secret was stored 120d ago, past max_secret_age (90d)",
            f"quay-cred-helper robot rotate {quay.host} {ROBOT}",
        ),
    ]
    assert checks[1]["status"] == "OK" and checks[1]["detail"].startswith("the Quay API token: stored ")
    killer = Killer(quay, "regenerate received", then="abort")
    assert killer.run(robot_env, "robot", "rotate", quay.host, ROBOT) == -signal.SIGKILL
    checks = {
        c["check"]: c for c in json.loads(cli(robot_env, "doctor", "--json", quay.host, timeout=60).stdout)["checks"]
    }
    assert checks[f"{quay.host} rotation"]["status"] == "FAIL"
    assert (
        checks[f"{quay.host} rotation"]["fix"]
        == f"quay-cred-helper robot rotate {quay.host} {ROBOT} (it finishes the rotation)"
    )

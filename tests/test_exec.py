"""`exec` (a throwaway docker config for clients that never call a helper) and `credential` (get's answer as data).

The installed executables run as subprocesses against the Quay-compatible registry; the command exec
runs is a small Python program that reports what it was given (CHILD), so each test reads the real
file, modes and environment a client would see."""

import base64
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from quay_cred_helper.commands.exec import build_config
from tests.conftest import needs
from tests.fakes.quay_registry import TOKEN_LIFETIME, QuayRegistry
from tests.fakes.real_registry import oci_layout
from tests.support import CI_ROBOT, CI_ROBOT_TOKEN, CLI, ROBOT, ROBOT_TOKEN, USERS, cli, helper
from tests.support import missing as missing_programs

pytestmark = pytest.mark.posix  # file modes and signals

# Reports what a client run by exec gets, then exits with its second argument, sleeps, or SIGKILLs itself.
CHILD = """
import json, os, signal, stat, sys, time
path = os.environ["REGISTRY_AUTH_FILE"]
directory = os.path.dirname(os.path.dirname(os.environ["DOCKER_CONFIG"]))
names = ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "HELM_REGISTRY_CONFIG", "HOME")
info = {
    "pid": os.getpid(),
    "env": {name: os.environ.get(name) for name in names},
    "environ": dict(os.environ),
    "config": json.load(open(path)),
    "file_mode": stat.S_IMODE(os.stat(path).st_mode),
    "dir": directory,
    "dir_mode": stat.S_IMODE(os.stat(directory).st_mode),
    "sigint": signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
}
with open(sys.argv[1] + ".part", "w") as out:
    json.dump(info, out)
os.replace(sys.argv[1] + ".part", sys.argv[1])
if sys.argv[2] == "sleep":
    time.sleep(60)
elif sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(sys.argv[2]))
"""


def child(report, then="0"):
    return [sys.executable, "-c", CHILD, str(report), then]


def decoded(auth):
    user, _, secret = base64.b64decode(auth["auth"]).decode().partition(":")
    return user, secret


def wait_for(path, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command exec runs never reported"
        time.sleep(0.02)
    return json.loads(Path(path).read_text())


@pytest.fixture
def robot(file_keyring, quay):
    payload = json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN})
    assert helper(file_keyring, "store", payload).returncode == 0
    return file_keyring


def test_exec_hands_a_robot_jwt_in_a_private_file_and_removes_it(robot, quay, tmp_path):
    report = tmp_path / "report.json"
    r = cli(robot, "exec", "--", *child(report, "0"))
    assert r.returncode == 0, r.stderr
    info = json.loads(report.read_text())
    user, secret = decoded(info["config"]["auths"][quay.host])
    assert user == ROBOT and secret != ROBOT_TOKEN
    claims = json.loads(base64.urlsafe_b64decode(secret.split(".")[1] + "=="))
    assert claims["sub"] == ROBOT and claims["exp"] - claims["iat"] == TOKEN_LIFETIME  # a one-hour JWT
    assert (info["file_mode"], info["dir_mode"]) == (0o600, 0o700)
    assert info["dir"].startswith(os.path.join(robot["XDG_RUNTIME_DIR"], "quay-cred-helper-exec") + os.sep)
    assert info["env"]["REGISTRY_AUTH_FILE"] == info["env"]["HELM_REGISTRY_CONFIG"]
    assert info["env"]["REGISTRY_AUTH_FILE"] == os.path.join(info["env"]["DOCKER_CONFIG"], "config.json")
    assert info["env"]["HOME"] == robot["HOME"]  # only with --home
    # Paths only: neither the JWT nor the robot token is in the command's environment.
    assert not [v for v in info["environ"].values() if secret in v or ROBOT_TOKEN in v]
    assert not os.path.exists(info["dir"])


def test_exec_keeps_other_settings_and_drops_helpers(robot, quay, tmp_path):
    user_config = {
        "credsStore": "desktop",
        "credHelpers": {quay.host: "quay", "other.example": "quay", "gcr.io": "gcloud"},
        "auths": {"registry.example": {"auth": base64.b64encode(b"bob:hunter2").decode()}},
        "proxies": {"default": {"httpProxy": "http://127.0.0.1:3128"}},
    }
    Path(robot["DOCKER_CONFIG"]).mkdir(parents=True)
    Path(robot["DOCKER_CONFIG"], "config.json").write_text(json.dumps(user_config))
    report = tmp_path / "report.json"
    assert cli(robot, "exec", "--registry", quay.host, "--", *child(report)).returncode == 0
    config = json.loads(report.read_text())["config"]
    assert "credsStore" not in config
    assert config["credHelpers"] == {"gcr.io": "gcloud"}
    assert config["proxies"] == user_config["proxies"]
    assert set(config["auths"]) == {"registry.example", quay.host}
    assert json.loads(Path(robot["DOCKER_CONFIG"], "config.json").read_text()) == user_config  # untouched


def test_build_config_names_docker_hub_for_docker_and_podman():
    from quay_cred_helper.commands.credential import Credential

    hub = Credential("docker.io", "alice", "s3cret", "password", None)
    config = build_config({"auths": {"docker.io": {"auth": "old"}}, "credHelpers": "junk"}, [hub])
    assert set(config["auths"]) == {"https://index.docker.io/v1/", "docker.io"}
    assert decoded(config["auths"]["docker.io"]) == ("alice", "s3cret")
    token = Credential("quay.example", "<token>", "refresh", "identity-token", None)
    assert build_config({}, [token])["auths"] == {"quay.example": {"identitytoken": "refresh"}}
    # Every other form of a registry we write goes (podman would prefer `host/ns`), the rest stays.
    user = {
        "auths": {"https://Quay.example/": {}, "quay.example/org": {}, "other.example": {}, "not a name": {}},
        "credHelpers": {"quay.example:443": "gcloud", "quay.example/org": "x", "gcr.io": "gcloud"},
    }
    config = build_config(user, [token])
    assert set(config["auths"]) == {"quay.example", "other.example", "not a name"}
    assert config["credHelpers"] == {"quay.example:443": "gcloud", "gcr.io": "gcloud"}


@pytest.mark.slow  # several runs of exec, each with its command
def test_exec_home_and_exit_statuses(robot, quay, tmp_path):
    report = tmp_path / "report.json"
    r = cli(robot, "exec", "--home", "--", *child(report, "7"))
    assert r.returncode == 7
    info = json.loads(report.read_text())
    assert info["env"]["HOME"] != robot["HOME"]
    assert info["env"]["DOCKER_CONFIG"] == os.path.join(info["env"]["HOME"], ".docker")
    assert quay.host in info["config"]["auths"]
    assert not os.path.exists(info["dir"])

    report.unlink()
    r = cli(robot, "exec", "--", *child(report, "kill"))  # CMD SIGKILLed: 128+9, and the dir is gone
    assert r.returncode == 128 + signal.SIGKILL
    assert not os.path.exists(json.loads(report.read_text())["dir"])

    r = cli(robot, "exec", "--", str(tmp_path / "no-such-program"))
    assert r.returncode == 127 and r.stderr.decode().count("\n") == 1
    script = tmp_path / "no-interpreter"  # no #! line: execve says ENOEXEC
    script.write_text("echo hello\n")
    script.chmod(0o755)
    r = cli(robot, "exec", "--", str(script))
    assert (r.returncode, r.stderr.decode()) == (126, f"quay-cred-helper: {script}: Exec format error\n")
    assert cli(robot, "exec").returncode == 1  # no command
    assert os.listdir(os.path.join(robot["XDG_RUNTIME_DIR"], "quay-cred-helper-exec")) == []


def test_exec_with_an_unknown_registry_runs_nothing(robot, tmp_path):
    r = cli(robot, "exec", "--registry", "nowhere.example", "--", *child(tmp_path / "r.json"))
    assert r.returncode == 1
    assert r.stderr.decode() == (
        "quay-cred-helper: no credentials for nowhere.example: store some: quay-cred-helper login nowhere.example\n"
    )
    assert not (tmp_path / "r.json").exists()


# Counts the SIGINTs it gets: after the first, waits a second for a second one, then writes the count.
# A real-time priority (where allowed: root) takes the terminal's SIGINT at once: else, on a busy machine,
# a second one sent while the first is still pending merges with it and the count hides the bug.
COUNT_SIGINTS = """
import os, signal, sys, time
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
except OSError:
    pass
got = []
signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
open(sys.argv[1] + ".ready", "w").close()
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(1)
with open(sys.argv[1], "w") as out:
    out.write(str(len(got)))
"""


def controlling_terminal():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # stdin, the pty, becomes this new session's terminal


@pytest.mark.slow  # waits a second for a second SIGINT
def test_one_ctrl_c_at_a_terminal_reaches_cmd_once(file_keyring, tmp_path):
    """The terminal sends Ctrl+C to its whole foreground process group, exec and CMD: exec must not
    send CMD a second one (terraform and Go CLIs take a second SIGINT as 'quit now, skip cleanup')."""
    count = tmp_path / "count"
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [CLI, "exec", "--", sys.executable, "-c", COUNT_SIGINTS, str(count)],
            env=file_keyring,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        try:
            deadline = time.monotonic() + 20
            while not Path(f"{count}.ready").exists():
                assert proc.poll() is None and time.monotonic() < deadline, "CMD never started"
                time.sleep(0.02)
            os.write(master, b"\x03")  # Ctrl+C, typed
            assert proc.wait(timeout=20) == 0
        finally:
            proc.kill()
            proc.wait()
    finally:
        os.close(slave)
        os.close(master)
    assert count.read_text() == "1"


def ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


@pytest.mark.slow  # a run per signal
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_forwarded_and_the_dir_removed(robot, tmp_path, signum):
    report = tmp_path / "report.json"
    proc = subprocess.Popen(
        [CLI, "exec", "--", *child(report, "sleep")], env=robot, preexec_fn=ignore_sigint, start_new_session=True
    )  # a session of its own: no terminal, whatever runs the tests
    try:
        info = wait_for(report, proc)
        assert not info["sigint"]  # our handler, not the inherited SIG_IGN: CMD can be interrupted
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == 128 + signum
    finally:
        proc.kill()
        proc.wait()
    assert not os.path.exists(info["dir"])


@pytest.mark.slow  # several runs of exec, each with its command
def test_a_killed_execs_dir_is_removed_by_the_next_exec_and_only_it(robot, tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.Popen([CLI, "exec", "--", *child(report, "sleep")], env=robot)
    info = wait_for(report, proc)
    proc.kill()  # exec itself, with no chance to clean up
    proc.wait()
    os.kill(info["pid"], signal.SIGKILL)  # its orphaned CMD
    assert os.path.exists(info["dir"])
    base = os.path.dirname(info["dir"])
    # Liveness is the lock in the directory, never the pid in its name.
    alive = os.path.join(base, "99999999-live")  # its lock held (here), its pid long gone: another PID namespace
    reused = os.path.join(base, f"{os.getpid()}-reused")  # its lock free, its pid alive (reused)
    starting = os.path.join(base, "99999999-starting")  # no lock file yet: an exec starting
    expired = os.path.join(base, f"env-{int(time.time()) - 5}-old")  # a --print-env past its time
    current = os.path.join(base, f"env-{int(time.time()) + 3600}-new")
    odd = os.path.join(base, "env")  # not a name exec makes: left alone
    for path in (alive, reused, starting, expired, current, odd):
        os.mkdir(path, 0o700)
    Path(reused, "lock").touch()
    with open(os.path.join(alive, "lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cli(robot, "exec", "--", "true").returncode == 0
    assert sorted(os.listdir(base)) == sorted(os.path.basename(p) for p in (alive, starting, current, odd))


@pytest.mark.slow  # several runs of exec, each with its command
def test_print_env_is_eval_able_and_states_its_lifetime(robot, quay, tmp_path):
    r = cli(robot, "exec", "--print-env", "--registry", quay.host)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "valid until 20" in text.splitlines()[0]
    script = f'eval "$({CLI} exec --print-env)" && cat "$REGISTRY_AUTH_FILE" && echo "$HELM_REGISTRY_CONFIG"'
    shown = subprocess.run(["sh", "-c", script], env=robot, capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout[: shown.stdout.rindex("}") + 1])
    assert decoded(config["auths"][quay.host])[0] == ROBOT
    directory = Path(shown.stdout.split()[-1]).parents[2]  # DIR/home/.docker/config.json
    until = int(directory.name.split("-")[1])
    assert 0 < until - time.time() <= TOKEN_LIFETIME  # no longer than its JWT
    assert cli(robot, "exec", "--print-env", "--", "true").returncode == 1


# -- credential --------------------------------------------------------------------------------


def credential(env, *args):
    r = cli(env, "credential", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if "--json" in args else r.stdout.decode()


def test_credential_json_of_a_robot_and_a_user(robot, quay):
    found = credential(robot, quay.host, "--json")
    assert set(found) == {"version", "registry", "username", "secret", "expires_at", "kind"}
    assert (found["version"], found["registry"], found["username"], found["kind"]) == (1, quay.host, ROBOT, "robot-jwt")
    expires = time.mktime(time.strptime(found["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 0 < expires - time.time() <= TOKEN_LIFETIME
    assert credential(robot, quay.host) == found["secret"] + "\n"  # the same cached JWT `get` gives
    assert json.loads(helper(robot, "get", quay.host).stdout)["Secret"] == found["secret"]

    r = cli(robot, "credential", quay.host, "--api")  # a robot JWT is not a REST API token
    assert r.returncode == 1 and b"REST API does not take it" in r.stderr and r.stdout == b""

    r = cli(robot, "login", "127.0.0.1:1", "-u", "alice", "--no-verify", "--password-stdin", stdin="s3cret")
    assert r.returncode == 0, r.stderr
    user = credential(robot, "127.0.0.1:1", "--json")
    assert (user["username"], user["secret"], user["kind"], user["expires_at"]) == ("alice", "s3cret", "password", None)


def test_credential_api_with_an_oauth_token(file_keyring):
    payload = json.dumps({"ServerURL": "quay.example.com", "Username": "$oauthtoken", "Secret": "s3cret"})
    assert helper(file_keyring, "store", payload).returncode == 0
    found = credential(file_keyring, "quay.example.com", "--api", "--json")
    assert (found["kind"], found["secret"], found["expires_at"]) == ("oauth-token", "s3cret", None)
    r = cli(file_keyring, "credential", "nowhere.example", "--json")
    assert r.returncode == 1 and r.stdout == b""


# -- real clients that never call a helper (slow: docker-registry, skopeo, podman, Node) --------------

SIGSTORE_OCI = ("@sigstore/oci@0.6.0", "promise-retry")  # 0.6.0 requires promise-retry without declaring it
# Attaches an artifact to IMAGE@DIGEST as sigstore-js does: credentials from $HOME/.docker/config.json only.
ATTACH = """
const oci = require("@sigstore/oci");
const [imageName, imageDigest] = process.argv.slice(2);
(async () => {
  const credentials = oci.getRegistryCredentials(imageName);
  const artifact = Buffer.from(JSON.stringify({ mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json" }));
  const descriptor = await oci.attachArtifactToImage({
    imageName, imageDigest, credentials, artifact, mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
  });
  console.log(JSON.stringify(descriptor));
})().catch((err) => { console.error(String(err), String(err.cause || "")); process.exit(1); });
"""


@pytest.fixture(scope="session")
def sigstore_oci():
    """@sigstore/oci installed with npm once per machine (beside the venv), and the script that uses it."""
    root = Path(sys.prefix, "node", "sigstore-oci-0.6.0")
    done = root / "installed"
    if not done.exists():
        if missing_programs("node", "npm") and not os.environ.get("CI"):
            pytest.skip("node and npm are not installed")
        root.mkdir(parents=True, exist_ok=True)
        npm = ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(root), *SIGSTORE_OCI]
        r = subprocess.run(npm, capture_output=True, text=True, timeout=600)
        if r.returncode != 0 and not os.environ.get("CI"):
            pytest.skip(f"npm install failed (offline?): {r.stderr[-300:]}")
        assert r.returncode == 0, r.stderr
        done.write_text("")
    script = root / "attach.js"
    script.write_text(ATTACH)
    return script


def robot_on(env, registry):
    r = cli(env, "login", registry.host, "-u", ROBOT, "--password-stdin", stdin=ROBOT_TOKEN)
    assert r.returncode == 0, r.stderr
    # The user's own config sends the registry to the helper: clients that read it get nothing from it.
    assert cli(env, "configure", "--docker", registry.host).returncode == 0


def push_image(env, registry, tmp_path, name):
    layout = tmp_path / "image"
    oci_layout(str(layout))
    ref = f"docker://{registry.host}/{name}"
    script = (
        f'skopeo copy --authfile "$REGISTRY_AUTH_FILE" --dest-tls-verify=false oci:{layout}:latest {ref} >&2 && '
        f'skopeo inspect --authfile "$REGISTRY_AUTH_FILE" --tls-verify=false --format "{{{{.Digest}}}}" {ref}'
    )
    r = sh([CLI, "exec", "--registry", registry.host, "--", "sh", "-c", script], env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def sh(argv, env, timeout=180):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def only_jwts(quay):
    by_clients = [e for e in quay.auth_log if e["scopes"] and e["user"] == ROBOT]
    return by_clients and {e["credential"] for e in by_clients} == {"jwt"}


@needs("node", "npm", "skopeo")
def test_sigstore_oci_attaches_through_exec_home(file_keyring, docker_registry, tmp_path, sigstore_oci):
    env = file_keyring
    robot_on(env, docker_registry)
    image = f"{docker_registry.host}/org/signed"
    digest = push_image(env, docker_registry, tmp_path, "org/signed:1")

    # Its usual setup: a helper in the user's config, which @sigstore/oci never calls.
    r = sh(["node", str(sigstore_oci), image, digest], env)
    assert r.returncode == 1 and f"No credentials found for registry {docker_registry.host}" in r.stderr

    attach = ["node", str(sigstore_oci), image, digest]
    r = sh([CLI, "exec", "--home", "--registry", docker_registry.host, "--", *attach], env)
    assert r.returncode == 0, r.stderr
    attached = json.loads(r.stdout)
    assert only_jwts(docker_registry.quay)

    listed = cli(env, "referrers", f"{image}@{digest}", "--format", "digest")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.decode().split() == [attached["digest"]]
    assert os.listdir(os.path.join(env["XDG_RUNTIME_DIR"], "quay-cred-helper-exec")) == []


@needs("skopeo", "podman")
def test_skopeo_podman_and_docker_py_through_exec_with_no_helper(file_keyring, docker_registry, tmp_path):
    env = file_keyring
    robot_on(env, docker_registry)
    os.remove(os.path.join(env["DOCKER_CONFIG"], "config.json"))  # no helper configured anywhere
    push_image(env, docker_registry, tmp_path, "org/plain:1")  # skopeo, --authfile the exec file alone
    ref = f"docker://{docker_registry.host}/org/plain:1"
    r = sh(["skopeo", "inspect", "--tls-verify=false", ref], env)
    assert r.returncode != 0  # and without exec, nothing

    # podman checks the credentials it finds in the auth file against the registry.
    login = f'podman login --authfile "$REGISTRY_AUTH_FILE" --tls-verify=false {docker_registry.host}'
    r = sh([CLI, "exec", "--", "sh", "-c", login], env)
    assert r.returncode == 0, r.stderr
    assert "Existing credentials are valid" in r.stdout + r.stderr

    # docker-py reads `auths` from $DOCKER_CONFIG; what it finds opens the registry's token endpoint.
    program = (
        "import base64, json, sys, urllib.request\n"
        "from docker import auth\n"
        "found = auth.resolve_authconfig(auth.load_config(), sys.argv[1])\n"
        "basic = base64.b64encode(f\"{found['username']}:{found['password']}\".encode()).decode()\n"
        "request = urllib.request.Request(sys.argv[2], headers={'Authorization': 'Basic ' + basic})\n"
        "print(json.load(urllib.request.urlopen(request))['token'] != found['password'])\n"
    )
    realm = f"{docker_registry.quay.url}/v2/auth?service={docker_registry.host}&scope=repository:org/plain:pull"
    r = sh([CLI, "exec", "--", sys.executable, "-c", program, docker_registry.host, realm], env)
    assert (r.returncode, r.stdout) == (0, "True\n"), r.stderr
    assert only_jwts(docker_registry.quay)  # every client sent the robot's JWT, never its token


@pytest.mark.slow  # six runs
def test_credential_of_a_repository_comes_from_its_prefix_sections_robot(robot, quay, tmp_path):
    token_file = tmp_path / "org-token"
    token_file.write_text(ROBOT_TOKEN + "\n")
    token_file.chmod(0o600)
    config = Path(robot["XDG_CONFIG_HOME"], "quay-cred-helper", "config.ini")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[{quay.host}/org]\nrobot = {ROBOT}\nrobot_token_file = {token_file}\n")
    payload = json.dumps({"ServerURL": quay.host, "Username": "alice", "Secret": "alice-password"})
    assert helper(robot, "store", payload).returncode == 0  # the host's own credential: a user

    routed = credential(robot, f"{quay.host}/org/app", "--json")
    assert (routed["username"], routed["kind"]) == (ROBOT, "robot-jwt") and routed["expires_at"]
    assert credential(robot, f"{quay.host}/library/x", "--json")["kind"] == "password"  # no prefix section
    assert credential(robot, quay.host, "--json")["username"] == "alice"

    # exec --registry host/ns: the same routed robot, written for the host; a host named twice is refused.
    report = tmp_path / "report.json"
    r = cli(robot, "exec", "--registry", f"{quay.host}/org", "--", *child(report))
    assert r.returncode == 0, r.stderr
    assert decoded(json.loads(report.read_text())["config"]["auths"][quay.host])[0] == ROBOT  # was alice
    r = cli(robot, "exec", "--registry", quay.host, "--registry", f"https://{quay.host}/org/", "--", "true")
    assert (r.returncode, r.stderr.decode()) == (
        1,
        f"quay-cred-helper: {quay.host} named twice: clients read one credential per registry\n",
    )


@pytest.mark.slow  # three runs
def test_credential_routes_as_get_does_a_token_from_the_environment_and_refuses_a_robotless_oidc(file_keyring):
    """`credential host/ns/repo` takes the store's own routing: every source a prefix section can name, and
    the same refusals (it once copied the routing and knew only robot_token_file)."""
    with QuayRegistry(users=USERS, robots={CI_ROBOT: CI_ROBOT_TOKEN}) as quay:
        config = Path(file_keyring["XDG_CONFIG_HOME"], "quay-cred-helper", "config.ini")
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"[{quay.host}/org]\nrobot = {CI_ROBOT}\nrobot_token_env = ORG_TOKEN\n[{quay.host}/lost]\noidc = github\n"
        )
        env = dict(file_keyring, ORG_TOKEN=CI_ROBOT_TOKEN)  # a job's secret: in its environment by design
        payload = json.dumps({"ServerURL": quay.host, "Username": "alice", "Secret": "alice-password"})
        assert helper(env, "store", payload).returncode == 0  # the host's own credential: a user

        routed = credential(env, f"{quay.host}/org/app", "--json")
        assert (routed["username"], routed["kind"]) == (CI_ROBOT, "robot-jwt") and routed["expires_at"]
        r = cli(env, "credential", f"{quay.host}/lost/app")
        assert (r.returncode, r.stdout) == (1, b"")  # never alice's password instead
        assert r.stderr.decode().startswith(
            f"quay-cred-helper: oidc for {quay.host}/lost needs the robot it belongs to"
        )

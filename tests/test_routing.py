"""Robots per namespace: config sections named by a registry path prefix, `token` and `referrers` by
repository, and doctor's warning for the clients that send only the host."""

import json

import pytest

from quay_cred_helper import config
from quay_cred_helper.errors import ConfigError
from tests.fakes.artifacts import push_demo
from tests.fakes.quay_registry import QuayRegistry
from tests.support import CI_ROBOT_TOKEN, ROBOT, ROBOT_TOKEN, TEAM_A_TOKEN, USERS, claims_of, cli, helper

TEAM_A = "team-a+nodes"
TEAM_A_JOB = "team-a+job"  # its token held by the job (robot_token_env): CI_ROBOT_TOKEN


def write(tmp_path, text):
    path = tmp_path / "config.ini"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


PREFIXES = """[DEFAULT]
timeout = 20

[quay.example.com]
ca_bundle = /etc/pki/quay.pem
robot = org+host

[quay.example.com/team-a]
robot = team-a+nodes

[quay.example.com/team-a/deep]
robot = team-a+deep

[Quay.Example.com/Team-B/]
robot = team-b+pods
"""


@pytest.mark.parametrize(
    "repository, robot, section",
    [
        ("team-a/app", "team-a+nodes", "quay.example.com/team-a"),
        ("team-a", "team-a+nodes", "quay.example.com/team-a"),
        ("team-a/deep/x", "team-a+deep", "quay.example.com/team-a/deep"),  # the longest prefix wins
        ("team-a/deeper/x", "team-a+nodes", "quay.example.com/team-a"),  # on whole segments only
        ("team-ab/app", "org+host", "quay.example.com"),  # team-a does not hold team-ab
        ("team-b/app", "team-b+pods", "Quay.Example.com/Team-B/"),
        ("/team-a/app/", "team-a+nodes", "quay.example.com/team-a"),
        ("", "org+host", "quay.example.com"),
    ],
)
def test_the_longest_prefix_on_segment_boundaries_wins(tmp_path, repository, robot, section):
    found = config.Config(write(tmp_path, PREFIXES)).settings("quay.example.com", repository)
    assert (found.robot, found.section) == (robot, section)


def test_prefix_sections_take_the_hosts_connection_settings(tmp_path):
    loaded = config.Config(write(tmp_path, PREFIXES))
    team_a = loaded.settings("quay.example.com", "team-a/app")
    assert team_a.ca_bundle == "/etc/pki/quay.pem" and team_a.timeout == 20.0 and team_a.robot == "team-a+nodes"
    assert loaded.settings("quay.example.com").robot == "org+host"
    assert loaded.prefixes("quay.example.com") == [
        "quay.example.com/team-a/deep",
        "quay.example.com/team-a",
        "Quay.Example.com/Team-B/",
    ]
    assert loaded.prefixes("other.example.com") == []
    assert config.read_plain(PREFIXES) is not None  # the fast reader reads such sections: no configparser


@pytest.mark.parametrize(
    "text, message",
    [
        ("[h]\n[h/team-a]\ntimeout = 3\n", "timeout in [h/team-a] applies to the whole host: set it under [h]"),
        ("[h/]\nrobot = a+b\n", "section [h/] names no repository path"),
        ("[h/a//b]\nrobot = a+b\n", "section [h/a//b] names no repository path"),
        ("[h/a]\nrobot = a+b\n[h/a/]\nrobot = a+c\n", "repeats a prefix of another section"),
        ("[h/a]\nrobt = a+b\n", "unknown setting 'robt'"),
    ],
)
def test_bad_prefix_sections_are_one_line_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        config.Config(path).settings("h", "team-a/app" if "team-a" in text else "a/app")
    assert message in str(error.value) and path in str(error.value) and "\n" not in str(error.value)


# -- token and referrers pick the robot by repository ----------------------------------------------------


@pytest.fixture
def teams(file_keyring, tmp_path):
    """alice logged in to the host; team-a's repositories served by team-a's robot token file."""
    robots = {ROBOT: ROBOT_TOKEN, TEAM_A: TEAM_A_TOKEN}
    with QuayRegistry(users=USERS, robots=robots) as quay:
        token = tmp_path / "team-a-token"
        token.write_text(TEAM_A_TOKEN + "\n")
        token.chmod(0o600)
        path = write(tmp_path, f"[{quay.host}/team-a]\nrobot = {TEAM_A}\nrobot_token_file = {token}\n")
        env = dict(file_keyring, QUAY_CRED_HELPER_CONFIG=path)
        r = cli(env, "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
        assert r.returncode == 0, r.stderr
        yield quay, env


def sub(token):
    return claims_of(token)["sub"]


@pytest.mark.slow  # over half a second: the full suite
def test_token_picks_the_robot_by_repository(teams):
    quay, env = teams
    team_a = cli(env, "token", f"{quay.host}/team-a/app", "--json")
    assert team_a.returncode == 0, team_a.stderr
    data = json.loads(team_a.stdout)
    assert sub(data["token"]) == TEAM_A and data["access"][0]["name"] == "team-a/app"
    refused = cli(env, "token", f"{quay.host}/team-ab/app")  # the host's credentials: alice, who may not
    assert refused.returncode == 1 and b"granted no access to team-ab/app" in refused.stderr
    assert quay.auth_log[-1]["user"] == "alice"
    assert sub(cli(env, "token", f"{quay.host}/org/app").stdout.decode().strip()) == "alice"
    assert sub(cli(env, "token", quay.host).stdout.decode().strip()) == "alice"  # no repository: the host's
    before = quay.count("/v2/auth")
    assert sub(cli(env, "token", f"{quay.host}/team-a/app").stdout.decode().strip()) == TEAM_A  # cached
    assert quay.count("/v2/auth") == before


@pytest.mark.slow  # over half a second: the full suite
def test_referrers_picks_the_robot_by_repository(teams):
    quay, env = teams
    pushed = push_demo(quay.url, "team-a/app", TEAM_A, TEAM_A_TOKEN)
    r = cli(env, "referrers", f"{quay.host}/team-a/app:1.0", "--format", "digest")
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.decode().split()) == {pushed["signature"]["digest"], pushed["sbom"]["digest"]}
    assert quay.auth_log[-1]["user"] == TEAM_A and quay.auth_log[-1]["scopes"] == ["repository:team-a/app:pull"]


# -- doctor: docker, podman and skopeo send only the host ------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_doctor_warns_that_host_only_clients_cannot_use_prefix_sections(teams):
    quay, env = teams
    r = cli(env, "doctor", quay.host, "--json")
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
    warning = checks[f"{quay.host} robots per namespace"]
    assert warning["status"] == "WARN" and f"never those of [{quay.host}/team-a]" in warning["detail"]
    assert "docker, podman and skopeo send the helper only the host" in warning["detail"]
    assert "serve quay-credential-provider, token and referrers" in warning["fix"]
    # What those clients get is the host's: alice, not team-a's robot.
    assert json.loads(helper(env, "get", quay.host).stdout)["Username"] == "alice"
    # The routed robot is checked as a host's: its source, then one exchange as that robot.
    assert checks[f"{quay.host}/team-a robot token"]["status"] == "OK"
    assert checks[f"{quay.host}/team-a credentials"] == {
        "check": f"{quay.host}/team-a credentials",
        "status": "OK",
        "detail": f"{TEAM_A} accepted",
        "fix": None,
    }
    assert any(e["user"] == TEAM_A for e in quay.auth_log)


@pytest.mark.slow  # over half a second: the full suite
def test_doctor_checks_a_provider_config_of_prefix_sections_only(file_keyring, tmp_path):
    """A node's config: no login, only [host/prefix] sections. Not `none stored: login`, but each robot."""
    with QuayRegistry(users=USERS, robots={TEAM_A: TEAM_A_TOKEN}) as quay:
        token = tmp_path / "team-a-token"
        token.write_text("not-the-token\n")
        token.chmod(0o600)
        path = write(tmp_path, f"[{quay.host}/team-a]\nrobot = {TEAM_A}\nrobot_token_file = {token}\n")
        env = dict(file_keyring, QUAY_CRED_HELPER_CONFIG=path)
        r = cli(env, "doctor", quay.host, "--json")
        checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
        assert checks[f"{quay.host} credentials"]["status"] == "OK"
        assert "login" not in (checks[f"{quay.host} credentials"]["fix"] or "")
        assert checks[f"{quay.host}/team-a credentials"]["status"] == "FAIL"  # Quay refused the wrong token
        assert r.returncode == 1 and quay.auth_log[-1]["user"] == TEAM_A


# -- every identity setting of a prefix section: routed or refused, never silently the host's ----------------


@pytest.fixture
def alice_at(file_keyring, tmp_path):
    """alice logged in to the host (its own credentials); the config's text for [host/team-a] per test."""
    robots = {ROBOT: ROBOT_TOKEN, TEAM_A: TEAM_A_TOKEN, TEAM_A_JOB: CI_ROBOT_TOKEN}
    with QuayRegistry(users=USERS, robots=robots) as quay:
        token = tmp_path / "team-a-token"
        token.write_text(TEAM_A_TOKEN + "\n")
        token.chmod(0o600)
        env = dict(file_keyring, TEAM_A_TOKEN=CI_ROBOT_TOKEN)  # a job's secret: in its environment by design
        r = cli(env, "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
        assert r.returncode == 0, r.stderr

        def token_for(body, repository="team-a/app"):
            env["QUAY_CRED_HELPER_CONFIG"] = write(tmp_path, f"[{quay.host}/team-a]\n{body.format(file=token)}")
            return cli(env, "token", f"{quay.host}/{repository}")

        yield quay, env, token_for


@pytest.mark.slow  # a registry and a CLI run per case: the full suite
@pytest.mark.parametrize(
    "body, who",
    [
        (f"robot = {TEAM_A_JOB}\nrobot_token_env = TEAM_A_TOKEN\n", TEAM_A_JOB),  # was the host's alice
        (f"robot = {TEAM_A}\nrobot_token_file = {{file}}\n", TEAM_A),
        (f"robot = {TEAM_A}\n", "alice"),  # a robot named alone: the host's credentials (as documented)
        (f"robot = {TEAM_A}\nservice_account = true\n", "alice"),  # the kubelet's pods only
    ],
)
def test_token_routes_each_prefix_identity_setting(alice_at, body, who):
    quay, _, token_for = alice_at
    r = token_for(body)
    assert quay.auth_log[-1]["user"] == who and quay.auth_log[-1]["scopes"] == ["repository:team-a/app:pull"]
    if who != "alice":
        assert r.returncode == 0 and sub(r.stdout.decode().strip()) == who, r.stderr
    else:  # alice may not read team-a: the host's identity, as documented, refused by Quay
        assert r.returncode == 1 and b"granted no access to team-a/app" in r.stderr
    assert sub(token_for(body, "org/app").stdout.decode().strip()) == "alice"  # outside the prefix: the host's


@pytest.mark.slow  # a registry and a CLI run per case: the full suite
@pytest.mark.parametrize(
    "body, message",
    [
        ("robot_token_env = TEAM_A_TOKEN\n", "robot_token_env for {host}/team-a needs the robot it belongs to"),
        ("robot_token_file = {file}\n", "robot_token_file for {host}/team-a needs the robot it belongs to"),
        (
            f"robot = {TEAM_A_JOB}\nrobot_token_env = TEAM_A_TOKEN\nrobot_token_file = {{file}}\n",
            "both robot_token_env and robot_token_file are set for {host}/team-a",
        ),
        ("oidc = env:TEAM_A_TOKEN\n", "oidc for {host}/team-a needs the robot it belongs to"),
        ("audience = quay\n", "audience for {host}/team-a is the audience of an OIDC token"),
    ],
)
def test_token_refuses_a_prefix_identity_it_cannot_use(alice_at, body, message):
    quay, _, token_for = alice_at
    before = quay.count("/v2/auth")
    r = token_for(body)
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().startswith("quay-cred-helper: " + message.format(host=quay.host)), r.stderr
    assert r.stderr.count(b"\n") == 1 and quay.count("/v2/auth") == before  # one line, nothing sent as alice


@pytest.mark.slow  # over half a second: the full suite
def test_referrers_routes_a_prefix_robot_token_env(alice_at):
    quay, env, token_for = alice_at
    pushed = push_demo(quay.url, "team-a/app", TEAM_A, TEAM_A_TOKEN)
    assert token_for(f"robot = {TEAM_A_JOB}\nrobot_token_env = TEAM_A_TOKEN\n").returncode == 0  # writes the config
    r = cli(env, "referrers", f"{quay.host}/team-a/app:1.0", "--format", "digest")
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.decode().split()) == {pushed["signature"]["digest"], pushed["sbom"]["digest"]}
    assert quay.auth_log[-1]["user"] == TEAM_A_JOB and quay.auth_log[-1]["scopes"] == ["repository:team-a/app:pull"]

"""Robots per namespace: config sections named by a registry path prefix, `token` and `referrers` by
repository, and doctor's warning for the clients that send only the host."""

import json

import pytest

from quay_cred_helper import config
from quay_cred_helper.errors import ConfigError
from tests.fakes.artifacts import push_demo
from tests.fakes.quay_registry import QuayRegistry, b64url_decode
from tests.support import ROBOT, ROBOT_TOKEN, TEAM_A_TOKEN, USERS, cli, helper

TEAM_A = "team-a+nodes"


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
    return json.loads(b64url_decode(token.split(".")[1]))["sub"]


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

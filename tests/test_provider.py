"""quay-credential-provider as the kubelet runs it (tests/fakes/fake_kubelet.py), against the test registry."""

import concurrent.futures
import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import fake_kubelet as kubelet
from tests.fakes.quay_registry import QuayRegistry
from tests.support import PROVIDER, ROBOT, ROBOT_TOKEN, ROBOTS, TEAM_A_TOKEN, USERS, V1, claims_of

OTHER = "org+other"
SA_A, SA_B = "system:serviceaccount:build:a", "system:serviceaccount:build:b"


@pytest.fixture
def quay(issuer, tmp_path):
    robots = dict(ROBOTS, **{OTHER: "O" * 64})
    with QuayRegistry(users=USERS, robots=robots) as registry:
        issuer.trusted_by(registry, tmp_path)
        registry.federation[ROBOT] = [{"issuer": issuer.url, "subject": s} for s in (SA_A, SA_B, "node")]
        registry.federation[OTHER] = [{"issuer": issuer.url, "subject": SA_B}]
        yield registry


@pytest.fixture
def node(env, tmp_path):
    """A node: the kubelet's environment (no keyring), a root-only config dir, the provider's cache."""
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    return env, etc


def configure(etc, text):
    config = etc / "kubelet.ini"
    config.write_text(text)
    config.chmod(0o600)
    return ["--config", str(config)]


def robot_file(etc, quay):
    token = etc / "robot-token"
    token.write_text(ROBOT_TOKEN + "\n")
    token.chmod(0o600)
    return configure(etc, f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")


# -- a robot token file on the node -------------------------------------------------------------------


@pytest.mark.parametrize("api_version", ["v1", "v1beta1", "v1alpha1"])
@pytest.mark.slow  # over half a second: the full suite
def test_robot_token_file_gets_one_hour_jwts(node, quay, api_version):
    env, etc = node
    args = robot_file(etc, quay)
    version = f"credentialprovider.kubelet.k8s.io/{api_version}"
    response = kubelet.run(PROVIDER, args, env, version, f"{quay.host}/org/app")
    assert response["cacheKeyType"] == "Registry" and list(response["auth"]) == [quay.host]
    auth = kubelet.credentials_for(response, f"{quay.host}/org/app")
    claims = claims_of(auth["password"])
    assert auth["username"] == ROBOT and auth["password"] != ROBOT_TOKEN and claims["sub"] == ROBOT
    # The kubelet drops it before it ends: with our margin and a minute to spare.
    assert 0 < kubelet.seconds(response["cacheDuration"]) <= claims["exp"] - time.time() - 300
    requests = (quay.count("/v2/"), quay.count("/v2/auth"))
    # Another image on the registry: the cached JWT, no network.
    again = kubelet.run(PROVIDER, args, env, version, f"{quay.host}/org/other")
    assert again["auth"][quay.host]["password"] == auth["password"]
    assert (quay.count("/v2/"), quay.count("/v2/auth")) == requests


def test_the_answer_is_a_function_of_the_request_bytes(node, quay, tmp_path):
    """In-process, beside the subprocess harness: request bytes in, the response text the kubelet reads out."""
    from quay_cred_helper.kubelet.main import answer

    _, etc = node
    args = robot_file(etc, quay)
    text = answer(kubelet.request(V1, f"{quay.host}/org/app"), args[1], str(tmp_path / "cache"))
    response = kubelet.decode(text.encode(), V1)
    auth = kubelet.credentials_for(response, f"{quay.host}/org/app")
    assert auth["username"] == ROBOT and claims_of(auth["password"])["sub"] == ROBOT
    assert answer(kubelet.request(V1, f"{quay.host}/org/x"), args[1], str(tmp_path / "cache")) == text  # cached


@pytest.mark.slow  # over half a second: the full suite
def test_a_new_robot_token_in_the_file_gets_a_new_jwt_and_the_jwt_works(node, quay):
    env, etc = node
    args = robot_file(etc, quay)
    first = kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")["auth"][quay.host]
    assert quay.auth_log[-1]["credential"] == "password"
    # The JWT is the robot's password at /v2/auth, as a container runtime would use it.
    assert quay.check_password(ROBOT, first["password"]) is None
    (etc / "robot-token").write_text(ROBOT_TOKEN + "  \n")  # rotated (same value: a new file all the same)
    kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")
    assert quay.count("/v2/auth") == 2


def test_runs_through_a_symlink_in_the_bin_dir_with_its_own_cache_dir(node, quay, tmp_path):
    env, etc = node
    bin_dir = tmp_path / "credential-provider-bin"
    bin_dir.mkdir()
    (bin_dir / "quay").symlink_to(PROVIDER)
    args = [*robot_file(etc, quay), "--cache-dir", str(tmp_path / "provider-cache")]
    response = kubelet.run(str(bin_dir / "quay"), args, env, V1, f"{quay.host}/org/app")
    assert claims_of(response["auth"][quay.host]["password"])["sub"] == ROBOT
    assert list((tmp_path / "provider-cache" / "tokens").iterdir())


# -- keyless: the node's OIDC token, or each pod's service-account token ---------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_node_oidc_file(node, quay, issuer):
    env, etc = node
    token = etc / "node-token"
    token.write_text(issuer.token("node"))
    args = configure(etc, f"[{quay.host}]\nrobot = {ROBOT}\noidc = file:{token}\n")
    response = kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")
    assert claims_of(response["auth"][quay.host]["password"])["sub"] == ROBOT
    assert quay.federation_log[-1]["subject"] == "node"


@pytest.mark.slow  # over half a second: the full suite
def test_each_pod_as_the_robot_its_service_account_names(node, quay, issuer):
    env, etc = node
    args = configure(etc, f"[{quay.host}]\nservice_account = true\nrobot = {ROBOT}\n")
    image = f"{quay.host}/org/app"
    a, b = issuer.token(SA_A, audience="quay"), issuer.token(SA_B, audience="quay")
    pod_a = kubelet.run(PROVIDER, args, env, V1, image, a, {})
    assert pod_a["auth"][quay.host]["username"] == ROBOT
    # Another service account: its own exchange, never pod a's JWT from the cache.
    pod_b = kubelet.run(PROVIDER, args, env, V1, image, b, {"quay-cred-helper/robot": OTHER})
    assert pod_b["auth"][quay.host]["username"] == OTHER
    assert [(e["robot"], e["subject"]) for e in quay.federation_log] == [(ROBOT, SA_A), (OTHER, SA_B)]
    kubelet.run(PROVIDER, args, env, V1, image, b, {})  # b as the default robot: a third identity
    kubelet.run(PROVIDER, args, env, V1, image, a, {})  # a again: cached
    assert len(quay.federation_log) == 3
    # Quay decides who may be which robot: a's token for OTHER is refused.
    with pytest.raises(kubelet.Rejected, match="Token does not match robot"):
        kubelet.run(PROVIDER, args, env, V1, image, a, {"quay-cred-helper/robot": OTHER})


def test_a_registrys_own_source_answers_even_with_a_service_account_token(node, quay, issuer):
    env, etc = node
    args = robot_file(etc, quay)
    response = kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app", issuer.token(SA_A), {})
    assert response["auth"][quay.host]["username"] == ROBOT and quay.federation_log == []


@pytest.mark.slow  # many processes: the full suite
def test_concurrent_requests_for_different_images_make_one_exchange(node, quay):
    env, etc = node
    args = robot_file(etc, quay)
    images = [f"{quay.host}/org/app{i}" for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda image: kubelet.run(PROVIDER, args, env, V1, image), images))
    assert len({a["auth"][quay.host]["password"] for a in answers}) == 1 and quay.count("/v2/auth") == 1


@pytest.mark.slow  # over half a second: the full suite
def test_a_jwt_near_its_end_is_renewed_and_never_outlived(node, quay):
    env, etc = node
    args = robot_file(etc, quay)
    kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")
    cached = next(p for p in Path(env["XDG_CACHE_HOME"]).rglob("*.json") if p.name != "challenge.json")
    entry = json.loads(cached.read_text())
    cached.write_text(json.dumps(dict(entry, issued_at=time.time() - 3400, expires_at=time.time() + 200)))
    quay.clock = lambda: time.time() + 5
    response = kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")
    assert quay.count("/v2/auth") == 2
    exp = claims_of(response["auth"][quay.host]["password"])["exp"]
    assert kubelet.seconds(response["cacheDuration"]) < exp - time.time()


# -- failures: exit 1, one line on stderr, nothing on stdout, no secret --------------------------------------------


def provider(env, args, stdin):
    import subprocess

    return subprocess.run([PROVIDER, *args], input=stdin, env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize(
    "stdin, message",
    [
        (b'{"apiVersion":"%s","image":"h/x"}\n' % V1.encode(), b"request kind is not CredentialProviderRequest"),
        (b'{"kind":"CredentialProviderRequest","image":"h/x"}\n', b"unsupported apiVersion 'None'"),
        (
            b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"h/x"}',
            b"unsupported apiVersion",
        ),
        (b'{"kind":"CredentialProviderRequest","apiVersion":"%s"}' % V1.encode(), b"request has no image"),
        (b'{"kind":"CredentialProviderRequest","apiVersion":"%s","image":""}' % V1.encode(), b"request has no image"),
        (kubelet.request(V1, "h/x") + kubelet.request(V1, "h/y"), b"request is not one JSON object"),
        (
            b'{"kind":"CredentialProviderRequest","apiVersion":"%s","image":"h/\xff"}' % V1.encode(),
            b"request is not valid UTF-8",
        ),
        (b"", b"request is not one JSON object"),
    ],
)
def test_malformed_requests(node, stdin, message):
    env, etc = node
    r = provider(env, configure(etc, ""), stdin)
    assert r.returncode == 1 and r.stdout == b"" and r.stderr.count(b"\n") == 1
    assert r.stderr.startswith(b"quay-credential-provider: " + message), r.stderr


@pytest.mark.slow  # over half a second: the full suite
def test_unknown_request_fields_are_ignored(node, quay):
    env, etc = node
    body = json.loads(kubelet.request(V1, f"{quay.host}/org/app"))
    r = provider(env, robot_file(etc, quay), json.dumps(dict(body, futureField={"x": 1})).encode())
    assert r.returncode == 0 and kubelet.decode(r.stdout, V1)


@pytest.mark.posix
def test_configuration_problems(node, quay, issuer):
    env, etc = node
    image = f"{quay.host}/org/app"
    args = configure(etc, "[other.example.com]\nrobot = org+x\n")
    with pytest.raises(kubelet.Rejected, match=f"no credentials configured for {quay.host} in {etc}/kubelet.ini"):
        kubelet.run(PROVIDER, args, env, V1, image)
    (etc / "kubelet.ini").chmod(0o666)
    with pytest.raises(kubelet.Rejected, match="refusing the provider config file .*: other users can write it"):
        kubelet.run(PROVIDER, args, env, V1, image)
    args = robot_file(etc, quay)
    (etc / "robot-token").chmod(0o622)
    with pytest.raises(
        kubelet.Rejected, match="refusing the robot token file .*: other users can write it: chmod go-w"
    ):
        kubelet.run(PROVIDER, args, env, V1, image)
    args = configure(etc, f"[{quay.host}]\nservice_account = true\nrobot = {ROBOT}\n")
    with pytest.raises(
        kubelet.Rejected, match="configured for pods' service-account tokens, but the kubelet sent none"
    ):
        kubelet.run(PROVIDER, args, env, V1, image)


@pytest.mark.slow  # over half a second: the full suite
def test_a_refused_or_unreachable_registry_fails_without_secrets(node, quay):
    env, etc = node
    args = robot_file(etc, quay)
    (etc / "robot-token").write_text("wrong-robot-token")
    with pytest.raises(kubelet.Rejected) as refused:
        kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")
    stderr = refused.value.args[1].stderr
    assert (
        b"refused the credentials" in stderr
        and b"wrong-robot-token" not in stderr
        and refused.value.args[1].stdout == b""
    )
    args = configure(etc, f"[127.0.0.1:1]\nrobot = {ROBOT}\nrobot_token_file = {etc / 'robot-token'}\n")
    start = time.monotonic()
    with pytest.raises(kubelet.Rejected, match="cannot connect to 127.0.0.1:1: connection refused"):
        kubelet.run(PROVIDER, args, env, V1, "127.0.0.1:1/org/app")
    assert time.monotonic() - start < 30


# -- the kubelet's matching rules, from its own examples ----------------------------------------------------------


@pytest.mark.parametrize(
    "glob, image, expected",
    [
        ("*.kubernetes.io", "abc.kubernetes.io", True),
        ("*.kubernetes.io", "abc.def.kubernetes.io", False),
        ("*.*.kubernetes.io", "abc.def.kubernetes.io", True),
        ("prefix.*.io", "prefix.kubernetes.io", True),
        ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
        ("quay.example.com", "quay.example.com/org/app", True),
        ("quay.example.com:8443", "quay.example.com/org/app", False),
        ("quay.example.com", "quay.example.com:8443/org/app", False),
        ("quay.example.com/org", "quay.example.com/org/app", True),
        ("quay.example.com/other", "quay.example.com/org/app", False),
        ("quay.example.com/team-a", "quay.example.com/team-ab/app", True),  # a plain string prefix
        ("quay.example.com/team-a/", "quay.example.com/team-ab/app", False),
        ("quay.example.com/team-a/", "quay.example.com/team-a/app", True),
        ("https://quay.example.com", "quay.example.com/org/app", False),  # matchImages take no scheme
    ],
)
def test_matching_rules(glob, image, expected):
    assert kubelet.matches(glob, image) is expected


@pytest.mark.parametrize(
    "key, stored",
    [
        ("https://quay.example.com/v2/", "quay.example.com"),
        ("http://quay.example.com/v1/org", "quay.example.com/org"),
        ("quay.example.com/v2", "quay.example.com/v2"),  # only /v2/ with its slash is the API root
        ("quay.example.com/", "quay.example.com"),
        ("quay.example.com/team-a/", "quay.example.com/team-a/"),
    ],
)
def test_auth_keys_are_stored_as_the_keyring_stores_them(key, stored):
    assert kubelet.normalise_key(key) == stored


def test_auth_keys_are_tried_in_reverse_byte_order_not_longest_first():
    """BasicDockerKeyring sorts its index in reverse: every matching key's credentials are tried, and a
    shorter key can come before a longer one (DESIGN.md §7 said longest first)."""
    response = {
        "auth": {
            "*.example.com/team-a/app": {"username": "wildcard", "password": "1"},
            "quay.example.com/team-a": {"username": "prefix", "password": "2"},
            "quay.example.com": {"username": "host", "password": "3"},
            "quay.example.com/team-b": {"username": "other", "password": "4"},
        }
    }
    tried = [c["username"] for c in kubelet.lookup(response, "quay.example.com/team-a/app")]
    assert tried == ["prefix", "host", "wildcard"]


@pytest.mark.parametrize("routed", [False, True])
@pytest.mark.slow  # over half a second: the full suite
def test_a_cached_answer_imports_nothing_heavy(node, quay, routed):
    from tests.test_startup import HEAVY, _modules

    env, etc = node
    args = robot_file(etc, quay)
    if routed:  # robots per namespace: the prefix lookup is on the hot path too
        text = (etc / "kubelet.ini").read_text().replace(f"[{quay.host}]", f"[{quay.host}/org]")
        args = configure(etc, text + f"[{quay.host}/other]\n")
    kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")  # fills the cache
    _, interpreter = _modules(["-c", "pass"], env)
    r, names = _modules([PROVIDER, *args], env, kubelet.request(V1, f"{quay.host}/org/app"))
    assert r.returncode == 0 and kubelet.decode(r.stdout, V1)
    assert not (names - interpreter) & (HEAVY | {"jeepney"}), names - interpreter


@pytest.mark.slow  # waits out a deadline in real time
def test_a_dripping_registry_cannot_hold_the_kubelet_and_the_fix_names_its_config(node):
    from tests.fakes.hostile import DripServer

    env, etc = node
    challenge = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="http://127.0.0.1:1/v2/auth"\r\n\r\n'
    with DripServer(challenge, interval=0.3) as drip:
        token = etc / "robot-token"
        token.write_text(ROBOT_TOKEN)
        token.chmod(0o600)
        args = configure(etc, f"[{drip.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\ndeadline = 2\n")
        start = time.monotonic()
        with pytest.raises(kubelet.Rejected, match=f"{drip.host} did not finish within 2 s") as refused:
            kubelet.run(PROVIDER, args, env, V1, f"{drip.host}/org/app")
        assert time.monotonic() - start < 8
    # The fix names the --config file, not the user's ~/.config file (it did, before Settings knew their file).
    assert f"raise deadline = N under [{drip.host}] in {args[1]} if it is only slow" in str(refused.value)


# -- the kubelet's cache, per cacheKeyType (tests/fakes/fake_kubelet.py's model, with a canned provider) ------


STUB = """import json, os, sys
request = json.loads(sys.stdin.read())
count = int(open(os.environ["STUB_COUNT"]).read() or 0) + 1
open(os.environ["STUB_COUNT"], "w").write(str(count))
text = os.environ["STUB_ANSWER"].replace("IMAGE", request["image"]).replace("HOST", request["image"].split("/")[0])
sys.stdout.write(text.replace("RUN", str(count)).replace("TOKEN", request.get("serviceAccountToken", "")))
"""


@pytest.fixture
def stub(tmp_path):
    """A provider that answers what STUB_ANSWER says (IMAGE, HOST, RUN, TOKEN filled in)."""
    path = tmp_path / "stub-provider"
    path.write_text(f"#!{sys.executable}\n{STUB}")
    path.chmod(0o755)
    (tmp_path / "count").write_text("")

    def make(cache_key_type, duration="60s", keys=("HOST",), match=("*.example.com",), clock=None, **options):
        answer = {"kind": "CredentialProviderResponse", "apiVersion": V1, "cacheKeyType": cache_key_type}
        if duration is not None:
            answer["cacheDuration"] = duration
        answer["auth"] = {key: {"username": "run-RUN", "password": "p-RUN-TOKEN"} for key in keys}
        env = dict(os.environ, STUB_ANSWER=json.dumps(answer), STUB_COUNT=str(tmp_path / "count"))
        return kubelet.Provider(str(path), [], env, V1, list(match), clock=clock or kubelet.Clock(), **options)

    return make


def users(credentials):
    return [c["username"] for c in credentials]


def test_registry_answers_serve_the_whole_host_until_cache_duration_ends(stub):
    clock = kubelet.Clock()
    provider = stub("Registry", "60s", clock=clock)
    node = kubelet.Kubelet([provider])
    assert users(node.credentials("quay.example.com/team-a/app")) == ["run-1"]
    assert users(node.credentials("quay.example.com/team-b/app")) == ["run-1"]  # the same answer: no run
    assert users(node.credentials("other.example.com/x/y")) == ["run-2"]  # another registry
    clock.advance(60)
    assert users(node.credentials("quay.example.com/team-b/app")) == ["run-1"]  # expired only after 60 s
    clock.advance(0.001)
    assert users(node.credentials("quay.example.com/team-b/app")) == ["run-3"]
    assert provider.runs == 3


def test_image_answers_serve_one_image_and_global_answers_every_registry(stub):
    image = stub("Image", keys=("IMAGE",))
    node = kubelet.Kubelet([image])
    assert users(node.credentials("quay.example.com/team-a/app")) == ["run-1"]
    assert users(node.credentials("quay.example.com/team-a/app")) == ["run-1"]
    assert users(node.credentials("quay.example.com/team-b/app")) == ["run-2"]
    everywhere = stub("Global", keys=("*.example.com",))
    node = kubelet.Kubelet([everywhere])
    assert users(node.credentials("quay.example.com/team-a/app")) == ["run-3"]
    assert users(node.credentials("other.example.com/x/y")) == ["run-3"] and everywhere.runs == 1


def test_cache_durations_zero_absent_and_the_default(stub):
    never = stub("Registry", "0s")
    node = kubelet.Kubelet([never])
    node.credentials("quay.example.com/a/b")
    node.credentials("quay.example.com/a/b")
    assert never.runs == 2
    default = stub("Registry", None, default_cache_duration=30, clock=kubelet.Clock(0))
    node = kubelet.Kubelet([default])
    node.credentials("quay.example.com/a/b")
    default.clock.advance(30)
    node.credentials("quay.example.com/a/b")
    assert default.runs == 1
    default.clock.advance(1)
    node.credentials("quay.example.com/a/b")
    assert default.runs == 2
    uncached = stub("Registry", None, default_cache_duration=0)
    kubelet.Kubelet([uncached]).credentials("quay.example.com/a/b")
    kubelet.Kubelet([uncached]).credentials("quay.example.com/a/b")
    assert uncached.runs == 2


def test_a_cache_hit_is_final_even_when_its_keys_do_not_match(stub):
    """A Registry answer keyed by a prefix serves the host: the next namespace gets nothing, no run."""
    provider = stub("Registry", keys=("HOST/team-a/",))
    node = kubelet.Kubelet([provider])
    assert users(node.credentials("quay.example.com/team-a/app")) == ["run-1"]
    assert node.credentials("quay.example.com/team-b/app") == [] and provider.runs == 1


def test_token_mode_caches_per_service_account_or_per_token(stub, issuer):
    def pod(name, sa):
        return kubelet.Pod("build", name, sa, token=lambda audience: issuer.token(f"{sa}-{name}", audience=audience))

    attributes = {"audience": "quay", "cacheType": "ServiceAccount", "requireServiceAccount": True}
    provider = stub("Registry", token_attributes=attributes)
    node = kubelet.Kubelet([provider])
    assert users(node.credentials("quay.example.com/a/b", pod("p1", "sa1"))) == ["run-1"]
    assert users(node.credentials("quay.example.com/a/b", pod("p2", "sa1"))) == ["run-1"]  # same SA: cached
    assert users(node.credentials("quay.example.com/a/b", pod("p3", "sa2"))) == ["run-2"]
    assert node.credentials("quay.example.com/a/b", kubelet.Pod("build", "p4")) == []  # no SA: not run
    assert provider.runs == 2
    # The password is the token itself: refused unless cacheType is Token.
    echo = stub("Registry", token_attributes=attributes)
    env = json.loads(echo.env["STUB_ANSWER"])
    env["auth"] = {"HOST": {"username": "run-RUN", "password": "TOKEN"}}
    echo.env["STUB_ANSWER"] = json.dumps(env)
    assert kubelet.Kubelet([echo]).credentials("quay.example.com/a/b", pod("p1", "sa1")) == []
    assert "cacheType is not Token" in str(echo.errors[-1])
    per_token = stub("Registry", token_attributes=dict(attributes, cacheType="Token"))
    node = kubelet.Kubelet([per_token])
    node.credentials("quay.example.com/a/b", pod("p1", "sa1"))
    node.credentials("quay.example.com/a/b", pod("p2", "sa1"))
    assert per_token.runs == 2  # a new token per pod: a new cache key


def test_every_matching_provider_answers_and_the_earlier_one_first(stub):
    first, second = stub("Image", keys=("HOST",)), stub("Image", keys=("HOST", "HOST/team-a"))
    node = kubelet.Kubelet([first, second])
    assert users(node.credentials("quay.example.com/team-a/app")) == ["run-2", "run-1", "run-2"]


# -- robots per namespace: two organizations, three robots, per-pod and robot-file sources mixed ----------------

TEAM_A, TEAM_B_PODS, TEAM_B_CI = "team-a+nodes", "team-b+pods", "team-b+ci"
ANNOTATION = "quay-cred-helper/robot"
IMAGES = ("team-a/app", "team-b/app", "team-a/db", "team-b/tools", "team-ab/app")


@pytest.fixture
def fleet(node, issuer, tmp_path):
    """A node pulling from one Quay for team-a (a robot token file) and team-b (each pod's service account)."""
    env, etc = node
    robots = {TEAM_A: TEAM_A_TOKEN, TEAM_B_PODS: "P" * 64, TEAM_B_CI: "C" * 64}
    with QuayRegistry(users=USERS, robots=robots) as registry:
        issuer.trusted_by(registry, tmp_path)
        subjects = {TEAM_B_PODS: ("web", "evil"), TEAM_B_CI: ("ci",)}
        for robot, accounts in subjects.items():
            registry.federation[robot] = [
                {"issuer": issuer.url, "subject": f"system:serviceaccount:build:{sa}"} for sa in accounts
            ]
        token = etc / "team-a-token"
        token.write_text(TEAM_A_TOKEN + "\n")
        token.chmod(0o600)
        args = configure(
            etc,
            f"[{registry.host}/team-a]\nrobot = {TEAM_A}\nrobot_token_file = {token}\n\n"
            f"[{registry.host}/team-b]\nservice_account = true\nrobot = {TEAM_B_PODS}\n\n"
            f"[{registry.host}]\nservice_account = true\n",  # the fallback: only a pod's own robot, if any
        )

        def pod(sa, robot=None):
            annotations = {ANNOTATION: robot} if robot else {}
            return kubelet.Pod(
                "build",
                f"pod-{sa}",
                sa,
                annotations,
                lambda aud: issuer.token(f"system:serviceaccount:build:{sa}", aud),
            )

        pods = [pod("web"), pod("ci", TEAM_B_CI), pod("evil", TEAM_A)]

        def provider(clock, rewrite=None):
            attributes = {
                "audience": "quay",
                "cacheType": "ServiceAccount",
                "requireServiceAccount": False,
                "optional": [ANNOTATION],
            }
            return kubelet.Provider(
                PROVIDER, args, env, V1, [registry.host], 600, attributes, clock=clock, rewrite=rewrite
            )

        yield registry, pods, provider


def namespace_of(credential):
    return claims_of(credential["password"])["sub"].partition("+")[0]


def pull_everything(registry, pods, node, rounds, clock):
    """Every pod pulls every image, `rounds` times over, the kubelet's clock an hour on between rounds:
    {(pod, image): [robots the kubelet tried, in order]} for each round, and any wrong namespace seen."""
    seen, wrong = [], []
    for _ in range(rounds):
        for _ in range(2):  # the second time from the kubelet's cache, where it keeps answers
            tried = {}
            for pod in pods:
                for repository in IMAGES:
                    credentials = node.credentials(f"{registry.host}/{repository}", pod)
                    tried[(pod.service_account, repository)] = [c["username"] for c in credentials]
                    wrong += [
                        (pod.service_account, repository, c["username"])
                        for c in credentials
                        if namespace_of(c) != repository.partition("/")[0]
                    ]
            seen.append(tried)
        clock.advance(3600)  # past every cacheDuration: the kubelet runs the provider again
    return seen, wrong


@pytest.mark.parametrize("rounds", [1, pytest.param(3, marks=pytest.mark.slow)])  # slow: 60 provider runs
def test_no_image_ever_gets_another_organizations_jwt_cached_or_not(fleet, rounds):
    registry, pods, provider = fleet
    clock = kubelet.Clock()
    ours = provider(clock)
    seen, wrong = pull_everything(registry, pods, kubelet.Kubelet([ours]), rounds, clock)
    assert wrong == []
    expected = {
        ("web", "team-a/app"): [TEAM_A],  # the namespace's robot token file, whoever the pod
        ("web", "team-b/app"): [TEAM_B_PODS],  # the section's default robot, as pod web's service account
        ("ci", "team-b/app"): [TEAM_B_CI],  # the robot its service account names
        ("evil", "team-a/app"): [TEAM_A],
        ("evil", "team-b/app"): [],  # names team-a's robot: refused for a team-b image
        ("web", "team-ab/app"): [],  # team-a's section does not hold team-ab: the fallback, no robot
        ("ci", "team-ab/app"): [],  # its robot is team-b's: refused for team-ab
    }
    for tried in seen:
        assert {k: tried[k] for k in expected} == expected
        assert tried[("web", "team-b/tools")] == [TEAM_B_PODS] and tried[("ci", "team-a/db")] == [TEAM_A]
    assert all(e.args[0].startswith("exit 1") for e in ours.errors)
    # Our answers are for one image each (cacheKeyType Image): one run per image and service account
    # while the kubelet keeps them, none for the second pull of a round.
    runs_per_round = len(IMAGES) * len(pods)
    failing = 2 + len(pods)  # evil's two team-b images, team-ab for each pod: errors are never cached
    assert ours.runs == rounds * (runs_per_round + failing)
    # Quay issued each JWT once (team-a's file robot; web and ci as their robots): the provider's own
    # cache served every later run, and evil's token was never sent anywhere.
    assert [e["subject"].rpartition(":")[2] for e in registry.federation_log] == ["web", "ci"]
    assert registry.count("/v2/auth") == 1


@pytest.mark.parametrize("cache_key_type", ["Registry", pytest.param("Global", marks=pytest.mark.slow)])
def test_why_not_registry_or_global_the_kubelets_cache_would_mix_namespaces(fleet, cache_key_type):
    """What the kubelet would do with our answers cached per registry (or globally): with image keys,
    the next namespace gets nothing until cacheDuration ends; keyed by the host, as for a host without
    prefix sections, the next namespace gets the first one's JWT."""
    registry, pods, provider = fleet
    clock = kubelet.Clock()

    def as_registry(response):
        return dict(response, cacheKeyType=cache_key_type)

    seen, wrong = pull_everything(registry, pods, kubelet.Kubelet([provider(clock, as_registry)]), 1, clock)
    assert wrong == [] and seen[0][("web", "team-b/app")] == []  # denied: team-a's answer was cached first

    def by_host(response):
        ((key, entry),) = response["auth"].items()
        return dict(response, cacheKeyType=cache_key_type, auth={key.partition("/")[0]: entry})

    _, wrong = pull_everything(registry, pods, kubelet.Kubelet([provider(clock, by_host)]), 1, clock)
    assert ("web", "team-b/app", TEAM_A) in wrong  # the leak the Image answer prevents


def test_a_host_without_prefix_sections_still_answers_per_registry(node, quay):
    env, etc = node
    response = kubelet.run(PROVIDER, robot_file(etc, quay), env, V1, f"{quay.host}/org/app")
    assert response["cacheKeyType"] == "Registry" and list(response["auth"]) == [quay.host]


def test_routed_answers_are_keyed_by_the_image(fleet):
    registry, pods, provider = fleet
    ours = provider(kubelet.Clock())
    image = f"{registry.host}/team-a/app"
    response = kubelet.run(ours.path, ours.args, ours.env, V1, image)
    assert response["cacheKeyType"] == "Image" and list(response["auth"]) == [image]
    assert kubelet.lookup(response, f"{registry.host}/team-ab/app") == []


# -- the provider's files: owner and every directory up to /, checked on the descriptor ---------------------


NOBODY = 65534


def refused_by_provider(env, args, image):
    with pytest.raises(kubelet.Rejected) as refused:
        kubelet.run(PROVIDER, args, env, V1, image)
    result = refused.value.args[1]
    assert result.stdout == b"" and result.stderr.count(b"\n") == 1
    return result.stderr.decode().strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to hand files to another user")
def test_the_provider_refuses_files_root_does_not_own_or_others_can_change(node, quay, tmp_path):
    env, etc = node
    image = f"{quay.host}/org/app"
    args, token = robot_file(etc, quay), etc / "robot-token"
    assert kubelet.run(PROVIDER, args, env, V1, image)["auth"]  # as given: fine
    config = Path(args[1])
    os.chown(config, NOBODY, NOBODY)
    assert refused_by_provider(env, args, image) == (
        f"quay-credential-provider: refusing the provider config file {config}: "
        f"it is owned by uid {NOBODY}, not root: chown root {config}"
    )
    os.chown(config, 0, 0)
    os.chown(token, NOBODY, NOBODY)
    assert f"refusing the robot token file {token}: it is owned by uid {NOBODY}" in refused_by_provider(
        env, args, image
    )
    os.chown(token, 0, 0)
    # Root's 0600 files in a directory anyone can write (not sticky): anyone could swap them.
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    moved = open_dir / "robot-token"
    moved.write_text(ROBOT_TOKEN)
    moved.chmod(0o600)
    args = configure(etc, f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {moved}\n")
    assert refused_by_provider(env, args, image).endswith(
        f"refusing the robot token file {moved}: other users can write its directory {open_dir}: chmod go-w {open_dir}"
    )
    # A directory above, too; a root-owned sticky one (/tmp) is fine.
    inner = open_dir / "deeper"
    inner.mkdir(mode=0o700)
    config = inner / "kubelet.ini"
    config.write_text(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")
    config.chmod(0o600)
    assert f"other users can write its directory {open_dir}" in refused_by_provider(
        env, ["--config", str(config)], image
    )
    open_dir.chmod(0o1777)
    assert kubelet.run(PROVIDER, ["--config", str(config)], env, V1, image)["auth"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to hand files to another user")
@pytest.mark.slow  # over half a second: the full suite
def test_the_provider_checks_the_ca_bundle_and_oidc_files_its_config_names(node, quay, issuer, oidc_ca, tmp_path):
    env, etc = node
    image = f"{quay.host}/org/app"
    robot_file(etc, quay)
    token = etc / "robot-token"
    ca = etc / "ca.pem"
    oidc_ca.cert_pem.write_to_path(str(ca))
    ca.chmod(0o644)
    os.chown(ca, NOBODY, NOBODY)
    args = configure(etc, f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\nca_bundle = {ca}\n")
    assert f"refusing the CA bundle {ca}: it is owned by uid {NOBODY}" in refused_by_provider(env, args, image)
    os.chown(ca, 0, 0)
    assert kubelet.run(PROVIDER, args, env, V1, image)["auth"]  # read through the descriptor it checked

    issuer.trusted_by(quay, tmp_path)
    quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": "node"}]
    node_token = etc / "node-token"
    node_token.write_text(issuer.token("node"))
    node_token.chmod(0o644)
    os.chown(node_token, NOBODY, NOBODY)
    args = configure(etc, f"[{quay.host}]\nrobot = {ROBOT}\noidc = file:{node_token}\n")
    assert f"refusing the OIDC token file {node_token}: it is owned by uid {NOBODY}" in refused_by_provider(
        env, args, image
    )
    assert quay.federation_log == []
    os.chown(node_token, 0, 0)
    assert kubelet.run(PROVIDER, args, env, V1, image)["auth"][quay.host]["username"] == ROBOT

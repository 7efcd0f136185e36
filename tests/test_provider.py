"""quay-credential-provider as the kubelet runs it (tests/fakes/fake_kubelet.py), against the test registry."""

import concurrent.futures
import json
import os
import time
from pathlib import Path

import pytest

from tests.fakes import fake_kubelet as kubelet
from tests.fakes.quay_registry import QuayRegistry, b64url_decode
from tests.support import BIN, ROBOT, ROBOT_TOKEN, ROBOTS, USERS

PROVIDER = os.path.join(BIN, "quay-credential-provider")
V1 = "credentialprovider.kubelet.k8s.io/v1"
OTHER = "org+other"
SA_A, SA_B = "system:serviceaccount:build:a", "system:serviceaccount:build:b"


def claims_of(token):
    return json.loads(b64url_decode(token.split(".")[1]))


@pytest.fixture
def quay(issuer, tmp_path):
    robots = dict(ROBOTS, **{OTHER: "O" * 64})
    with QuayRegistry(users=USERS, robots=robots) as registry:
        issuer.trusted_by(registry, tmp_path)
        registry.federation[ROBOT] = [{"issuer": issuer.url, "subject": s} for s in (SA_A, SA_B, "node")]
        registry.federation[OTHER] = [{"issuer": issuer.url, "subject": SA_B}]
        yield registry


@pytest.fixture
def node(home, tmp_path):
    """A node: the kubelet's environment (no keyring), a root-only config dir, the provider's cache."""
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
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


def test_node_oidc_file(node, quay, issuer):
    env, etc = node
    token = etc / "node-token"
    token.write_text(issuer.token("node"))
    args = configure(etc, f"[{quay.host}]\nrobot = {ROBOT}\noidc = file:{token}\n")
    response = kubelet.run(PROVIDER, args, env, V1, f"{quay.host}/org/app")
    assert claims_of(response["auth"][quay.host]["password"])["sub"] == ROBOT
    assert quay.federation_log[-1]["subject"] == "node"


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
        ("https://quay.example.com/v2/", "quay.example.com/org/app", True),
    ],
)
def test_matching_rules(glob, image, expected):
    assert kubelet.matches(glob, image) is expected


def test_a_cached_answer_imports_nothing_heavy(node, quay):
    from tests.test_startup import HEAVY, _modules

    env, etc = node
    args = robot_file(etc, quay)
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

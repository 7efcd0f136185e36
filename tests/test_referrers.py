"""quay-cred-helper referrers: the referrers API, its tag-schema fallback, pagination and errors."""

import json
import time

import httpx
import pytest

from quay_cred_helper.config import Settings
from quay_cred_helper.errors import RegistryError
from tests.fakes.artifacts import ATTESTATION, SBOM, SIGNATURE, push_demo
from tests.fakes.real_registry import free_port
from tests.support import StallingRegistry, cli, configured, login, timed


@pytest.fixture
def demo(quay, file_keyring):
    pushed = push_demo(quay.url, "org/app", "alice", "alice-password")
    cli(file_keyring, "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
    return pushed


def referrers(env, *args):
    r = cli(env, "referrers", *args)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


@pytest.mark.slow  # over half a second: the full suite
def test_table_by_tag_and_by_digest(quay, file_keyring, demo):
    code, out, err = referrers(file_keyring, f"{quay.host}/org/app:1.0")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["DIGEST", "ARTIFACT", "TYPE", "MEDIA", "TYPE", "SIZE", "CREATED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {demo["signature"]["digest"], demo["sbom"]["digest"]}
    assert rows[demo["sbom"]["digest"]][1:] == [
        SBOM,
        "application/vnd.oci.image.manifest.v1+json",
        str(demo["sbom"]["size"]),
        "2026-11-01T10:05:00Z",
    ]
    assert referrers(file_keyring, f"{quay.host}/org/app@{demo['image']['digest']}")[1] == out


@pytest.mark.slow  # over half a second: the full suite
def test_json_is_the_index(quay, file_keyring, demo):
    code, out, _ = referrers(file_keyring, f"{quay.host}/org/app@{demo['image']['digest']}", "--json")
    index = json.loads(out)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(index["manifests"], key=lambda d: d["digest"]) == sorted(
        [demo["signature"], demo["sbom"]], key=lambda d: d["digest"]
    )


@pytest.mark.slow  # over half a second: the full suite
def test_filter_on_the_server_and_on_the_client(quay, file_keyring, demo):
    ref = f"{quay.host}/org/app:1.0"
    assert referrers(file_keyring, ref, "--artifact-type", SIGNATURE, "--format", "digest")[1].split() == [
        demo["signature"]["digest"]
    ]
    quay.apply_filters = False  # no OCI-Filters-Applied: we filter ourselves
    assert referrers(file_keyring, ref, "--artifact-type", SBOM, "--format", "digest")[1].split() == [
        demo["sbom"]["digest"]
    ]
    assert referrers(file_keyring, ref, "--artifact-type", "application/none")[1].splitlines()[1:] == []


@pytest.mark.slow  # over half a second: the full suite
def test_tree(quay, file_keyring, demo):
    code, out, _ = referrers(file_keyring, f"{quay.host}/org/app:1.0", "--tree", "--json")
    index = json.loads(out)
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert [d["artifactType"] for d in by_digest[demo["sbom"]["digest"]]["referrers"]] == [ATTESTATION]
    assert by_digest[demo["signature"]["digest"]]["referrers"] == []
    code, out, _ = referrers(file_keyring, f"{quay.host}/org/app:1.0", "--tree")
    assert f"└─ {demo['attestation']['digest']}" in out
    code, out, _ = referrers(file_keyring, f"{quay.host}/org/app:1.0", "--tree", "--format", "artifactType")
    assert sorted(out.split()) == sorted([SIGNATURE, SBOM, ATTESTATION])


@pytest.mark.slow  # over half a second: the full suite
def test_pull_scope_only_and_cached(quay, file_keyring, demo):
    before = len(quay.auth_log)
    referrers(file_keyring, f"{quay.host}/org/app:1.0")
    referrers(file_keyring, f"{quay.host}/org/app:1.0")
    asked = quay.auth_log[before:]
    assert [e["scopes"] for e in asked] == [["repository:org/app:pull"]]


@pytest.mark.slow  # over half a second: the full suite
def test_fallback_to_the_tag_schema_when_the_feature_is_off(quay, file_keyring):
    pushed = push_demo(quay.url, "org/app", "alice", "alice-password", tag_schema=True)
    cli(file_keyring, "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
    quay.referrers_api = False
    code, out, err = referrers(file_keyring, f"{quay.host}/org/app:1.0", "--format", "digest")
    assert code == 0
    assert sorted(out.split()) == sorted([pushed["signature"]["digest"], pushed["sbom"]["digest"]])
    assert "has no referrers API: read the tag sha256-" in err


@pytest.mark.slow
def test_fallback_against_a_real_registry(file_keyring, tmp_path):
    from tests.fakes.real_registry import DockerRegistry
    from tests.support import ROBOTS, USERS

    with DockerRegistry(tmp_path, USERS, ROBOTS) as registry:
        pushed = push_demo(f"http://{registry.host}", "org/app", "alice", "alice-password", tag_schema=True)
        cli(file_keyring, "login", registry.host, "-u", "alice", "--password-stdin", stdin="alice-password")
        code, out, err = referrers(file_keyring, f"{registry.host}/org/app:1.0", "--artifact-type", SBOM, "--json")
        assert code == 0, err
        assert [d["digest"] for d in json.loads(out)["manifests"]] == [pushed["sbom"]["digest"]]
        code, out, err = referrers(file_keyring, f"{registry.host}/org/app:1.0", "--tree", "--format", "digest")
        assert code == 0 and len(out.split()) == 3
        # An image nobody signed: no tag, an empty list, exit 0.
        code, out, err = referrers(file_keyring, f"{registry.host}/org/app@{pushed['signature']['digest']}")
        assert (code, out.splitlines()[1:]) == (0, [])
        code, out, err = referrers(file_keyring, f"{registry.host}/org/app@sha256:{'0' * 64}")
        assert code == 1 and err.strip().endswith(f"unknown manifest sha256:{'0' * 64} in {registry.host}/org/app")


@pytest.mark.slow  # over half a second: the full suite
def test_pagination(quay, file_keyring, demo):
    quay.page_size = 1
    code, out, _ = referrers(file_keyring, f"{quay.host}/org/app:1.0", "--format", "digest")
    assert sorted(out.split()) == sorted([demo["signature"]["digest"], demo["sbom"]["digest"]])
    assert quay.count(f"/v2/org/app/referrers/{demo['image']['digest']}") == 2


@pytest.mark.slow  # over half a second: the full suite
def test_no_referrers_is_an_empty_table(quay, file_keyring, demo):
    code, out, _ = referrers(file_keyring, f"{quay.host}/org/app@{demo['signature']['digest']}")
    assert (code, out.splitlines()) == (0, ["DIGEST  ARTIFACT TYPE  MEDIA TYPE  SIZE  CREATED"])


@pytest.mark.parametrize(
    "reference, message",
    [
        ("/org/missing:1.0", "unknown repository {host}/org/missing"),
        ("/org/app@sha256:" + "1" * 64, "unknown manifest sha256:" + "1" * 64 + " in {host}/org/app"),
        ("/org/app:nope", "unknown manifest tag nope in {host}/org/app"),
        ("/org/app", "unknown manifest tag latest in {host}/org/app"),
        ("/org/app@sha256:xyz", "invalid digest: 'sha256:xyz'"),
        ("/Org/App:1", "invalid repository name: 'Org/App'"),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_errors(quay, file_keyring, demo, reference, message):
    code, out, err = referrers(file_keyring, quay.host + reference)
    assert code == 1 and out == ""
    assert err == f"quay-cred-helper: {message.format(host=quay.host)}\n"


@pytest.mark.slow  # over half a second: the full suite
def test_no_access(quay, file_keyring, demo):
    cli(file_keyring, "logout", quay.host)
    code, _, err = referrers(file_keyring, f"{quay.host}/org/app:1.0")  # anonymous: org/app is private
    assert code == 1
    assert err.strip() == (
        f"quay-cred-helper: no access to {quay.host}/org/app: log in with an account that can "
        f"pull it (quay-cred-helper login {quay.host})"
    )


@pytest.mark.slow  # over half a second: the full suite
def test_registry_down(file_keyring):
    host = f"127.0.0.1:{free_port()}"
    code, _, err = referrers(file_keyring, f"{host}/org/app:1.0")
    assert (code, err.strip()) == (1, f"quay-cred-helper: cannot connect to {host}: connection refused")


# -- what a live server cannot do on cue -------------------------------------------------------


def mock_repository(handler, monkeypatch, tmp_path):
    import httpx

    from quay_cred_helper.config import Settings
    from quay_cred_helper.registry.referrers import Repository
    from quay_cred_helper.registry.session import Session

    client = httpx.Client(transport=httpx.MockTransport(handler))
    session = Session(client, "quay.example.com", Settings(), sleep=lambda s: None)
    return Repository(session, session.discover(), "org/app", auth=None)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"manifests": [{"digest": 1}]}', b'{"manifests": "x"}', b"[]"],
)
def test_malformed_index(monkeypatch, tmp_path, body):
    import httpx

    from quay_cred_helper.errors import RegistryError

    repository = mock_repository(lambda r: httpx.Response(200, content=body), monkeypatch, tmp_path)
    with pytest.raises(RegistryError, match="sent a malformed referrers index"):
        repository.referrers("sha256:" + "a" * 64)


def test_next_link_to_another_origin_is_refused(monkeypatch, tmp_path):
    import httpx

    from quay_cred_helper.errors import RegistryError

    def handler(request):
        return httpx.Response(
            200, json={"manifests": []}, headers={"Link": '<https://elsewhere.example/v2/x>; rel="next"'}
        )

    repository = mock_repository(handler, monkeypatch, tmp_path)
    with pytest.raises(RegistryError, match="next-page link to another origin: elsewhere.example"):
        repository.referrers("sha256:" + "a" * 64)


def test_endless_pagination_is_bounded(monkeypatch, tmp_path, capsys):
    import httpx

    from quay_cred_helper.registry.referrers import MAX_PAGES

    calls = []

    def handler(request):
        calls.append(request)
        item = {"mediaType": "m", "digest": f"sha256:{len(calls):064x}", "size": 1}
        return httpx.Response(
            200,
            json={"manifests": [item]},
            headers={"Link": f'</v2/org/app/referrers/x?page={len(calls)}>; rel="next"'},
        )

    repository = mock_repository(handler, monkeypatch, tmp_path)
    listing = repository.referrers("sha256:" + "a" * 64)
    assert len(listing.descriptors) == MAX_PAGES and len(calls) == MAX_PAGES + 1  # +1: the /v2/ ping
    assert listing.notes == [f"stopped after {MAX_PAGES} pages of referrers"]


# -- referrers cannot be made to spin ------------------------------------------------------------------


def test_link_headers_are_read_in_linear_time():
    from quay_cred_helper.registry.referrers import next_link

    start = time.perf_counter()
    assert next_link("<" * 99_000) is None  # the old pattern took about 45 s of CPU on this
    assert next_link("<a>; rel=prev, " * 5000 + '</next>; rel="next"') == "/next"
    assert time.perf_counter() - start < 2


def fanning_repository(children=20, cycle=False):
    from quay_cred_helper.registry.referrers import Repository
    from quay_cred_helper.registry.session import Session

    calls = []

    def handler(request):
        calls.append(request.url.path)
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        subject = request.url.path.rsplit("/", 1)[1]
        if cycle:  # two manifests that refer to each other
            other = "sha256:" + ("b" if subject.endswith("a") else "a") * 64
            items = [{"mediaType": "m", "digest": other, "size": 1}]
        else:
            items = [
                {"mediaType": "m", "digest": f"sha256:{len(calls):032x}{i:032x}", "size": 1} for i in range(children)
            ]
        return httpx.Response(200, json={"manifests": items})

    session = Session(httpx.Client(transport=httpx.MockTransport(handler)), "quay.example.com", Settings())
    return Repository(session, session.discover(), "org/app", auth=None), calls


def test_a_tree_that_never_ends_stops_with_a_clear_message():
    from quay_cred_helper.registry.referrers import MAX_REQUESTS, walk

    repository, calls = fanning_repository()
    with pytest.raises(RegistryError, match=f"stopped after {MAX_REQUESTS} requests to quay.example.com"):
        walk(repository, "sha256:" + "a" * 64, (), depth=10)
    assert len(calls) == MAX_REQUESTS + 1  # + the /v2/ ping


def test_a_digest_met_again_is_not_walked_again():
    from quay_cred_helper.registry.referrers import walk

    repository, calls = fanning_repository(cycle=True)
    listing = walk(repository, "sha256:" + "a" * 64, (), depth=10)
    assert len(calls) == 1 + 2  # /v2/, then each of the two manifests once
    assert listing.descriptors[0]["referrers"][0]["digest"] == "sha256:" + "a" * 64


@pytest.mark.slow  # over half a second: the full suite
def test_json_keeps_the_index_annotations(quay, file_keyring):
    from tests.fakes.artifacts import push_demo

    push_demo(quay.url, "org/app", "alice", "alice-password")
    assert login(file_keyring, quay.host).returncode == 0
    r = cli(file_keyring, "referrers", f"{quay.host}/org/app:1.0", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["annotations"]["org.opencontainers.image.created"].startswith("2026-")


def test_referrer_cells_are_escaped(capsys):
    from quay_cred_helper.commands.referrers import _print_table

    _print_table([{"digest": "sha256:x", "mediaType": "m\x1b[31m", "size": 1, "artifactType": "a\nb\x9b"}])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "a\\x0ab\\x9b" in out and out.count("\n") == 2


# -- a token fetched in the middle of a request keeps the outer deadline -------------------------------


@pytest.mark.slow  # waits out a deadline in real time
def test_referrers_against_a_registry_dripping_its_manifest_headers_stops_at_the_deadline(file_keyring):
    with StallingRegistry() as registry:
        env, _ = configured(file_keyring, f"[{registry.host}]\ndeadline = 3\n")
        r, elapsed = timed(lambda: cli(env, "referrers", f"{registry.host}/org/app:latest", timeout=40))
        paths = list(registry.paths)
    assert r.returncode == 1
    assert r.stderr.startswith(f"quay-cred-helper: {registry.host} did not finish within 3 s".encode()), r.stderr
    assert "/v2/auth" in paths and "/v2/org/app/manifests/latest" in paths  # the token was fetched mid-request
    assert elapsed < 3 + 2.5, elapsed  # the drip alone takes 100 s

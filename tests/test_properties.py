"""Property-based tests of every entry point that reads outside input.

Every generated case must end in a correct result or one clear line of
error (a HelperError), never another exception, and a failed call must leave
what is stored as it was. The cases run are counted and reported at the end.
"""

import io
import json
import string

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quay_cred_helper import config
from quay_cred_helper.errors import HelperError, InputError, RegistryError
from quay_cred_helper.names import registry_key
from quay_cred_helper.protocol import serve
from quay_cred_helper.registry import challenge, jwt
from quay_cred_helper.registry.reference import parse_reference
from tests.fakes.memory_store import MemoryStore
from tests.support import count_case, examples

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
credential_objects = st.fixed_dictionaries(
    {},
    optional={
        "ServerURL": json_values | st.sampled_from(["quay.example.com", "https://Q.example/v1/", ""]),
        "Username": json_values | st.sampled_from(["alice", "org+ci", "<token>", ""]),
        "Secret": json_values | st.text(max_size=30),
    },
)
stdin_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    credential_objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def one_line(exc):
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text


@settings(FAST, max_examples=examples(2000))
@given(verb=st.sampled_from(["store", "get", "erase", "list"]), stdin=stdin_bytes)
@pytest.mark.slow  # over half a second: the full suite
def test_helper_stdin(verb, stdin):
    count_case()
    store = MemoryStore()
    store.add("keep.example.com", "keep.example.com", "u", "kept")
    before = dict(store.entries)
    out = io.StringIO()
    try:
        serve(store, verb, io.BytesIO(stdin), out)
    except HelperError as exc:
        one_line(exc)
        assert store.entries == before
        return
    if verb in ("get", "list"):
        json.loads(out.getvalue())  # exactly one JSON document
        assert out.getvalue().count("\n") == 1
    if verb == "store":
        assert len(store.entries) == len(before) + (0 if len(store.entries) == len(before) else 1)


@settings(FAST, max_examples=examples(1000))
@given(st.text(alphabet=string.printable + "é[]", max_size=60))
def test_server_names(text):
    count_case()
    try:
        key = registry_key(text)
    except InputError as exc:
        one_line(exc)
        return
    assert registry_key(key) == key  # canonical
    assert key == key.lower() and "/" not in key


@settings(FAST, max_examples=examples(500))
@given(st.text(alphabet=string.ascii_letters + string.digits + "./:@-_+", max_size=80))
def test_references(text):
    count_case()
    try:
        key, name, tag, digest = parse_reference(text)
    except InputError as exc:
        one_line(exc)
        return
    assert (tag is None) != (digest is None)


@settings(FAST, max_examples=examples(1500))
@given(st.text(alphabet='Bearer Basic realm service scope="\\, \t=abc:/', max_size=120))
def test_www_authenticate(header):
    count_case()
    parsed = challenge.parse(header)
    assert all(isinstance(scheme, str) and isinstance(params, dict) for scheme, params in parsed)
    found = challenge.bearer([header])
    assert found is None or found["realm"]


def jwt_like(payload):
    import base64

    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{encoded}.c2ln"


@settings(FAST, max_examples=examples(500))
@given(
    st.one_of(
        st.text(max_size=80),
        json_values.map(lambda v: jwt_like(json.dumps(v).encode())),
        st.binary(max_size=40).map(jwt_like),
    )
)
def test_jwt_payloads(token):
    count_case()
    result = jwt.claims(token)
    assert result is None or isinstance(result, dict)
    if result is not None:
        value = jwt.number(result, "exp")
        assert value is None or isinstance(value, float)


def token_session(status, body, headers=None):
    from quay_cred_helper.registry.session import Session

    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body, headers=headers or {}))
    settings_ = config.Settings({"retries": "0"})
    return Session(httpx.Client(transport=transport), "127.0.0.1:5000", settings_, sleep=lambda s: None)


@settings(FAST, max_examples=examples(1000))
@given(
    status=st.sampled_from([200, 200, 200, 400, 401, 403, 404, 405, 429, 500, 503]),
    body=st.one_of(
        st.binary(max_size=100),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                "token": json_values,
                "access_token": json_values,
                "expires_in": json_values,
                "errors": json_values,
            },
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_token_responses(status, body):
    count_case()
    session = token_session(status, body)
    found = challenge.Challenge("http://127.0.0.1:5000", "http://127.0.0.1:5000/v2/auth", "s")
    try:
        token = session.fetch_token(found, "alice", "pw", ["repository:a/b:pull"])
    except RegistryError as exc:
        one_line(exc)
        assert "pw" not in str(exc).replace("pull", "")
        return
    assert status == 200 and isinstance(token.token, str) and token.token
    assert token.expires_at > token.issued_at


@settings(FAST, max_examples=examples(800))
@given(
    st.one_of(
        st.binary(max_size=100),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "manifests": st.lists(
                    st.dictionaries(
                        st.sampled_from(["digest", "mediaType", "size", "artifactType", "annotations"]),
                        json_values,
                        max_size=5,
                    ),
                    max_size=3,
                )
            }
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_referrers_indexes(body):
    from quay_cred_helper.registry.referrers import _index

    count_case()
    try:
        manifests = _index(body, "127.0.0.1:5000")["manifests"]
    except RegistryError as exc:
        one_line(exc)
        return
    assert all(isinstance(m["digest"], str) and isinstance(m["size"], int) for m in manifests)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


@settings(FAST, max_examples=examples(800))
@given(
    content=st.one_of(
        st.text(max_size=120),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {}, optional={"credHelpers": json_values, "auths": json_values, "credsStore": json_values}
        ).map(json.dumps),
    ),
    remove=st.booleans(),
)
def test_client_config_files(workdir, content, remove):
    from quay_cred_helper.commands.configure import plan_json

    count_case()
    path = workdir / "config.json"
    path.write_bytes(content.encode())
    try:
        change = plan_json(str(path), ["quay.example.com"], docker=True, remove=remove)
    except HelperError as exc:
        one_line(exc)
    else:
        if change.new is not None and change.changed:
            data = json.loads(change.new)
            assert remove or data["credHelpers"]["quay.example.com"] == "quay"
    assert path.read_bytes() == content.encode()  # planning never writes


@settings(FAST, max_examples=examples(800))
@given(st.text(alphabet=string.ascii_letters + string.digits + "[]=:._-#; \n\t\x0b", max_size=120))
def test_our_config_file(workdir, monkeypatch, text):
    count_case()
    path = workdir / "config.ini"
    path.write_text(text)
    plain = config.read_plain(text)
    if plain is not None:  # the fast reader answers only where configparser reads exactly the same
        import configparser

        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(text)
        assert plain == {name: dict(parser[name]) for name in parser.sections()} | {"": dict(parser.defaults())}
    try:
        loaded = config.Config(str(path)).settings("quay.example.com")
    except HelperError as exc:
        one_line(exc)
        return
    assert isinstance(loaded.timeout, float) and isinstance(loaded.retries, int)  # parsed, not left as text
    assert isinstance(loaded.robot_exchange, bool) and isinstance(loaded.realm_hosts, list)


@settings(FAST, max_examples=examples(500))
@given(
    st.one_of(
        st.binary(max_size=120),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "version": st.sampled_from([1, 2, "1"]),
                "token": json_values,
                "issued_at": json_values,
                "expires_at": json_values,
            }
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_cache_files(workdir, content):
    from quay_cred_helper.registry.cache import FileTokenCache, Token

    count_case()
    cache = FileTokenCache(str(workdir / "tokens"))
    cache.save("quay.example.com", "abc", [], Token("t", 0, 1))  # creates the file to damage
    path = workdir / "tokens" / "quay.example.com" / "abc.json"
    path.write_bytes(content)
    entry = cache.load("quay.example.com", "abc", [])
    assert entry is None or (isinstance(entry.token, str) and entry.expires_at > entry.issued_at)
    (workdir / "tokens" / "quay.example.com" / "challenge.json").write_bytes(content)
    found = cache.load_challenge("quay.example.com")
    assert found is None or (isinstance(found.base, str) and isinstance(found.service, str))


@settings(FAST, max_examples=examples(500))
@given(
    st.one_of(
        st.binary(max_size=120),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"version": st.just(1), "registries": json_values}).map(lambda v: json.dumps(v).encode()),
    )
)
def test_index_files(workdir, content):
    from quay_cred_helper.credentials.index import Index

    count_case()
    path = workdir / "index.json"
    path.write_bytes(content)
    index = Index(str(path))
    entries = index.entries()
    assert all(isinstance(e.username, str) and isinstance(e.identity, str) for e in entries.values())
    entry = index.get("quay.example.com")  # never raises, whatever the file holds
    assert entry is None or entry.username == entries["quay.example.com"].username


INI_LINES = st.one_of(
    st.sampled_from(
        ["[quay.example.com]", "[DEFAULT]", "[other:5000]", "[]", "[a]b]", "", "# note", "; note", "  x"]
        + ["[quay.example.com/team-a]", "[quay.example.com/team-a/]", "[other:5000/a/b]", "[/x]"]  # path prefixes
    ),
    st.builds(
        lambda key, sep, value, pad: f"{key}{pad}{sep}{pad}{value}",
        st.sampled_from(["timeout", "Retries", "robot", "ca_bundle", "a b", ""]),
        st.sampled_from(["=", ":", " = ", ": "]),
        st.text(alphabet=string.ascii_letters + ":=;# ", max_size=8),
        st.sampled_from(["", " ", "\t"]),
    ),
)


@settings(FAST, max_examples=examples(1500))
@given(st.lists(INI_LINES, max_size=8))
def test_the_fast_config_reader_agrees_with_configparser(lines):
    import configparser

    count_case()
    text = "\n".join(lines)
    plain = config.read_plain(text)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        assert plain is None  # what configparser refuses, the fast reader leaves to it
        return
    if plain is not None:
        assert plain == {name: dict(parser[name]) for name in parser.sections()} | {"": dict(parser.defaults())}

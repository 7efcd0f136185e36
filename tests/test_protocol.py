"""The protocol as a pure function over (store, verb, stdin, stdout)."""

import io
import json

import pytest

from quay_cred_helper.errors import HelperError, InputError, NotFound
from quay_cred_helper.protocol import MAX_INPUT, serve
from tests.fakes.memory_store import MemoryStore


def call(store, verb, stdin=b""):
    out = io.StringIO()
    serve(store, verb, io.BytesIO(stdin), out)
    return out.getvalue()


def creds(server="quay.example.com", username="alice", secret="s3cret"):
    return json.dumps({"ServerURL": server, "Username": username, "Secret": secret}).encode()


def test_store_get_list_erase():
    store = MemoryStore()
    assert call(store, "store", creds("https://Quay.Example.com/")) == ""
    out = call(store, "get", b"quay.example.com\n")
    assert json.loads(out) == {"ServerURL": "quay.example.com", "Username": "alice", "Secret": "s3cret"}
    assert out.count("\n") == 1 and out.endswith("}\n")
    assert json.loads(call(store, "list")) == {"https://Quay.Example.com/": "alice"}
    assert call(store, "erase", b"http://quay.example.com") == ""
    with pytest.raises(NotFound):
        call(store, "get", b"quay.example.com")


@pytest.mark.parametrize("asked", ["quay.example.com", "https://quay.example.com", "QUAY.example.com/v1/"])
def test_get_echoes_the_server_as_asked(asked):
    store = MemoryStore()
    call(store, "store", creds())
    assert json.loads(call(store, "get", asked.encode()))["ServerURL"] == asked


def test_identity_token_is_kept_as_given():
    store = MemoryStore()
    call(store, "store", creds(username="<token>", secret="refresh-xyz"))
    got = json.loads(call(store, "get", b"quay.example.com"))
    assert (got["Username"], got["Secret"]) == ("<token>", "refresh-xyz")


def test_list_never_reads_stdin():
    class Exploding(io.BytesIO):
        def read(self, *args):
            raise AssertionError("list read stdin")

    out = io.StringIO()
    serve(MemoryStore(), "list", Exploding(), out)
    assert json.loads(out.getvalue()) == {}


@pytest.mark.parametrize(
    "payload, message",
    [
        (creds(server=""), "no credentials server URL"),
        (creds(username=""), "no credentials username"),
        (b'{"Username": "u", "Secret": "s"}', "no credentials server URL"),
        (b"not json", "invalid JSON on stdin"),
        (b"[1, 2]", "invalid credentials: expected a JSON object"),
        (b'{"ServerURL": 5, "Username": "u", "Secret": "s"}', "invalid credentials: ServerURL must be a string"),
        (b'{"ServerURL": "h", "Username": "u", "Secret": null}', "invalid credentials: Secret must be a string"),
        (b"\xff\xfe", "input is not valid UTF-8"),
        (b" " * (MAX_INPUT + 1), "input too large"),
        (creds(server="not a host"), "invalid registry name"),
    ],
)
def test_bad_store_input_is_refused_and_stores_nothing(payload, message):
    store = MemoryStore()
    call(store, "store", creds("other.example.com"))
    before = dict(store.entries)
    with pytest.raises(InputError) as err:
        call(store, "store", payload)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)
    assert store.entries == before


def test_get_of_unknown_or_impossible_names_is_not_found_and_erase_succeeds():
    store = MemoryStore()
    for name in (b"never.example.com", b"not a registry"):
        with pytest.raises(NotFound) as err:
            call(store, "get", name)
        assert str(err.value) == "credentials not found in native keychain"
        # An erase of nothing succeeds, with no output (podman 4.3.1 crashes on a not-found answer).
        assert call(store, "erase", name) == ""


def test_get_with_empty_stdin_names_the_problem():
    with pytest.raises(InputError, match="no credentials server URL"):
        call(MemoryStore(), "get", b"\n")


def test_unknown_verb():
    with pytest.raises(HelperError):
        call(MemoryStore(), "frobnicate")

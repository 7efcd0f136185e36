"""The fast Secret Service read: against a D-Bus stand-in that misbehaves on request (fast tier), and
against keyring on a real gnome-keyring (full tier), where it must answer exactly what keyring answers."""

import os
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from quay_cred_helper.credentials import secretservice
from quay_cred_helper.errors import KeyringError
from tests.fakes.dbus_server import SESSION, FakeBus
from tests.support import count_case, examples, secret_service_on_bus

SERVICE, USER = "quay-cred-helper", "quay.example.com"
SECRET = '{"username": "alice", "secret": "pâss wörd \\"quoted\\" 🔑"}'
ITEMS = {(SERVICE, USER): [SECRET.encode()]}
ROUND_TRIP = secretservice.TIMEOUT
BOUND = 2 * ROUND_TRIP + 1.0  # two round trips, plus slack for a loaded machine


@pytest.fixture
def bus(tmp_path, monkeypatch):
    """start(behaviour, items=..., abstract=..., mutate=...): a FakeBus that DBUS_SESSION_BUS_ADDRESS names."""
    started = []

    def start(behaviour="normal", items=ITEMS, abstract=False, mutate=None):
        directory = tmp_path / f"bus{len(started)}"
        directory.mkdir()
        fake = FakeBus(directory, items, behaviour, abstract=abstract, mutate=mutate).__enter__()
        started.append(fake)
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", fake.address)
        return fake

    yield start
    for fake in started:
        fake.stop()
        assert not fake.errors, fake.errors


def timed_read(service=SERVICE, username=USER):
    start = time.monotonic()
    value = secretservice.read(service, username)
    return value, time.monotonic() - start


# -- what it sends ------------------------------------------------------------------------------------


def test_reads_in_two_round_trips_and_closes_its_session(bus):
    fake = bus()
    value, elapsed = timed_read()
    assert value == SECRET and elapsed < BOUND
    fake.settle()
    assert fake.batches == [["Hello", "SearchItems", "OpenSession"], ["GetSecrets", "Close"]]
    assert fake.auth_lines == [b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode()]
    (_, search_path, search), _, (_, _, get_secrets), (_, close_path, _) = fake.calls[1:]
    assert search_path == "/org/freedesktop/secrets/aliases/default"
    assert search == ({"service": SERVICE, "username": USER},)  # exactly what keyring searches by
    assert get_secrets == (["/org/freedesktop/secrets/collection/login/0"], SESSION)
    assert close_path == SESSION


@pytest.mark.parametrize("behaviour", ["normal", "reversed", "signals", "big-endian"])
def test_answers_in_any_order_byte_order_or_company_are_read(bus, behaviour):
    bus(behaviour)
    value, elapsed = timed_read()
    assert value == SECRET and elapsed < BOUND


def test_a_failed_close_does_not_lose_the_secret(bus):
    bus("error:Close")
    assert secretservice.read(SERVICE, USER) == SECRET


@pytest.mark.parametrize("after", [b"", b"\xff" * 40, b"l\x02\x01\x01" + b"\xff" * 12])
def test_trouble_after_the_secret_loses_nothing(bus, after):
    from jeepney.low_level import calc_msg_size

    # The answer to GetSecrets whole, then the end, or garbage, where the answer to Close should be.
    bus(mutate=(1, lambda wire: wire[: calc_msg_size(wire)] + after))
    value, elapsed = timed_read()
    assert value == SECRET and elapsed < BOUND


def test_it_hangs_up_only_after_the_close_is_answered(bus):
    # gnome-keyring 42 has crashed when a Close and the client's disconnection came together.
    bus("hang-close")
    value, elapsed = timed_read()
    assert value == SECRET and ROUND_TRIP * 0.9 <= elapsed < BOUND


def test_one_byte_fragments_are_reassembled(bus, monkeypatch):
    monkeypatch.setattr(secretservice, "TIMEOUT", 5.0)  # a few hundred bytes, each on its own, with pauses
    fake = bus("fragments")
    assert secretservice.read(SERVICE, USER) == SECRET
    assert fake.settle().members() == ["Hello", "SearchItems", "OpenSession", "GetSecrets", "Close"]


def test_abstract_socket_address(bus):
    bus(abstract=True)
    assert secretservice.read(SERVICE, USER) == SECRET


def test_the_next_address_is_tried_when_one_does_not_connect(bus, tmp_path, monkeypatch):
    fake = bus()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/nothing-here;tcp:host=x;{fake.address}")
    assert secretservice.read(SERVICE, USER) == SECRET


@pytest.mark.parametrize(
    "secret", [b"", "ünïcødé 🔑".encode(), b"x" * 70_000, b'{"username": "a", "secret": "\\u0000 \\\\"}']
)
def test_secrets_come_back_exactly(bus, secret):
    bus(items={(SERVICE, USER): [secret]})
    assert secretservice.read(SERVICE, USER) == secret.decode()


# -- "don't know": None, so that keyring answers ---------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour, items, calls",
    [
        ("normal", {}, ["Hello", "SearchItems", "OpenSession", "Close"]),  # no item
        ("normal", {(SERVICE, USER): [b"one", b"two"]}, ["Hello", "SearchItems", "OpenSession", "Close"]),
        ("normal", {(SERVICE, "other"): [b"x"], ("other", USER): [b"x"]}, None),
        ("normal", {(SERVICE, USER): [b"\xff\xfe not UTF-8"]}, None),
        ("locked", ITEMS, ["Hello", "SearchItems", "OpenSession", "GetSecrets", "Close"]),
        ("error:Hello", ITEMS, None),
        ("error:OpenSession", ITEMS, None),
        ("error:SearchItems", ITEMS, None),
        ("error:GetSecrets", ITEMS, ["Hello", "SearchItems", "OpenSession", "GetSecrets", "Close"]),
        ("reject", ITEMS, []),
    ],
)
def test_anything_unexpected_is_none_at_once(bus, behaviour, items, calls):
    fake = bus(behaviour, items=items)
    value, elapsed = timed_read()
    assert value is None and elapsed < ROUND_TRIP  # none of these needs a timeout
    if calls is not None:
        assert fake.settle().members() == calls


GARBAGE = [
    "00" * 64,  # not a message
    "6c" + "ff" * 63,  # a little-endian start, then nonsense lengths
    "6c020102" + "00000000" + "01000000" + "00000000",  # protocol version 2
    "42020101" + "00000000" + "01000000" + "00000000",  # big-endian, no fields at all, then EOF
    "6c0201010400000001000000" + "0f000000" + "0501750001000000" + "0000000000000000" + "ffffffff",  # a reply, no sig
    "4f4b",  # text after the authentication
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_then_eof_is_none(bus, garbage):
    bus(f"garbage:{garbage}")
    value, elapsed = timed_read()
    assert value is None and elapsed < BOUND


@pytest.mark.parametrize("size", [1, 15, 16, 40, 100, 200])
def test_eof_mid_message_is_none_at_once(bus, size):
    bus(f"truncate:{size}")
    value, elapsed = timed_read()
    assert value is None and elapsed < ROUND_TRIP


@pytest.mark.parametrize("behaviour", ["hang", "hang-auth", "incomplete:5", "incomplete:100", "trickle"])
@pytest.mark.slow  # over half a second: the full suite
def test_silence_or_fragments_that_never_complete_are_none_within_the_timeout(bus, behaviour):
    bus(behaviour)
    value, elapsed = timed_read()
    assert value is None
    assert 0.9 * ROUND_TRIP <= elapsed < ROUND_TRIP + 1.0  # the trickle keeps every recv busy: one deadline bounds all


@pytest.mark.parametrize(
    "address",
    [
        "",
        "tcp:host=127.0.0.1,port=4000",
        "unix:tmpdir=/tmp",
        "unix:dir=/tmp",
        "unix:runtime=yes",
        "unix:path=/a,abstract=b",
        "unix:path=",
        "unix:path=%zz",
        "unix:path=/run/x,path=/run/y",
        "unix",
        "launchd:env=X",
        "unix:path=/nonexistent/bus",
    ],
)
def test_bus_addresses_it_cannot_use_are_none(monkeypatch, address):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    value, elapsed = timed_read()
    assert value is None and elapsed < ROUND_TRIP


def test_no_bus_address_is_none(monkeypatch):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    assert secretservice.read(SERVICE, USER) is None


def test_bus_address_syntax():
    assert secretservice.bus_addresses("unix:path=/run/user/1000/bus") == [b"/run/user/1000/bus"]
    assert secretservice.bus_addresses("unix:abstract=/tmp/dbus-x,guid=ab") == [b"\0/tmp/dbus-x"]
    assert secretservice.bus_addresses("unix:path=/tmp/a%20b%2c%3Bc,guid=1") == [b"/tmp/a b,;c"]
    assert secretservice.bus_addresses("tcp:host=x;unix:tmpdir=/t;unix:path=/p;unix:abstract=q") == [b"/p", b"\0q"]


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    answer=st.sampled_from([0, 1]),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=4),
)
@pytest.mark.slow  # over half a second: the full suite
def test_damaged_answers_give_the_secret_or_none(bus, answer, cut, flips):
    count_case()

    def damage(wire):
        data = bytearray(wire)
        for at, mask in flips:
            if at < len(data):
                data[at] ^= mask
        return bytes(data[: len(data) - cut % (len(data) + 1)])

    fake = bus(abstract=True, mutate=(answer, damage))
    value, elapsed = timed_read()
    fake.stop()
    assert value is None or isinstance(value, str)
    assert elapsed < BOUND


# -- on a real gnome-keyring, against keyring itself (full tier) ------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=40)
USERNAMES = TEXT.filter(bool)  # keyring deprecates empty ones
SECRETS = TEXT | st.builds(lambda unit, n: (unit * n)[:100_000], TEXT.filter(bool), st.integers(100, 5000))


@pytest.fixture
def real_keyring(secret_service, monkeypatch):
    import keyring
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    for name, value in secret_service.apply({}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KEYRING_PROPERTY_SCHEME", raising=False)
    backend = SecretServiceKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


READS = {"reads": 0, "none": 0}


@pytest.mark.slow
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(triples=st.lists(st.tuples(TEXT, USERNAMES, SECRETS), min_size=1, max_size=3), absent=st.tuples(TEXT, USERNAMES))
def test_reads_exactly_what_keyring_reads(real_keyring, secret_service, triples, absent):
    count_case()
    stored = {}
    try:
        for service, username, secret in triples:
            real_keyring.set_password(service, username, secret)
            stored[(service, username)] = secret
        for (service, username), secret in stored.items():
            expected = real_keyring.get_password(service, username)
            assert expected == secret
            got = secretservice.read(service, username)
            READS["reads"] += 1
            if got is None:  # "don't know" is always safe; gnome-keyring 42 now and then fails a call
                READS["none"] += 1
                assert READS["none"] <= 2 + READS["reads"] // 100 or not secret_service_on_bus(
                    dict(os.environ, DBUS_SESSION_BUS_ADDRESS=secret_service.address)
                ), READS
            else:
                assert got == expected, (service, username)  # never a wrong answer
        if absent not in stored:
            assert real_keyring.get_password(*absent) is None
            assert secretservice.read(*absent) is None
    finally:
        for service, username in stored:
            real_keyring.delete_password(service, username)
    for service, username in stored:
        assert secretservice.read(service, username) is None  # deleted through keyring: gone for the reader too


@pytest.fixture
def own_secret_service(tmp_path_factory, monkeypatch):
    """A gnome-keyring of this test's own: it locks its collection."""
    from tests.conftest import _secret_service

    service = _secret_service(tmp_path_factory, unlock=True)
    for name, value in service.apply({}).items():
        monkeypatch.setenv(name, value)
    yield service
    service.stop()


@pytest.mark.slow
def test_several_items_or_a_locked_collection_leave_it_to_keyring(own_secret_service):
    import secretstorage
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    real_keyring = SecretServiceKeyring()

    connection = secretstorage.dbus_init()
    collection = secretstorage.get_default_collection(connection)
    made = []
    try:
        for extra in ("1", "2"):  # two items matching keyring's query: keyring would pick one
            made.append(collection.create_item("x", {"service": "twice", "username": "u", "extra": extra}, b"pw"))
        assert real_keyring.get_password("twice", "u") == "pw"
        assert secretservice.read("twice", "u") is None
        real_keyring.set_password("locked", "u", "pw")
        assert secretservice.read("locked", "u") == "pw"
        collection.lock()
        assert collection.is_locked()
        value, elapsed = timed_read("locked", "u")
        assert value is None and elapsed < BOUND  # and no prompt: it never unlocks
    finally:
        connection.close()


@pytest.mark.slow
def test_the_keyring_store_is_served_by_the_reader(real_keyring, tmp_path, monkeypatch):
    from quay_cred_helper.credentials.index import Index
    from quay_cred_helper.credentials.keyring_backend import Keyring
    from quay_cred_helper.credentials.keyring_store import KeyringStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    answers = []

    def counted(service, username):
        answers.append(secretservice.read(service, username))
        return answers[-1]

    KeyringStore(Index(str(tmp_path / "index.json")), Keyring()).add("quay.example.com", "q", "alice", "pw-1")
    try:
        store = KeyringStore(Index(str(tmp_path / "index.json")), Keyring(fast_read=counted))
        assert store.get("quay.example.com") == ("alice", "pw-1")
        assert answers == ['{"username": "alice", "secret": "pw-1"}'] and store.keyring._backend is None
    finally:
        real_keyring.delete_password("quay-cred-helper", "quay.example.com")


# -- the Secret Service fast read agrees with keyring, whatever keyring's settings ----------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["store", "erase", "get"]),
        st.sampled_from(["quay.example.com", "other.example.com"]),
        st.sampled_from([None, "KeePassXC"]),  # KEYRING_PROPERTY_SCHEME for this step
        st.text(alphabet="abc123", min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.slow  # a Secret Service
@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPERATIONS)
def test_the_fast_read_agrees_with_keyring(secret_service, monkeypatch, tmp_path_factory, operations):
    import keyring
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    from quay_cred_helper.credentials import secretservice
    from quay_cred_helper.credentials.keyring_backend import Keyring

    count_case()
    secret_service.revive()  # gnome-keyring's own crash in an earlier example is not ours to count
    cache = tmp_path_factory.mktemp("cache")
    for name, value in secret_service.apply({"XDG_CACHE_HOME": str(cache)}).items():
        monkeypatch.setenv(name, value)
    previous = keyring.get_keyring()
    touched = set()
    try:
        for operation, key, scheme, secret in operations:
            if scheme:
                monkeypatch.setenv("KEYRING_PROPERTY_SCHEME", scheme)
            else:
                monkeypatch.delenv("KEYRING_PROPERTY_SCHEME", raising=False)
            backend = SecretServiceKeyring()  # keyring reads KEYRING_PROPERTY_* when it makes a backend
            keyring.set_keyring(backend)
            ours = Keyring(fast_read=secretservice.read)
            touched.add((scheme, key))
            try:
                if operation == "store":
                    ours.set("quay-cred-helper", key, secret)
                elif operation == "erase":
                    ours.delete("quay-cred-helper", key)
            except KeyringError:
                assume(not secret_service.revive())  # the daemon died under us: this example tells nothing
                raise
            assert Keyring(fast_read=secretservice.read).get("quay-cred-helper", key) == backend.get_password(
                "quay-cred-helper", key
            ), (operation, key, scheme)
    finally:
        for scheme, key in touched:  # leave the shared collection as found
            if scheme:
                monkeypatch.setenv("KEYRING_PROPERTY_SCHEME", scheme)
            else:
                monkeypatch.delenv("KEYRING_PROPERTY_SCHEME", raising=False)
            backend = SecretServiceKeyring()
            while backend.get_password("quay-cred-helper", key) is not None:
                backend.delete_password("quay-cred-helper", key)
        keyring.set_keyring(previous)

"""One contract suite for every implementation of the seams: protocol.Store and registry.cache.TokenCache,
and one for every credential source (sources/: a robot token or a keyless robot's OIDC token, from a
variable or a file), in the manner of keyring's BackendBasicTests.

Stores: the in-memory store, the keyring store over keyrings.alt's file
backend, over a real Secret Service (gnome-keyring, full tier), and the
helper's exchanging store in front of it. Token caches: the disk cache and
the null cache (which must never hand anything out).
"""

import os
import types

import keyring
import pytest

from quay_cred_helper.config import Config
from quay_cred_helper.credentials import secretservice
from quay_cred_helper.credentials.index import Index
from quay_cred_helper.credentials.keyring_backend import Keyring
from quay_cred_helper.credentials.keyring_store import KeyringStore
from quay_cred_helper.errors import NotFound
from quay_cred_helper.registry.cache import FileTokenCache, NullTokenCache, Token
from quay_cred_helper.store import HelperStore
from tests.fakes.memory_store import MemoryStore

JWT_SIZED = "eyJ" + "x" * 4000  # identity tokens and JWTs are a few KiB
KEYS = ("quay.example.com", "a.example.com", "b.example.com:5000", "docker.io")  # every key the tests use


@pytest.fixture
def private_dirs(tmp_path, monkeypatch):
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        path = tmp_path / name.lower()
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    return tmp_path


def keyring_store(tmp_path, backend):
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    return KeyringStore(Index(str(tmp_path / "index.json")), Keyring(fast_read=secretservice.read)), previous


@pytest.fixture(
    params=[
        "memory",
        "keyring-file",
        "exchanging-keyring-file",
        pytest.param("keyring-secret-service", marks=pytest.mark.slow),
    ]
)
def store(request, private_dirs, monkeypatch):
    kind = request.param
    if kind == "memory":
        yield MemoryStore()
        return
    if kind.endswith("keyring-file"):
        from keyrings.alt.file import PlaintextKeyring

        monkeypatch.setenv("QUAY_CRED_HELPER_ALLOW_PLAINTEXT", "1")
        backend = PlaintextKeyring()
    else:
        service = request.getfixturevalue("secret_service")
        for name, value in service.apply({}).items():
            monkeypatch.setenv(name, value)
        from keyring.backends.SecretService import Keyring as SecretServiceKeyring

        backend = SecretServiceKeyring()
    inner, previous = keyring_store(private_dirs, backend)
    if kind.startswith("exchanging"):
        cache = FileTokenCache(str(private_dirs / "tokens"))
        config = Config(str(private_dirs / "none.ini"))
        use = types.SimpleNamespace(config=config, cache=cache, keyring_store=inner, tokens=_no_exchange)
        yield HelperStore(inner.index, use, warn=_no_warning)
    else:
        yield inner
    for key in KEYS:  # a Secret Service outlives the test: leave its collection as found
        if backend.get_password("quay-cred-helper", key) is not None:
            backend.delete_password("quay-cred-helper", key)
    keyring.set_keyring(previous)


def _no_exchange(cached=True):
    raise AssertionError("users' credentials need no token exchange")


def _no_warning(message):
    raise AssertionError(f"unexpected warning: {message}")


def test_get_returns_what_was_added(store):
    store.add("quay.example.com", "https://quay.example.com/", "alice", "pw-1")
    assert store.get("quay.example.com") == ("alice", "pw-1")


def test_add_replaces(store):
    store.add("quay.example.com", "quay.example.com", "alice", "pw-1")
    store.add("quay.example.com", "quay.example.com", "bob", "pw-2")
    assert store.get("quay.example.com") == ("bob", "pw-2")
    assert store.list() == {"quay.example.com": "bob"}


def test_nothing_stored_is_not_found(store):
    with pytest.raises(NotFound) as err:
        store.get("quay.example.com")
    assert str(err.value) == "credentials not found in native keychain"
    with pytest.raises(NotFound):
        store.delete("quay.example.com")


def test_delete_removes_only_its_key(store):
    store.add("a.example.com", "a.example.com", "alice", "pw-a")
    store.add("b.example.com:5000", "b.example.com:5000", "bob", "pw-b")
    store.delete("a.example.com")
    with pytest.raises(NotFound):
        store.get("a.example.com")
    assert store.get("b.example.com:5000") == ("bob", "pw-b")
    assert store.list() == {"b.example.com:5000": "bob"}


def test_list_shows_servers_and_usernames(store):
    assert store.list() == {}
    store.add("quay.example.com", "https://quay.example.com", "alice", "pw")
    store.add("docker.io", "https://index.docker.io/v1/", "<token>", JWT_SIZED)
    assert store.list() == {"https://quay.example.com": "alice", "https://index.docker.io/v1/": "<token>"}


@pytest.mark.parametrize("secret", [JWT_SIZED, 'pâss wörd "quoted" \\ 🔑', " leading and trailing "])
def test_secrets_come_back_exactly(store, secret):
    store.add("quay.example.com", "quay.example.com", "$app", secret)
    assert store.get("quay.example.com") == ("$app", secret)


# -- token caches ------------------------------------------------------------------------------


@pytest.fixture
def clock():
    now = [1_000_000.0]
    return now


def test_disk_cache_hands_out_fresh_tokens_only(tmp_path, clock):
    cache = FileTokenCache(str(tmp_path / "tokens"), clock=lambda: clock[0])
    cache.save("quay.example.com", "id", ["repository:a/b:pull"], Token("t", clock[0], clock[0] + 3600, ["x"]))
    hit = cache.load("quay.example.com", "id", ["repository:a/b:pull"])
    assert (hit.token, hit.access) == ("t", ["x"])
    assert cache.load("quay.example.com", "other-id", ["repository:a/b:pull"]) is None
    assert cache.load("quay.example.com", "id", []) is None
    clock[0] += 3600 - 300  # within the margin: min(300 s, 10% of the lifetime) before expiry
    assert cache.load("quay.example.com", "id", ["repository:a/b:pull"]) is None


def test_disk_cache_drop_forgets_one_registry(tmp_path, clock):
    cache = FileTokenCache(str(tmp_path / "tokens"), clock=lambda: clock[0])
    for key in ("a.example.com", "b.example.com"):
        cache.save(key, "id", [], Token("t-" + key, clock[0], clock[0] + 3600))
    cache.drop("a.example.com")
    assert cache.load("a.example.com", "id", []) is None
    assert cache.load("b.example.com", "id", []).token == "t-b.example.com"


def test_null_cache_hands_out_nothing_and_forgets_the_old_cache(tmp_path, clock):
    disk = FileTokenCache(str(tmp_path / "tokens"), clock=lambda: clock[0])
    disk.save("quay.example.com", "id", [], Token("t", clock[0], clock[0] + 3600))
    null = NullTokenCache(stale=disk)
    null.save("quay.example.com", "id", [], Token("u", clock[0], clock[0] + 3600))
    assert null.load("quay.example.com", "id", []) is None
    with null.lock("quay.example.com", "id", []):
        pass
    null.drop("quay.example.com")
    assert disk.load("quay.example.com", "id", []) is None
    assert not os.path.exists(tmp_path / "tokens" / "quay.example.com")


# -- credential sources: one suite that every source runs (sources/) ---------------------------------------


class Source:
    """One credential source as the suite drives it: `put(text)` places the token where the source reads it,
    `read()` and `identity()` are the source's own, `held`: a robot token (its identity follows the token)."""

    def __init__(self, kind, tmp_path, monkeypatch):
        from quay_cred_helper.config import Settings
        from quay_cred_helper.sources.keyless import Keyless
        from quay_cred_helper.sources.robot_token import RobotToken

        self.kind, self.monkeypatch = kind, monkeypatch
        self.path = tmp_path / "source" / "token"
        self.path.parent.mkdir(mode=0o700)
        spec = "env:SOURCE_TOKEN" if kind.endswith("env") else f"file:{self.path}"
        self.held = kind.startswith("robot-token")
        self.file = spec.startswith("file:")
        if self.held:
            source = RobotToken("org+ci", spec)
            self.read, self.identity = source.read, source.identity
        else:
            source = Keyless("org+ci", spec, "quay")
            self.read, self.identity = lambda: source.oidc_token("quay.example.com", Settings()), source.identity

    def put(self, text):
        if self.file:
            self.path.write_text(text)
            self.path.chmod(0o600)
        else:
            self.monkeypatch.setenv("SOURCE_TOKEN", text)


@pytest.fixture(params=["robot-token-env", "robot-token-file", "keyless-env", "keyless-file"])
def source(request, private_dirs, monkeypatch):
    monkeypatch.delenv("SOURCE_TOKEN", raising=False)
    return Source(request.param, private_dirs, monkeypatch)


TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjaSJ9.c2lnbmF0dXJl"  # JWT-shaped: every source accepts it


def test_a_source_reads_its_token_stripped(source):
    source.put(TOKEN + "\n")
    assert source.read() == TOKEN
    assert source.read() == TOKEN  # read afresh, the same


def test_a_sources_identity_holds_no_secret_and_is_stable(source):
    source.put(TOKEN)
    identity = source.identity()
    assert identity and TOKEN not in identity and TOKEN.encode().hex() not in identity
    assert source.identity() == identity


def test_a_held_tokens_identity_follows_the_token(source):
    source.put(TOKEN)
    first = source.identity()
    source.put(TOKEN.replace("c2ln", "b3Ro"))  # the same size, in place (the same inode)
    if source.file:
        os.utime(source.path, ns=(1, 1))  # and a new mtime, however coarse the file system's clock
    assert (source.identity() != first) == source.held  # keyless: robot, source and audience only


def test_a_missing_or_empty_source_is_a_source_error_with_its_fix(source):
    from quay_cred_helper.errors import SourceError

    with pytest.raises(SourceError) as missing:
        source.read()
    assert missing.value.problem and missing.value.fix
    source.put("  \n")
    with pytest.raises(SourceError) as empty:
        source.read()
    assert empty.value.problem and empty.value.fix


@pytest.mark.posix  # file modes
def test_a_source_file_is_checked_as_every_door_checks_it(source):
    """files.check_private and one size cap for every file a source names; nothing to check for a variable."""
    from quay_cred_helper.errors import ConfigError
    from quay_cred_helper.sources import MAX_TOKEN

    source.put(TOKEN)
    if not source.file:
        assert source.read() == TOKEN
        return
    source.path.chmod(0o620)
    with pytest.raises(ConfigError, match="other users can write it"):
        source.read()
    source.put("x" * (MAX_TOKEN + 1))
    with pytest.raises(ConfigError, match="more than 64 KiB"):
        source.read()

import json
import os
from pathlib import Path

import httpx
import pytest

from quay_cred_helper.config import Settings
from quay_cred_helper.errors import InputError, RegistryError
from quay_cred_helper.names import is_loopback, is_robot, registry_key
from tests.support import ROBOT, ROBOT_TOKEN, helper, store


@pytest.mark.parametrize(
    "server",
    [
        "quay.example.com",
        "https://quay.example.com",
        "http://quay.example.com/",
        "QUAY.Example.COM",
        "https://Quay.example.com/v1/",
        "quay.example.com/org/repo",
        " quay.example.com\n",
    ],
)
def test_forms_of_one_registry_share_a_key(server):
    assert registry_key(server) == "quay.example.com"


@pytest.mark.parametrize(
    "server", ["https://index.docker.io/v1/", "docker.io", "index.docker.io", "registry-1.docker.io", "DOCKER.IO"]
)
def test_docker_hub_aliases(server):
    assert registry_key(server) == "docker.io"


def test_ports_and_ipv6_are_kept():
    assert registry_key("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    assert registry_key("[::1]:5000") == "[::1]:5000"
    assert registry_key("quay.example.com:8443") != registry_key("quay.example.com")


@pytest.mark.parametrize("bad", ["", "  ", "ftp://host", "host name", "-bad.example", "a..b", "host:99999999"])
def test_invalid_names_are_refused(bad):
    with pytest.raises(InputError):
        registry_key(bad)


def test_loopback():
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:80")
    assert not is_loopback("127.example.com") and not is_loopback("quay.example.com")


def test_robots():
    assert is_robot("org+ci")
    assert not is_robot("alice") and not is_robot("$app") and not is_robot("<token>")


# -- registry names: IPv6 literals, cache folders, loopback -------------------------------------


@pytest.mark.parametrize("name", ["[..]", "[.]", "[a:5000]", "[::1", "[:::1]", "[1.2.3.4]"])
def test_odd_bracketed_names_are_refused(name):
    with pytest.raises(InputError, match="invalid registry name"):
        registry_key(name)


@pytest.mark.slow  # over half a second: the full suite
def test_odd_names_cannot_reach_other_registries_tokens(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    helper(file_keyring, "get", quay.host)  # caches a JWT
    tokens = Path(file_keyring["XDG_CACHE_HOME"], "quay-cred-helper", "tokens")
    before = sorted(tokens.rglob("*.json"))
    assert before
    for name in ("[..]", "[.]"):
        r = helper(file_keyring, "erase", name)
        assert (r.returncode, r.stdout) == (0, b"")  # nothing there to erase
        r = helper(file_keyring, "store", json.dumps({"ServerURL": name, "Username": "u", "Secret": "s"}))
        assert r.returncode == 1 and r.stdout.startswith(b"invalid registry name")
    assert sorted(tokens.rglob("*.json")) == before


def test_cache_folders_are_unique_and_inside_the_root(tmp_path):
    from quay_cred_helper.registry.cache import FileTokenCache

    cache = FileTokenCache(str(tmp_path / "tokens"))
    keys = ["[::1]:5000", "[::1:5000]", "a:5000", "127.0.0.1:5000", "127.0.0.1_5000.example"]
    folders = [cache._dir(registry_key(k)) for k in keys if not k.startswith("127.0.0.1_")]
    assert len(set(folders)) == len(folders)
    assert all(os.path.dirname(f) == str(tmp_path / "tokens") for f in folders)


@pytest.mark.parametrize(
    "key, loopback",
    [
        ("127.0.0.1:5000", True),
        ("127.255.255.254", True),
        ("localhost:8080", True),
        ("[::1]:5000", True),
        ("[0:0:0:0:0:0:0:1]", True),
        ("127.0.0.256", False),  # a DNS name, not an address
        ("127.1.300.1", False),
        ("127.0.0.1.example.com", False),
        ("127.000.0.1", False),
        ("[::2]", False),
    ],
)
def test_loopback_means_an_ip_literal_or_localhost(key, loopback):
    assert is_loopback(registry_key(key)) is loopback


def test_loopback_names_are_one_host_for_the_realm():
    from quay_cred_helper.registry.session import Session

    session = Session(httpx.Client(), "127.0.0.1:8080", Settings())
    session.check_realm("http://localhost:8080/v2/auth")  # a Quay whose SERVER_HOSTNAME says localhost
    with pytest.raises(RegistryError, match="refusing to send credentials over plain http"):
        Session(httpx.Client(), "127.0.0.256:8080", Settings()).check_realm("http://127.0.0.256:8080/v2/auth")
    with pytest.raises(RegistryError, match="the token realm is not on 127.0.0.1"):
        session.check_realm("http://10.0.0.1/v2/auth")

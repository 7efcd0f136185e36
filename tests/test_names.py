import pytest

from quay_cred_helper.errors import InputError
from quay_cred_helper.names import is_loopback, is_robot, registry_key


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

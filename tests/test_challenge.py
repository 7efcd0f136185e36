import json
import time
from pathlib import Path

import httpx
import pytest

from quay_cred_helper.errors import RegistryError
from quay_cred_helper.registry.challenge import bearer, parse
from tests.support import ROBOT, ROBOT_TOKEN, cli, helper, jwt_with, login, store


def test_quay_challenge():
    header = 'Bearer realm="https://quay.example.com/v2/auth",service="quay.example.com",scope="repository:a/b:pull"'
    assert parse(header) == [
        (
            "bearer",
            {
                "realm": "https://quay.example.com/v2/auth",
                "service": "quay.example.com",
                "scope": "repository:a/b:pull",
            },
        )
    ]


def test_quoted_strings_keep_commas_and_escaped_quotes():
    header = r'Bearer realm="https://h/auth?a=1,b=2", service="a \"quoted\" name", error=insufficient_scope'
    ((scheme, params),) = parse(header)
    assert params == {"realm": "https://h/auth?a=1,b=2", "service": 'a "quoted" name', "error": "insufficient_scope"}


def test_several_challenges_in_one_header():
    header = 'Basic realm="Registry Realm", Bearer realm="https://h/v2/auth",service="h" , Negotiate abc=='
    assert parse(header) == [
        ("basic", {"realm": "Registry Realm"}),
        ("bearer", {"realm": "https://h/v2/auth", "service": "h"}),
        ("negotiate", {"": "abc=="}),
    ]
    assert bearer([header]) == {"realm": "https://h/v2/auth", "service": "h"}


def test_case_and_whitespace():
    ((scheme, params),) = parse('BEARER  Realm = "https://h/a" ,SERVICE=h')
    assert scheme == "bearer" and params == {"realm": "https://h/a", "service": "h"}


def test_basic_only_or_no_realm_is_no_bearer():
    assert bearer(['Basic realm="x"']) is None
    assert bearer(['Bearer service="h"']) is None
    assert bearer([]) is None


@pytest.mark.parametrize(
    "junk", ["", ",,,", "=", 'Bearer realm="unterminated', "Bearer realm=", "\x00\x01", "Bearer ,="]
)
def test_malformed_headers_do_not_raise(junk):
    parse(junk)
    bearer([junk])


# -- remembered challenges expire, and a 401 under one re-discovers ---------------------------------


def challenge_file(env, host):
    return Path(env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens", host.replace(":", "_"), "challenge.json")


@pytest.mark.slow  # over half a second: the full suite
def test_a_maintenance_page_answering_200_once_does_not_switch_the_exchange_off(file_keyring, quay):
    store(file_keyring, quay.host, ROBOT, ROBOT_TOKEN)
    quay.v2_open = True
    assert json.loads(helper(file_keyring, "get", quay.host).stdout)["Secret"] == ROBOT_TOKEN
    quay.v2_open = False
    # A minute later (the remembered "no authentication" is that old), the exchange is back.
    path = challenge_file(file_keyring, quay.host)
    data = json.loads(path.read_text())
    path.write_text(json.dumps(dict(data, saved_at=data["saved_at"] - 61)))
    secret = json.loads(helper(file_keyring, "get", quay.host).stdout)["Secret"]
    assert secret != ROBOT_TOKEN and quay.auth_log[-1]["user"] == ROBOT


@pytest.mark.slow  # over half a second: the full suite
def test_referrers_after_a_maintenance_200_rediscovers_on_the_401(file_keyring, quay):
    from tests.fakes.artifacts import push_demo

    push_demo(quay.url, "org/app", "alice", "alice-password")
    assert login(file_keyring, quay.host).returncode == 0
    quay.v2_open = True
    cli(file_keyring, "token", quay.host)  # remembers "no authentication needed"
    quay.v2_open = False
    r = cli(file_keyring, "referrers", f"{quay.host}/org/app:1.0", "--format", "digest")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 2


def moving_realm(realms, refused):
    """A registry whose /v2/ names realms[-1]; a realm in `refused` answers 401."""
    seen = []

    def handler(request):
        seen.append(str(request.url))
        if request.url.path == "/v2/":
            header = f'Bearer realm="https://quay.example.com{realms[-1]}",service="s"'
            return httpx.Response(401, headers={"WWW-Authenticate": header})
        if request.url.path in refused:
            return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "Invalid"}]})
        return httpx.Response(200, json={"token": jwt_with({"exp": time.time() + 3600, "access": []})})

    return handler, seen


def test_a_realm_that_moved_is_found_again_and_a_refusal_is_never_resent(tmp_path):
    from quay_cred_helper.registry.cache import FileTokenCache
    from tests.support import tokens

    realms = ["/v2/auth"]
    handler, seen = moving_realm(realms, refused={"/v2/auth"})
    cache = FileTokenCache(str(tmp_path / "tokens"))
    exchange = tokens(tmp_path / "none.ini", cache=cache, client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(RegistryError, match="refused the credentials: Invalid"):
        exchange.get("quay.example.com", credentials=lambda: ("alice", "pw"))
    assert [u.split("?")[0] for u in seen] == ["https://quay.example.com/v2/", "https://quay.example.com/v2/auth"]
    # Remembered, the realm is refused once, /v2/ is asked again, and the same realm is not asked twice.
    seen.clear()
    from quay_cred_helper.registry.challenge import Challenge

    cache.save_challenge(
        "quay.example.com", Challenge("https://quay.example.com", "https://quay.example.com/v2/auth", "s")
    )
    with pytest.raises(RegistryError):
        exchange.get("quay.example.com", credentials=lambda: ("alice", "pw"))
    assert [u.split("?")[0] for u in seen] == ["https://quay.example.com/v2/auth", "https://quay.example.com/v2/"]
    # The realm moved: the remembered one refuses, /v2/ names the new one, which answers.
    realms.append("/v2/auth2")
    cache.save_challenge(
        "quay.example.com", Challenge("https://quay.example.com", "https://quay.example.com/v2/auth", "s")
    )
    seen.clear()
    assert exchange.get("quay.example.com", credentials=lambda: ("alice", "pw")).token.endswith(".c2ln")
    assert [u.split("?")[0] for u in seen][-1] == "https://quay.example.com/v2/auth2"

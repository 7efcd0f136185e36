import pytest

from quay_cred_helper.registry.challenge import bearer, parse


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

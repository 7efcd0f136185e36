"""Config files: every number setting checked, identity and trust settings only under their registry."""

import pytest

from tests.fakes import fake_kubelet as kubelet
from tests.support import PROVIDER, ROBOT, ROBOT_TOKEN, V1, cli, configured, helper, store

# -- numbers that parse but make no sense ----------------------------------------------------------------

NONSENSE = [
    ("deadline", "nan"),
    ("deadline", "inf"),
    ("deadline", "1e400"),
    ("timeout", "nan"),
    ("timeout", "-1"),
    ("retries", "-1"),
]


def refusal(path, setting, value):
    return f"cannot use config file {path}: {setting} = {value}: not a "


@pytest.mark.slow  # over half a second: the full suite
def test_nonsense_numbers_are_config_errors_naming_the_setting_and_the_file(file_keyring, tmp_path):
    """Every value through the helper (a cold robot `get`), two (a float and an int) through the CLI and the
    provider: each executable a process per value, so the fast tier stays fast; every parser in-process below."""
    host = "127.0.0.1:1"
    env, path = configured(file_keyring, "")
    store(env, host, ROBOT, ROBOT_TOKEN)
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    token = etc / "robot-token"
    token.write_text(ROBOT_TOKEN)
    token.chmod(0o600)
    config = etc / "kubelet.ini"
    for setting, value in NONSENSE:
        path.write_text(f"[{host}]\n{setting} = {value}\n")
        runs = [(helper(env, "get", host), "stdout")]
        if (setting, value) in (("deadline", "nan"), ("retries", "-1")):
            runs.append((cli(env, "token", host), "stderr"))
        for r, out in runs:
            text = getattr(r, out).decode()
            assert r.returncode == 1 and text.count("\n") == 1, text
            assert refusal(path, setting, value) in text, text
        if len(runs) == 1:
            continue
        config.write_text(f"[{host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n{setting} = {value}\n")
        config.chmod(0o600)
        with pytest.raises(kubelet.Rejected) as refused:
            kubelet.run(PROVIDER, ["--config", str(config)], env, V1, f"{host}/org/app")
        stderr = refused.value.args[1].stderr.decode()
        assert refusal(config, setting, value) in stderr and stderr.count("\n") == 1, stderr


def test_every_number_setting_is_checked_in_process():
    from quay_cred_helper.config import Settings

    for name in ("deadline", "timeout", "connect_timeout"):
        for value in ("nan", "inf", "-inf", "1e400", "-1", "0", "86401", "x"):
            with pytest.raises(ValueError, match=f"^{name} = "):
                Settings({name: value})
        assert getattr(Settings({name: "0.5"}), name) == 0.5
    for value in ("-1", "101", "1.5", "1e400", "x"):
        with pytest.raises(ValueError, match="^retries = "):
            Settings({"retries": value})
    assert Settings({"retries": "0"}).retries == 0


# -- identity and trust settings must name their registry -------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_identity_and_trust_settings_under_default_are_refused(file_keyring):
    from quay_cred_helper.config import REGISTRY_ONLY

    env, path = configured(file_keyring, "")
    store(env, "quay.example.com", ROBOT, ROBOT_TOKEN)
    settings = [
        "robot = org+ci",
        "oidc = env:ID_TOKEN",
        "audience = quay",
        "robot_token_file = /etc/token",
        "robot_token_env = QUAY_ROBOT_TOKEN",
        "service_account = true",
        "sso_issuer = https://idp.example",
        "sso_client_id = quay-cli",
        "realm_hosts = evil.example",
        "insecure_http = true",
    ]
    assert [setting.split(" ")[0] for setting in settings] == list(REGISTRY_ONLY)
    for setting in settings:
        name = setting.split(" ")[0]
        path.write_text(f"[DEFAULT]\n{setting}\n\n[quay.example.com]\ntimeout = 5\n")
        expected = (
            f"cannot use config file {path}: {name} is under [DEFAULT]: "
            "identity and trust settings must name their registry: move it under [HOST]"
        )
        r = helper(env, "get", "other.example.com")  # any registry, stored or not, keyless or not
        assert (r.returncode, r.stdout.decode().strip()) == (1, expected)
        if name != "robot":
            continue
        r = helper(env, "get", "quay.example.com")  # a stored robot, about to be exchanged
        assert (r.returncode, r.stdout.decode().strip()) == (1, expected)
        r = cli(env, "token", "quay.example.com")
        assert (r.returncode, r.stderr.decode().strip()) == (1, f"quay-cred-helper: {expected}")

"""quay-cred-helper doctor against live local registries, healthy and not."""

import contextlib
import json
import re
import socket
import threading
import time

import pytest

from tests.fakes.real_registry import free_port
from tests.support import StallingRegistry, cli, configured, timed


def doctor(env, *args):
    start = time.monotonic()
    r = cli(env, "doctor", "--json", *args, timeout=60)
    return r.returncode, json.loads(r.stdout), time.monotonic() - start


def by_check(report):
    return {c["check"]: c for c in report["checks"]}


@pytest.mark.slow  # over half a second: the full suite
def test_healthy(file_keyring, quay):
    cli(file_keyring, "login", quay.host, "-u", "alice", "--password-stdin", stdin="alice-password")
    cli(file_keyring, "configure", quay.host)
    code, report, _ = doctor(file_keyring)
    checks = by_check(report)
    assert code == 0 and report["ok"]
    assert checks["keyring"]["status"] == "WARN"  # the file backend is plaintext, allowed by opt-in
    for name in ("clients", "reachable", "auth", "credentials", "referrers API", "clock"):
        assert checks[f"{quay.host} {name}"]["status"] == "OK", checks[f"{quay.host} {name}"]
    assert checks[f"{quay.host} credentials"]["detail"] == "alice accepted"


@pytest.mark.slow  # over half a second: the full suite
def test_rejected_credentials_fail_once(file_keyring, quay):
    cli(file_keyring, "login", quay.host, "-u", "alice", "--password-stdin", "--no-verify", stdin="wrong")
    code, report, _ = doctor(file_keyring, quay.host)
    check = by_check(report)[f"{quay.host} credentials"]
    assert code == 1 and check["status"] == "FAIL" and "Invalid Username or Password" in check["detail"]
    assert [e["status"] for e in quay.auth_log] == [401]  # one attempt, never retried


def test_clock_skew_and_missing_referrers_api_warn(file_keyring, quay):
    quay.date_offset = -120
    quay.referrers_api = False
    code, report, _ = doctor(file_keyring, quay.host)
    checks = by_check(report)
    clock = checks[f"{quay.host} clock"]
    assert clock["status"] == "WARN" and re.search(r"is \+1(19|20|21) s off", clock["detail"]), clock
    assert checks[f"{quay.host} referrers API"]["status"] == "WARN"
    assert checks[f"{quay.host} credentials"]["status"] == "WARN"  # none stored
    assert code == 0


def test_registry_down_fails_fast(file_keyring):
    host = f"127.0.0.1:{free_port()}"
    code, report, elapsed = doctor(file_keyring, host)
    assert code == 1 and by_check(report)[f"{host} reachable"]["status"] == "FAIL"
    assert elapsed < 10


@pytest.mark.slow  # real time or many processes: the full suite
def test_registry_that_never_answers_fails_within_10_seconds(file_keyring):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    host = f"127.0.0.1:{server.getsockname()[1]}"
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        code, report, elapsed = doctor(file_keyring, host)
        assert code == 1 and "did not answer" in by_check(report)[f"{host} reachable"]["detail"]
        assert elapsed < 10
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_missing_keyring_fails(home):
    home["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    code, report, _ = doctor(home)
    assert code == 1 and by_check(report)["keyring"]["status"] == "FAIL"


def test_text_output(file_keyring):
    r = cli(file_keyring, "doctor")
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("WARN  keyring: keyrings.alt.file.PlaintextKeyring")
    assert lines[1].startswith("      fix: ")


def test_a_helper_missing_from_path_is_flagged_with_its_fix(file_keyring):
    # A leftover `credsStore: desktop` without Docker Desktop: docker and `oras login` fail everywhere.
    config = f"{file_keyring['DOCKER_CONFIG']}/config.json"
    cli(file_keyring, "configure", "quay.example.com", "--docker")
    with open(config) as f:
        data = json.load(f)
    data["credsStore"] = "desktop"
    data["credHelpers"]["gcr.io"] = "no-such-helper"
    with open(config, "w") as f:
        json.dump(data, f)
    code, report, _ = doctor(file_keyring)
    flagged = [c for c in report["checks"] if c["check"] == "client helpers"]
    assert code == 1 and [(c["status"], c["fix"]) for c in flagged] == [
        ("FAIL", f"install docker-credential-desktop, or remove credsStore from {config}"),
        ("WARN", f"install docker-credential-no-such-helper, or remove credHelpers['gcr.io'] from {config}"),
    ]
    assert flagged[0]["detail"] == f"{config}: credsStore names docker-credential-desktop, which is not on PATH"


# -- doctor and proxy passwords -------------------------------------------------------------------------


def test_doctor_redacts_proxy_passwords_and_survives_odd_values(file_keyring):
    env = dict(file_keyring, HTTPS_PROXY="alice:proxy-pass-1@proxy:3128", HTTP_PROXY="http://alice:proxy-pass-2@:3128")
    r = cli(env, "doctor")
    assert b"internal error" not in r.stderr and b"proxy-pass" not in r.stdout + r.stderr
    assert b"HTTPS_PROXY=***@proxy:3128" in r.stdout and b"HTTP_PROXY=http://***@:3128" in r.stdout


# -- doctor: a stalling check is a FAIL with its fix, and the others still run --------------------------------


@pytest.mark.slow  # waits out two deadlines in real time
def test_doctor_reports_each_stalling_check_and_goes_on(file_keyring):
    with StallingRegistry(drip_auth=True) as registry:
        env, path = configured(file_keyring, f"[{registry.host}]\ndeadline = 2\n")
        cli(env, "login", registry.host, "-u", "alice", "--password-stdin", "--no-verify", stdin="alice-password")
        r, elapsed = timed(lambda: cli(env, "doctor", "--json", registry.host, timeout=60))
    assert r.returncode == 1, r.stderr
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}
    for name in ("credentials", "referrers API"):  # /v2/auth and the referrers probe both drip
        check = checks[f"{registry.host} {name}"]
        assert check["status"] == "FAIL" and check["detail"] == f"{registry.host} did not finish within 2 s", check
        assert check["fix"] == (
            f"the registry is stalling; raise deadline = N under [{registry.host}] in {path} if it is only slow"
        )
    assert checks[f"{registry.host} reachable"]["status"] == "OK"
    assert elapsed < 2 * 2 + 4, elapsed  # each check within its own bound

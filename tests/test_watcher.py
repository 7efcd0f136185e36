"""The secret watcher sees this run's processes, daemons that fork away included, and no others."""

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ProcWatcher, descendants

pytestmark = pytest.mark.posix  # fork, and /proc

DAEMON = (
    "import os, sys, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(3)\n"
    "    os._exit(0)\n"
    "os.wait()\n"
)


def test_a_daemonised_process_with_a_secret_in_argv_is_found():
    needle = f"watcher-needle-{os.getpid()}"
    watcher = ProcWatcher([needle])
    subprocess.run([sys.executable, "-c", DAEMON, needle], check=True, timeout=10)  # returns once forked away
    deadline = time.monotonic() + 2
    while not watcher.hits and time.monotonic() < deadline:
        watcher.scan()
    assert watcher.hits and watcher.hits[0][1] == "cmdline"


def test_processes_outside_the_run_are_not_scanned():
    assert 1 not in descendants(os.getpid())  # init is not ours
    assert os.getpid() in descendants(os.getpid())


def test_the_suites_needles_catch_the_idps_refresh_and_id_tokens(oidc_ca):
    """SSO (tests/fakes/idp.py): every refresh token and every ID token the test IdP issues holds a needle of the
    session's watcher (which matches needles as substrings of argv and environments, as the test above shows)."""
    from tests.fakes.idp import CLIENT_ID, IdPUser, TestIdP
    from tests.support import SECRETS

    user = IdPUser("carol", "pw")
    with TestIdP(oidc_ca, users=[user]) as idp:
        for _ in range(3):
            with idp.lock:
                answer = idp._issue(user, CLIENT_ID, "openid offline_access", "")
            assert any(needle in answer["refresh_token"] for needle in SECRETS)
            assert any(needle in answer["id_token"] for needle in SECRETS)

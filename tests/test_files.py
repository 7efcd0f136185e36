"""files.py: private files and directories whatever the umask, locks that time out, check_private on the descriptor."""

import os
import stat
import time
from pathlib import Path

import pytest

from tests.support import cli

# -- private files and directories whatever the umask -------------------------------------------------


@pytest.mark.posix
def test_configure_and_logs_create_private_files_under_umask_000(file_keyring, tmp_path):
    from quay_cred_helper import log

    auth_file = tmp_path / "new" / "deeper" / "auth.json"
    env = dict(file_keyring, REGISTRY_AUTH_FILE=str(auth_file))
    old = os.umask(0)
    try:
        assert cli(env, "configure", "quay.example.com", "--podman", "--registries-conf").returncode == 0
        log_file = tmp_path / "logs" / "quay-cred-helper.log"
        os.environ[log.LOG_FILE_ENV] = str(log_file)
        (tmp_path / "logs").mkdir(mode=0o700)
        log.enable()
        for _ in range(1100):  # over 1 MiB: the file rotates and a new one is opened
            log.debug("x" * 1000)
    finally:
        os.umask(old)
        os.environ.pop(log.LOG_FILE_ENV, None)
        log._logger.handlers.clear()
        log._logger = None
    drop_in = Path(env["HOME"], ".config", "containers", "registries.conf.d", "50-quay-cred-helper.conf")
    created = [auth_file, auth_file.parent, auth_file.parent.parent, drop_in, drop_in.parent]
    created += sorted((tmp_path / "logs").iterdir())
    assert len(created) >= 7  # the log and at least one rotated file
    for path in created:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


# -- a lock wait ends at its timeout ------------------------------------------------------------------


def test_a_lock_wait_ends_at_its_timeout(tmp_path):
    from quay_cred_helper.files import Lock, LockTimeout

    path = str(tmp_path / "x.lock")
    with Lock(path):
        start = time.monotonic()
        with pytest.raises(LockTimeout), Lock(path, timeout=0.3):
            pass
        assert 0.3 <= time.monotonic() - start < 1.5
    with Lock(path, timeout=0):  # free: had at once, even with no time left
        pass


# -- check_private reads through the descriptor it checked -------------------------------------------


def test_check_private_reads_through_the_descriptor_it_checked(tmp_path):
    from quay_cred_helper.errors import ConfigError
    from quay_cred_helper.files import check_private

    path = tmp_path / "token"
    path.write_text("first")
    path.chmod(0o600)
    with check_private(str(path), "robot token file") as checked:
        os.rename(path, tmp_path / "old")
        path.write_text("swapped")  # a new file at the path: the checked one is still read
        assert checked.read() == b"first" and checked.stat.st_size == 5
    (tmp_path / "dir").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        check_private(str(tmp_path / "dir"), "robot token file")
    path.chmod(0o620)
    with pytest.raises(ConfigError, match=f"other users can write it: chmod go-w {path}$"):
        check_private(str(path), "robot token file")

"""Where a robot's credential comes from, other than the keyring: the token the job holds
(robot_token.py), an OIDC token exchanged through Quay's robot federation (keyless.py), and the
OIDC token's sources (oidc.py: CI systems, a pod, a variable, a file).

What every source shares is here, once: a file a source names is opened and checked as the kubelet
provider checks its files (files.check_private) at every door, read through that descriptor and
capped at MAX_TOKEN; a missing file or variable is a SourceError with its fix; an OIDC token is
checked to be a JWT in one place (`jwt`).
"""

from __future__ import annotations

import os

from quay_cred_helper import files, log
from quay_cred_helper.errors import SourceError

MAX_TOKEN = 64 * 1024  # a robot token is 64 characters, an OIDC token a few KiB: a file over this is neither


def read_file(path: str, what: str, fix: str, empty_fix: str) -> str:
    """The token in file `path` (a `what`: "robot token file"), checked by files.check_private (a
    ConfigError when unsafe or over MAX_TOKEN), stripped; a SourceError when missing (`fix`) or empty
    (`empty_fix`)."""
    with checked_file(path, what, fix) as checked:
        return token_of(checked, empty_fix)


def token_of(checked: files.Private, empty_fix: str) -> str:
    """The token in a file opened and checked (files.check_private), read through that descriptor."""
    token = checked.read(MAX_TOKEN).decode("utf-8", "replace").strip()
    if not token:
        raise SourceError(f"the {checked.what} {checked.path} is empty", empty_fix)
    log.secret(token)
    return token


def checked_file(path: str, what: str, fix: str) -> files.Private:
    """The file opened and checked (files.check_private); a SourceError, with `fix`, when it is not there:
    a source the job has not written (yet) is the job's to fix, not a config error."""
    try:
        os.stat(path)
    except OSError as exc:
        raise SourceError(f"cannot read the {what} {path}: {exc.strerror or type(exc).__name__}", fix) from None
    return files.check_private(path, what)


def read_variable(names: tuple[str, ...], problem: str, fix: str) -> str:
    """The first of the environment variables `names` that holds a token; a SourceError else."""
    for name in names:
        token = os.environ.get(name, "").strip()
        if token:
            log.secret(token)
            return token
    raise SourceError(problem, fix)


def jwt(token: str, spec: str) -> str:
    """`token` if it has a JWT's three parts (Quay verifies the rest); a SourceError naming `spec` else."""
    if token.count(".") != 2:
        raise SourceError(f"the OIDC token from {spec} is not a JWT", "check what the source holds")
    return token

"""docker-credential-quay: the executable container clients run.

The only place that touches argv, stdout and exit codes for the helper: it
builds the context, hands the store to the protocol (protocol.py), and turns
errors into the one line clients show.
"""

from __future__ import annotations

import sys

from quay_cred_helper import __version__

VERBS = ("store", "get", "erase", "list")  # here, not from protocol: `version` must not import it
USAGE = "Usage: docker-credential-quay <store|get|erase|list|version>"


def _warn(message: str) -> None:
    from quay_cred_helper.errors import printable

    print(f"docker-credential-quay: {printable(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    verb = args[0] if args else ""
    if verb in ("version", "-v", "--version"):
        print(f"docker-credential-quay (quay-cred-helper) {__version__}")
        return 0
    if verb in ("-h", "--help"):
        print(USAGE)
        return 0
    if verb not in VERBS:
        print(USAGE)
        return 1
    # Below `version`: the protocol and the store are not needed to print a version.
    from quay_cred_helper import log
    from quay_cred_helper.errors import HelperError, printable

    log.enable_from_environment(_warn)
    try:
        from quay_cred_helper.context import Context
        from quay_cred_helper.protocol import serve

        serve(Context(_warn).store, verb, sys.stdin.buffer, sys.stdout)
    except HelperError as exc:
        log.debug("%s failed: %s", verb, exc)
        print(printable(str(exc)))
        return 1
    except KeyboardInterrupt:
        print("interrupted")
        return 1
    except Exception as exc:  # one line for the client, never a traceback with locals
        log.debug("%s: internal error %s", verb, type(exc).__name__)
        print(f"internal error: {type(exc).__name__}")
        return 1
    return 0

"""quay-credential-provider: the kubelet's image credential provider (the executable it runs).

    quay-credential-provider --config /etc/quay-cred-helper/kubelet.ini [--cache-dir DIR]

The only place that touches argv, stdin, stdout and the exit code for the
provider: it reads one request, builds the collaborators, and prints the
response; any failure is exit 1 with one line on stderr (the kubelet logs all
of stderr) and nothing on stdout. The whole run is bounded well under the
kubelet's one-minute limit. A cached answer imports neither httpx nor the keyring.
"""

from __future__ import annotations

import os
import sys

from quay_cred_helper import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from quay_cred_helper.config import Settings
    from quay_cred_helper.registry.tokens import Tokens

USAGE = "Usage: quay-credential-provider --config FILE [--cache-dir DIR] (a request on stdin, as the kubelet sends)"
BUDGET = 30  # seconds for the whole run, all retries included; the kubelet kills us at 60
REQUEST_DEADLINE = 25.0  # seconds one registry exchange may take


def _fail(message: str) -> int:
    from quay_cred_helper.errors import printable

    print(f"quay-credential-provider: {printable(message)}", file=sys.stderr)
    return 1


def _options(argv: list[str]) -> dict[str, str] | None:
    """{"--config": ..., "--cache-dir": ...} from `--name value` or `--name=value`; None if malformed."""
    found: dict[str, str] = {}
    args = list(argv)
    while args:
        name, eq, value = args.pop(0).partition("=")
        if name not in ("--config", "--cache-dir"):
            return None
        if not eq:
            if not args:
                return None
            value = args.pop(0)
        found[name] = value
    return found


_armed: list[bool] = []


def _watchdog() -> None:
    """Exit 1 (one line on stderr, nothing on stdout) once the run has taken BUDGET seconds."""
    if _armed:
        return
    _armed.append(True)
    import threading

    def expire() -> None:
        _fail(f"did not finish within {BUDGET} s")
        os._exit(1)

    timer = threading.Timer(BUDGET, expire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["version"]):
        print(f"quay-credential-provider (quay-cred-helper) {__version__}")
        return 0
    options = _options(args)
    if options is None or "--config" not in options:
        return _fail(USAGE)
    from quay_cred_helper import log
    from quay_cred_helper.errors import HelperError

    log.enable_from_environment()
    try:
        return _answer(options["--config"], options.get("--cache-dir"))
    except HelperError as exc:
        log.debug("provider failed: %s", exc)
        return _fail(str(exc))
    except Exception as exc:  # one line for the kubelet's log, never a traceback with locals
        log.debug("provider: internal error %s", type(exc).__name__)
        return _fail(f"internal error: {type(exc).__name__}")


def _answer(config_path: str, cache_dir: str | None) -> int:
    import time

    from quay_cred_helper import kubelet, paths
    from quay_cred_helper.config import Config
    from quay_cred_helper.node import NodeSources, check_private
    from quay_cred_helper.registry.cache import TokenCache, margin

    request = kubelet.parse_request(sys.stdin.buffer.read(kubelet.MAX_REQUEST + 1))
    check_private(config_path, "provider config file")
    config = Config(config_path)
    cache = TokenCache(os.path.join(cache_dir or paths.cache_dir(), "tokens"))

    def settings(key: str) -> Settings:
        found = config.settings(key)
        return found.replace(deadline=min(found.deadline, REQUEST_DEADLINE))

    def tokens() -> Tokens:
        # Only when an exchange is due: a cached answer reads local files and cannot hang, and
        # threading costs a fifth of the interpreter's start.
        _watchdog()
        from quay_cred_helper.registry.tokens import Tokens  # hot path: a cached answer needs no exchange

        return Tokens(cache, settings)

    username, token = NodeSources(config, cache, tokens).credentials(request)
    # The kubelet keeps the answer until cacheDuration ends: that must come before the password does,
    # with our own margin and a minute to spare.
    now = time.time()
    cache_seconds = token.expires_at - margin(token.expires_at - token.issued_at) - 60 - now
    sys.stdout.write(kubelet.response(request.api_version, request.host, username, token.token, cache_seconds))
    return 0

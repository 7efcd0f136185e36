"""quay-credential-provider: the kubelet's image credential provider (the executable it runs).

    quay-credential-provider --config /etc/quay-cred-helper/kubelet.ini [--cache-dir DIR]

The only place that touches argv, stdin, stdout and the exit code for the
provider: it reads one request, hands its bytes to `answer` (request bytes
in, response text out, testable in-process), and prints the response; any
failure is exit 1 with one line on stderr (the kubelet logs all of stderr)
and nothing on stdout. The whole run is bounded well under the
kubelet's one-minute limit. A cached answer imports neither httpx nor the keyring.
"""

from __future__ import annotations

import os
import sys
import time

from quay_cred_helper import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from quay_cred_helper.config import Settings

USAGE = "Usage: quay-credential-provider --config FILE [--cache-dir DIR] (a request on stdin, as the kubelet sends)"
BUDGET = 30  # seconds for the whole run, all retries included; the kubelet kills us at 60
REQUEST_DEADLINE = 25.0  # seconds one registry exchange may take


def _fail(message: str) -> int:
    _warn(message)
    return 1


def _warn(message: str) -> None:
    from quay_cred_helper.errors import printable

    print(f"quay-credential-provider: {printable(message)}", file=sys.stderr)


def _options(argv: list[str]) -> dict[str, str] | None:
    """{"--config": ..., "--cache-dir": ...} from `--name value` or `--name=value`; None if malformed.
    By hand, not argparse: argparse imports `re`, and a cached answer must start fast."""
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


_timer = None  # the watchdog of this run, once armed


def _watchdog() -> None:
    """Exit 1 (one line on stderr, nothing on stdout) once the run has taken BUDGET seconds.

    Armed before the first connection (the context's before_network hook): a cached answer reads
    local files and cannot hang, and threading costs a fifth of the interpreter's start."""
    global _timer
    if _timer is not None:
        return
    import threading

    def expire() -> None:
        _fail(f"did not finish within {BUDGET} s")
        os._exit(1)

    _timer = threading.Timer(BUDGET, expire)
    _timer.daemon = True
    _timer.start()


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

    log.enable_from_environment(_warn)
    try:
        return _answer(options["--config"], options.get("--cache-dir"))
    except HelperError as exc:
        log.debug("provider failed: %s", exc)
        return _fail(str(exc))
    except Exception as exc:  # one line for the kubelet's log, never a traceback with locals
        log.debug("provider: internal error %s", type(exc).__name__)
        return _fail(f"internal error: {type(exc).__name__}")


def _within_budget(settings: Settings) -> Settings:
    """The provider's bounds on a registry's settings, and its CA bundle read through check_private
    (only a connection reads it: a cached answer never gets here)."""
    bounded = settings.replace(deadline=min(settings.deadline, REQUEST_DEADLINE))
    if settings.ca_bundle:
        bounded = bounded.replace(ca_data=_ca_data(settings.ca_bundle))
    return bounded


_ca_read: dict[str, str] = {}  # path -> PEM text: the context asks for a registry's settings per session


def _ca_data(path: str) -> str:
    from quay_cred_helper.files import check_private

    if path not in _ca_read:
        with check_private(path, "CA bundle") as bundle:
            _ca_read[path] = bundle.read().decode("ascii", "replace")
    return _ca_read[path]


def _answer(config_path: str, cache_dir: str | None) -> int:
    from quay_cred_helper.kubelet.protocol import MAX_REQUEST

    data = sys.stdin.buffer.read(MAX_REQUEST + 1)
    sys.stdout.write(answer(data, config_path, cache_dir, before_network=_watchdog))
    return 0


def answer(
    data: bytes, config_path: str, cache_dir: str | None = None, before_network: Callable[[], None] | None = None
) -> str:
    """The response text for one request's bytes (what the kubelet reads on stdout); raises HelperError.
    `before_network` runs before each connection (main arms the watchdog that exits the process)."""
    from quay_cred_helper.config import Config
    from quay_cred_helper.context import Context
    from quay_cred_helper.errors import ConfigError
    from quay_cred_helper.files import check_private
    from quay_cred_helper.kubelet import protocol
    from quay_cred_helper.kubelet.sources import NodeSources

    request = protocol.parse_request(data)
    # Checked on the descriptor it is then read from: nothing can swap the file in between.
    with check_private(config_path, "provider config file") as checked:
        raw = checked.read()
    try:
        config = Config(config_path, raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"cannot use config file {config_path}: it is not UTF-8 text") from None
    ctx = Context(_warn, config, cache_dir, limits=_within_budget, before_network=before_network)
    sources = NodeSources(ctx)
    username, token = sources.credentials(request)
    # The kubelet keeps the answer until cacheDuration ends: that must come before we would stop
    # handing the token out ourselves, with a minute to spare.
    cache_seconds = token.usable_until - 60 - time.time()
    if sources.routed(request):
        # Robots per namespace on this host: an answer for this image only. With Registry, the kubelet
        # would hand this robot's JWT to every image of the host until cacheDuration ends (or, keyed
        # by prefix, give the other namespaces nothing): docs/kubernetes.md, "One robot per organization".
        return protocol.response(request.api_version, request.image, username, token.token, cache_seconds, "Image")
    return protocol.response(request.api_version, request.host, username, token.token, cache_seconds)

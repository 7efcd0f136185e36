"""Where our files live: the platform's user config, cache and log directories.

platformdirs decides. On Linux its answer is the XDG rule below, which we
compute ourselves on the hot path because importing platformdirs costs about
twice the interpreter's own start-up; a test checks both agree.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import platformdirs

APP = "quay-cred-helper"


def _xdg(variable: str, default: str) -> str:
    path = os.environ.get(variable, "").strip()
    return os.path.join(path or os.path.expanduser(default), APP)


def _dirs() -> platformdirs.PlatformDirs:
    import platformdirs

    return platformdirs.PlatformDirs(APP, appauthor=False)


def config_dir() -> str:
    if sys.platform.startswith("linux"):
        return _xdg("XDG_CONFIG_HOME", "~/.config")
    return _dirs().user_config_dir


def cache_dir() -> str:
    if sys.platform.startswith("linux"):
        return _xdg("XDG_CACHE_HOME", "~/.cache")
    return _dirs().user_cache_dir


def log_dir() -> str:
    return _dirs().user_log_dir


def index_file() -> str:
    """Server -> username map, no secrets: what `list` answers from."""
    return os.path.join(config_dir(), "index.json")


def config_file() -> str:
    return os.path.join(config_dir(), "config.ini")

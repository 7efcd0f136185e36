"""Where our files live: the platform's user config, cache and log directories.

platformdirs decides. On Linux its answer is the XDG rule below, which we
compute ourselves on the hot path because importing platformdirs costs about
twice the interpreter's own start-up; a test checks both agree.
"""

import os
import sys

APP = "quay-cred-helper"


def _xdg(variable, default):
    path = os.environ.get(variable, "").strip()
    return os.path.join(path or os.path.expanduser(default), APP)


def _dirs():
    import platformdirs

    return platformdirs.PlatformDirs(APP, appauthor=False)


def config_dir():
    if sys.platform.startswith("linux"):
        return _xdg("XDG_CONFIG_HOME", "~/.config")
    return _dirs().user_config_dir


def cache_dir():
    if sys.platform.startswith("linux"):
        return _xdg("XDG_CACHE_HOME", "~/.cache")
    return _dirs().user_cache_dir


def log_dir():
    return _dirs().user_log_dir


def index_file():
    """Server -> username map, no secrets: what `list` answers from."""
    return os.path.join(config_dir(), "index.json")


def config_file():
    return os.path.join(config_dir(), "config.ini")

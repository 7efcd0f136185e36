"""Where our files live: the platform's user config, cache and log directories."""

import os

APP = "quay-cred-helper"


def _dirs():
    # Imported here: platformdirs is cheap, but `version` should not pay for it.
    import platformdirs

    return platformdirs.PlatformDirs(APP, appauthor=False)


def config_dir():
    return _dirs().user_config_dir


def cache_dir():
    return _dirs().user_cache_dir


def log_dir():
    return _dirs().user_log_dir


def index_file():
    """Server -> username map, no secrets: what `list` answers from."""
    return os.path.join(config_dir(), "index.json")


def config_file():
    return os.path.join(config_dir(), "config.ini")

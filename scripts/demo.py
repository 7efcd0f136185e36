"""The demonstration: run by scripts/demo inside `dbus-run-session`.

Everything happens in a temporary home: a gnome-keyring Secret Service on the
private D-Bus session, a real registry (Debian's docker-registry) whose tokens
come from a Quay-compatible /v2/auth on 127.0.0.1, and real clients going
through docker-credential-quay.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trustme  # noqa: E402

from tests.fakes.artifacts import SBOM, push_demo  # noqa: E402
from tests.fakes.idp import CLIENT_ID, IdPUser, TestIdP  # noqa: E402
from tests.fakes.issuer import OIDCIssuer  # noqa: E402
from tests.fakes.quay_registry import QuayRegistry, b64url_decode  # noqa: E402
from tests.fakes.real_registry import DockerRegistry, oci_layout  # noqa: E402
from tests.support import API_TOKEN, HELPER, ROBOTS, USERS, isolated_env, launch_probe  # noqa: E402

_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")  # shown shortened: a demo need not print whole tokens


def step(title):
    print(f"\n== {title}", flush=True)


def run(argv, env, stdin=None, check=True, show=None):
    print(f"$ {show or shlex.join(argv)}", flush=True)
    r = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, timeout=120)
    for line in (r.stdout + r.stderr).splitlines():
        print(f"  {_JWT.sub(lambda m: m.group()[:20] + '...', line)}")
    if check and r.returncode != 0:
        raise SystemExit(f"demo: {argv[0]} failed with exit status {r.returncode}")
    return r


def regular_files(root):
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                yield path


def jwt_summary(token):
    claims = json.loads(b64url_decode(token.split(".")[1]))
    return f"JWT sub={claims['sub']} aud={claims['aud']} lifetime={claims['exp'] - claims['iat']} s"


def main():
    if "DBUS_SESSION_BUS_ADDRESS" not in os.environ:
        raise SystemExit("demo: run it through scripts/demo (it needs a private D-Bus session)")
    with tempfile.TemporaryDirectory(prefix="quay-cred-helper-demo-") as root:
        env = isolated_env(root)

        step("A throwaway Secret Service (gnome-keyring) on a private D-Bus session")
        subprocess.run(
            ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
            input="demo",
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        print(f"  XDG_DATA_HOME={env['XDG_DATA_HOME']}")

        step("A real registry (docker-registry) trusting a Quay-compatible /v2/auth, both on 127.0.0.1")
        with DockerRegistry(root, USERS, ROBOTS, public_namespaces={"library"}) as registry:
            host = registry.host
            print(f"  registry {host}, token realm {registry.quay.url}/v2/auth")

            step("Log in: verified with one token request, then the password goes to the keyring")
            run(["quay-cred-helper", "login", host, "-u", "alice", "--password-stdin"], env, "wrong\n", check=False)
            time.sleep(0.6)  # Quay throttles logins right after a failure
            run(["quay-cred-helper", "login", host, "-u", "alice", "--password-stdin"], env, "alice-password\n")
            run(["quay-cred-helper", "list"], env)

            step("Point the clients at the helper: configure (a dry run first)")
            env["REGISTRY_AUTH_FILE"] = os.path.join(env["XDG_CONFIG_HOME"], "containers", "auth.json")
            run(["quay-cred-helper", "configure", host, "--dry-run"], env)
            run(["quay-cred-helper", "configure", host], env)

            step("skopeo pushes and pulls through docker-credential-quay")
            layout = os.path.join(root, "image")
            oci_layout(layout)
            image = f"docker://{host}/org/demo:1.0"
            run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", image], env)
            run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Name}}@{{.Digest}}", image], env)
            run(["docker-credential-quay", "list"], env, "")
            get = run(["docker-credential-quay", "get"], env, host, show=f"echo {host} | docker-credential-quay get")
            secret = json.loads(get.stdout)["Secret"]

            step("A bearer token for curl, instead of base64 by hand")
            token = run(["quay-cred-helper", "token", f"{host}/org/demo"], env, show=None).stdout.strip()
            print(f"  -> {jwt_summary(token)}")
            run(
                [
                    "curl",
                    "-sS",
                    "-H",
                    f"Authorization: Bearer {token}",
                    "-H",
                    "Accept: application/vnd.oci.image.manifest.v1+json",
                    f"http://{host}/v2/org/demo/tags/list",
                ],
                env,
                show=f'curl -H "Authorization: Bearer $(quay-cred-helper token {host}/org/demo)" '
                f"http://{host}/v2/org/demo/tags/list",
            )

            step("A robot account: clients get a one-hour JWT, never the robot token")
            robot, robot_token = next(iter(ROBOTS.items()))
            run(
                ["quay-cred-helper", "login", host, "-u", robot, "--password-stdin"],
                env,
                robot_token,
                show=f"echo $ROBOT_TOKEN | quay-cred-helper login {host} -u {robot} --password-stdin",
            )
            got = run(["docker-credential-quay", "get"], env, host, show=f"echo {host} | docker-credential-quay get")
            print(f"  -> Secret is a {jwt_summary(json.loads(got.stdout)['Secret'])}")
            run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Name}}@{{.Digest}}", image], env)
            used = {e["credential"] for e in registry.quay.auth_log if e["user"] == robot and e["scopes"]}
            print(f"  the registry saw the robot authenticate with: {sorted(used)}")

            step("Start-up: that cached get's modules come from one file beside the .pyc files, never stale")
            where = "from quay_cred_helper import launch; print(launch.bundle_path())"
            bundle = subprocess.run([sys.executable, "-I", "-c", where], capture_output=True, text=True).stdout.strip()
            probe, loaders = launch_probe(env, HELPER, ["get"], host.encode())
            served = sorted(m for m, loader in loaders.items() if loader == "Finder")
            normal = sorted(m for m, loader in loaders.items() if loader == "SourceFileLoader")
            print(f"  {bundle}: {len(served)} modules served, each after one stat of its source")
            print(f"  imported the normal way, to serve the rest: {', '.join(normal)}")
            same = json.loads(probe.stdout)["Secret"] == json.loads(got.stdout)["Secret"]
            print(f"  the answer is the same cached JWT: {same}")

            step("exec: for clients that read only `auths`, a throwaway config with the robot's one-hour JWT")
            run(["quay-cred-helper", "credential", host, "--json"], env)
            inspect = 'skopeo inspect --authfile "$REGISTRY_AUTH_FILE" --tls-verify=false --format {{.Name}} ' + image
            run(["quay-cred-helper", "exec", "--registry", host, "--", "sh", "-c", inspect], env)
            left = os.listdir(os.path.join(env["XDG_RUNTIME_DIR"], "quay-cred-helper-exec"))
            print(f"  the throwaway config is gone after the command: {not left}")

            step("A CI job: only the robot token in its environment, no keyring; one step, then it pulls")
            job = isolated_env(os.path.join(root, "ci-job"))
            job.pop("DBUS_SESSION_BUS_ADDRESS", None)
            job.update(PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", QUAY_ROBOT_TOKEN=robot_token)
            job["REGISTRY_AUTH_FILE"] = os.path.join(job["XDG_CONFIG_HOME"], "containers", "auth.json")
            print("  QUAY_ROBOT_TOKEN comes from the job's secrets; keyring's backend: keyring.backends.fail.Keyring")
            seen = len(registry.quay.auth_log)
            run(["quay-cred-helper", "ci-login", host, "--robot", robot], job)
            run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Name}}@{{.Digest}}", image], job)
            got = run(["docker-credential-quay", "get"], job, host, show=f"echo {host} | docker-credential-quay get")
            print(f"  -> Secret is a {jwt_summary(json.loads(got.stdout)['Secret'])}")
            used = {e["credential"] for e in registry.quay.auth_log[seen:] if e["scopes"]}
            print(f"  the registry saw skopeo authenticate with: {sorted(used)}")

            step("Referrers: a signature and an SBOM (this registry has no referrers API: tag-schema fallback)")
            pushed = push_demo(f"http://{host}", "org/demo", "alice", "alice-password", tag="2.0", tag_schema=True)
            run(["quay-cred-helper", "referrers", f"{host}/org/demo:2.0"], env)

            step("doctor: keyring, client configs, registry, credentials")
            run(["quay-cred-helper", "doctor", host], env, check=False)

            step("No secret in any file of the demo home")
            leaks = [
                path
                for path in regular_files(root)
                if any(s.encode() in Path(path).read_bytes() for s in (secret, robot_token))
            ]
            print(f"  files holding a password or robot token in plaintext: {len(leaks)}")
            if leaks:
                raise SystemExit(f"demo: secret found in {leaks}")

        step("Referrers through the API, on the Quay-compatible registry (with --tree)")
        with QuayRegistry(users=USERS, robots=ROBOTS) as quay:
            pushed = push_demo(quay.url, "org/demo", "alice", "alice-password")
            run(["quay-cred-helper", "login", quay.host, "-u", "alice", "--password-stdin"], env, "alice-password")
            run(["quay-cred-helper", "referrers", "--tree", f"{quay.host}/org/demo@{pushed['image']['digest']}"], env)
            run(
                [
                    "quay-cred-helper",
                    "referrers",
                    "--artifact-type",
                    SBOM,
                    "--format",
                    "digest",
                    f"{quay.host}/org/demo:1.0",
                ],
                env,
            )

        step("Keyless: a CI job's own OIDC token becomes a one-hour robot JWT (Quay's robot federation)")
        subject = "repo:org/app:ref:refs/heads/main"
        with QuayRegistry(users=USERS, robots=ROBOTS) as quay, OIDCIssuer(trustme.CA()) as issuer:
            issuer.trusted_by(quay, Path(root))
            robot = next(iter(ROBOTS))
            quay.federation[robot] = [{"issuer": issuer.url, "subject": subject}]
            print(f"  Quay: robot {robot} trusts issuer {issuer.url}, subject {subject}")
            ci = dict(env, CI_ID_TOKEN=issuer.token(subject))  # as GitLab CI's id_tokens: puts it
            run(["quay-cred-helper", "login", quay.host, "-u", robot, "--oidc", "env:CI_ID_TOKEN"], ci)
            got = run(
                ["docker-credential-quay", "get"], ci, quay.host, show=f"echo {quay.host} | docker-credential-quay get"
            )
            print(f"  the client gets {jwt_summary(json.loads(got.stdout)['Secret'])}; nothing was stored")

            step("Kubernetes: the kubelet runs quay-credential-provider for a pod's image")
            node = Path(root, "node")
            node.mkdir(mode=0o700)
            token_file = node / "robot-token"
            token_file.write_text(ROBOTS[robot])
            token_file.chmod(0o600)
            config = node / "kubelet.ini"
            config.write_text(f"[{quay.host}]\nrobot = {robot}\nrobot_token_file = {token_file}\n")
            config.chmod(0o600)
            request = (
                '{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",'
                f'"image":"{quay.host}/org/app"}}\n'
            )
            run(
                ["quay-credential-provider", "--config", str(config)],
                env,
                request,
                show=f"printf '%s\\n' '{request.strip()}' | quay-credential-provider --config {config}",
            )

            step("doctor --kubelet: that pull explained the way the kubelet will make it")
            bin_dir = node / "credential-providers"
            bin_dir.mkdir()
            installed = shutil.which("quay-credential-provider", path=env["PATH"])
            (bin_dir / "quay-credential-provider").symlink_to(installed)  # as the kubelet's bin dir links it
            kubelet_config = node / "credential-provider-config.yaml"
            kubelet_config.write_text(
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
                "  - name: quay-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n"
                f'    matchImages: ["{quay.host}"]\n    defaultCacheDuration: "10m"\n'
                f'    args: ["--config", "{config}"]\n'
            )
            explain = ["quay-cred-helper", "doctor", "--kubelet", "--kubelet-config", str(kubelet_config)]
            run([*explain, "--bin-dir", str(bin_dir), f"{quay.host}/org/app:1.0"], env)

            step("node install: the provider onto a node (here a made-up node root), beside its ECR provider")
            made_up = Path(root, "node-root")
            for path, text in {
                "etc/systemd/system/kubelet.service": "[Service]\nEnvironmentFile=-/etc/default/kubelet\n"
                "ExecStart=/usr/bin/kubelet $KUBELET_EXTRA_ARGS\n",
                "etc/default/kubelet": 'KUBELET_EXTRA_ARGS="--image-credential-provider-config=/etc/kubernetes/'
                'ecr.yaml --image-credential-provider-bin-dir=/usr/libexec/kubernetes/credential-providers"\n',
                "etc/kubernetes/ecr.yaml": "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n"
                "providers:\n  - name: ecr-credential-provider  # the cloud's\n"
                "    matchImages: ['*.dkr.ecr.*.amazonaws.com']\n"
                "    defaultCacheDuration: 12h\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
            }.items():
                Path(made_up, path).parent.mkdir(parents=True, exist_ok=True)
                Path(made_up, path).write_text(text)
            node_install = ["quay-cred-helper", "node", "install", "--root", str(made_up), "--provider", installed]
            node_install += ["--registry", quay.host, "--robot", robot, "--service-account"]
            run([*node_install, "--dry-run"], env)
            run(node_install, env)
            run(node_install, env)  # again: nothing to change

        step("SSO: a person signs in at the company's identity provider (device code); only its refresh token is kept")
        ca = trustme.CA()
        with QuayRegistry(users=USERS) as quay, TestIdP(ca, users=[IdPUser("carol", "carol-idp-pw")]) as idp:
            idp.trusted_by(quay, Path(root))
            quay.sso = {"issuer": idp.url, "client_id": "quay-ui", "audiences": [CLIENT_ID]}
            print(f"  Quay: an OIDC login for {idp.url}, OIDC_AUDIENCES [{CLIENT_ID}] (Quay 3.18)")
            ca_file = os.path.join(root, "idp-ca.pem")
            ca.cert_pem.write_to_path(ca_file)
            sso = dict(env, SSL_CERT_FILE=ca_file)
            argv = ["quay-cred-helper", "login", quay.host, "--sso", "--issuer", idp.url, "--client-id", CLIENT_ID]
            print(f"$ {shlex.join([*argv, '--device'])}", flush=True)
            login = subprocess.Popen([*argv, "--device"], env=sso, stderr=subprocess.PIPE, text=True)
            shown = [login.stderr.readline(), login.stderr.readline()]
            print("".join(f"  {line}" for line in shown), end="")
            idp.approve_device(shown[1].split()[-1], "carol")
            print("  (carol opens the link on her phone, signs in and confirms the code)")
            print(f"  {login.stderr.read().strip()}")
            if login.wait(timeout=60) != 0:
                raise SystemExit("demo: the SSO login failed")
            got = run(
                ["docker-credential-quay", "get"], sso, quay.host, show=f"echo {quay.host} | docker-credential-quay get"
            )
            print(f"  the client gets $oauthtoken and an ID token: {jwt_summary(json.loads(got.stdout)['Secret'])}")
            run(["quay-cred-helper", "list", "--long"], sso)
            run(["quay-cred-helper", "logout", quay.host], sso)
            print(f"  the identity provider revoked the session: {len(idp.live_refresh_tokens())} live refresh tokens")

        step("Rotate the robot's token through Quay's API, and see how old each secret is")
        with QuayRegistry(users=USERS, robots=ROBOTS) as quay:
            robot, robot_token = next(iter(ROBOTS.items()))
            quay.api.oauth[API_TOKEN] = ("alice", {"org:admin", "user:admin"})
            print("  Quay: alice made an OAuth token with org:admin (Applications > Generate Token)")
            shown = f"echo $ROBOT_TOKEN | quay-cred-helper login {quay.host} -u {robot} --password-stdin"
            run(["quay-cred-helper", "login", quay.host, "-u", robot, "--password-stdin"], env, robot_token, show=shown)
            shown = f"echo $QUAY_API_TOKEN | quay-cred-helper robot api-token {quay.host}"
            run(["quay-cred-helper", "robot", "api-token", quay.host], env, API_TOKEN, show=shown)
            run(["quay-cred-helper", "robot", "show", quay.host, robot], env)
            run(["quay-cred-helper", "robot", "rotate", quay.host, robot], env)
            print(f"  Quay on the old token now: {quay.check_password(robot, robot_token)}")
            got = run(
                ["docker-credential-quay", "get"], env, quay.host, show=f"echo {quay.host} | docker-credential-quay get"
            )
            print(f"  -> Secret is a {jwt_summary(json.loads(got.stdout)['Secret'])}, from the new token")
            run(["quay-cred-helper", "list", "--long"], env)

        step("Log out")
        run(["quay-cred-helper", "logout", host], env)
        run(["docker-credential-quay", "get"], env, host, check=False, show=f"echo {host} | docker-credential-quay get")
    print("\ndemo: done")


if __name__ == "__main__":
    main()

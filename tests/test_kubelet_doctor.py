"""quay-cred-helper doctor --kubelet IMAGE: good and broken node setups, as the kubelet would see them."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from quay_cred_helper.node import kubelet as node_kubelet
from quay_cred_helper.node import kubelet_config
from tests.fakes.quay_registry import QuayRegistry
from tests.support import BIN, ROBOT, ROBOT_TOKEN, ROBOTS, USERS, cli

PROVIDER = os.path.join(BIN, "quay-credential-provider")
V1 = "credentialprovider.kubelet.k8s.io/v1"
SA = "system:serviceaccount:build:web"


@pytest.fixture
def quay(issuer, tmp_path):
    with QuayRegistry(users=USERS, robots=ROBOTS) as registry:
        issuer.trusted_by(registry, tmp_path)
        registry.federation[ROBOT] = [{"issuer": issuer.url, "subject": SA}]
        yield registry


@pytest.fixture
def node(home, tmp_path, quay):
    """A node: the provider linked into a bin dir, its robot token file and config, no keyring."""
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    token = etc / "robot-token"
    token.write_text(ROBOT_TOKEN + "\n")
    token.chmod(0o600)
    ini = etc / "kubelet.ini"
    ini.write_text(f"[{quay.host}]\nrobot = {ROBOT}\nrobot_token_file = {token}\n")
    ini.chmod(0o600)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "quay-credential-provider").symlink_to(PROVIDER)
    env = dict(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    return env, etc, bin_dir


def provider_yaml(quay, etc, name="quay-credential-provider", api="v1", config_api="v1", extra="", match=None):
    return f"""apiVersion: kubelet.config.k8s.io/{config_api}
kind: CredentialProviderConfig
providers:
  - name: {name}
    apiVersion: credentialprovider.kubelet.k8s.io/{api}
    matchImages: [{json.dumps(match or quay.host)}]
    defaultCacheDuration: "10m"
    args: ["--config", "{etc / "kubelet.ini"}", "--cache-dir", "{etc / "cache"}"]
{extra}"""


def doctor(env, config, bin_dir, image, *more):
    r = cli(
        env, "doctor", "--kubelet", "--kubelet-config", str(config), "--bin-dir", str(bin_dir), image, "--json", *more
    )
    data = json.loads(r.stdout)
    assert r.returncode == (0 if data["ok"] else 1)
    return data["ok"], data["checks"]


def explained(config, bin_dir, image, token=None):
    """doctor --kubelet in-process, for setups where the kubelet would run nothing (fast)."""
    from quay_cred_helper.node.explain import explain

    checks = [
        dict(zip(("status", "check", "detail", "fix"), f)) for f in explain([image], str(config), str(bin_dir), token)
    ]
    return not any(c["status"] == "FAIL" for c in checks), checks


def failures(checks):
    return [(c["check"], c["detail"], c["fix"]) for c in checks if c["status"] == "FAIL"]


def written(etc, text, name="credential-provider.yaml"):
    path = etc / name
    path.write_text(text)
    return path


@pytest.mark.slow  # over half a second: the full suite
def test_a_good_setup_runs_the_provider_and_shows_the_jwt(node, quay):
    env, etc, bin_dir = node
    config = written(etc, provider_yaml(quay, etc))
    ok, checks = doctor(env, config, bin_dir, f"{quay.host}/org/app:1.0")
    assert ok, failures(checks)
    details = {c["check"]: c["detail"] for c in checks}
    assert details["image"].startswith(f"{quay.host}/org/app ")  # no tag: what the kubelet sends
    assert details["provider quay-credential-provider"] == f"matchImages {quay.host!r} matches {quay.host}/org/app"
    assert (
        details["provider quay-credential-provider executable"] == f"{bin_dir}/quay-credential-provider -> {PROVIDER}"
    )
    answer = details["provider quay-credential-provider answer"]
    assert answer.startswith(f"username {ROBOT} for {quay.host}: JWT sub {ROBOT}, aud {quay.server_hostname}, exp 20")
    cache = details["provider quay-credential-provider cache"]
    assert "(its cacheDuration), for every image on" in cache and "the JWT lives" in cache
    kept, life = (float(cache.split("kept ")[1].split(" s")[0]), float(cache.split("lives ")[1].split(" s")[0]))
    assert 0 < kept < life <= 3600
    assert ROBOT_TOKEN not in json.dumps(checks) and quay.count("/v2/auth") == 1


def per_pod(quay, etc, require):
    """A per-pod setup: kubelet.ini for each pod's token, the config's tokenAttributes; the config's path."""
    (etc / "kubelet.ini").write_text(f"[{quay.host}]\nservice_account = true\nrobot = {ROBOT}\n")
    attributes = f"""    tokenAttributes:
      serviceAccountTokenAudience: quay
      cacheType: ServiceAccount
      requireServiceAccount: {"true" if require else "false"}
      optionalServiceAccountAnnotationKeys: ["quay-cred-helper/robot"]
"""
    return written(etc, provider_yaml(quay, etc, extra=attributes))


@pytest.mark.slow  # three doctor runs, two exchanges
def test_per_pod_mode_sends_the_service_account_token(node, quay, issuer, tmp_path):
    env, etc, bin_dir = node
    config = per_pod(quay, etc, require=True)
    ok, checks = explained(config, bin_dir, f"{quay.host}/org/app")  # no token: nothing runs
    warned = [c for c in checks if c["status"] == "WARN"]
    assert ok and "requireServiceAccount: true" in warned[0]["detail"] and "--service-account-token" in warned[0]["fix"]
    token = tmp_path / "sa-token"
    token.write_text(issuer.token(SA, audience="quay"))
    ok, checks = doctor(env, config, bin_dir, f"{quay.host}/org/app", "--service-account-token", str(token))
    assert ok, failures(checks)
    details = {c["check"]: c["detail"] for c in checks}
    assert details["service-account token"].startswith(f"sub {SA}, aud quay, ")
    notes = [c["detail"] for c in checks if c["check"] == "provider quay-credential-provider answer"]
    assert "annotations quay-cred-helper/robot; this run passes none (as for a service account without" in notes[0]
    assert details["provider quay-credential-provider answer"].startswith(f"username {ROBOT} for {quay.host}: JWT sub")
    assert quay.federation_log[-1]["subject"] == SA
    # A token for another audience: the kubelet would never send it.
    token.write_text(issuer.token(SA, audience="other"))
    _, checks = doctor(env, config, bin_dir, f"{quay.host}/org/app", "--service-account-token", str(token))
    assert any(c["status"] == "WARN" and "the kubelet asks for 'quay'" in c["detail"] for c in checks)


def test_a_wrong_provider_name(node, quay):
    env, etc, bin_dir = node
    config = written(etc, provider_yaml(quay, etc, name="quay"))
    ok, checks = explained(config, bin_dir, f"{quay.host}/org/app")
    (check, detail, fix), start = failures(checks)
    assert start[0] == "kubelet start"
    assert check == "provider quay executable"
    assert detail == f"plugin binary executable {bin_dir}/quay did not exist: the kubelet exits at start"
    assert fix.startswith("name: quay-credential-provider (the file in the bin dir)")


def test_a_glob_that_does_not_match(node, quay):
    env, etc, bin_dir = node
    config = written(etc, provider_yaml(quay, etc, match="*.example.com"))
    ok, checks = explained(config, bin_dir, "a.b.example.com/org/app")
    assert not ok
    why = next(c for c in checks if c["status"] == "WARN")
    assert why["detail"] == (
        "matchImages '*.example.com' does not match a.b.example.com/org/app: 3 host labels against 4: a * "
        "stands for one label (`*.example.com` does not match `a.b.example.com`)"
    )
    ((check, detail, fix),) = failures(checks)
    assert check == "matchImages" and detail.startswith("no provider matches a.b.example.com/org/app")
    assert fix == "add 'a.b.example.com' to the matchImages of the provider that should answer"
    assert quay.count("/v2/auth") == 0  # nothing ran


def test_a_provider_without_its_executable_bit(node, quay):
    env, etc, bin_dir = node
    (bin_dir / "quay-credential-provider").unlink()
    shutil.copy(PROVIDER, bin_dir / "quay-credential-provider")
    (bin_dir / "quay-credential-provider").chmod(0o644)
    config = written(etc, provider_yaml(quay, etc))
    ok, checks = explained(config, bin_dir, f"{quay.host}/org/app")
    (check, detail, fix), start = failures(checks)
    assert start[0] == "kubelet start"
    assert detail.endswith(
        "is not executable (mode 644): the kubelet exits at start (error inspecting binary "
        "executable: permission denied)"
    )
    assert fix == f"chmod 755 {bin_dir}/quay-credential-provider"


def test_an_interpreter_line_naming_nothing_and_a_dangling_link(node, quay, tmp_path):
    env, etc, bin_dir = node
    script = tmp_path / "elsewhere" / "provider"
    script.parent.mkdir()
    script.write_text("#!/nonexistent/python3\nprint('never')\n")
    script.chmod(0o755)
    (bin_dir / "quay-credential-provider").unlink()
    (bin_dir / "quay-credential-provider").symlink_to(script)
    config = written(etc, provider_yaml(quay, etc))
    _, checks = explained(config, bin_dir, f"{quay.host}/org/app")
    (_, detail, fix), start = failures(checks)
    assert start[0] == "kubelet start"
    assert "its #! line names /nonexistent/python3, which does not exist" in detail and "reinstall" in fix
    script.unlink()
    _, checks = explained(config, bin_dir, f"{quay.host}/org/app")
    assert failures(checks)[0][1].endswith("the link's target does not exist")


@pytest.mark.parametrize(
    "options, message, fix",
    [
        (
            {"api": "v2"},
            "apiVersion: Unsupported value 'credentialprovider.kubelet.k8s.io/v2'",
            f"apiVersion: {V1} (quay-credential-provider also speaks",
        ),
        (
            {"config_api": "v2"},
            'error decoding config: no kind "CredentialProviderConfig" is registered for version '
            '"kubelet.config.k8s.io/v2"',
            "apiVersion: kubelet.config.k8s.io/v1",
        ),
        (
            {"config_api": "v1beta1", "extra": "    tokenAttributes: {serviceAccountTokenAudience: quay}\n"},
            'error decoding config: strict decoding error: unknown field "providers[0].tokenAttributes"',
            "tokenAttributes needs apiVersion: kubelet.config.k8s.io/v1 at the top of the file",
        ),
        (
            {
                "api": "v1beta1",
                "extra": "    tokenAttributes:\n      serviceAccountTokenAudience: quay\n"
                "      cacheType: ServiceAccount\n      requireServiceAccount: false\n",
            },
            f"tokenAttributes is only supported for {V1} API version",
            f"apiVersion: {V1}",
        ),
        (
            {
                "extra": "    tokenAttributes:\n      serviceAccountTokenAudience: quay\n"
                "      requireServiceAccount: no\n"
            },
            "cacheType is required to be set when tokenAttributes is specified (since Kubernetes 1.34)",
            "cacheType: ServiceAccount",
        ),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_configs_the_kubelet_refuses(node, quay, options, message, fix):
    env, etc, bin_dir = node
    config = written(etc, provider_yaml(quay, etc, **options))
    ok, checks = explained(config, bin_dir, f"{quay.host}/org/app")
    found = failures(checks)
    assert not ok and found[-1][0] == "kubelet start", found
    assert any(message in detail and got.startswith(fix) for _, detail, got in found), found


@pytest.mark.parametrize(
    "text, message",
    [
        ("    defaultCacheDuration: 10\n", "defaultCacheDuration: a duration string, not 10"),
        ("    matchimages: [x]\n", 'unknown field "providers[0].matchimages"'),
        ("    name: twice\n", 'duplicate field "name"'),
        ('    defaultCacheDuration: "10 minutes"\n', 'time: invalid duration "10 minutes"'),
        ("\tname: tab\n", "invalid YAML"),
    ],
)
@pytest.mark.slow  # over half a second: the full suite
def test_yaml_the_kubelet_would_reject(node, quay, text, message):
    """Each line appended to the provider entry (the duplicate keys replace the good ones' place)."""
    env, etc, bin_dir = node
    good = provider_yaml(quay, etc).replace('    defaultCacheDuration: "10m"\n', "")
    config = written(etc, good + text if "defaultCacheDuration" in text else provider_yaml(quay, etc) + text)
    ok, checks = explained(config, bin_dir, f"{quay.host}/org/app")
    assert not ok and any(message in detail for _, detail, _ in failures(checks)), failures(checks)


@pytest.mark.slow  # over half a second: the full suite
def test_a_directory_of_configs_is_merged_and_a_name_in_two_files_refused(node, quay):
    env, etc, bin_dir = node
    configs = etc / "credential-providers.d"
    configs.mkdir()
    written(configs, provider_yaml(quay, etc), "20-quay.yaml")
    other = {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [
            {"name": "ecr", "apiVersion": V1, "matchImages": ["*.dkr.ecr.*.amazonaws.com"], "defaultCacheDuration": "0"}
        ],
    }
    written(configs, json.dumps(other), "10-ecr.json")
    written(configs, "not: read\n", "README.md")
    (bin_dir / "ecr").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "ecr").chmod(0o755)
    ok, checks = doctor(env, configs, bin_dir, f"{quay.host}/org/app")
    assert ok, failures(checks)
    assert any(
        c["detail"].endswith(
            f"10-ecr.json, {configs}/20-quay.yaml (Kubernetes 1.34 and later): ecr, quay-credential-provider"
        )
        for c in checks
    )
    other["providers"][0]["name"] = "quay-credential-provider"
    written(configs, json.dumps(other), "10-ecr.json")
    ok, checks = explained(configs, bin_dir, f"{quay.host}/org/app")
    assert not ok and "duplicate provider name 'quay-credential-provider'" in failures(checks)[0][1]


def test_a_cache_duration_longer_than_the_jwt(node, quay, tmp_path):
    """A provider (not ours) whose answer the kubelet would keep past its JWT's end."""
    env, etc, bin_dir = node
    claims = {"sub": "org+stale", "aud": "quay", "exp": int(time.time()) + 600}
    import base64

    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    answer = {
        "kind": "CredentialProviderResponse",
        "apiVersion": V1,
        "cacheKeyType": "Registry",
        "cacheDuration": "1h",
        "auth": {quay.host: {"username": "org+stale", "password": f"e30.{body}.c2ln"}},
    }
    stub = bin_dir / "stale"
    stub.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read()\nprint({json.dumps(json.dumps(answer))})\n")
    stub.chmod(0o755)
    config = written(etc, provider_yaml(quay, etc, name="stale"))
    ok, checks = doctor(env, config, bin_dir, f"{quay.host}/org/app")
    ((check, detail, fix),) = failures(checks)
    assert check == "provider stale cache" and "the kubelet keeps this answer 3600 s (its cacheDuration" in detail
    assert "but the JWT expires in" in detail and fix.startswith("give a cacheDuration shorter than the JWT's life")


def test_a_failing_provider_shows_its_stderr(node, quay):
    env, etc, bin_dir = node
    (etc / "kubelet.ini").write_text("[other.example.com]\nrobot = org+x\n")
    config = written(etc, provider_yaml(quay, etc))
    _, checks = doctor(env, config, bin_dir, f"{quay.host}/org/app")
    ((check, detail, fix),) = failures(checks)
    assert detail.startswith(f"exit 1: quay-credential-provider: no credentials configured for {quay.host} in ")
    assert fix.startswith("the kubelet logs this and pulls without these credentials")


@pytest.mark.slow  # a stand-in kubelet process and two doctor runs
def test_the_flags_of_the_running_kubelet(node, quay, tmp_path):
    """No flags given: the kubelet's own command line in /proc (a stand-in process named kubelet)."""
    env, etc, bin_dir = node
    r = cli(env, "doctor", "--kubelet", f"{quay.host}/org/app")
    assert r.returncode == 1 and b"no kubelet found here" in r.stdout and b"--kubelet-config FILE" in r.stdout
    config = written(etc, provider_yaml(quay, etc))
    fake = subprocess.Popen(
        [
            "kubelet",
            "-c",
            "import time; time.sleep(60)",
            f"--image-credential-provider-config={config}",
            "--image-credential-provider-bin-dir",
            str(bin_dir),
            "--feature-gates=Foo=true",
        ],
        executable=sys.executable,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until its cmdline is there
            with open(f"/proc/{fake.pid}/cmdline", "rb") as f:
                if f.read().startswith(b"kubelet\0"):
                    break
            time.sleep(0.05)
        r = cli(env, "doctor", "--kubelet", f"{quay.host}/org/app", "--json")
        checks = json.loads(r.stdout)["checks"]
        assert r.returncode == 0, failures(checks)
        assert checks[0]["detail"] == (
            f"from the running kubelet, pid {fake.pid}: --image-credential-provider-config={config} "
            f"--image-credential-provider-bin-dir={bin_dir}"
        )
    finally:
        fake.kill()
        fake.wait(timeout=10)


def test_one_image_only(node):
    from quay_cred_helper.errors import InputError
    from quay_cred_helper.node.explain import explain

    _, _, bin_dir = node
    with pytest.raises(InputError, match="doctor --kubelet explains one IMAGE, e.g. quay.example.com/org/app:1"):
        explain(["a/b", "c/d"], "x", str(bin_dir), None)


# -- the kubelet's rules, in-process --------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, name",
    [
        ("nginx", "docker.io/library/nginx"),
        ("nginx:1.25", "docker.io/library/nginx"),
        ("index.docker.io/org/app", "docker.io/org/app"),
        ("quay.example.com:8443/org/app:1@sha256:" + "0" * 64, "quay.example.com:8443/org/app"),
        ("localhost/app", "localhost/app"),
    ],
)
def test_images_are_normalised_as_the_kubelet_does(image, name):
    assert kubelet_config.normalise_image(image) == name


@pytest.mark.parametrize(
    "glob, image, why",
    [
        ("*.example.com", "a.example.com/x", None),
        ("a[x-z]c.io", "ayc.io/x", None),
        ("a[!b]c.io", "axc.io/x", "host label 'axc'"),  # in Go's globs ! is no negation
        ("a[^b]c.io", "axc.io/x", "not a URL the kubelet can parse (invalid character '^' in host name)"),
        ("a[b.io", "ab.io/x", "a malformed glob"),
        ("quay.io:*", "quay.io:443/x", "not a URL the kubelet can parse (invalid port"),
        ("quay.io/org", "quay.io/organisation/x", None),
    ],
)
def test_match_images_by_go_rules(glob, image, why):
    found = kubelet_config.mismatch(glob, image)
    assert (found is None) if why is None else (found is not None and found.startswith(why.split("'")[0])), found


def test_go_durations():
    assert kubelet_config.parse_go_duration("1h30m") == 5400 and kubelet_config.parse_go_duration("0") == 0
    assert kubelet_config.parse_go_duration("1.5s") == 1.5 and kubelet_config.parse_go_duration("-5m") == -300
    for bad in ("", "10", "m", "1d", "1 h"):
        with pytest.raises(ValueError):
            kubelet_config.parse_go_duration(bad)


# -- whose kubelet: only a process root can trust, else its units and files -----------------------------------


def stand_in(argv, wrap=(), env=None):
    """A process named kubelet (argv[0]) running `argv[1:]` through the command `wrap` (setpriv, unshare):
    started, waited for until /proc shows its command line, and returned."""
    fake = subprocess.Popen(
        # -p: bash keeps an effective uid that is not the real one (as a setuid program's would be)
        [*wrap, "bash", "-p", "-c", 'exec -a kubelet "$@"', "bash", *argv],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{fake.pid}/cmdline", "rb") as f:
                if f.read().startswith(b"kubelet\0"):
                    return fake
        except OSError:
            pass
        pids = subprocess.run(["pgrep", "-P", str(fake.pid)], capture_output=True, text=True).stdout.split()
        for pid in pids:  # setpriv execs in place; unshare --fork runs it as a child
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"kubelet\0"):
                    return fake
        time.sleep(0.05)
    fake.kill()
    raise AssertionError("the stand-in kubelet did not start")


def stop(fake):
    subprocess.run(["pkill", "-KILL", "-P", str(fake.pid)], check=False)  # unshare's child, by its parent's pid
    fake.kill()
    fake.wait(timeout=10)


def recording_provider(tmp_path, dump):
    """A root-owned bin dir whose provider records its environment in `dump`, then runs the real one."""
    bin_dir = tmp_path / "recording-bin"
    bin_dir.mkdir()
    script = bin_dir / "quay-credential-provider"
    script.write_text(f'#!/bin/sh\nenv > "{dump}"\nexec "{PROVIDER}" "$@"\n')
    script.chmod(0o755)
    return bin_dir


@pytest.mark.skipif(os.geteuid() != 0, reason="processes of other ids need root")
@pytest.mark.parametrize(
    "wrap, why",
    [
        ([], None),
        (["setpriv", "--ruid=65534"], "uid 65534 0 0 0"),  # what a setuid-root program a user ran looks like
        (["setpriv", "--rgid=65534", "--clear-groups"], "gid 65534 0 0 0"),
        (["setpriv", "--egid=65534", "--clear-groups"], "gid 0 65534"),
    ],
)
def test_a_process_any_id_of_which_is_not_root_is_not_trusted(wrap, why):
    """/proc/PID's owner is the effective uid: `su` run by nobody (Uid: 65534 0 0 0) passed as root's."""
    process = subprocess.Popen([*wrap, "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.readlink(f"/proc/{process.pid}/exe") != shutil.which("sleep"):
            time.sleep(0.02)  # setpriv execs sleep in place
        found = node_kubelet.untrusted(f"/proc/{process.pid}", "/proc/self")
    finally:
        process.kill()
        process.wait(timeout=10)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found and "not all root" in found


@pytest.mark.slow  # stand-in processes and doctor runs
@pytest.mark.skipif(os.geteuid() != 0, reason="a process of another user, and a PID namespace, need root")
@pytest.mark.parametrize("how", ["nobody", "setuid from nobody", "pid namespace"])
def test_a_kubelet_process_root_cannot_trust_is_never_run(node, quay, tmp_path, how):
    """Main ran the lowest-PID process named kubelet of any user, from its bin dir, as root."""
    env, etc, _ = node
    marker = tmp_path / "ran-as-root"
    evil = tmp_path / "evil-bin"
    evil.mkdir(mode=0o755)
    (evil / "quay-credential-provider").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (evil / "quay-credential-provider").chmod(0o755)
    config = tmp_path / "evil.yaml"
    config.write_text(provider_yaml(quay, etc))
    config.chmod(0o644)
    flags = [f"--image-credential-provider-config={config}", f"--image-credential-provider-bin-dir={evil}"]
    wrap = {
        "nobody": ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        "setuid from nobody": ["setpriv", "--ruid=65534"],  # euid 0: /proc/PID is root's
        "pid namespace": ["unshare", "-p", "--fork"],
    }[how]
    fake = stand_in(["/usr/bin/python3", "-c", "import time; time.sleep(30)", *flags], wrap)
    try:
        r = cli(env, "doctor", "--kubelet", f"{quay.host}/org/app", "--json")
    finally:
        stop(fake)
    checks = json.loads(r.stdout)["checks"]
    assert not marker.exists()
    refused = [c["detail"] for c in checks if c["check"] == "kubelet process"]
    why = {"nobody": "uid 65534 65534", "setuid from nobody": "uid 65534 0 0 0"}.get(how, "in another PID namespace")
    assert any(why in detail and detail.endswith("not trusted, its flags are not read") for detail in refused), refused
    assert r.returncode == 1 and not any(str(evil) in c["detail"] for c in checks if c["status"] == "OK")


@pytest.mark.slow  # a stand-in process and a provider run
def test_the_provider_never_gets_another_process_environment(node, quay, tmp_path):
    """Even with --kubelet-config and --bin-dir given, main passed the kubelet process's environment on."""
    env, etc, _ = node
    dump = tmp_path / "provider-environment"
    bin_dir = recording_provider(tmp_path, dump)
    config = written(etc, provider_yaml(quay, etc))
    planted = dict(os.environ, PYTHONPATH=str(tmp_path / "planted"), LD_PRELOAD=str(tmp_path / "planted.so"))
    fake = stand_in(["sleep", "30"], env=planted)
    try:
        ok, checks = doctor(env, config, bin_dir, f"{quay.host}/org/app")
    finally:
        stop(fake)
    assert ok, failures(checks)
    seen = dict(line.partition("=")[::2] for line in dump.read_text().splitlines() if "=" in line)
    assert "PYTHONPATH" not in seen and "LD_PRELOAD" not in seen and "HOME" not in seen
    assert seen["PATH"] == env["PATH"]  # doctor's own


@pytest.mark.parametrize("what", ["bin dir", "provider", "config", "interpreter"])
def test_files_others_can_write_are_never_run(node, quay, tmp_path, what):
    """The interpreter too: the provider's #! line can name a user's venv python, which root then runs."""
    env, etc, _ = node
    dump = tmp_path / "provider-environment"
    bin_dir = recording_provider(tmp_path, dump)
    config = written(etc, provider_yaml(quay, etc))
    interpreter = tmp_path / "interpreter" / "sh"
    interpreter.parent.mkdir()
    shutil.copy("/bin/sh", interpreter)
    script = bin_dir / "quay-credential-provider"
    script.write_text(script.read_text().replace("#!/bin/sh", f"#!{interpreter}", 1))
    loose = {"bin dir": bin_dir, "provider": script, "config": config, "interpreter": interpreter}[what]
    loose.chmod(loose.stat().st_mode | 0o002)
    ok, checks = explained(config, bin_dir, f"{quay.host}/org/app")
    assert not ok and not dump.exists()
    (check, detail, fix), *_ = failures(checks)
    assert "not run as root" in detail and fix.startswith("chmod go-w ")


@pytest.mark.parametrize("kind", ["k3s", "rke2"])
def test_without_a_trusted_process_the_units_say(node, quay, tmp_path, kind):
    """k3s and RKE2 run no process named kubelet: their units and config.yaml give the flags."""
    _, etc, bin_dir = node
    config = written(etc, provider_yaml(quay, etc))
    root = tmp_path / "node"
    unit = root / "etc/systemd/system" / f"{kind}-agent.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/local/bin/agent\n")
    (root / f"etc/rancher/{kind}").mkdir(parents=True)
    (root / f"etc/rancher/{kind}/config.yaml").write_text(
        "kubelet-arg:\n"
        f"  - image-credential-provider-config={config}\n"
        f"  - image-credential-provider-bin-dir={bin_dir}\n"
    )
    from quay_cred_helper.node.explain import explain

    findings = explain([f"{quay.host}/org/app"], None, None, None, root=str(root))
    flags = next(f for f in findings if f[1] == "kubelet flags")
    assert flags[0] == "OK" and flags[2].startswith(f"from {kind}'s units and /etc/rancher/{kind}: ")
    assert f"--image-credential-provider-bin-dir={bin_dir}" in flags[2]


@pytest.mark.slow  # a doctor run and a provider run
def test_a_per_pod_config_run_without_a_token_says_to_give_one(node, quay):
    """Main's fix told to add tokenAttributes, which the config had: no token was given, none was sent."""
    env, etc, bin_dir = node
    config = per_pod(quay, etc, require=False)
    _, checks = doctor(env, config, bin_dir, f"{quay.host}/org/app")
    (answer,) = [c for c in checks if c["check"] == "provider quay-credential-provider answer"]
    assert answer["status"] == "WARN" and "what a pod without one gets" in answer["detail"]
    assert answer["fix"].startswith("give --service-account-token FILE (kubectl create token SA --audience quay)")
    assert "tokenAttributes" not in answer["fix"]


def test_flags_given_are_used_when_the_units_do_not_parse(node, quay, tmp_path):
    _, etc, bin_dir = node
    config = written(etc, provider_yaml(quay, etc, match="other.example.com"))
    root = tmp_path / "node"
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "etc/rancher/k3s/config.yaml").write_text("kubelet-arg: [unclosed\n")
    from quay_cred_helper.node.explain import explain

    findings = explain([f"{quay.host}/org/app"], str(config), str(bin_dir), None, root=str(root))
    flags = next(f for f in findings if f[1] == "kubelet flags")
    assert flags[0] == "OK" and flags[2].startswith("as given: ")
    # Without them, the broken file is the one line that says why.
    findings = explain([f"{quay.host}/org/app"], None, None, None, root=str(root))
    assert [f[:3] for f in findings if f[0] == "FAIL"] == [
        ("FAIL", "kubelet flags", "/etc/rancher/k3s/config.yaml is not YAML")
    ]

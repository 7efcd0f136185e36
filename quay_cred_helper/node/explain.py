"""doctor --kubelet IMAGE: the pull of IMAGE the way this node's kubelet will make it, step by step.

1. The kubelet's flags (node/kubelet.py): a root-owned kubelet process of this host, else its units and
   files (k3s, RKE2 included), or --kubelet-config and --bin-dir; the source said.
2. Its CredentialProviderConfig, read and validated as the kubelet does (node/kubelet_config.py).
3. Which providers' matchImages match IMAGE (every matching provider runs; none: no credentials).
4. Whether each can be executed from the bin dir: the file by its name, symlinks, the execute bit,
   the interpreter of its #! line; and whether root may run it: the config, the bin dir and the provider
   root's, with no group or other write up to / (else a FAIL, and nothing runs).
5. One run of each, as the kubelet runs it (PATH plus the config's env, never another process's; the request on
   stdin, a minute), in per-pod mode when given a service-account token; the answer decoded strictly,
   its username, the JWT's sub, aud and exp, and how long the kubelet will keep it.

Returns findings (status, check, detail, fix); commands/doctor.py prints them. Secrets (the JWT, the
service-account token) are never part of a finding.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from typing import Any, Optional

from quay_cred_helper import files
from quay_cred_helper.errors import ConfigError, InputError
from quay_cred_helper.node import kubelet_config
from quay_cred_helper.node.kubelet import BIN_DIR_FLAG, CONFIG_FLAG, Kubelet, find_kubelet, running
from quay_cred_helper.node.kubelet_config import GATE, Provider
from quay_cred_helper.registry import jwt

Finding = tuple[str, str, str, Optional[str]]  # (OK | WARN | FAIL, check, detail, fix)
TIMEOUT = 60  # seconds: the kubelet's fixed limit for one run
RESPONSE_FIELDS = ("kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth")
CACHE_KEY_TYPES = ("Image", "Registry", "Global")


def explain(
    images: list[str], config_path: str | None, bin_dir: str | None, token_file: str | None, root: str = "/"
) -> list[Finding]:
    """The findings for one IMAGE; `root` is where the kubelet's units are read when no process is trusted."""
    if len(images) != 1:
        raise InputError("doctor --kubelet explains one IMAGE, e.g. quay.example.com/org/app:1")
    try:
        image = kubelet_config.normalise_image(images[0])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    findings: list[Finding] = []
    kubelet = _flags(findings, config_path, bin_dir, root)
    if kubelet is None:
        return findings
    config_path = config_path or kubelet.config or ""
    bin_dir = bin_dir or kubelet.bin_dir or ""
    gate, gate_source = kubelet.gate()
    config = kubelet_config.read(config_path, gate)
    many = f"{len(config.files)} files merged in this order: {', '.join(config.files)} (Kubernetes 1.34 and later)"
    if not config.problems:
        names = ", ".join(p.name for p in config.providers)
        findings.append(
            ("OK", "provider config", f"{many if os.path.isdir(config_path) else config_path}: {names}", None)
        )
    for problem in config.problems:
        findings.append(("FAIL", "provider config", f"{problem.where}: {problem.detail}", problem.fix))
    starts = not config.problems
    if not os.path.isdir(bin_dir):
        starts = False
        findings.append(
            (
                "FAIL",
                "bin dir",
                f"plugin binary directory {bin_dir} did not exist",
                f"mkdir -p {bin_dir} and link the provider there",
            )
        )
    findings.append(("OK", "image", f"{image} (what the kubelet matches and sends: no tag or digest)", None))
    chosen = _matching(findings, config.providers, image)
    # At start the kubelet looks up every provider's executable, matching or not.
    if starts or os.path.isdir(bin_dir):
        found = [p for p in config.providers if _executable(findings, p, os.path.join(bin_dir, p.name), kubelet)]
        starts = starts and len(found) == len(config.providers)
    if not starts:
        findings.append(
            (
                "FAIL",
                "kubelet start",
                "a kubelet with this setup exits at start (Failed to register CRI auth plugins): it pulls nothing",
                "fix the lines above; `journalctl -u kubelet` shows the kubelet's own words",
            )
        )
        return findings
    if not _trusted(findings, config.files or [config_path], bin_dir, chosen):
        return findings
    token = _read_token(findings, token_file) if token_file else None
    for provider in chosen:
        _run(findings, provider, os.path.join(bin_dir, provider.name), image, kubelet, token, gate, gate_source)
    return findings


def _flags(findings: list[Finding], config_path: str | None, bin_dir: str | None, root: str) -> Kubelet | None:
    """The kubelet as root can trust it: the running process if it passes node/kubelet.py's checks, else
    its units and files under /; the flags given override what it has."""
    kubelet, refused = running()
    for why in refused:
        findings.append(("WARN", "kubelet process", f"{why}: not trusted, its flags are not read", None))
    if kubelet is None:
        try:
            kubelet = find_kubelet(root)
        except InputError as exc:
            if not (config_path and bin_dir):  # given both, its units are read only for its gates
                findings.append(("FAIL", "kubelet flags", exc.problem, exc.fix))
                return None
    if config_path and bin_dir:
        findings.append(
            ("OK", "kubelet flags", f"as given: {CONFIG_FLAG}={config_path} {BIN_DIR_FLAG}={bin_dir}", None)
        )
        return kubelet or Kubelet("given", "kubelet.service", config_path, bin_dir, source="as given")
    if kubelet is None:
        findings.append(
            (
                "FAIL",
                "kubelet flags",
                "no kubelet found here (no root-owned kubelet process of this host, no kubelet.service, "
                "k3s or RKE2 unit)",
                "run this on the node, or give --kubelet-config FILE and --bin-dir DIR",
            )
        )
        return None
    config, binaries = config_path or kubelet.config, bin_dir or kubelet.bin_dir
    if not config and not binaries:
        findings.append(
            (
                "FAIL",
                "kubelet flags",
                f"the kubelet ({kubelet.source}) runs no credential provider: it has no {CONFIG_FLAG}",
                f"add {CONFIG_FLAG}=FILE and {BIN_DIR_FLAG}=DIR to its flags (docs/kubernetes.md)",
            )
        )
        return None
    if not config or not binaries:
        missing = CONFIG_FLAG if not config else BIN_DIR_FLAG
        findings.append(
            (
                "FAIL",
                "kubelet flags",
                f"the kubelet ({kubelet.source}) has only one of the two flags, without {missing}: it exits at start",
                f"give it {missing} too",
            )
        )
        return None
    kubelet.config, kubelet.bin_dir = config, binaries
    findings.append(
        ("OK", "kubelet flags", f"from {kubelet.source}: {CONFIG_FLAG}={config} {BIN_DIR_FLAG}={binaries}", None)
    )
    return kubelet


def _matching(findings: list[Finding], providers: list[Provider], image: str) -> list[Provider]:
    """The providers the kubelet runs for `image` (every one whose matchImages match, in config order)."""
    chosen = []
    for provider in providers:
        hit = next((g for g in provider.match_images if kubelet_config.matches(g, image)), None)
        if hit is not None:
            chosen.append(provider)
            findings.append(("OK", f"provider {provider.name}", f"matchImages {hit!r} matches {image}", None))
    if len(chosen) > 1:
        findings.append(
            (
                "WARN",
                "providers",
                f"{', '.join(p.name for p in chosen)} all match: the kubelet runs each and tries every credential "
                "whose auth key matches, keys in reverse byte order, for one key the earlier provider first",
                "narrow their matchImages if only one should answer",
            )
        )
    if chosen:
        return chosen
    host = image.partition("/")[0]
    for provider in providers:
        for glob in provider.match_images:
            why = kubelet_config.mismatch(glob, image)
            findings.append(
                (
                    "WARN",
                    f"provider {provider.name}",
                    f"matchImages {glob!r} does not match {image}: {why}",
                    None,
                )
            )
    findings.append(
        (
            "FAIL",
            "matchImages",
            f"no provider matches {image}: the kubelet pulls it without provider credentials (anonymously, "
            "or with the pod's imagePullSecrets)",
            f"add {host!r} to the matchImages of the provider that should answer",
        )
    )
    return []


def _executable(findings: list[Finding], provider: Provider, path: str, kubelet: Kubelet) -> bool:
    """Whether the kubelet can exec bin-dir/name (LookPath at start, execve at each run)."""
    check = f"provider {provider.name} executable"
    if not provider.name:
        findings.append(
            ("FAIL", check, "the provider has no name: the kubelet looks for the bin dir itself", "name it")
        )
        return False
    try:
        found = os.lstat(path)
    except OSError:
        near = _look_alikes(os.path.dirname(path))
        fix = f"ln -s $(command -v quay-credential-provider) {path}"
        if near:
            fix = f"name: {near[0]} (the file in the bin dir), or {fix}"
        findings.append(
            ("FAIL", check, f"plugin binary executable {path} did not exist: the kubelet exits at start", fix)
        )
        return False
    target = path
    detail = path
    if stat.S_ISLNK(found.st_mode):
        target = os.path.realpath(path)
        detail = f"{path} -> {target}"
        if not os.path.exists(target):
            findings.append(
                (
                    "FAIL",
                    check,
                    f"{detail}: the link's target does not exist",
                    f"point {path} at the installed provider",
                )
            )
            return False
    mode = os.stat(target).st_mode
    if stat.S_ISDIR(mode):
        findings.append(("FAIL", check, f"{detail} is a directory", "link the provider's executable there instead"))
        return False
    if not mode & 0o111:
        findings.append(
            (
                "FAIL",
                check,
                f"{detail} is not executable (mode {stat.S_IMODE(mode):o}): the kubelet exits at start "
                "(error inspecting binary executable: permission denied)",
                f"chmod 755 {target}",
            )
        )
        return False
    interpreter = _interpreter_problem(target, kubelet)
    if interpreter:
        findings.append(("FAIL", check, f"{detail}: {interpreter[0]}", interpreter[1]))
        return False
    findings.append(("OK", check, detail, None))
    return True


def _trusted(findings: list[Finding], configs: list[str], bin_dir: str, providers: list[Provider]) -> bool:
    """Whether the config, the bin dir, each provider to run and the interpreter its #! line runs pass the
    provider's own check of its files (files.check_private: root's, with no group or other write up to /).
    A FAIL for each that does not."""
    ok = True
    checked = [("provider config", c) for c in configs]
    for p in providers:
        path = os.path.join(bin_dir, p.name)
        checked.append((f"provider {p.name} executable", path))
        checked += [(f"provider {p.name} interpreter", i) for i in _interpreters(path)]
    for what, path in checked:
        try:
            files.check_private(path, what).close()
        except ConfigError as exc:
            findings.append(("FAIL", what, f"{exc.problem}: not run as root", exc.fix))
            ok = False
    problem = files.unsafe_directories(os.path.realpath(bin_dir), "the directory")
    if problem:
        findings.append(("FAIL", "bin dir", f"{problem[0]}: not run as root", problem[1]))
        ok = False
    return ok


def _look_alikes(directory: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if "quay" in n or "credential-provider" in n)
    except OSError:
        return []


def _shebang(path: str) -> list[str] | None:
    """The words of the file's #! line; None for a binary (ELF). OSError when unreadable, ValueError when
    it is neither."""
    with open(path, "rb") as f:
        head = f.read(256)
    if head.startswith(b"\x7fELF"):
        return None
    if not head.startswith(b"#!"):
        raise ValueError(path)
    return head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()


def _interpreters(path: str) -> list[str]:
    """What runs a script at `path`: its #! interpreter, and with env the program env finds in PATH."""
    try:
        words = _shebang(path) or []
    except (OSError, ValueError):
        return []
    if len(words) > 1 and os.path.basename(words[0]) == "env":
        program = shutil.which(words[1], path=os.environ.get("PATH", os.defpath))  # the provider's PATH: ours
        return words[:1] + ([program] if program else [])
    return words[:1]


def _interpreter_problem(path: str, kubelet: Kubelet) -> tuple[str, str] | None:
    """What keeps execve from running the file: a #! line naming a missing interpreter, or no format."""
    try:
        words = _shebang(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror}", "check its permissions"
    except ValueError:
        return "neither a #! script nor a binary: exec fails (exec format error)", "reinstall the provider"
    if words is None:
        return None
    if not words:
        return "an empty #! line", "reinstall the provider"
    interpreter = words[0]
    if not os.access(interpreter, os.X_OK) or os.path.isdir(interpreter):
        return (
            f"its #! line names {interpreter}, which does not exist or is not executable",
            f"reinstall the provider for this node's Python (or fix the #! line of {path})",
        )
    if os.path.basename(interpreter) == "env" and len(words) > 1:
        path_env = os.environ.get("PATH", os.defpath)
        program = words[1]
        if not any(os.access(os.path.join(d, program), os.X_OK) for d in path_env.split(os.pathsep) if d):
            return (
                f"its #! line runs {program} from PATH, and the kubelet's PATH ({path_env}) has none",
                f"install {program}, or give the #! line a full path",
            )
    return None


def _read_token(findings: list[Finding], token_file: str) -> str | None:
    try:
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        findings.append(("FAIL", "service-account token", f"cannot read {token_file}: {exc}", "give a token file"))
        return None
    claims = jwt.claims(token)
    if claims is None:
        findings.append(("FAIL", "service-account token", f"{token_file} holds no JWT", "kubectl create token SA"))
        return None
    left = (jwt.number(claims, "exp") or 0) - time.time()
    findings.append(
        (
            "OK" if left > 0 else "FAIL",
            "service-account token",
            f"sub {claims.get('sub')}, aud {claims.get('aud')}, " + (f"{left:.0f} s left" if left > 0 else "expired"),
            None if left > 0 else "kubectl create token SA --audience AUDIENCE",
        )
    )
    return token


def _run(
    findings: list[Finding],
    provider: Provider,
    path: str,
    image: str,
    kubelet: Kubelet,
    token: str | None,
    gate: bool,
    gate_source: str,
) -> None:
    check = f"provider {provider.name} answer"
    attributes = provider.token_attributes if gate else None
    if token is not None and attributes is None:
        findings.append(
            (
                "WARN",
                check,
                "the kubelet sends this provider no service-account token (no tokenAttributes, or the "
                f"{GATE} gate is off: {gate_source}): running it without",
                None,
            )
        )
        token = None
    if attributes is not None and token is not None and attributes.audience:
        aud = (jwt.claims(token) or {}).get("aud")
        if attributes.audience not in (aud if isinstance(aud, list) else [aud]):
            findings.append(
                (
                    "WARN",
                    "service-account token",
                    f"its aud is {aud}, but the kubelet asks for {attributes.audience!r} for this provider",
                    f"kubectl create token SA --audience {attributes.audience}",
                )
            )
    if attributes is not None and token is None and attributes.require_service_account:
        findings.append(
            (
                "WARN",
                check,
                "the kubelet runs it only for pods with a service account (requireServiceAccount: true)",
                "give --service-account-token FILE (kubectl create token SA --audience AUDIENCE)",
            )
        )
        return
    if attributes is not None and token is not None and (attributes.required_keys or attributes.optional_keys):
        listed = ", ".join(attributes.required_keys + attributes.optional_keys)
        findings.append(
            (
                "WARN" if attributes.required_keys else "OK",
                check,
                f"the kubelet also passes the service account's annotations {listed}; this run passes none "
                + (
                    "(the kubelet runs it only for service accounts that have the required ones)"
                    if attributes.required_keys
                    else "(as for a service account without them: the default robot)"
                ),
                None,
            )
        )
    request: dict[str, Any] = {"kind": "CredentialProviderRequest", "apiVersion": provider.api_version, "image": image}
    if token:
        request["serviceAccountToken"] = token
    # Never another process's environment (LD_PRELOAD, PYTHONPATH): our PATH and the config's env.
    environment = {"PATH": os.environ.get("PATH", os.defpath), **dict(provider.env)}
    try:
        result = subprocess.run(
            [path, *provider.args],
            input=(json.dumps(request, separators=(",", ":")) + "\n").encode(),
            env=environment,
            capture_output=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        findings.append(
            ("FAIL", check, f"no answer within the kubelet's {TIMEOUT} s", "see why with QUAY_CRED_HELPER_LOG=debug")
        )
        return
    except OSError as exc:
        findings.append(("FAIL", check, f"cannot run {path}: {exc.strerror}", "see the executable check above"))
        return
    if result.returncode != 0:
        said = " ".join(result.stderr.decode("utf-8", "replace").split())[:500] or "nothing on stderr"
        if attributes is not None and token is None:  # the config asks for pods' tokens: none was given
            findings.append(
                (
                    "WARN",
                    check,
                    f"run without a service-account token (what a pod without one gets): exit {result.returncode}: "
                    f"{said}",
                    "give --service-account-token FILE (kubectl create token SA --audience "
                    f"{attributes.audience or 'AUDIENCE'}) to run it as the kubelet does for a pod with one",
                )
            )
            return
        findings.append(
            (
                "FAIL",
                check,
                f"exit {result.returncode}: {said}",
                "the kubelet logs this and pulls without these credentials: fix what it says",
            )
        )
        return
    try:
        response = decode_response(result.stdout, provider.api_version)
    except ValueError as exc:
        findings.append(("FAIL", check, f"the kubelet would discard the answer: {exc}", "see docs/kubernetes.md"))
        return
    echoed = token and any(entry.get("password") == token for entry in response["auth"].values())
    if echoed and attributes is not None and attributes.cache_type != "Token":
        findings.append(("FAIL", check, "it returned the service-account token as the password", "cacheType: Token"))
        return
    _report_answer(findings, check, provider, response, image)


def decode_response(stdout: bytes, api_version: str) -> dict[str, Any]:
    """The response, decoded as strictly as the kubelet does; ValueError with the reason it refuses."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise ValueError("a duplicate key")
        return dict(items)

    try:
        data = json.loads(stdout.decode("utf-8"), object_pairs_hook=pairs)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not one JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    unknown = sorted(set(data) - set(RESPONSE_FIELDS))
    if unknown:
        raise ValueError(f"unknown fields {unknown}")
    if data.get("apiVersion") != api_version:
        raise ValueError(f"apiVersion {data.get('apiVersion')!r} is not the configured {api_version!r}")
    if data.get("kind") != "CredentialProviderResponse":
        raise ValueError(f"kind {data.get('kind')!r}")
    if data.get("cacheKeyType") not in CACHE_KEY_TYPES:
        raise ValueError(f"cacheKeyType {data.get('cacheKeyType')!r} (Image, Registry or Global)")
    if data.get("cacheDuration") is not None:
        if not isinstance(data["cacheDuration"], str):
            raise ValueError("cacheDuration is not a duration string")
        data["cacheSeconds"] = kubelet_config.parse_go_duration(data["cacheDuration"])
    auth = data.get("auth") or {}
    if not isinstance(auth, dict):
        raise ValueError("auth is not a map")
    for key, entry in auth.items():
        if not isinstance(entry, dict) or set(entry) - {"username", "password"}:
            raise ValueError(f"auth[{key!r}] has fields other than username and password")
        if not all(isinstance(v, str) for v in entry.values()):
            raise ValueError(f"auth[{key!r}] has values that are not strings")
    data["auth"] = auth
    return data


def _report_answer(
    findings: list[Finding], check: str, provider: Provider, response: dict[str, Any], image: str
) -> None:
    keys = [k for k in kubelet_config.auth_keys_in_order(list(response["auth"])) if kubelet_config.matches(k, image)]
    if not keys:
        findings.append(
            (
                "FAIL",
                check,
                f"none of its auth keys ({', '.join(response['auth']) or 'none'}) matches {image}: the kubelet "
                "uses none of them",
                "the provider must answer a key for the image's host or a prefix of it",
            )
        )
        return
    normalised = {kubelet_config.auth_key(k): v for k, v in response["auth"].items()}
    entry = normalised[keys[0]]
    claims = jwt.claims(entry.get("password", ""))
    exp = jwt.number(claims, "exp")
    left = exp - time.time() if exp is not None else None
    if claims is None:
        detail = f"username {entry.get('username')} for {keys[0]} (the password is not a JWT)"
    else:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp)) if exp is not None else "none"
        detail = (
            f"username {entry.get('username')} for {keys[0]}: JWT sub {claims.get('sub')}, aud {claims.get('aud')}, "
            f"exp {when}" + (f" ({left:.0f} s left)" if left is not None else "")
        )
    findings.append(("OK", check, detail, None))
    seconds = response.get("cacheSeconds")
    source = "its cacheDuration"
    if seconds is None:
        seconds, source = provider.default_cache_duration or 0.0, "defaultCacheDuration (the answer gives none)"
    scope = {
        "Image": f"for {image} only",
        "Registry": f"for every image on {image.partition('/')[0]}",
        "Global": "for every image this provider matches",
    }[response["cacheKeyType"]]
    if not seconds:
        findings.append(
            ("OK", f"provider {provider.name} cache", "not cached: the kubelet runs it for every pull", None)
        )
    elif left is not None and seconds >= left:
        findings.append(
            (
                "FAIL",
                f"provider {provider.name} cache",
                f"the kubelet keeps this answer {seconds:.0f} s ({source}, {scope}), but the JWT expires in "
                f"{left:.0f} s: pulls after that send an expired password",
                "give a cacheDuration shorter than the JWT's life (quay-credential-provider does; lower "
                "defaultCacheDuration)",
            )
        )
    else:
        life = f"; the JWT lives {left:.0f} s more" if left is not None else ""
        findings.append(
            ("OK", f"provider {provider.name} cache", f"kept {seconds:.0f} s ({source}), {scope}{life}", None)
        )

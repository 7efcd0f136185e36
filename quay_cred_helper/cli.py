"""quay-cred-helper: the command a person runs (also `python -m quay_cred_helper`).

All the arguments are defined here (the man pages and shell completion are
generated from this parser); each command lives in commands/<name>.py and is
imported only when it runs, so `list` and a warm `token` stay light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from quay_cred_helper import __version__, log
from quay_cred_helper.context import Context
from quay_cred_helper.errors import HelperError, printable

REFERRER_FIELDS = ("digest", "artifactType", "mediaType", "size", "created")  # what `referrers --format` prints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quay-cred-helper",
        description="Keep Quay registry credentials in the OS keyring and hand out bearer tokens.",
    )
    parser.add_argument("--version", action="version", version=f"quay-cred-helper {__version__}")
    parser.add_argument("--debug", action="store_true", help="log what happens to stderr (secrets redacted)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("login", help="store credentials for a registry in the keyring")
    p.add_argument("registry", help="registry host, e.g. quay.example.com")
    p.add_argument("-u", "--username", help="user, robot (org+name), $app or $oauthtoken")
    p.add_argument("--password-stdin", action="store_true", help="read the password or token from stdin")
    p.add_argument("--no-verify", action="store_true", help="store without checking the credentials at /v2/auth")
    p.add_argument(
        "--oidc",
        metavar="SOURCE",
        help="a keyless robot: nothing stored, its OIDC token from auto, github, gitlab, azure, bitbucket, "
        "circleci, buildkite, kubernetes, env:NAME or file:PATH",
    )
    p.add_argument("--audience", default="", help="with --oidc: the audience to ask for (github, buildkite, gitlab)")
    p.add_argument(
        "--token-from",
        metavar="SOURCE",
        help="a robot whose token the job holds, in env:NAME or file:PATH: nothing stored, no keyring",
    )
    p.add_argument("--sso", action="store_true", help="sign in at the identity provider behind Quay's OIDC login")
    p.add_argument("--issuer", metavar="URL", help="with --sso: the identity provider's issuer (default: sso_issuer)")
    p.add_argument("--client-id", metavar="ID", help="with --sso: the CLI's client at the IdP (default: sso_client_id)")
    flow = p.add_mutually_exclusive_group()
    flow.add_argument("--browser", action="store_true", help="with --sso: sign in in a browser (authorization code)")
    flow.add_argument("--device", action="store_true", help="with --sso: sign in on another device (device code)")
    p.add_argument("--no-browser", action="store_true", help="with --sso: print the sign-in URL, open no browser")
    p.add_argument(
        "--port", type=int, default=0, help="with --sso: the local port the browser returns to (default: any)"
    )
    p.add_argument(
        "--app-token",
        action="store_true",
        help="with --sso: keep a Quay app token made with the sign-in (as $app), not the refresh token",
    )

    p = sub.add_parser("ci-login", help="one step for a CI job: log a robot in (keyless, else its token), configure")
    p.add_argument("registry", help="registry host, e.g. quay.example.com")
    p.add_argument("-u", "--robot", metavar="ORG+NAME", help="the robot (default: robot = in the config file)")
    p.add_argument("--audience", default="", help="the audience to ask the OIDC source for")
    p.add_argument(
        "--oidc", default="auto", metavar="SOURCE", help="the OIDC token's source (default: auto; none: never keyless)"
    )
    p.add_argument(
        "--token-from",
        default="env:QUAY_ROBOT_TOKEN",
        metavar="SOURCE",
        help="without an OIDC token: the robot token, env:NAME or file:PATH (default: env:QUAY_ROBOT_TOKEN)",
    )

    p = sub.add_parser("logout", help="remove the credentials of a registry")
    p.add_argument("registry")

    p = sub.add_parser("list", help="registries with stored credentials")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("-q", "--quiet", action="store_true", help="print registry names only")
    output.add_argument("-l", "--long", action="store_true", help="also when each secret was stored, and its age")

    p = sub.add_parser("token", help="print a bearer token (for curl and scripts)")
    p.add_argument("reference", metavar="REGISTRY[/NS/REPO]", help="registry, or a repository to get a pull token for")
    p.add_argument("--push", action="store_true", help="ask for pull,push (creates a missing repository on Quay)")
    p.add_argument("--scope", action="append", default=[], help="an extra scope, e.g. repository:ns/repo:pull")
    p.add_argument("--json", action="store_true", help="print the token with its expiry and granted access")

    p = sub.add_parser("credential", help="the credential `get` gives, with its kind and expiry (for scripts)")
    p.add_argument("reference", metavar="REGISTRY[/NS/REPO]", help="registry, or a repository routed to a robot")
    p.add_argument("--json", action="store_true", help="print it as JSON (version 1: docs/exec.md)")
    p.add_argument("--api", action="store_true", help="a Bearer token for Quay's REST API instead (where one exists)")

    p = sub.add_parser("exec", help="run a command with a throwaway docker config of fresh short-lived credentials")
    p.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="REG[/NS]",
        help="only this registry, or the robot routed for NS (repeatable)",
    )
    p.add_argument("--home", action="store_true", help="also a throwaway HOME holding .docker/config.json")
    p.add_argument("--print-env", action="store_true", help="print the variables for `eval` and run nothing")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run")

    p = sub.add_parser("referrers", help="list the OCI referrers (signatures, SBOMs, ...) of a manifest")
    p.add_argument("reference", metavar="REGISTRY/NS/REPO@DIGEST|:TAG")
    p.add_argument("--artifact-type", action="append", default=[], metavar="TYPE", help="only this artifact type")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the referrers index (after filtering)")
    output.add_argument("--format", choices=REFERRER_FIELDS, help="print one field per line, e.g. digest")
    p.add_argument("--tree", action="store_true", help="also list referrers of referrers")
    p.add_argument("--depth", type=int, default=3, choices=range(1, 11), metavar="N", help="--tree depth (1-10)")

    p = sub.add_parser("configure", help="point docker, podman, skopeo and buildah at the helper")
    p.add_argument("registries", nargs="+", metavar="REGISTRY")
    p.add_argument("--docker", action="store_true", help="credHelpers in $DOCKER_CONFIG/config.json")
    p.add_argument("--podman", action="store_true", help="credHelpers in the auth file podman reads first")
    p.add_argument(
        "--registries-conf",
        action="store_true",
        help="a registries.conf.d drop-in with credential-helpers (survives podman logout --all)",
    )
    p.add_argument("--all", action="store_true", help="docker and podman (the default)")
    p.add_argument("--remove", action="store_true", help="undo: remove only entries naming this helper")
    p.add_argument(
        "--migrate", action="store_true", help="move plaintext credentials of these registries into the keyring"
    )
    p.add_argument("--dry-run", action="store_true", help="print a unified diff, write nothing")

    p = sub.add_parser("doctor", help="check the keyring, client configs and registries; say how to fix")
    p.add_argument(
        "registries",
        nargs="*",
        metavar="REGISTRY",
        help="default: every registry with credentials; with --kubelet: the IMAGE to explain",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument(
        "--kubelet", action="store_true", help="explain how this node's kubelet would get credentials for IMAGE"
    )
    p.add_argument(
        "--kubelet-config",
        metavar="FILE",
        help="its CredentialProviderConfig file or directory (default: the running kubelet's flag)",
    )
    p.add_argument("--bin-dir", metavar="DIR", help="its provider bin dir (default: the running kubelet's flag)")
    p.add_argument(
        "--service-account-token",
        metavar="FILE",
        help="run the provider as for a pod with this service-account token (per-pod mode)",
    )

    p = sub.add_parser("robot", help="rotate a robot's token or show a robot, through Quay's API (an OAuth token)")
    p.add_argument(
        "action",
        choices=("rotate", "show", "api-token"),
        help="rotate: a new token from Quay, stored where the old one was; show: dates, federation, permissions; "
        "api-token: store the OAuth token for Quay's API (stdin or a prompt)",
    )
    p.add_argument("registry", help="registry host, e.g. quay.example.com")
    p.add_argument("robot", nargs="?", metavar="NAMESPACE+NAME", help="the robot (rotate, show)")
    p.add_argument("--api-token-stdin", action="store_true", help="read the OAuth token from stdin, not the keyring")
    p.add_argument("--json", action="store_true", help="show: print JSON")
    p.add_argument("--remove", action="store_true", help="api-token: remove the stored OAuth token")

    p = sub.add_parser("node", help="install the kubelet provider on a node, or as an OpenShift MachineConfig")
    _node_parser(p)

    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    sub.choices["completion"].set_defaults(root=parser)
    return parser


def _provider_source(p: argparse.ArgumentParser) -> None:
    """What the provider answers with: a kubelet.ini of your own, or one robot for some registries."""
    p.add_argument("--config", metavar="FILE", help="the provider's kubelet.ini, copied to the node as it is")
    p.add_argument("--registry", action="append", default=[], metavar="HOST", help="a registry (repeatable)")
    p.add_argument("--robot", metavar="NAMESPACE+NAME", help="the robot the provider answers as")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--robot-token-file", metavar="FILE", help="the robot's token, copied to the node (0600)")
    source.add_argument("--oidc", metavar="SOURCE", help="keyless: the node's OIDC token (file:PATH, env:NAME)")
    source.add_argument(
        "--service-account", action="store_true", help="keyless: each pod's service-account token (per pod)"
    )
    p.add_argument("--audience", help="per pod: the token audience the kubelet asks for (default: the registry)")
    p.add_argument(
        "--match-image", action="append", default=[], metavar="PATTERN", help="matchImages (default: the registries)"
    )


def _node_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="node_command", metavar="ACTION")
    sub.required = True
    q = sub.add_parser("install", help="put the provider, its config and the kubelet's flags on this node")
    q.add_argument("--root", default="/", metavar="DIR", help="the node's root (default /; /host in a DaemonSet)")
    q.add_argument("--provider", metavar="PATH", help="the provider: a file, the bundle's or the zipapp's directory")
    q.add_argument("--bin-dir", metavar="DIR", help="the kubelet's provider bin dir (default: its own, else ours)")
    q.add_argument(
        "--kubelet-config", metavar="PATH", help="its CredentialProviderConfig (default: its own, else ours)"
    )
    _provider_source(q)
    q.add_argument("--dry-run", action="store_true", help="print a unified diff of every change, write nothing")
    q.add_argument("--uninstall", action="store_true", help="take our provider, files and flags back out")
    q.add_argument("--no-flags", action="store_true", help="leave the kubelet's flags alone; print the ones to add")
    q.add_argument("--restart", action="store_true", help="after a change, restart the kubelet (systemctl, in --root)")
    q = sub.add_parser("openshift", help="print a MachineConfig that installs the provider on a pool's nodes")
    q.add_argument("--role", required=True, choices=("worker", "master"), help="the pool")
    q.add_argument("--zipapp", required=True, metavar="DIR", help="build-node-bundle --form zipapp's directory")
    _provider_source(q)
    q.add_argument(
        "--kubelet-flags",
        choices=("env", "execstart"),
        default="env",
        help="env: on-prem 4.22+ (the MCO's variable); execstart: ExecStart repeated from --kubelet-unit",
    )
    q.add_argument(
        "--kubelet-unit", metavar="FILE", help="execstart: the pool's kubelet.service, as the MCO renders it"
    )
    q.add_argument("--name", help="the MachineConfig's name (default: 99-ROLE-quay-cred-helper)")
    q.add_argument("-o", "--output", metavar="FILE", help="write it here (default: stdout)")


def _warn(message: str) -> None:
    print(f"quay-cred-helper: {printable(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        log.enable(to_stderr=True)
    else:
        log.enable_from_environment(_warn)
    try:
        command = importlib.import_module(f"quay_cred_helper.commands.{args.command.replace('-', '_')}")
        # A command may bound every registry's settings (doctor's quick checks): `limits`.
        code: int = command.run(args, Context(_warn, limits=getattr(command, "limits", None)))
        return code
    except HelperError as exc:
        _warn(str(exc))
        return 1
    except KeyboardInterrupt:
        _warn("interrupted")
        return 1
    except Exception as exc:  # a bug: one line, no traceback (its text could hold a secret)
        # Where it happened, for --debug: the frames, not the message, which could quote a secret.
        log.debug("internal error %s at\n%s", type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
        _warn(f"internal error: {type(exc).__name__} (run with --debug for details)")
        return 1

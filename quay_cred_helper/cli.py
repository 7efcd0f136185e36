"""quay-cred-helper: the command a person runs (also `python -m quay_cred_helper`)."""

import argparse
import json
import sys

from quay_cred_helper import __version__
from quay_cred_helper.errors import HelperError, InputError, NotFound
from quay_cred_helper.names import registry_key


def _read_password(args):
    if args.password_stdin:
        password = sys.stdin.readline()
        # Like `docker login --password-stdin`: drop only the line ending.
        password = password.rstrip("\r\n") if password.endswith("\n") else password
    elif sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
    else:
        raise InputError("no terminal to prompt for a password: use --password-stdin")
    if not password:
        raise InputError("empty password")
    return password


def _read_username(args):
    if args.username:
        return args.username
    if args.password_stdin or not sys.stdin.isatty():
        raise InputError("no username: pass -u USERNAME")
    username = input("Username: ").strip()
    if not username:
        raise InputError("no credentials username")
    return username


def _store():
    from quay_cred_helper.robots import open_store

    return open_store()


def cmd_login(args):
    key = registry_key(args.registry)
    username = _read_username(args)
    password = _read_password(args)
    from quay_cred_helper import log

    log.secret(password)
    if not args.no_verify:
        from quay_cred_helper.tokens import verify

        verify(key, username, password)  # one token request; a refusal stores nothing
    _store().add(key, args.registry, username, password)
    print(f"Login Succeeded: {username} at {key}", file=sys.stderr)
    return 0


def cmd_logout(args):
    key = registry_key(args.registry)
    try:
        _store().delete(key)
    except NotFound:
        print(f"not logged in to {key}", file=sys.stderr)
        return 0
    print(f"Removed credentials for {key}", file=sys.stderr)
    return 0


def cmd_list(args):
    from quay_cred_helper.index import Index

    rows = sorted((key, e["username"]) for key, e in Index().entries().items())
    if args.quiet:
        for key, _ in rows:
            print(key)
        return 0
    if args.json:
        json.dump([{"registry": k, "username": u} for k, u in rows], sys.stdout, indent=2)
        print()
        return 0
    width = max([len("REGISTRY")] + [len(k) for k, _ in rows])
    print(f"{'REGISTRY':<{width}}  USERNAME")
    for key, username in rows:
        print(f"{key:<{width}}  {username}")
    return 0


def _split_reference(text):
    """`registry[/ns/repo]` -> (key, repository or None)."""
    registry, _, repository = text.partition("/")
    return registry_key(registry), repository.strip("/") or None


def cmd_token(args):
    from quay_cred_helper.store import credentials_for
    from quay_cred_helper.tokens import Tokens

    key, repository = _split_reference(args.reference)
    scopes = list(args.scope)
    if repository:
        # Pull only unless asked: on Quay a push scope creates a missing repository.
        scopes.append(f"repository:{repository}:{'pull,push' if args.push else 'pull'}")
    elif args.push:
        raise InputError("--push needs a repository: REGISTRY/NAMESPACE/REPOSITORY")
    identity, credentials = credentials_for(key)
    token = Tokens().get(key, identity, scopes, credentials=credentials)
    if token is None:
        raise HelperError(f"{key} needs no token: it answered /v2/ without authentication")
    if args.json:
        import time

        json.dump(
            {
                "registry": key,
                "token": token.token,
                "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token.expires_at)),
                "expires_in": int(token.expires_at - time.time()),
                "scopes": sorted(set(scopes)),
                "access": token.access,
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print(token.token)
    return 0


FIELDS = ("digest", "artifactType", "mediaType", "size", "created")


def _field(descriptor, name):
    if name == "created":
        return descriptor.get("annotations", {}).get("org.opencontainers.image.created", "")
    value = descriptor.get(name, "")
    return str(value)


def _rows(descriptors, depth=0):
    for descriptor in descriptors:
        yield depth, descriptor
        yield from _rows(descriptor.get("referrers", []), depth + 1)


def _print_table(descriptors):
    rows = [
        ["  " * depth + ("└─ " if depth else "") + _field(d, "digest")] + [_field(d, f) or "-" for f in FIELDS[1:]]
        for depth, d in _rows(descriptors)
    ]
    header = ["DIGEST", "ARTIFACT TYPE", "MEDIA TYPE", "SIZE", "CREATED"]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def cmd_referrers(args):
    from quay_cred_helper.names import parse_reference
    from quay_cred_helper.referrers import INDEX, Repository, walk

    key, name, tag, digest = parse_reference(args.reference)
    repository = Repository(key, name)
    try:
        digest = digest or repository.resolve(tag)
        descriptors, how = walk(repository, digest, args.artifact_type, args.depth if args.tree else 1)
    finally:
        repository.close()
    if how == "tag-schema":
        print(f"quay-cred-helper: {key} has no referrers API: read the tag {digest.replace(':', '-')}", file=sys.stderr)
    if args.json:
        json.dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": descriptors}, sys.stdout, indent=2)
        print()
    elif args.format:
        for _, descriptor in _rows(descriptors):
            print(_field(descriptor, args.format))
    else:
        _print_table(descriptors)
    return 0


def cmd_configure(args):
    from quay_cred_helper import configure

    keys = [registry_key(registry) for registry in args.registries]
    everything = args.all or not (args.docker or args.podman or args.registries_conf)
    migrate = None
    if args.migrate and args.dry_run:
        migrate = lambda *credential: None  # noqa: E731 - the diff shows what would move
    elif args.migrate:
        from quay_cred_helper.store import KeyringStore

        store = _store()

        def migrate(key, server, username, secret):
            store.add(key, server, username, secret)
            # Only delete the plaintext once the keyring gives the same credential back.
            if KeyringStore().get(key) != (username, secret):
                raise HelperError(f"the keyring did not give back the credential for {key}: nothing was changed")

    changes = []
    if args.docker or everything:
        changes.append(configure.plan_json(configure.docker_config_path(), keys, True, args.remove, migrate))
    if args.podman or everything:
        change = configure.plan_json(configure.podman_auth_path(), keys, False, args.remove, migrate)
        if change.changed and not args.remove:
            change.notes.append(
                f"`podman logout --all` rewrites {change.path} without credHelpers: "
                "then run configure again, or use --registries-conf"
            )
        changes.append(change)
    if args.registries_conf:
        changes.append(configure.plan_drop_in(args.remove))
    problem = configure.helper_on_path()
    if problem:
        print(f"quay-cred-helper: warning: {problem}", file=sys.stderr)
    configure.report(changes, args.dry_run)
    return 0


def cmd_doctor(args):
    from quay_cred_helper import doctor

    report = doctor.run([registry_key(r) for r in args.registries])
    if args.json:
        json.dump({"ok": not report.failed, "checks": report.checks}, sys.stdout, indent=2)
        print()
    else:
        for line in report.lines():
            print(line)
    return 1 if report.failed else 0


def cmd_completion(args):
    from quay_cred_helper.completion import SHELLS

    sys.stdout.write(SHELLS[args.shell](build_parser()))
    return 0


def build_parser():
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
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="remove the credentials of a registry")
    p.add_argument("registry")
    p.set_defaults(func=cmd_logout)

    p = sub.add_parser("list", help="registries with stored credentials")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("-q", "--quiet", action="store_true", help="print registry names only")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("token", help="print a bearer token (for curl and scripts)")
    p.add_argument("reference", metavar="REGISTRY[/NS/REPO]", help="registry, or a repository to get a pull token for")
    p.add_argument("--push", action="store_true", help="ask for pull,push (creates a missing repository on Quay)")
    p.add_argument("--scope", action="append", default=[], help="an extra scope, e.g. repository:ns/repo:pull")
    p.add_argument("--json", action="store_true", help="print the token with its expiry and granted access")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("referrers", help="list the OCI referrers (signatures, SBOMs, ...) of a manifest")
    p.add_argument("reference", metavar="REGISTRY/NS/REPO@DIGEST|:TAG")
    p.add_argument("--artifact-type", action="append", default=[], metavar="TYPE", help="only this artifact type")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the referrers index (after filtering)")
    output.add_argument("--format", choices=FIELDS, help="print one field per line, e.g. digest")
    p.add_argument("--tree", action="store_true", help="also list referrers of referrers")
    p.add_argument("--depth", type=int, default=3, choices=range(1, 11), metavar="N", help="--tree depth (1-10)")
    p.set_defaults(func=cmd_referrers)

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
    p.set_defaults(func=cmd_configure)

    p = sub.add_parser("doctor", help="check the keyring, client configs and registries; say how to fix")
    p.add_argument("registries", nargs="*", metavar="REGISTRY", help="default: every registry with credentials")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p.set_defaults(func=cmd_completion)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from quay_cred_helper import log

    if args.debug:
        log.enable(to_stderr=True)
    else:
        log.enable_from_environment()
    try:
        return args.func(args)
    except HelperError as exc:
        print(f"quay-cred-helper: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("quay-cred-helper: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line, no traceback (its text could hold a secret)
        import traceback

        # Where it happened, for --debug: the frames, not the message, which could quote a secret.
        log.debug("internal error %s at\n%s", type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
        print(f"quay-cred-helper: internal error: {type(exc).__name__} (run with --debug for details)", file=sys.stderr)
        return 1

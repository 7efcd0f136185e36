"""quay-cred-helper node install | openshift: the kubelet provider onto a node, or into a MachineConfig.

The logic is in kubelet/install.py (the plan for one node, under --root) and kubelet/openshift.py (the
MachineConfig); this module reads the options' files, prints, and writes nothing a dry run would not show.
"""

from __future__ import annotations

import argparse
import os
import sys

from quay_cred_helper.context import Context
from quay_cred_helper.errors import InputError
from quay_cred_helper.node import install, openshift, rootfs


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}", "give a readable file") from None


def _provider(args: argparse.Namespace) -> tuple[bytes, bytes | None, list[str], str | None]:
    """kubelet.ini, the robot token, matchImages and the per-pod audience the options ask for."""
    token = _read(args.robot_token_file, "robot token file") if args.robot_token_file else None
    if token is not None and not token.strip():
        raise InputError(f"the robot token file {args.robot_token_file} is empty", "put the robot's token in it")
    if args.config:
        if args.registry or args.robot:
            raise InputError("--config and --registry/--robot both given", "give one: the file, or the registries")
        ini = _read(args.config, "provider config")
    else:
        ini = install.provider_ini(args.registry, args.robot or "", token is not None, args.oidc, args.service_account)
    sections, per_pod = install.ini_registries(ini)
    audience = args.audience or (sections[0].partition("/")[0] if per_pod else None)
    return ini, token, args.match_image or sections, audience


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.node_command == "openshift":
        return _openshift(args)
    return _install(args)


def _install(args: argparse.Namespace) -> int:
    options = install.Options(
        root=args.root,
        provider=args.provider,
        bin_dir=args.bin_dir,
        kubelet_config=args.kubelet_config,
        uninstall=args.uninstall,
        no_flags=args.no_flags,
    )
    if not args.uninstall:
        options.ini, options.token, options.match_images, options.audience = _provider(args)
    plan = install.plan(options)
    for note in plan.notes:
        print(f"quay-cred-helper: {note}", file=sys.stderr)
    if args.dry_run:
        for change in plan.changes:
            sys.stdout.write(change.diff())
        for directory in sorted(set(plan.rmdirs)):
            if os.path.isdir(rootfs.resolve(args.root, directory, follow=False)):
                print(f"rmdir {directory} (if left empty)")
    else:
        install.apply(plan, args.root)
        _report(plan)
    if not plan.changes:
        print("nothing to change", file=sys.stderr)
    elif plan.flags:
        print(f"add these kubelet flags: {' '.join(plan.flags)}", file=sys.stderr)
    elif args.restart and not args.dry_run:
        for command in install.restart(plan, args.root):
            print(f"ran {command}", file=sys.stderr)
    elif plan.kubelet is not None and not args.dry_run:
        print(f"the kubelet reads these at start: systemctl restart {plan.kubelet.service}", file=sys.stderr)
    return 0


def _report(plan: install.Plan) -> None:
    """One line a change; a bundle's files as one line."""
    bundle = [c for c in plan.changes if c.path.startswith(install.LIB + "/")]
    for change in plan.changes:
        if change in bundle:
            continue
        if change.new is None:
            print(f"removed {change.path}")
        elif isinstance(change.new, install.Link):
            print(f"linked {change.path} -> {change.new.target}")
        else:
            print(f"wrote {change.path} ({change.mode:04o})")
    if bundle:
        gone = sum(c.new is None for c in bundle)
        print(f"{install.LIB}: {len(bundle) - gone} files written, {gone} removed")


def _openshift(args: argparse.Namespace) -> int:
    app = openshift.zipapp_files(args.zipapp)
    ini, token, match_images, audience = _provider(args)
    unit = _read(args.kubelet_unit, "kubelet unit").decode("utf-8", "replace") if args.kubelet_unit else None
    if args.kubelet_flags == "env" and unit is not None:
        raise InputError("--kubelet-unit is for --kubelet-flags execstart", "leave it out, or add that option")
    mc = openshift.machine_config(
        args.role,
        app,
        ini,
        token,
        install.provider_entry(match_images, audience),
        args.kubelet_flags,
        unit,
        args.name,
    )
    found = openshift.check_size(mc)
    text = openshift.render(mc)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print(f"quay-cred-helper: MachineConfig {mc['metadata']['name']}: {found} bytes as JSON", file=sys.stderr)
    if token is not None:
        print(
            "quay-cred-helper: it carries the robot token: whoever can read MachineConfigs can read it", file=sys.stderr
        )
    if args.kubelet_flags == "execstart":
        print(
            "quay-cred-helper: its drop-in repeats kubelet.service's ExecStart: generate it again after each upgrade",
            file=sys.stderr,
        )
    return 0

"""Write the man pages from the argparse definitions: python3 packaging/manpages.py [OUTDIR].

tests/test_packaging.py regenerates them and compares with docs/man/, so the
pages cannot drift from the commands.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quay_cred_helper import __version__, config  # noqa: E402
from quay_cred_helper.cli import build_parser  # noqa: E402

DATE = "2026-11"  # changes only with a release, so the pages are reproducible


def roff(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def header(name, summary):
    return [
        f'.TH {name.upper()} 1 "{DATE}" "quay-cred-helper {__version__}" "User Commands"',
        ".SH NAME",
        f"{name} \\- {roff(summary)}",
    ]


def _option_line(action):
    flags = ", ".join(f"\\fB{roff(s)}\\fR" for s in action.option_strings)
    if action.nargs != 0 and action.option_strings:
        flags += f" \\fI{roff(action.metavar or action.dest.upper())}\\fR"
    return flags


def quay_cred_helper_page():
    parser = build_parser()
    lines = header("quay-cred-helper", "keep Quay registry credentials in the OS keyring; tokens, referrers")
    lines += [
        ".SH SYNOPSIS",
        "\\fBquay\\-cred\\-helper\\fR [\\fB\\-\\-debug\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        roff(parser.description),
    ]
    lines += [".SH GLOBAL OPTIONS"]
    for action in parser._actions:
        if action.option_strings:
            lines += [".TP", _option_line(action), roff(action.help or "")]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in subparsers._choices_actions}
    lines.append(".SH COMMANDS")
    for name, sub in subparsers.choices.items():
        usage = " ".join(sub.format_usage().split())[len("usage: ") :]
        lines += [".SS " + name, roff(helps[name]) + ".", ".PP", f"\\fB{roff(usage)}\\fR"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                lines += [".TP", _option_line(action), roff(action.help or "")]
            else:
                lines += [".TP", f"\\fI{roff(action.metavar or action.dest.upper())}\\fR", roff(action.help or "")]
    lines.append(".SH CONFIGURATION")
    lines.append(
        roff(
            "Per-registry settings in config.ini in the user config directory "
            "(~/.config/quay-cred-helper/config.ini on Linux), sections named by registry:"
        )
    )
    for name, (default, _, meaning) in config.SETTINGS.items():
        lines += [".TP", f"\\fB{roff(name)}\\fR (default: {roff(default or 'none')})", roff(meaning)]
    lines += [".SH SEE ALSO", "\\fBdocker\\-credential\\-quay\\fR(1)", ""]
    return "\n".join(lines)


def helper_page():
    lines = header("docker-credential-quay", "credential helper for Red Hat Quay registries")
    lines += [
        ".SH SYNOPSIS",
        "\\fBdocker\\-credential\\-quay\\fR \\fBstore\\fR|\\fBget\\fR|\\fBerase\\fR|\\fBlist\\fR|\\fBversion\\fR",
        ".SH DESCRIPTION",
        roff(
            "Run by docker, podman, skopeo, buildah, oras and docker-py when their configuration names "
            '"quay" for a registry (credHelpers). Secrets live in the OS keyring. For robot accounts, get '
            "returns a one-hour JWT from the registry's /v2/auth instead of the stored robot token."
        ),
        ".SH COMMANDS",
        ".TP",
        "\\fBstore\\fR",
        roff('reads {"ServerURL", "Username", "Secret"} on stdin and stores it.'),
        ".TP",
        "\\fBget\\fR",
        roff('reads a server name on stdin; prints {"ServerURL", "Username", "Secret"}.'),
        ".TP",
        "\\fBerase\\fR",
        roff("reads a server name on stdin and removes its credentials."),
        ".TP",
        "\\fBlist\\fR",
        roff("prints {server: username} for every stored registry; reads nothing."),
        ".TP",
        "\\fBversion\\fR",
        roff("prints the version (also -v, --version)."),
        ".SH EXIT STATUS",
        roff(
            "0 on success. 1 on error, with the message on stdout; when nothing is stored the message is "
            "exactly: credentials not found in native keychain"
        ),
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBQUAY_CRED_HELPER_LOG\\fR",
        roff("debug: write a debug log (secrets redacted)."),
        ".TP",
        "\\fBQUAY_CRED_HELPER_NO_CACHE\\fR",
        roff("1: do not cache tokens."),
        ".TP",
        "\\fBQUAY_CRED_HELPER_ALLOW_PLAINTEXT\\fR",
        roff("1: accept a plaintext keyring backend."),
        ".TP",
        "\\fBPYTHON_KEYRING_BACKEND\\fR",
        roff("the keyring backend to use."),
        ".SH SEE ALSO",
        "\\fBquay\\-cred\\-helper\\fR(1)",
        "",
    ]
    return "\n".join(lines)


def provider_page():
    lines = header("quay-credential-provider", "kubelet image credential provider for Red Hat Quay")
    lines += [
        ".SH SYNOPSIS",
        "\\fBquay\\-credential\\-provider\\fR \\fB\\-\\-config\\fR \\fIFILE\\fR "
        "[\\fB\\-\\-cache\\-dir\\fR \\fIDIR\\fR]",
        ".SH DESCRIPTION",
        roff(
            "Run by the kubelet (credentialprovider.kubelet.k8s.io v1, v1beta1, v1alpha1) for images that its "
            "CredentialProviderConfig sends to it: reads one CredentialProviderRequest on stdin and answers "
            "with a one-hour Quay robot JWT for the image's registry, never a long-lived robot token. Per "
            "registry, the config FILE names a robot and its token file (robot_token_file), the node's OIDC "
            "token (oidc = file:PATH), or each pod's service-account token (service_account = true, the robot "
            "from the annotation quay-cred-helper/robot or robot =). The config file and every file it names "
            "(token files, ca_bundle) must be owned by root (or the user the provider runs as) and writable by "
            "no one else, in directories up to / that are the same (as sshd's StrictModes checks)."
        ),
        ".SH OPTIONS",
        ".TP",
        "\\fB\\-\\-config\\fR \\fIFILE\\fR",
        roff("the provider's INI file: one section per registry."),
        ".TP",
        "\\fB\\-\\-cache\\-dir\\fR \\fIDIR\\fR",
        roff("where JWTs are cached between runs (default: the user cache dir)."),
        ".SH EXIT STATUS",
        roff(
            "0 with the response on stdout; 1 with one line on stderr (which the kubelet logs) and nothing on stdout."
        ),
        ".SH SEE ALSO",
        "\\fBquay\\-cred\\-helper\\fR(1), \\fBdocker\\-credential\\-quay\\fR(1)",
        "",
    ]
    return "\n".join(lines)


PAGES = {
    "quay-cred-helper.1": quay_cred_helper_page,
    "docker-credential-quay.1": helper_page,
    "quay-credential-provider.1": provider_page,
}


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    for name, make in PAGES.items():
        with open(os.path.join(outdir, name), "w") as f:
            f.write(make())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "docs", "man"))

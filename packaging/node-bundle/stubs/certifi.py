"""certifi's one function, answered from the node's own trust store: this bundle ships no CA certificates.

httpcore imports certifi when it loads and httpx when it builds an SSL context, but both are given the
provider's own context, which is loaded from the node's trust store (or ca_bundle =); where() is read only
when that store is empty, and then names the node's bundle too.
"""

import os

# The CA bundle files distributions install, in the order the common ones are checked.
BUNDLES = (
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, RHCOS, Fedora, Amazon Linux
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Flatcar
    "/etc/ssl/ca-bundle.pem",  # SUSE
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL's extracted bundle
    "/etc/ssl/cert.pem",  # Alpine, macOS
)


def where() -> str:
    for path in BUNDLES:
        if os.path.isfile(path):
            return path
    return BUNDLES[0]


def contents() -> str:
    with open(where(), encoding="ascii") as f:
        return f.read()

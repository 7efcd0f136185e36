"""The keyless robot: a Quay robot with nothing stored, whose JWT comes from an OIDC token.

Recorded by `login --oidc` (the index), named in the config file (`robot` and
`oidc`), or a pod's service account at the kubelet. Its Quay JWT is cached
under an identity made of what is not secret (the robot, the token's source
and audience), so a cached `get` reads no OIDC token and builds no exchange.
"""

from __future__ import annotations

from quay_cred_helper import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from quay_cred_helper.config import Settings
    from quay_cred_helper.registry.cache import Token, TokenCache
    from quay_cred_helper.registry.tokens import OIDCSource, TokenExchange


class Keyless:
    """A keyless robot: its name, where its OIDC token comes from (sources/oidc.py), the audience to ask for."""

    __slots__ = ("robot", "oidc", "audience")

    def __init__(self, robot: str, oidc: str, audience: str) -> None:
        self.robot, self.oidc, self.audience = robot, oidc, audience

    def identity(self) -> str:
        """The token cache's identity for the robot's Quay JWT."""
        from quay_cred_helper.registry.cache import identity  # loaded already wherever a JWT is looked up

        return identity("keyless", self.robot, self.oidc, self.audience)

    def oidc_token(self, key: str, bounds: Settings) -> str:
        """The OIDC token, read from its source now (only when an exchange is due), within the registry
        `key`'s bounds (deadline, timeouts, retries): a CI's token service is asked like a registry."""
        from quay_cred_helper.sources import oidc

        return oidc.read(self.oidc, self.audience, key, bounds)


def robot_jwt(
    cache: TokenCache,
    exchange: Callable[[], TokenExchange],
    key: str,
    robot: str,
    identity: str,
    oidc_token: OIDCSource,
) -> Token:
    """A keyless robot's Quay JWT from `cache` (nothing else touched), else one exchange of the token
    `oidc_token(key, settings)` reads."""
    hit = cache.load(key, identity, [])
    if hit:
        log.debug("keyless robot JWT for %s from the cache", key)
        return hit
    return exchange().federated(key, identity, robot, oidc_token)

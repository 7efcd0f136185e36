"""Credentials for a node's kubelet: for each registry, one source from the provider's config file.

    [quay.example.com]
    robot = org+node
    robot_token_file = /etc/quay-cred-helper/robot-token   ; one-hour JWTs for a robot token on the node
    # or: oidc = file:/var/run/node-identity/token          ; keyless, the node's own OIDC token
    # or: service_account = true                            ; keyless, each pod as the robot its service
    #                                                       ; account names (annotation quay-cred-helper/robot)

A registry's own source answers even when the kubelet sends a service-account
token. Cache identities never need a secret: a robot token file is known by
its path and stat, a pod by its service-account token's issuer, subject and
audience, so a cached answer reads no secret and a pod never gets a JWT that
another service account's token obtained.
"""

from __future__ import annotations

import os

from quay_cred_helper import fastjson, log
from quay_cred_helper.errors import ConfigError, InputError, RegistryError
from quay_cred_helper.names import is_robot, registry_key
from quay_cred_helper.registry.cache import fingerprint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from quay_cred_helper.config import Config
    from quay_cred_helper.contracts import TokenCache
    from quay_cred_helper.kubelet import Request
    from quay_cred_helper.registry.cache import Token
    from quay_cred_helper.registry.tokens import Tokens

ANNOTATION = "quay-cred-helper/robot"  # the service-account annotation naming the pod's robot


def check_private(path: str, what: str) -> os.stat_result:
    """The file's stat; a ConfigError when it is missing or other users can write it."""
    try:
        found = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or type(exc).__name__}") from None
    if found.st_mode & 0o022:
        raise ConfigError(f"refusing the {what} {path}: other users can write it", f"chmod go-w {path}")
    return found


def _claims(token: str) -> dict[str, object]:
    """A JWT's payload, decoded (not verified: the kubelet made it, Quay verifies it)."""
    import binascii  # hot path: only for service-account tokens (base64 would import more)

    try:
        part = token.split(".")[1]
        data = binascii.a2b_base64(part.replace("-", "+").replace("_", "/") + "=" * (-len(part) % 4))
        claims = fastjson.loads(data.decode("utf-8"))
    except (IndexError, ValueError, binascii.Error):
        raise InputError("the service-account token in the request is not a JWT") from None
    if not isinstance(claims, dict):
        raise InputError("the service-account token in the request is not a JWT")
    return claims


class NodeSources:
    def __init__(self, config: Config, cache: TokenCache, tokens: Callable[[], Tokens]) -> None:
        self.config, self.cache, self.tokens = config, cache, tokens

    def credentials(self, request: Request) -> tuple[str, Token]:
        """(username, token) for the request's registry: the token is a Quay JWT, never a stored secret."""
        key = registry_key(request.host)
        settings = self.config.settings(key)
        if settings.robot_token_file:
            return settings.robot, self._robot_file(key, settings.robot, settings.robot_token_file)
        if settings.oidc:
            from quay_cred_helper.sources import Keyless, federated_token, read_oidc  # keyless only

            keyless = Keyless(settings.robot, settings.oidc, settings.audience)
            token = federated_token(self.cache, self.tokens, key, keyless.robot, keyless.identity(), read_oidc(keyless))
            return settings.robot, token
        if settings.service_account:
            return self._service_account(key, request, settings.robot)
        raise ConfigError(
            f"no credentials configured for {key} in {self.config.path}",
            f"add a [{key}] section with robot_token_file, oidc or service_account",
        )

    def _robot_file(self, key: str, robot: str, path: str) -> Token:
        if not is_robot(robot):
            raise ConfigError(f"robot_token_file for {key} needs robot = ORG+NAME in {self.config.path}")
        found = check_private(path, "robot token file")
        # A new token in the file (a new inode, mtime or size) is a new identity: its own JWT.
        identity = fingerprint(
            "file", robot, str(found.st_dev), str(found.st_ino), str(found.st_mtime_ns), str(found.st_size)
        )

        def credentials() -> tuple[str, str]:
            with open(path, encoding="utf-8") as f:
                secret = f.read().strip()
            log.secret(secret)
            return robot, secret

        # The cache first: a cached answer reads no secret and builds no exchange.
        token = self.cache.load(key, identity, []) or self.tokens().get(key, identity, [], credentials=credentials)
        if token is None:
            raise RegistryError(f"{key} needs no credentials", "remove it from the provider's matchImages")
        return token

    def _service_account(self, key: str, request: Request, default_robot: str) -> tuple[str, Token]:
        if not request.service_account_token:
            raise ConfigError(
                f"{key} is configured for pods' service-account tokens, but the kubelet sent none",
                "give the provider tokenAttributes (serviceAccountTokenAudience) in the kubelet's "
                "CredentialProviderConfig",
            )
        robot = request.annotations.get(ANNOTATION) or default_robot
        if not is_robot(robot):
            raise ConfigError(
                f"no robot for this pod at {key}",
                f"annotate its service account {ANNOTATION}: ORG+NAME (and list that key in the kubelet's "
                f"optionalServiceAccountAnnotationKeys), or set robot = under [{key}]",
            )
        claims = _claims(request.service_account_token)
        # Per robot and per service account: never a JWT another service account's token obtained.
        identity = fingerprint("sa", robot, *(str(claims.get(name)) for name in ("iss", "sub", "aud")))
        pod_token = request.service_account_token
        log.secret(pod_token)
        from quay_cred_helper.sources import federated_token  # keyless only

        return robot, federated_token(self.cache, self.tokens, key, robot, identity, lambda: pod_token)

"""Credentials for a node's kubelet: for each registry, one source from the provider's config file.

    [quay.example.com]
    robot = org+node
    robot_token_file = /etc/quay-cred-helper/robot-token   ; one-hour JWTs for a robot token on the node
    # or: oidc = file:/var/run/node-identity/token          ; keyless, the node's own OIDC token
    # or: service_account = true                            ; keyless, each pod as the robot its service
    #                                                       ; account names (annotation quay-cred-helper/robot)

    [quay.example.com/team-b]                              ; images under team-b/: a robot of their own
    service_account = true
    robot = team-b+pods

The image's repository picks the section (config.py: the longest path prefix,
else the host). Built on the helper's own sources (sources/): a robot token file
is read as sources/robot_token.py reads it, an OIDC token as sources/oidc.py
reads it. Every file the config names (robot_token_file, oidc = file:,
ca_bundle) is opened and checked as sshd's StrictModes checks
(files.check_private), and read through that descriptor. A registry's own
source answers even when the kubelet sends a service-account token. Cache
identities never need a secret: a robot token file is known by its path and
stat, a pod by its service-account token's issuer, subject and audience, so a
cached answer reads no secret and a pod never gets a JWT that another service
account's token obtained.
"""

from __future__ import annotations

from quay_cred_helper import log
from quay_cred_helper.errors import ConfigError, InputError, RegistryError
from quay_cred_helper.names import is_robot, registry_key
from quay_cred_helper.registry.cache import file_identity, identity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from quay_cred_helper.context import Context
    from quay_cred_helper.kubelet.protocol import Request
    from quay_cred_helper.registry.cache import Token

ANNOTATION = "quay-cred-helper/robot"  # the service-account annotation naming the pod's robot


class NodeSources:
    """Where the node's credentials come from, per registry (the provider's config file says)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config, self.cache = ctx.config, ctx.cache

    def routed(self, request: Request) -> bool:
        """Whether the request's registry has prefix sections: then each repository may have its own robot."""
        return bool(self.config.prefixes(registry_key(request.host)))

    def credentials(self, request: Request) -> tuple[str, Token]:
        """(username, token) for the request's image: the token is a Quay JWT, never a stored secret."""
        key = registry_key(request.host)
        settings = self.config.settings(key, request.repository)
        key_section = settings.section or key
        if settings.robot_token_file:
            return settings.robot, self._robot_file(key, settings.robot, settings.robot_token_file)
        if settings.oidc:
            from quay_cred_helper.sources.keyless import Keyless, robot_jwt  # keyless only

            keyless = Keyless(settings.robot, settings.oidc, settings.audience)
            token = robot_jwt(self.cache, self.ctx.tokens, key, keyless.robot, keyless.identity(), keyless.oidc_token)
            return settings.robot, token
        if settings.service_account:
            return self._service_account(key, request, settings.robot, key_section)
        # Routed by namespace, name the image: the host alone does not say which section was meant.
        what = request.image if self.config.prefixes(key) else key
        raise ConfigError(
            f"no credentials configured for {what} in {self.config.path}",
            f"add a [{key_section}] section with robot_token_file, oidc or service_account",
        )

    def _robot_file(self, key: str, robot: str, path: str) -> Token:
        if not is_robot(robot):
            raise ConfigError(f"robot_token_file for {key} needs robot = ORG+NAME in {self.config.path}")
        from quay_cred_helper.sources.robot_token import RobotToken, token_of  # robot token files only

        with RobotToken(robot, "file:" + path).checked() as checked:
            known = file_identity(robot, checked.stat)

            def credentials() -> tuple[str, str]:
                return robot, token_of(checked)  # through the descriptor the identity was made from

            # The cache first: a cached answer reads no secret and builds no exchange.
            token = self.cache.load(key, known, []) or self.ctx.tokens().get(key, known, [], credentials=credentials)
        if token is None:
            raise RegistryError(f"{key} needs no credentials", "remove it from the provider's matchImages")
        return token

    def _service_account(self, key: str, request: Request, default_robot: str, section: str) -> tuple[str, Token]:
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
                f"optionalServiceAccountAnnotationKeys), or set robot = under [{section}]",
            )
        namespace = request.repository.partition("/")[0]
        if self.config.prefixes(key) and robot.partition("+")[0] != namespace:
            # Routed by namespace: a robot reads only its own namespace's repositories (Quay refuses to
            # grant it others), so another namespace's robot JWT would only be handed to the wrong image.
            raise ConfigError(
                f"this pod's robot {robot} is not of namespace {namespace!r} of the image {request.image}",
                f"annotate the pod's service account {ANNOTATION}: {namespace}+NAME, or pull with a pod "
                f"whose service account names a {namespace} robot",
            )
        from quay_cred_helper.registry import jwt  # per-pod tokens only

        claims = jwt.claims(request.service_account_token)
        if claims is None:
            raise InputError("the service-account token in the request is not a JWT")
        # Per robot and per service account: never a JWT another service account's token obtained.
        pod = identity("sa", robot, *(str(claims.get(name)) for name in ("iss", "sub", "aud")))
        pod_token = request.service_account_token
        log.secret(pod_token)
        from quay_cred_helper.sources.keyless import robot_jwt

        return robot, robot_jwt(self.cache, self.ctx.tokens, key, robot, pod, lambda key, bounds: pod_token)

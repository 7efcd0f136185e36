"""Quay's REST API for one robot: what it is, its federation and permissions, and a new token.

The calls go to the registry's own origin, as /v2/ discovery found it (https, unless the registry
is on loopback or `insecure_http` is set), with an OAuth application token as the bearer. The
routes and answers are quay/quay's endpoints/api/robot.py:

    GET  /api/v1/organization/ORG/robots/SHORT               {"name", "created", "last_accessed",
    GET  /api/v1/user/robots/SHORT                             "description", "token", ...}
    POST .../regenerate                                       the same without metadata, the new token
    GET  .../federation                                       [{"issuer", "subject"}]
    GET  .../permissions                                      {"permissions": [{"repository": {"name",
                                                                "is_public"}, "role"}]}

Organization routes need the scope org:admin (and an organization admin behind the token); the
user's own robots, and any robot's permissions, user:admin. Quay words its refusals in three shapes:
`{"error"}` (a POST without a valid OAuth token: the CSRF check), `{"error_type", "detail"}` (no or
an invalid token on a GET: invalid_token; too little scope: insufficient_scope) and `{"message"}`
(an unknown robot or organization). A 4xx is ApiRefused: Quay changed nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

from quay_cred_helper import log
from quay_cred_helper.errors import ApiRefused, InputError, RegistryError, Unreachable
from quay_cred_helper.registry.session import Session, json_body

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
PERMISSIONS = "the permissions lookup"  # the one call that needs user:admin for an organization's robot too


@dataclasses.dataclass(frozen=True)
class RobotName:
    namespace: str
    short: str

    @property
    def full(self) -> str:
        return f"{self.namespace}+{self.short}"

    def __str__(self) -> str:
        return self.full

    @classmethod
    def parse(cls, text: str) -> RobotName:
        namespace, plus, short = text.strip().partition("+")
        if not plus or not all(part and set(part) <= _NAME_CHARS for part in (namespace, short)):
            raise InputError(f"not a robot name: {text.strip()[:100]!r}", "name it NAMESPACE+NAME, e.g. org+ci")
        return cls(namespace, short)


@dataclasses.dataclass(frozen=True)
class Robot:
    """What Quay says about a robot. `token` (never shown) comes only to admins."""

    name: str
    created: str | None
    last_accessed: str | None
    description: str
    token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Robot | None:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        token = data.get("token")
        if isinstance(token, str) and token:
            log.secret(token)
        return cls(
            data["name"],
            _text(data.get("created")),
            _text(data.get("last_accessed")),
            _text(data.get("description")) or "",
            token if isinstance(token, str) and token else None,
        )


@dataclasses.dataclass(frozen=True)
class Permission:
    repository: str
    role: str
    public: bool


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class RobotApi:
    """One robot's routes: an organization's robot, or (`user`) one of the token's user's own."""

    def __init__(self, session: Session, origin: str, api_token: str, robot: RobotName, user: bool = False) -> None:
        self.session = session
        self.origin = origin
        self.api_token = api_token
        self.robot = robot
        self.user = user
        self.refused: tuple[int, str] | None = None  # (status, Quay's error_type or message) of the last refusal
        short = quote(robot.short, safe="")
        if user:
            self.path = f"/api/v1/user/robots/{short}"
        else:
            self.path = f"/api/v1/organization/{quote(robot.namespace, safe='')}/robots/{short}"
        log.secret(api_token)

    def get(self) -> Robot:
        data = self._call("the robot lookup", "")
        found = Robot.from_json(data)
        if found is None:
            raise RegistryError(f"{self.session.key} answered the robot lookup with something that is not Quay's")
        return found

    def regenerate(self) -> str:
        """A new token for the robot (the old one stops working at once). Sent once, never retried."""
        data = self._call("the token regeneration", "/regenerate", method="POST")
        found = Robot.from_json(data)
        if found is None or not found.token:
            # Quay regenerated it, or not: the caller treats this as an answer lost on the way.
            raise RegistryError(f"{self.session.key} answered the token regeneration without a token")
        return found.token

    def federation(self) -> list[dict[str, str]]:
        data = self._call("the federation lookup", "/federation")
        if not isinstance(data, list):
            raise RegistryError(f"{self.session.key} answered the federation lookup with something that is not Quay's")
        return [
            {"issuer": str(entry.get("issuer", "")), "subject": str(entry.get("subject", ""))}
            for entry in data
            if isinstance(entry, dict)
        ]

    def permissions(self) -> list[Permission]:
        data = self._call(PERMISSIONS, "/permissions")
        found = data.get("permissions") if isinstance(data, dict) else None
        if not isinstance(found, list):
            raise RegistryError(f"{self.session.key} answered the permissions lookup with something that is not Quay's")
        result = []
        for entry in found:
            repository = entry.get("repository") if isinstance(entry, dict) else None
            if isinstance(repository, dict) and isinstance(repository.get("name"), str):
                result.append(
                    Permission(repository["name"], str(entry.get("role", "")), bool(repository.get("is_public")))
                )
        return result

    def _call(self, what: str, suffix: str, method: str = "GET") -> Any:
        headers = {"Authorization": f"Bearer {self.api_token}", "Accept": "application/json"}
        response, body = self.session.send(self.origin + self.path + suffix, headers=headers, method=method)
        data = json_body(body)
        if response.status_code == 200:
            return data
        raise self._refused(what, response.status_code, data)

    def _refused(self, what: str, status: int, data: object) -> RegistryError:
        """One line for each way Quay refuses (module docstring), with what to do about it."""
        key, robot = self.session.key, self.robot.full
        found = data if isinstance(data, dict) else {}
        detail = next((str(found[k])[:300] for k in ("error", "detail", "message") if found.get(k)), "")
        self.refused = (status, str(found.get("error_type") or detail))
        new_token = (
            f"generate an OAuth token (Quay: Organization > Applications > Generate Token) and store it with "
            f"quay-cred-helper robot api-token {key}"
        )
        if status == 401 or (status == 403 and "error" in found):
            # 401: no or an invalid token on a GET (or a JWT that is no SSO token); 403 {"error"}: the same on a
            # POST, where Quay's CSRF check answers first ("CSRF token was invalid or missing.").
            return ApiRefused(f"{key} refused the API token ({detail or f'HTTP {status}'})", new_token)
        if status == 403:
            # {"error_type": "insufficient_scope"}, or {"message"} from the permissions route's own check.
            scopes = [] if self.user else ["org:admin (Administer Organization)"]
            if self.user or what == PERMISSIONS:
                scopes.insert(0, "user:admin (Administer User)")
            admin = "" if self.user else f"; its user must be an administrator of {self.robot.namespace}"
            return ApiRefused(
                f"the API token may not administer {robot} at {key} ({what}: {found.get('error_type') or 'HTTP 403'})",
                f"the token needs the scope {' and '.join(scopes)}{admin}",
            )
        if status == 400:
            return ApiRefused(
                f"{key} refused {what} for {robot}: {detail or 'HTTP 400'}",
                "check the robot's name: NAMESPACE+NAME, as Quay's Robot Accounts page shows it",
            )
        if status in (404, 405):
            return ApiRefused(
                f"{key} has no Quay API for {what} (HTTP {status})",
                "robot commands need Red Hat Quay's API on the registry's own host",
            )
        if status >= 500:
            return Unreachable(f"{key} failed {what} for {robot} (HTTP {status})")
        if 400 <= status < 500:  # 429 and the like: refused, so nothing changed
            return ApiRefused(f"{key} answered {what} for {robot} with HTTP {status}")
        return RegistryError(f"{key} answered {what} for {robot} with HTTP {status}")


def locate(session: Session, origin: str, api_token: str, robot: RobotName) -> tuple[RobotApi, Robot]:
    """The robot's routes and what Quay says about it: an organization's robot, else one of the token's
    user's own (Quay answers a user's namespace on the organization routes with 400 "Organization does not
    exist", or 403 to a token with user:admin only). The user's robot counts only if Quay names it as asked."""
    org = RobotApi(session, origin, api_token, robot)
    try:
        return org, org.get()
    except ApiRefused as refused:
        user = RobotApi(session, origin, api_token, robot, user=True)
        try:
            found = user.get()
        except ApiRefused as user_refused:
            raise _refusal(refused, org, user_refused, user) from None
        if found.name != robot.full:
            raise refused from None
        return user, found


def _refusal(refused: ApiRefused, org: RobotApi, user_refused: ApiRefused, user: RobotApi) -> ApiRefused:
    """Which refusal applies when both routes refused. Quay sends no codes, so its words decide, as in
    registry/session.py: "Organization does not exist" means the namespace is a user's, and the user
    route's answer is the one that applies; both routes short of scope cannot tell whose robot it is,
    and the fix names both scopes, each with the robot it is for."""
    if org.refused is not None and org.refused[1].startswith("Organization does not exist"):
        return user_refused
    if org.refused == user.refused == (403, "insufficient_scope"):
        robot = org.robot
        return ApiRefused(
            refused.problem,
            f"the token needs the scope org:admin (Administer Organization), its user an administrator of "
            f"{robot.namespace}, for an organization's robot; or user:admin (Administer User) for one of its "
            "user's own robots",
        )
    return refused

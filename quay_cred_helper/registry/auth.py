"""Bearer authentication as an httpx auth flow: a token on the request, and on a 401 one retry with a new one."""

from __future__ import annotations

from collections.abc import Callable, Generator

import httpx


class BearerAuth(httpx.Auth):
    """`token(refresh)` gives the token for the request's scope (None: the registry needs none).

    A 401 to a request made with a token gets one more try with a freshly
    issued token (a cached token the registry revoked early); a second 401 is
    the caller's to report."""

    def __init__(self, token: Callable[[bool], str | None]) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token(False)
        if token is None:
            yield request
            return
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = self.token(True)
            if fresh is not None:
                request.headers["Authorization"] = f"Bearer {fresh}"
                yield request

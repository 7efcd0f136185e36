"""One command's time budget per registry, shared by everything the command does there.

`deadline = N` bounds all that one command spends on a registry: connecting,
every answer, retries, the wait for another process's exchange of the same
token (single flight), and a token fetched in the middle of another request.
The first use starts the clock; every later or nested session shares it. No
httpx here: the single-flight wait needs the budget before any connection.
"""

from __future__ import annotations

import time

from quay_cred_helper.errors import DeadlineExceeded

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from quay_cred_helper.config import Settings


class Deadline:
    """When a registry's budget ends (monotonic clock); `restart` gives a fresh one (doctor's checks)."""

    __slots__ = ("seconds", "ends", "clock")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.ends = clock() + seconds

    def remaining(self) -> float:
        return self.ends - self.clock()

    def restart(self) -> None:
        self.ends = self.clock() + self.seconds


class Deadlines:
    """The Deadline of each registry for one command (context.Context keeps one for its entry point)."""

    def __init__(self) -> None:
        self._found: dict[str, Deadline] = {}

    def of(self, key: str, seconds: float) -> Deadline:
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = Deadline(seconds)
        return found


def exceeded(key: str, settings: Settings) -> DeadlineExceeded:
    """The error for a registry whose budget ran out, with the setting to raise."""
    return DeadlineExceeded(
        f"{key} did not finish within {settings.deadline:g} s",
        f"the registry is stalling; raise {settings.where('deadline = N', key)} if it is only slow",
    )

"""An outage of a dependency (Redis), seen from the calls that need it.

While it is down, calls are refused at once for `retry_interval` seconds instead of each
waiting on a connect timeout; the next call after that probes it. One warning is logged when
it goes down and one info line when it is back, whatever the number of calls in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("trackd")


class Outage:
    def __init__(
        self, name: str, retry_interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._name = name  # logged as `<name>_unavailable` and `<name>_recovered`
        self._retry_interval = retry_interval
        self._clock = clock
        self._down_since: float | None = None
        self._retry_at = 0.0
        self.outages = 0  # transitions from available to unavailable

    @property
    def available(self) -> bool:
        """False from a failed call until a later call succeeds."""
        return self._down_since is None

    def refuses_now(self) -> bool:
        """True while down and within the retry interval: fail the call without trying."""
        return self._down_since is not None and self._clock() < self._retry_at

    def failed(self, error: BaseException) -> None:
        now = self._clock()
        self._retry_at = now + self._retry_interval
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            log.warning(
                f"{self._name}_unavailable",
                error=f"{type(error).__name__}: {error}",
                retry_interval=self._retry_interval,
            )

    def succeeded(self) -> None:
        if self._down_since is not None:
            down_s = round(self._clock() - self._down_since, 3)
            log.info(f"{self._name}_recovered", down_s=down_s)
            self._down_since = None


__all__ = ["Outage"]

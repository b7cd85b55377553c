"""One log line per request, for gRPC calls and HTTP requests alike: every one at debug, a
sampled fraction (--log-sample-rate) at info, none otherwise."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("trackd.requests")

MAX_REQUEST_ID = 128


def request_id(given: str | None) -> str:
    """The caller's `x-request-id` (cut to MAX_REQUEST_ID characters), else a new one."""
    return given[:MAX_REQUEST_ID] if given else os.urandom(8).hex()


class RequestLog:
    def __init__(
        self,
        *,
        log_every: bool = False,
        sample_rate: float = 0.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._log_every = log_every
        self._sample_rate = sample_rate
        self._rng = rng
        # False: `line` never logs, so a caller need not build its fields.
        self.enabled = log_every or sample_rate > 0

    def line(self, event: str, **fields: Any) -> None:
        if self._log_every:
            log.debug(event, **fields)
        elif self._sample_rate and self._rng() < self._sample_rate:
            log.info(event, **fields, sampled=True)

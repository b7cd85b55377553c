"""The official optimizely-sdk, used only as a test oracle."""

from __future__ import annotations

import logging
from typing import Any

from optimizely import optimizely
from optimizely.logger import NoOpLogger


class CapturingDispatcher:
    """Keeps the SDK's dispatched events instead of sending them."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def dispatch_event(self, event: Any) -> None:
        self.events.append(event)


def sdk_client(datafile_json: str, dispatcher: CapturingDispatcher | None = None) -> Any:
    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    return optimizely.Optimizely(
        datafile_json,
        event_dispatcher=dispatcher or CapturingDispatcher(),
        logger=NoOpLogger(),
        skip_json_validation=True,
    )

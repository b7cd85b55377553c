"""The official optimizely-sdk, used only as a test oracle."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from optimizely import optimizely
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.logger import NoOpLogger

import trackd
from trackd.events import payload
from trackd.events.records import Record


class CapturingDispatcher:
    """Keeps the SDK's dispatched events instead of sending them."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def dispatch_event(self, event: Any) -> None:
        self.events.append(event)


def sdk_client(datafile_json: str, dispatcher: CapturingDispatcher | None = None) -> Any:
    """optimizely-sdk on the datafile; each event it makes goes at once, unbatched, to the
    dispatcher (nothing leaves this process)."""
    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    dispatcher = dispatcher or CapturingDispatcher()
    return optimizely.Optimizely(
        datafile_json,
        event_dispatcher=dispatcher,
        logger=NoOpLogger(),
        skip_json_validation=True,
        event_processor=ForwardingEventProcessor(dispatcher, logger=NoOpLogger()),
    )


# Payload parity: trackd's Event API body and the SDK's, each without its client name and
# version, compared once the SDK's uuids and timestamps are given to trackd's records.


def trackd_payload(records: Sequence[Record]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        payload.encode(payload.event_batch(records[0].context, records))
    )
    assert document.pop("client_name") == "trackd"
    assert document.pop("client_version") == trackd.__version__
    return document


def sdk_payload(params: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(params)
    assert document.pop("client_name") == "python-sdk"
    document.pop("client_version")
    return document


def delivered_payload(body: dict[str, Any]) -> dict[str, Any]:
    """A payload trackd delivered (as a receiver got it), without its client name and version."""
    document = copy.deepcopy(body)
    assert document.pop("client_name") == "trackd"
    assert document.pop("client_version") == trackd.__version__
    return document


def events_of(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every event of an Event API payload, in order."""
    for visitor in document["visitors"]:
        for snapshot in visitor["snapshots"]:
            yield from snapshot["events"]


def without_uuids_and_timestamps(document: dict[str, Any]) -> dict[str, Any]:
    """The payload, its events' uuids and timestamps dropped (in place): what two senders of
    the same decision differ in."""
    for event in events_of(document):
        del event["uuid"], event["timestamp"]
    return document


def sdk_uuids_and_timestamps(params: dict[str, Any]) -> Iterator[tuple[str, int]]:
    for event in events_of(params):
        assert isinstance(event["uuid"], str) and len(event["uuid"]) == 36
        assert isinstance(event["timestamp"], int)
        yield event["uuid"], event["timestamp"]

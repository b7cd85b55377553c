"""A client cancelling a TrackStream is ordinary: the daemon logs no error for it and
releases the stream's slot."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from tests.support.daemon import client_for, settings_for
from tests.support.polling import eventually
from trackd.v1 import tracking_service_pb2 as pb

BATCH = [pb.TrackRequest(event_key="my_conversion", user_id=f"u{n}") for n in range(200)]


async def batches_then_wait(first: int) -> AsyncIterator[pb.TrackStreamRequest]:
    for sequence in range(first, first + 20):
        yield pb.TrackStreamRequest(sequence=sequence, events=BATCH)
    await asyncio.Event().wait()  # the client keeps its side open until it cancels


async def test_cancelling_track_streams_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []  # what asyncio would log as "exception never retrieved"
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        with capture_logs() as logs, caplog.at_level(logging.WARNING):
            async with client_for(settings_for(tmp_path)) as client:
                interceptor = client.daemon.endpoint.interceptor
                assert interceptor is not None
                for round_ in range(10):
                    call = client.stub.TrackStream(batches_then_wait(round_ * 100))
                    await call.read()  # the stream is live, acknowledgements are queued
                    if round_ % 2:
                        await asyncio.sleep(0.05)  # and some written toward the client
                    call.cancel()
                    assert await call.code() is grpc.StatusCode.CANCELLED
                    await eventually(lambda: interceptor.open_streams == 0)
                # Generators and tasks grpc dropped: finalized now, not after the test.
                for _ in range(5):
                    gc.collect()
                    await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)

    assert unhandled == [], [str(context.get("exception")) for context in unhandled]
    errors = [log for log in logs if log["log_level"] in ("error", "critical", "exception")]
    assert errors == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

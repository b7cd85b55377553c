"""Exactly-once TrackStream producers through a real daemon: a batch resent with the same
(producer_id, sequence) is acknowledged again, marked duplicate, and stored nothing."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc

from tests.integration.test_decisions_api import DATAFILE
from tests.integration.test_metrics import scrape, value
from tests.integration.test_track_api import activate
from tests.support.daemon import Client, client_for, settings_for
from tests.support.receiver import Receiver
from trackd.v1 import tracking_service_pb2 as pb

NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def stream(client: Client, *batches: pb.TrackStreamRequest) -> list[pb.TrackStreamResponse]:
    async def requests() -> AsyncIterator[pb.TrackStreamRequest]:
        for batch in batches:
            yield batch

    return [ack async for ack in client.stub.TrackStream(requests())]


def conversion(user_id: str, event_key: str = "my_conversion") -> pb.TrackRequest:
    return pb.TrackRequest(event_key=event_key, user_id=user_id)


def answer(ack: pb.TrackStreamResponse) -> tuple[object, ...]:
    errors = [(e.index, e.code, e.message) for e in ack.errors]
    return (ack.sequence, ack.code, ack.accepted, ack.attributed, errors, ack.attribution_unknown)


def by_visitor(visitors: Sequence[dict[str, object]]) -> collections.Counter[str]:
    return collections.Counter(str(v["visitor_id"]) for v in visitors)


async def test_a_resent_batch_is_a_duplicate_with_the_first_answer_and_stored_once(
    tmp_path: Path,
) -> None:
    async with Receiver() as receiver:
        settings = settings_for(
            tmp_path, datafile=DATAFILE, event_endpoint=receiver.url, metrics_listen="127.0.0.1:0"
        )
        async with client_for(settings) as client:
            await activate(client, "ab_running", "d-0")
            mixed = pb.TrackStreamRequest(
                producer_id="producer-a",
                sequence=1,
                events=[
                    conversion("d-0"),
                    conversion("d-1"),
                    conversion("d-2", event_key="no_such_event"),
                    conversion(""),
                ],
            )
            # Every event invalid: nothing stored, yet the answer is remembered.
            invalid = pb.TrackStreamRequest(
                producer_id="producer-a", sequence=2, events=[conversion("d-3", "nope")]
            )
            first = await stream(client, mixed, invalid)
            assert [ack.duplicate for ack in first] == [False, False]
            assert answer(first[0])[:4] == (1, 0, 2, 1)
            assert [(e.index, e.code) for e in first[0].errors] == [
                (2, NOT_FOUND),
                (3, INVALID_ARGUMENT),
            ]
            assert (first[1].accepted, [e.code for e in first[1].errors]) == (0, [NOT_FOUND])

            # The producer reconnects and resends both, then goes on; another producer may
            # use the same sequence numbers for its own batches.
            fresh = pb.TrackStreamRequest(
                producer_id="producer-a", sequence=3, events=[conversion("d-4")]
            )
            other = pb.TrackStreamRequest(
                producer_id="producer-b", sequence=1, events=[conversion("d-5")]
            )
            again = await stream(client, mixed, invalid, fresh, other)
            assert [ack.duplicate for ack in again] == [True, True, False, False]
            assert [answer(ack) for ack in again[:2]] == [answer(ack) for ack in first]
            assert [(ack.accepted, ack.errors) for ack in again[2:]] == [(1, []), (1, [])]

            # The impression and d-0, d-1, d-4, d-5: each once, however long we wait.
            await receiver.wait_for_events(5)
            await asyncio.sleep(0.5)  # several flush intervals: a second copy would be here
            assert by_visitor(receiver.visitors) == {
                "d-0": 2,  # its impression and its conversion
                "d-1": 1,
                "d-4": 1,
                "d-5": 1,
            }
            assert client.daemon.metrics_port is not None
            samples = await scrape(client.daemon.metrics_port)
            assert value(samples, "trackd_stream_batches_duplicate_total") == 2


async def test_a_producer_id_over_128_bytes_is_refused_and_stores_nothing(
    tmp_path: Path,
) -> None:
    async with Receiver() as receiver:
        settings = settings_for(tmp_path, datafile=DATAFILE, event_endpoint=receiver.url)
        async with client_for(settings) as client:
            # Counted in UTF-8 bytes, not characters: 65 characters are 130 bytes.
            too_long, longest = "é" * 65, "x" * 128
            acks = await stream(
                client,
                pb.TrackStreamRequest(producer_id=too_long, sequence=1, events=[conversion("t")]),
                pb.TrackStreamRequest(producer_id=longest, sequence=1, events=[conversion("u")]),
            )
            assert (acks[0].code, acks[0].accepted) == (INVALID_ARGUMENT, 0)
            assert "producer_id" in acks[0].message and "128" in acks[0].message
            assert (acks[1].code, acks[1].accepted, acks[1].duplicate) == (0, 1, False)
            await receiver.wait_for_events(1)
            await asyncio.sleep(0.3)
            assert by_visitor(receiver.visitors) == {"u": 1}


async def test_without_a_producer_id_a_resent_batch_is_stored_again(tmp_path: Path) -> None:
    """The documented contract: deduplication is for producers that name themselves."""
    settings = settings_for(tmp_path, datafile=DATAFILE)
    async with client_for(settings) as client:
        batch = pb.TrackStreamRequest(sequence=1, events=[conversion("n")])
        acks = [*await stream(client, batch), *await stream(client, batch)]
        assert [(ack.accepted, ack.duplicate) for ack in acks] == [(1, False), (1, False)]
        assert (
            client.daemon.outbox.depth + (await client.daemon.outbox.stats()).delivered_events == 2
        )

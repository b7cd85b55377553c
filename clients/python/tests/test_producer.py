"""The batching producer against an in-process fake TrackStream (no trackd needed)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from trackd_client import Client, Rejection
from trackd_client._proto.v1 import tracking_service_pb2 as pb
from trackd_client._proto.v1 import tracking_service_pb2_grpc as pb_grpc


class FakeTracking(pb_grpc.TrackingServiceServicer):
    """Acks every batch; breaks the first `break_streams` streams after one ack."""

    def __init__(self, break_streams: int = 0, busy_once: bool = False) -> None:
        self.break_streams = break_streams
        self.busy_once = busy_once
        self.stored: list[str] = []
        self.lock = threading.Lock()

    def TrackStream(
        self, request_iterator: Iterator[pb.TrackStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.TrackStreamResponse]:
        acks = 0
        for batch in request_iterator:
            with self.lock:
                if self.break_streams and acks == 1:
                    self.break_streams -= 1
                    context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure")
                if self.busy_once:
                    self.busy_once = False
                    yield pb.TrackStreamResponse(sequence=batch.sequence, code=8, message="full")
                    continue
                errors = []
                accepted = 0
                for index, event in enumerate(batch.events):
                    if event.event_key == "unknown":
                        errors.append(pb.EventError(index=index, code=5, message="no such event"))
                    else:
                        accepted += 1
                        self.stored.append(event.user_id)
            acks += 1
            yield pb.TrackStreamResponse(sequence=batch.sequence, accepted=accepted, errors=errors)


@pytest.fixture
def serve() -> Iterator[callable]:  # type: ignore[valid-type]
    servers: list[grpc.Server] = []

    def start(servicer: FakeTracking) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_TrackingServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_every_event_is_acknowledged_in_size_batches(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTracking()
    with (
        Client(serve(fake)) as client,
        client.producer(batch_size=100, flush_interval=5) as producer,
    ):
        for n in range(1_050):
            producer.send("signup", f"u{n}")
    stats = producer.stats
    assert (stats.sent, stats.acked, stats.batches, stats.pending) == (1_050, 1_050, 11, 0)
    assert sorted(fake.stored) == sorted(f"u{n}" for n in range(1_050))


def test_a_partial_batch_is_sent_when_the_interval_passes(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTracking()
    with Client(serve(fake)) as client:
        producer = client.producer(batch_size=1_000, flush_interval=0.05)
        producer.send("signup", "lonely")
        assert producer.flush(timeout=5)
        assert producer.stats.acked == 1
        producer.close()


def test_unacknowledged_batches_are_resent_after_a_stream_failure(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTracking(break_streams=2)
    with (
        Client(serve(fake)) as client,
        client.producer(batch_size=10, backoff_initial=0.01) as producer,
    ):
        for n in range(200):
            producer.send("signup", f"u{n}")
    stats = producer.stats
    assert stats.acked == 200 and stats.pending == 0
    assert stats.stream_failures == 2 and stats.retried_batches >= 2
    assert set(fake.stored) == {f"u{n}" for n in range(200)}  # at least once


def test_a_batch_refused_as_busy_is_retried(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTracking(busy_once=True)
    with (
        Client(serve(fake)) as client,
        client.producer(batch_size=5, backoff_initial=0.01) as producer,
    ):
        for n in range(20):
            producer.send("signup", f"u{n}")
    assert producer.stats.acked == 20 and producer.stats.retried_batches == 1


def test_events_refused_one_by_one_are_reported_not_retried(serve) -> None:  # type: ignore[no-untyped-def]
    rejected: list[Rejection] = []
    with (
        Client(serve(FakeTracking())) as client,
        client.producer(batch_size=10, on_error=rejected.append) as producer,
    ):
        producer.send("signup", "a")
        producer.send("unknown", "b")
    assert producer.stats.acked == 1 and producer.stats.rejected == 1
    assert rejected[0].event_index == 1 and rejected[0].events[0].user_id == "b"
    assert rejected[0].error.code is grpc.StatusCode.NOT_FOUND


class DedupTracking(pb_grpc.TrackingServiceServicer):
    """Dedups (producer_id, sequence) as trackd does; stores the first `lose_acks` batches, then
    drops their streams before acknowledging them (the ack lost with the connection)."""

    def __init__(self, lose_acks: int = 0, attribution_unknown: bool = False) -> None:
        self.lose_acks = lose_acks
        self.attribution_unknown = attribution_unknown
        self.stored: list[str] = []
        self.committed: dict[tuple[str, int], int] = {}
        self.received: list[tuple[str, int, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def TrackStream(
        self, request_iterator: Iterator[pb.TrackStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.TrackStreamResponse]:
        for batch in request_iterator:
            users = tuple(event.user_id for event in batch.events)
            with self.lock:
                self.received.append((batch.producer_id, batch.sequence, users))
                key = (batch.producer_id, batch.sequence)
                if batch.producer_id and key in self.committed:
                    ack = pb.TrackStreamResponse(
                        sequence=batch.sequence, accepted=self.committed[key], duplicate=True
                    )
                else:
                    self.stored.extend(users)
                    self.committed[key] = len(users)
                    if self.lose_acks:
                        self.lose_acks -= 1
                        context.abort(grpc.StatusCode.UNAVAILABLE, "stored, then the link broke")
                    ack = pb.TrackStreamResponse(sequence=batch.sequence, accepted=len(users))
            ack.attribution_unknown = self.attribution_unknown
            yield ack


def test_a_batch_stored_before_a_stream_broke_is_resent_with_its_id_and_stored_once(serve) -> None:  # type: ignore[no-untyped-def]
    fake = DedupTracking(lose_acks=2)
    with (
        Client(serve(fake)) as client,
        client.producer(batch_size=10, max_in_flight=1, backoff_initial=0.01) as producer,
    ):
        for n in range(100):
            producer.send("signup", f"u{n}")
    stats = producer.stats
    assert sorted(fake.stored) == sorted(f"u{n}" for n in range(100))  # exactly once
    assert (stats.acked, stats.duplicates, stats.stream_failures, stats.pending) == (100, 2, 2, 0)
    assert uuid.UUID(producer.producer_id)
    assert {pid for pid, _, _ in fake.received} == {producer.producer_id}
    # The first batch was stored, its stream dropped, and the very same batch sent again.
    first, resent = fake.received[0], fake.received[1]
    assert first == resent
    sequences = [seq for _, seq, _ in fake.received]
    assert sorted(set(sequences)) == sorted(set(sequences), key=sequences.index)  # in order
    assert len(set(sequences)) == 10  # one sequence per batch, never reused


def test_a_named_producer_restarted_does_not_reuse_sequences(serve) -> None:  # type: ignore[no-untyped-def]
    fake = DedupTracking()
    with Client(serve(fake)) as client:
        for _ in range(2):  # the same producer_id, e.g. a restarted process
            with client.producer(batch_size=5, producer_id="checkout-1") as producer:
                for n in range(10):
                    producer.send("signup", f"u{n}")
            assert producer.stats.duplicates == 0
    assert {pid for pid, _, _ in fake.received} == {"checkout-1"}
    assert len(fake.stored) == 20  # the restarted producer's batches are not duplicates


def test_acks_without_attribution_are_counted(serve) -> None:  # type: ignore[no-untyped-def]
    fake = DedupTracking(attribution_unknown=True)
    with Client(serve(fake)) as client, client.producer(batch_size=10) as producer:
        for n in range(30):
            producer.send("signup", f"u{n}")
    assert producer.stats.attribution_unknown == 30

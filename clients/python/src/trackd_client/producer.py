"""A batching producer on TrackStream: buffer events, flush by size or time, wait for acks.

    with client.producer(batch_size=500, flush_interval=1.0) as producer:
        for user in users:
            producer.send("signup", user, {"device": "iPhone"})
    print(producer.stats)           # close() (on leaving the block) flushed and waited for acks

Delivery is exactly once within trackd's dedup window: the producer has an id (a random
UUID unless the caller names one) and numbers its batches with sequences it never reuses;
a batch whose acknowledgement was lost with its stream is sent again, with the same
(producer_id, sequence), on a new stream, and trackd acknowledges a batch it already stored
as a duplicate without storing it again (`stats.duplicates`). Events trackd refuses one by
one (unknown event key, bad value) are counted in `stats.rejected` and reported to
`on_error`; they are not retried.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from trackd_client._proto.v1 import tracking_service_pb2 as pb
from trackd_client._values import Scalar, to_value_map
from trackd_client.errors import ResourceExhaustedError, TrackdError, code_from_number, error_for

if TYPE_CHECKING:
    from trackd_client.client import Client

log = logging.getLogger("trackd_client.producer")

_CODE_INVALID_ARGUMENT = 3


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """Counters of one producer (a snapshot: read `producer.stats` again for fresh values)."""

    enqueued: int = 0  # events given to send()
    sent: int = 0  # events sent at least once
    acked: int = 0  # events trackd acknowledged as stored ("accepted", summed over acks)
    rejected: int = 0  # events trackd refused one by one (not retried)
    dropped: int = 0  # events of whole batches given up (over the batch limit, attempts used up)
    batches: int = 0  # batches acknowledged
    duplicates: int = 0  # resent batches trackd had already stored (acknowledged, not stored again)
    attribution_unknown: int = 0  # events stored without attributions: trackd's Redis unreachable
    retried_batches: int = 0  # batch sends that were repeats
    stream_failures: int = 0  # streams that broke and were reopened
    pending: int = 0  # events buffered or sent but not yet acknowledged


@dataclass(frozen=True, slots=True)
class Rejection:
    """Events trackd did not store: one event of a batch, or (event_index None) a whole batch."""

    error: TrackdError
    events: tuple[pb.TrackRequest, ...]
    event_index: int | None = None


@dataclass(slots=True)
class _Batch:
    sequence: int
    request: pb.TrackStreamRequest
    size: int
    attempts: int = 0


@dataclass(slots=True)
class _Counters:
    stats: ProducerStats = field(default_factory=ProducerStats)

    def add(self, **deltas: int) -> None:
        self.stats = replace(
            self.stats, **{name: getattr(self.stats, name) + n for name, n in deltas.items()}
        )


class _StreamBroken(Exception):
    pass


class Producer:
    """Sends events to TrackStream in batches from a background thread. Thread-safe.

    batch_size: events per batch (trackd's default limit is 10,000). flush_interval: seconds
    an event may wait for its batch to fill. max_buffered: events held before send() blocks
    (or raises ResourceExhaustedError when block=False). max_in_flight: batches sent ahead of
    their acks. max_attempts: sends of one batch before it is dropped (None: until close()'s
    timeout). on_error: called from the background thread with each Rejection.
    producer_id: this producer's identity for trackd's deduplication of resent batches
    (default: a random UUID). A caller who names it must not run two producers with the same
    id at once.
    """

    def __init__(
        self,
        client: Client,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_buffered: int = 100_000,
        max_in_flight: int = 4,
        max_attempts: int | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        on_error: Callable[[Rejection], None] | None = None,
        producer_id: str | None = None,
    ) -> None:
        if batch_size < 1 or max_in_flight < 1 or max_buffered < batch_size:
            raise ValueError("need batch_size >= 1, max_in_flight >= 1, max_buffered >= batch_size")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self._stub = client.stub
        self._metadata = client._metadata
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self._backoff = (backoff_initial, backoff_max)
        self._on_error = on_error
        self.producer_id = str(uuid.uuid4()) if producer_id is None else producer_id
        if not 0 < len(self.producer_id.encode()) <= 128:
            raise ValueError("producer_id must be 1 to 128 bytes")

        self._cond = threading.Condition()
        self._buffer: collections.deque[tuple[float, pb.TrackRequest]] = collections.deque()
        self._unacked: dict[int, _Batch] = {}
        # Sequences start at the wall clock in microseconds, so that a producer restarted with
        # the same producer_id does not reuse one (trackd would take its batches for resends).
        self._sequences = itertools.count(time.time_ns() // 1000)
        self._counters = _Counters()
        self._flushing = False
        self._closing = False
        self._aborted = threading.Event()
        self._call: Any = None
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="trackd-producer", daemon=True)
        self._thread.start()

    # -- the caller's side --------------------------------------------------------------

    @property
    def stats(self) -> ProducerStats:
        with self._cond:
            return replace(self._counters.stats, pending=self._pending_locked())

    def send(
        self,
        event_key: str,
        user_id: str,
        attributes: Mapping[str, Scalar] | None = None,
        tags: Mapping[str, Scalar] | None = None,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Buffers one event; blocks while max_buffered events are waiting (unless block=False)."""
        event = pb.TrackRequest(
            event_key=event_key,
            user_id=user_id,
            attributes=to_value_map(attributes),
            tags=to_value_map(tags, "tags"),
        )
        with self._cond:
            if self._closing:
                raise RuntimeError("the producer is closed")
            if len(self._buffer) >= self.max_buffered:
                if not block or not self._cond.wait_for(
                    lambda: len(self._buffer) < self.max_buffered or self._closing, timeout
                ):
                    raise ResourceExhaustedError(f"{self.max_buffered} events already buffered")
                if self._closing:
                    raise RuntimeError("the producer is closed")
            self._buffer.append((time.monotonic(), event))
            self._counters.add(enqueued=1)
            if len(self._buffer) == 1 or len(self._buffer) >= self.batch_size:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Sends what is buffered now and waits for every ack; False if the timeout passed."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()
            done = self._cond.wait_for(
                lambda: self._pending_locked() == 0 or self._aborted.is_set(), timeout
            )
            return done and self._pending_locked() == 0

    def close(self, timeout: float | None = None) -> ProducerStats:
        """Flushes, waits for every ack (up to timeout seconds), stops; returns the stats.

        Events still unacknowledged when the timeout passes are abandoned and counted in
        stats.pending.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._aborted.set()
            call = self._call
            if call is not None:
                call.cancel()
            with self._cond:
                self._cond.notify_all()
            self._thread.join()
        stats = self.stats
        if stats.pending:
            log.warning("trackd producer closed with %d events unacknowledged", stats.pending)
        return stats

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the background thread ----------------------------------------------------------

    def _pending_locked(self) -> int:
        return len(self._buffer) + sum(b.size for b in self._unacked.values())

    def _idle_locked(self) -> bool:
        return not self._buffer and not self._unacked

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._aborted.is_set():
            with self._cond:
                self._cond.wait_for(
                    lambda: not self._idle_locked() or self._closing or self._aborted.is_set()
                )
                if self._aborted.is_set() or (self._closing and self._idle_locked()):
                    return
            try:
                self._session()
                delay = self._backoff[0]
            except (grpc.RpcError, _StreamBroken) as error:
                self.last_error = error
                if self._aborted.is_set():
                    return
                log.info("trackd producer stream failed (%s); retrying in %.1fs", error, delay)
                with self._cond:
                    self._counters.add(stream_failures=1)
                self._give_up_exhausted()
                self._aborted.wait(delay)
                delay = min(delay * 2, self._backoff[1])

    def _session(self) -> None:
        """One TrackStream: resend the unacknowledged batches, then stream new ones."""
        requests: queue.SimpleQueue[pb.TrackStreamRequest | None] = queue.SimpleQueue()

        def request_iterator() -> Iterator[pb.TrackStreamRequest]:
            while (item := requests.get()) is not None:
                yield item

        call = self._stub.TrackStream(request_iterator(), metadata=self._metadata)
        self._call = call
        in_flight: collections.deque[_Batch] = collections.deque()

        def transmit(batch: _Batch) -> None:
            if batch.attempts:
                self._counters.add(retried_batches=1)
            else:
                self._counters.add(sent=batch.size)
            batch.attempts += 1
            in_flight.append(batch)
            requests.put(batch.request)

        try:
            with self._cond:
                for sequence in sorted(self._unacked):
                    transmit(self._unacked[sequence])
            while True:
                while len(in_flight) < self.max_in_flight:
                    batch = self._next_batch(wait=not in_flight)
                    if batch is None:
                        break
                    with self._cond:
                        transmit(batch)
                if not in_flight:
                    return  # closing (or aborted) and nothing left to send
                try:
                    response: pb.TrackStreamResponse = next(call)
                except StopIteration:
                    raise _StreamBroken("trackd ended the stream before acknowledging") from None
                batch = in_flight.popleft()
                if response.sequence != batch.sequence:
                    raise _StreamBroken(
                        f"ack for sequence {response.sequence}, expected {batch.sequence}"
                    )
                if self._settle(batch, response):
                    self._aborted.wait(self._backoff[0])
                    with self._cond:
                        transmit(batch)
        finally:
            requests.put(None)
            self._call = None
            call.cancel()

    def _next_batch(self, *, wait: bool) -> _Batch | None:
        """Cuts a batch when full, due or flushing; with wait, blocks until one is (or closing)."""
        with self._cond:
            while not self._aborted.is_set():
                if self._buffer:
                    due = self._buffer[0][0] + self.flush_interval
                    if (
                        len(self._buffer) >= self.batch_size
                        or self._closing
                        or self._flushing
                        or time.monotonic() >= due
                    ):
                        return self._cut_locked()
                elif self._closing or not wait:
                    return None
                if not wait:
                    return None
                timeout = (
                    max(0.0, self._buffer[0][0] + self.flush_interval - time.monotonic())
                    if self._buffer
                    else None
                )
                self._cond.wait(timeout)
            return None

    def _cut_locked(self) -> _Batch:
        size = min(self.batch_size, len(self._buffer))
        events = [self._buffer.popleft()[1] for _ in range(size)]
        if not self._buffer:
            self._flushing = False
        sequence = next(self._sequences)
        request = pb.TrackStreamRequest(
            sequence=sequence, events=events, producer_id=self.producer_id
        )
        batch = _Batch(sequence, request, size)
        self._unacked[sequence] = batch
        self._cond.notify_all()  # room in the buffer for blocked senders
        return batch

    def _settle(self, batch: _Batch, response: pb.TrackStreamResponse) -> bool:
        """Books an ack; True when the whole batch was refused for now and must be resent."""
        rejections: list[Rejection] = []
        retry = False
        with self._cond:
            if response.code:
                error = error_for(code_from_number(response.code), response.message)
                out_of_attempts = (
                    self.max_attempts is not None and batch.attempts >= self.max_attempts
                )
                if response.code == _CODE_INVALID_ARGUMENT or out_of_attempts:
                    del self._unacked[batch.sequence]
                    self._counters.add(dropped=batch.size)
                    rejections.append(Rejection(error, tuple(batch.request.events)))
                else:
                    retry = True  # e.g. RESOURCE_EXHAUSTED: the outbox is full for now
            else:
                del self._unacked[batch.sequence]
                # A duplicate carries the counts of the first commit, whose ack was lost.
                self._counters.add(
                    acked=response.accepted,
                    rejected=len(response.errors),
                    batches=1,
                    duplicates=int(response.duplicate),
                    attribution_unknown=response.accepted if response.attribution_unknown else 0,
                )
                for item in response.errors:
                    error = error_for(code_from_number(item.code), item.message)
                    event = batch.request.events[item.index]
                    rejections.append(Rejection(error, (event,), item.index))
            self._cond.notify_all()
        for rejection in rejections:
            self._report(rejection)
        return retry

    def _give_up_exhausted(self) -> None:
        if self.max_attempts is None:
            return
        rejections = []
        with self._cond:
            for sequence, batch in list(self._unacked.items()):
                if batch.attempts >= self.max_attempts:
                    del self._unacked[sequence]
                    self._counters.add(dropped=batch.size)
                    error = error_for(grpc.StatusCode.UNAVAILABLE, str(self.last_error))
                    rejections.append(Rejection(error, tuple(batch.request.events)))
            self._cond.notify_all()
        for rejection in rejections:
            self._report(rejection)

    def _report(self, rejection: Rejection) -> None:
        if self._on_error is None:
            log.warning(
                "trackd did not store %d event(s): %s", len(rejection.events), rejection.error
            )
            return
        try:
            self._on_error(rejection)
        except Exception:
            log.exception("the producer's on_error callback failed")

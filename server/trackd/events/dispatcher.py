"""Delivers committed outbox events to the sink, at least once, in order.

A background task sends a batch as soon as `batch_size` events are waiting, or whatever is
waiting once the oldest has waited `flush_interval` seconds. Network errors, 5xx, 408 and
429 are retried for as long as it takes, with capped exponential backoff and jitter (a
Retry-After header wins, capped); any other 4xx moves the batch to the dead-letter table.
A batch is acknowledged in the outbox only after the sink accepted it, so a crash means a
resend, never a loss; each event keeps its uuid, so duplicates are identifiable.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

import structlog

from trackd import lifeline
from trackd.background import cancel_and_wait
from trackd.events import payload
from trackd.events.outbox import DeadLetter, Outbox, PendingRow
from trackd.events.records import Context, Record
from trackd.events.sinks import Delivery, Outcome, Sink

log = structlog.get_logger("trackd.events")

# Rows read at a time, stopping early once a delivery's worth of events is in: a unary
# Track's row holds one event, a TrackStream batch's hundreds.
_READ_ROWS = 1024

# Batches delivered together while a backlog waits: one outbox read, one encoder call, one
# sink write (one fsync for the file sink) and one acknowledgement commit for all of them.
# One batch at a time, the fixed cost per batch (two fsyncs, three thread handoffs, an
# encoder round trip) held delivery to about a quarter of the TrackStream acknowledgement
# rate, and its CPU came out of that rate too.
_ROUND_BATCHES = 16


# The encoder's niceness: building JSON for delivery is background work, and where cores are
# few it must not take CPU from acknowledging events (it catches up when they are spare).
ENCODER_NICENESS = 10


def _start_encoder(parent: int) -> None:
    """First thing in the encoder process."""
    lifeline.exit_with_parent(parent)  # a SIGKILLed daemon leaves no encoder behind
    os.nice(ENCODER_NICENESS)


class _Slot:
    """A buffered outbox row and how far into it delivery has got."""

    __slots__ = ("row", "sent")

    def __init__(self, row: PendingRow) -> None:
        self.row = row
        self.sent = row.sent


class _Batch:
    __slots__ = ("body", "context", "dead_letter", "events", "progress", "records")

    def __init__(self) -> None:
        self.context: Context | None = None
        self.records: list[Record] = []
        self.progress: list[tuple[int, int]] = []
        self.events = 0
        self.dead_letter: DeadLetter | None = None
        self.body = b""


class Dispatcher:
    """`start()` runs the background delivery. At shutdown `stop(deadline=...)` stops it,
    makes one delivery attempt for what is left until the deadline and closes the sink
    (`flush(deadline)` is the attempt alone; `aclose()` stops and closes the sink)."""

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        retry_after_max: float = 300.0,
        rng: random.Random | None = None,
        encode_in_process: bool = False,
    ) -> None:
        if batch_size < 1 or flush_interval <= 0:
            raise ValueError("batch_size must be >= 1 and flush_interval > 0")
        self._outbox = outbox
        self._sink = sink
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self._rng = rng or random.Random()
        # Building and JSON-encoding Event API batches costs about as much CPU per event as
        # acknowledging it; in a worker process it runs on the other core instead of
        # competing with the gRPC event loop for the GIL.
        self._encode_in_process = encode_in_process
        self._encoder: ProcessPoolExecutor | None = None
        self._slots: deque[_Slot] = deque()
        self._after_id = 0
        self._buffered = 0
        self._task: asyncio.Task[None] | None = None
        self._acking: asyncio.Future[int] | None = None
        # Counters since start, for metrics.
        self.delivered_events = 0
        self.dead_lettered_events = 0
        self.batches_sent = 0
        self.retries = 0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="trackd-dispatcher"
            )

    async def stop(self, deadline: float | None = None) -> int:
        """Stops background delivery (a batch in flight is resent later: at least once).

        With `deadline` (in `loop.time()` terms) this is the shutdown: one delivery attempt
        for what is waiting, as `flush(deadline)`, then the sink is closed. Returns the
        events that attempt delivered or dead-lettered."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self._acking is not None:
            # Cancelled while the outbox recorded a delivery: let it land, so the counters
            # are final when stop() returns.
            await asyncio.wait([self._acking])
            self._acking = None
        if deadline is None:
            return 0
        try:
            return await self.flush(deadline)
        finally:
            self._close_encoder()
            await self._sink.aclose()

    async def flush(self, deadline: float) -> int:
        """Stops background delivery, then tries each waiting batch once until `deadline`
        (in `loop.time()` terms: `loop.time() + grace_period`), stopping at the first
        failure. Returns the events delivered or dead-lettered; what is left stays in the
        outbox for the next start."""
        await self.stop()
        before = self.delivered_events + self.dead_lettered_events
        try:
            async with asyncio.timeout_at(deadline):
                while self._outbox.undelivered > 0:
                    if not await self._deliver_next(retry=False):
                        break
        except TimeoutError:
            log.warning("event_flush_timed_out", undelivered=self._outbox.undelivered)
        except Exception:
            # Shutdown goes on: whatever was not acknowledged stays in the outbox.
            log.exception("event_flush_failed", undelivered=self._outbox.undelivered)
        return self.delivered_events + self.dead_lettered_events - before

    async def aclose(self) -> None:
        await self.stop()
        self._close_encoder()
        await self._sink.aclose()

    # --- the background loop --------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due: float | None = None
        failures = 0
        while True:
            signal = self._outbox.commit_signal()
            pending = self._outbox.undelivered
            now = loop.time()
            if pending <= 0:
                due = None
                await signal.wait()
                continue
            if due is None:
                due = now + self.flush_interval
            if pending >= self.batch_size or now >= due:
                try:
                    progressed = await self._deliver_next(retry=True)
                except Exception:
                    log.exception("event_dispatch_failed")
                    self._reset()
                    failures += 1
                    await asyncio.sleep(self._delay(failures - 1, None))
                    continue
                failures = 0
                if pending < self.batch_size:
                    due = None  # a timed flush: the next partial batch waits its own interval
                if not progressed:
                    # Counted but not readable yet: let the reader catch up.
                    await asyncio.sleep(min(self.flush_interval, 0.05))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due - now):
                    await signal.wait()

    # --- one batch ------------------------------------------------------------------------

    async def _fill(self) -> None:
        wanted = self.batch_size * _ROUND_BATCHES
        while self._buffered < wanted:
            rows = await self._outbox.read(self._after_id, _READ_ROWS, wanted - self._buffered)
            if not rows:
                return
            for row in rows:
                self._after_id = row.row_id
                self._slots.append(_Slot(row))
                self._buffered += row.n - row.sent

    def _reset(self) -> None:
        """Forgets the buffer; the next read starts again from what the outbox holds."""
        self._slots.clear()
        self._after_id = 0
        self._buffered = 0

    def _take_round(self) -> list[_Batch]:
        """The next batches to deliver together: the first whatever its size, then more only
        while a full batch is buffered (a partial one waits for its flush interval). An
        undecodable row is a round of its own."""
        batches: list[_Batch] = []
        cursor = (0, self._slots[0].sent)
        available = self._buffered
        while cursor[0] < len(self._slots) and len(batches) < _ROUND_BATCHES:
            undecodable = self._slots[cursor[0]].row.error is not None
            if batches and (undecodable or available < self.batch_size):
                break
            batch, cursor = self._take(cursor)
            batches.append(batch)
            available -= batch.events
            if undecodable:
                break
        return batches

    def _take(self, cursor: tuple[int, int]) -> tuple[_Batch, tuple[int, int]]:
        """The batch starting at `cursor` (slot position, event index in its row), and
        where the next one starts."""
        batch = _Batch()
        position, index = cursor
        front = self._slots[position].row
        if front.error is not None:
            batch.events = front.n - index
            batch.progress.append((front.row_id, front.n))
            batch.dead_letter = DeadLetter(
                None, f"undecodable outbox row: {front.error}", batch.events, front.raw
            )
            return batch, self._cursor_at(position + 1)
        for slot in islice(self._slots, position, None):
            row = slot.row
            if row.error is not None:
                break
            first = index
            while index < row.n and len(batch.records) < self.batch_size:
                record = row.records[index]
                if batch.context is None:
                    batch.context = record.context
                elif record.context != batch.context:
                    break
                batch.records.append(record)
                index += 1
            if index > first:
                batch.progress.append((row.row_id, index))
            if index < row.n:
                break
            position += 1
            index = self._cursor_at(position)[1]
        batch.events = len(batch.records)
        return batch, (position, index)

    def _cursor_at(self, position: int) -> tuple[int, int]:
        """The cursor at the first undelivered event of the slot at `position`."""
        return (position, self._slots[position].sent if position < len(self._slots) else 0)

    async def _encode(self, batches: list[_Batch]) -> None:
        """Sets each batch's body, or its dead letter when it cannot be encoded."""
        sendable = [batch for batch in batches if batch.dead_letter is None]
        if not sendable:
            return
        runs = []
        for batch in sendable:
            assert batch.context is not None  # a batch that is sent holds an event
            runs.append((batch.context, batch.records))
        try:
            bodies = await self._encoded(runs)
        except (TypeError, ValueError) as error:
            if len(sendable) > 1:
                for batch in sendable:  # find the one that cannot be encoded
                    await self._encode([batch])
                return
            (batch,) = sendable
            batch.dead_letter = DeadLetter(
                None,
                f"cannot encode the batch: {error}",
                batch.events,
                repr(batch.records).encode(),
            )
            return
        for batch, body in zip(sendable, bodies, strict=True):
            batch.body = body

    async def _encoded(self, runs: list[tuple[Context, list[Record]]]) -> list[bytes]:
        if not self._encode_in_process:
            return [payload.encode_batch(context, records) for context, records in runs]
        if self._encoder is None:
            self._encoder = ProcessPoolExecutor(
                max_workers=1,
                # spawn, never fork: a forked copy of a process running gRPC threads is unsafe.
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_encoder,
                initargs=(os.getpid(),),
            )
        loop = asyncio.get_running_loop()
        plain = [(context, [tuple(r) for r in records]) for context, records in runs]
        try:
            return await loop.run_in_executor(self._encoder, payload.encode_plain_batches, plain)
        except BrokenProcessPool:
            log.warning("event_encoder_restarted")
            self._close_encoder()
            return [payload.encode_batch(context, records) for context, records in runs]

    def _close_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            encoder.shutdown(wait=False, cancel_futures=True)

    def _advance(self, progress: list[tuple[int, int]]) -> None:
        for row_id, sent in progress:
            slot = self._slots[0]
            assert slot.row.row_id == row_id
            self._buffered -= sent - slot.sent
            slot.sent = sent
            if sent >= slot.row.n:
                self._slots.popleft()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        ceiling: float = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt, 62))
        return ceiling / 2 + self._rng.random() * ceiling / 2

    async def _deliver_next(self, *, retry: bool) -> bool:
        """Sends the next round of batches, in order; False if there was none, or (without
        `retry`) one failed. Batches after a failed one go in the next round."""
        await self._fill()
        if not self._slots:
            return False
        batches = self._take_round()
        await self._encode(batches)
        sendable = [batch for batch in batches if batch.dead_letter is None]
        deliveries = iter(await self._sink.send_all([b.body for b in sendable]) if sendable else ())
        delivered: list[_Batch] = []  # acknowledged together, in one outbox commit
        for batch in batches:
            if batch.dead_letter is None:
                delivery = next(deliveries, None)
                if delivery is None:
                    break  # not sent: an earlier batch failed
                if delivery.outcome is Outcome.RETRY:
                    await self._acknowledge(delivered)
                    delivered = []
                    if not await self._retry(batch, delivery, retry=retry):
                        return False
                    await self._acknowledge([batch])
                    break
                self._reject_if_refused(batch, delivery)
            if batch.dead_letter is None:
                delivered.append(batch)
            else:
                await self._acknowledge(delivered)
                delivered = []
                await self._acknowledge([batch])
        await self._acknowledge(delivered)
        return True

    def _reject_if_refused(self, batch: _Batch, delivery: Delivery) -> None:
        if delivery.outcome is Outcome.REJECTED:
            batch.dead_letter = DeadLetter(
                delivery.status, delivery.detail or "rejected", batch.events, batch.body
            )

    async def _retry(self, batch: _Batch, delivery: Delivery, *, retry: bool) -> bool:
        """Sends `batch` again, with backoff, until it is delivered or refused; without
        `retry`, gives up at once (False)."""
        attempt = 0
        while delivery.outcome is Outcome.RETRY:
            self.retries += 1
            if not retry:
                log.warning(
                    "event_delivery_failed",
                    status=delivery.status,
                    detail=delivery.detail,
                    events=batch.events,
                )
                return False
            delay = self._delay(attempt, delivery.retry_after)
            attempt += 1
            log.warning(
                "event_delivery_retry",
                status=delivery.status,
                detail=delivery.detail,
                events=batch.events,
                attempt=attempt,
                delay_s=round(delay, 3),
            )
            await asyncio.sleep(delay)
            delivery = await self._sink.send(batch.body)
        self._reject_if_refused(batch, delivery)
        return True

    async def _acknowledge(self, batches: list[_Batch]) -> None:
        """Records delivered batches (or one dead-lettered batch) in the outbox."""
        if not batches:
            return
        dead_letter = batches[0].dead_letter
        # One (row, sent) per row: a row split over several batches ends where the last did.
        progress = list(dict(p for batch in batches for p in batch.progress).items())
        self._acking = acked_future = self._outbox.ack(progress, dead_letter)
        self._advance(progress)
        try:
            acked = await asyncio.shield(acked_future)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._reset()  # the outbox still holds these events: they go again
            raise
        self._acking = None
        if dead_letter is None:
            self.delivered_events += acked
            self.batches_sent += len(batches)
        else:
            self.dead_lettered_events += acked
            log.error(
                "events_dead_lettered",
                status=dead_letter.status,
                reason=dead_letter.reason,
                events=acked,
            )


__all__ = ["Dispatcher"]

"""Delivers committed outbox events to the sink, at least once, acknowledged in order.

A background task sends a batch as soon as `batch_size` events are waiting, or whatever is
waiting once the oldest has waited `flush_interval` seconds. Network errors, 5xx, 408 and
429 are retried for as long as it takes, with capped exponential backoff and jitter (a
Retry-After header wins, capped); any other 4xx moves the batch to the dead-letter table.
A batch is acknowledged in the outbox only after the sink accepted it, so a crash means a
resend, never a loss; each event keeps its uuid, so duplicates are identifiable.

The batches of a round may reach the endpoint in any order (the HTTP sink sends them
concurrently), but are acknowledged in order: a failed batch is retried until it is
delivered or refused before any batch after it is acknowledged. Without retries (the
shutdown flush) the batches after a failed one stay in the outbox, so those the endpoint
did accept are sent again after the restart: at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from functools import partial

import structlog

from trackd.background import cancel_and_wait
from trackd.events import rounds
from trackd.events.encoder import EncoderGone, EncoderProcess
from trackd.events.outbox import DeadLetter, Outbox, PendingRow
from trackd.events.rounds import Formed
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
ROUND_BATCHES = 16


class _Slot:
    """A buffered outbox row and how far into it delivery has got."""

    __slots__ = ("row", "sent")

    def __init__(self, row: PendingRow) -> None:
        self.row = row
        self.sent = row.sent


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
        encoder_process: bool = False,
        round_batches: int = ROUND_BATCHES,
    ) -> None:
        if batch_size < 1 or flush_interval <= 0 or round_batches < 1:
            raise ValueError("batch_size and round_batches must be >= 1, flush_interval > 0")
        self._outbox = outbox
        self._sink = sink
        self.batch_size = batch_size
        self.round_batches = round_batches
        self.flush_interval = flush_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self._rng = rng or random.Random()
        # Building and JSON-encoding Event API batches costs about as much CPU per event as
        # acknowledging it; with `encoder_process` it runs in a separate (niced) process, on
        # the other core, instead of competing with the gRPC event loop for the GIL.
        self._encoder_process = encoder_process
        self._encoder: EncoderProcess | None = None
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

    # --- one round of batches -------------------------------------------------------------

    async def _fill(self) -> None:
        wanted = self.batch_size * self.round_batches
        while self._buffered < wanted:
            rows = await self._outbox.read(self._after_id, _READ_ROWS, wanted - self._buffered)
            for row in rows:
                self._after_id = row.row_id
                self._slots.append(_Slot(row))
                self._buffered += row.n - row.sent
            if len(rows) < _READ_ROWS:
                # Fewer rows than the limit and fewer events than asked for: that was all
                # the outbox held. Reading again would find nothing (or what was committed
                # meanwhile, which the next round takes): a thread hand-off and a query
                # for every round of a steady load, which waits for its next round with
                # less than a full round buffered.
                return

    def _reset(self) -> None:
        """Forgets the buffer; the next read starts again from what the outbox holds."""
        self._slots.clear()
        self._after_id = 0
        self._buffered = 0

    async def _formed(self) -> list[Formed]:
        """The next round's batches, formed from the buffered rows as stored."""
        parts = [
            (slot.row.row_id, slot.row.n, slot.sent, slot.row.fmt, slot.row.body)
            for slot in self._slots
        ]
        args = (parts, self.batch_size, self.round_batches)
        if not self._encoder_process:
            return rounds.form_round(*args)
        if self._encoder is None:
            self._encoder = EncoderProcess()
        try:
            return await self._encoder.form_round(*args)
        except EncoderGone:
            log.warning("event_encoder_restarted")
            self._close_encoder()
            return rounds.form_round(*args)

    def _close_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            encoder.close()

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
        """Sends the next round of batches and settles them in order; False if there was
        none, or (without `retry`) one failed. Batches the sink did not send (after a failed
        one) go in the next round."""
        await self._fill()
        if not self._slots:
            return False
        formed = await self._formed()
        sendable = [batch.body for batch in formed if batch.error is None]
        deliveries = iter(await self._sink.send_all(sendable) if sendable else ())
        delivered: list[Formed] = []  # acknowledged together, in one outbox commit
        for batch in formed:
            letter = _unsendable(batch)
            if letter is None:
                delivery = next(deliveries, None)
                if delivery is None:
                    break  # not sent: an earlier batch failed
                if delivery.outcome is Outcome.RETRY:
                    await self._acknowledge(delivered)
                    delivered = []
                    settled = await self._retry(batch, delivery, retry=retry)
                    if settled is None:
                        return False
                    delivery = settled
                letter = _refused(batch, delivery)
            if letter is None:
                delivered.append(batch)
            else:
                await self._acknowledge(delivered)
                delivered = []
                await self._acknowledge([batch], letter)
        await self._acknowledge(delivered)
        return True

    async def _retry(self, batch: Formed, delivery: Delivery, *, retry: bool) -> Delivery | None:
        """Sends `batch` again, with backoff, until it is delivered or refused (that
        delivery); without `retry`, gives up at once (None)."""
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
                return None
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
        return delivery

    async def _acknowledge(
        self, batches: list[Formed], dead_letter: DeadLetter | None = None
    ) -> None:
        """Records delivered batches (or one dead-lettered batch) in the outbox."""
        if not batches:
            return
        progress = [entry for batch in batches for entry in batch.progress]
        self._acking = acked_future = self._outbox.ack(progress, dead_letter)
        # Counted when the outbox has recorded it, even if this task is cancelled meanwhile
        # (a stop): the counters are final once the outbox is.
        acked_future.add_done_callback(partial(self._count, len(batches), dead_letter))
        self._advance(progress)
        try:
            await asyncio.shield(acked_future)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._reset()  # the outbox still holds these events: they go again
            raise
        self._acking = None

    def _count(
        self, batches: int, dead_letter: DeadLetter | None, recorded: asyncio.Future[int]
    ) -> None:
        if recorded.cancelled() or recorded.exception() is not None:
            return
        acked = recorded.result()
        if dead_letter is None:
            self.delivered_events += acked
            self.batches_sent += batches
        else:
            self.dead_lettered_events += acked
            log.error(
                "events_dead_lettered",
                status=dead_letter.status,
                reason=dead_letter.reason,
                events=acked,
            )


def _unsendable(batch: Formed) -> DeadLetter | None:
    """The dead letter of a batch that could not be formed or encoded."""
    if batch.error is None:
        return None
    return DeadLetter(None, batch.error, batch.events, batch.body)


def _refused(batch: Formed, delivery: Delivery) -> DeadLetter | None:
    """The dead letter of a batch the endpoint refused."""
    if delivery.outcome is not Outcome.REJECTED:
        return None
    return DeadLetter(delivery.status, delivery.detail or "rejected", batch.events, batch.body)


__all__ = ["Dispatcher"]

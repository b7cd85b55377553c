"""The baseline: a bare grpc.aio server with trackd's messages and canned answers.

It serves Activate, Track, Decide and TrackStream of trackd.v1.TrackingService with the
same generated stubs and the same channel options as trackd, but does no work: Activate,
Track and Decide answer a constant response (Decide's: what trackd answers one user for
every flag of bench/gen_datafile.py's 50-flag datafile, worked out once at start),
TrackStream answers each (parsed) batch with {sequence, accepted=len(events)}. What
trackd adds on top of this is trackd's own cost.

With --durable it also does the least that answering only after a durable commit takes,
and nothing else: each request (each batch) is re-serialized and handed to one writer
thread, which commits whatever is waiting as one SQLite transaction (WAL,
synchronous=FULL, as trackd's outbox) and wakes the callers. The gap between the two is
what the durability contract costs on its own, before any decision or event building.

    .venv/bin/python bench/bare_server.py [--listen 127.0.0.1:0] [--durable DIR] [--loop uvloop]

Prints `{"event": "started", "port": N}` on stdout once listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import queue
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc

from bench.gen_datafile import build_flags
from trackd.datafile import parse_datafile
from trackd.decision.flags import decide_all
from trackd.rpc.decisions import DecideEncoder
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

# Same as trackd.rpc.endpoint.grpc_options with the default settings.
OPTIONS = [
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_concurrent_streams", 256),
    ("grpc.so_reuseport", 0),
]

_ACTIVATED = pb.ActivateResponse(
    variation_key="variation_a",
    experiment_id="40001",
    variation_id="42001",
    reason=pb.DECISION_REASON_BUCKETED,
    experiment_key="ab_running",
    impression_recorded=True,
    revision="7",
)
_TRACKED = pb.TrackResponse(
    attributions=[
        pb.Attribution(
            experiment_key="ab_running",
            variation_key="variation_a",
            experiment_id="40001",
            variation_id="42001",
        )
    ],
    uuid="00000000-0000-4000-8000-000000000000",
)


def _canned_decide_response() -> pb.DecideResponse:
    """trackd's answer for one user and every flag of the Decide bench's datafile, so the
    bare server sends a response of the same size and shape."""
    config = parse_datafile(build_flags(50))
    decisions = decide_all(config, "user-00000001", {"country": "US", "age": 30})
    body = DecideEncoder().response([(d, True) for d in decisions], config.revision)
    return pb.DecideResponse.FromString(body)


class DurableLog:
    """Group commit of raw bytes by one writer thread: `await append(body)` returns once
    `body` is committed."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, body BLOB)")
        self._queue: queue.SimpleQueue[tuple[asyncio.Future[None], bytes]] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, name="bare-writer", daemon=True).start()

    async def append(self, body: bytes) -> None:
        future = self._loop.create_future()
        self._queue.put((future, body))
        await future

    def _run(self) -> None:
        while True:
            waiting = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    waiting.append(self._queue.get_nowait())
            self._conn.execute("BEGIN IMMEDIATE")
            for _, body in waiting:
                self._conn.execute("INSERT INTO log (body) VALUES (?)", (body,))
            self._conn.execute("COMMIT")
            self._loop.call_soon_threadsafe(_wake, [future for future, _ in waiting])


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


class BareServicer(pb_grpc.TrackingServiceServicer):  # type: ignore[misc]  # untyped stub
    def __init__(self, log: DurableLog | None = None) -> None:
        self._log = log
        self._decided: pb.DecideResponse | None = None

    async def Activate(
        self, request: pb.ActivateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActivateResponse:
        if self._log is not None:
            await self._log.append(request.SerializeToString())
        return _ACTIVATED

    async def Track(
        self, request: pb.TrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TrackResponse:
        if self._log is not None:
            await self._log.append(request.SerializeToString())
        return _TRACKED

    async def Decide(
        self, request: pb.DecideRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DecideResponse:
        if self._decided is None:
            self._decided = _canned_decide_response()
        return self._decided

    async def TrackStream(
        self,
        request_iterator: AsyncIterator[pb.TrackStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.TrackStreamResponse]:
        async for batch in request_iterator:
            if self._log is not None:
                await self._log.append(batch.SerializeToString())
            yield pb.TrackStreamResponse(sequence=batch.sequence, accepted=len(batch.events))


async def serve(listen: str, durable: str | None = None) -> None:
    server = grpc.aio.server(options=OPTIONS)
    log = DurableLog(f"{durable}/bare-log.sqlite3") if durable else None
    pb_grpc.add_TrackingServiceServicer_to_server(BareServicer(log), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"event": "started", "port": port}), flush=True)
    await stop.wait()
    await server.stop(grace=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--durable", metavar="DIR", help="commit each request in DIR first")
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the event loop to run on"
    )
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(args.listen, args.durable))
    return 0


if __name__ == "__main__":
    sys.exit(main())

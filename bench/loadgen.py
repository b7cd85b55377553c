"""The load generators: the requests every gRPC benchmark sends, ghz for unary calls, and
worker processes of grpc.aio clients (this module run as `-m bench.loadgen SPEC`, never in
the server's process) for unary calls without ghz and for TrackStream."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from bench.harness import PROTO, ROOT, SERVICE, Point, Server, measured, percentile
from trackd.rpc.wire import varint
from trackd.v1 import tracking_service_pb2 as pb

GHZ_VERSION = "v0.120.0"

DEVICES = ("iPhone", "Android", "iPad")
AD_SOURCES = ("google", "facebook", "newsletter")
EVENTS = ("signup", "my_conversion")
POOL = 1000  # users u-0 .. u-999 in Track and TrackStream; the first half are activated
STREAM = "stream"  # the scenario of several streams of POOL users
NEW_USERS_STREAM = "stream, one stream of new users"


# --- payloads --------------------------------------------------------------------------


def attributes(n: int) -> dict[str, str]:
    return {"device": DEVICES[n % 3], "ad_source": AD_SOURCES[n % 3 - 1]}


def activate_json(user: str, n: int) -> dict[str, Any]:
    experiment = "ab_running" if n % 2 == 0 else "ab_iphone"
    return {"experiment_key": experiment, "user_id": user, "attributes": attributes(n)}


def track_json(n: int) -> dict[str, Any]:
    user = n % POOL
    return {
        "event_key": EVENTS[n % 2],
        "user_id": f"u-{user}",
        "attributes": attributes(user),
        "tags": {"revenue": 1299, "category": "shoes"},
    }


def track_request(n: int) -> pb.TrackRequest:
    return json_format.ParseDict(track_json(n), pb.TrackRequest())


def activate_request(user: str, n: int) -> pb.ActivateRequest:
    return json_format.ParseDict(activate_json(user, n), pb.ActivateRequest())


def batch_body(size: int, offset: int) -> bytes:
    """A serialized TrackStreamRequest without its sequence (appended per send)."""
    return pb.TrackStreamRequest(
        events=[track_request(offset + i) for i in range(size)]
    ).SerializeToString()


def with_sequence(body: bytes, sequence: int) -> bytes:
    # Protobuf concatenation merges: appending field 1 (varint) sets the sequence.
    return body + b"\x08" + varint(sequence)


# The tag of TrackStreamRequest.events (field 2, length-delimited), to frame events by hand.
_EVENTS_TAG = bytes([pb.TrackStreamRequest.DESCRIPTOR.fields_by_name["events"].number << 3 | 2])


def new_user_bodies(prefix: str, size: int, count: int) -> list[bytes]:
    """`count` serialized TrackStreamRequests (without their sequence) of `size` events each,
    every event from a user never seen before (`{prefix}-{n}`, so none is activated), with
    `track_json`'s event keys, attributes and tags. The events are serialized by the
    generated code and framed into batches by hand: building 2M events through
    `TrackStreamRequest(events=...)` takes longer than the run it feeds."""
    # A TrackRequest's maps alone, one per distinct (event, attributes): concatenated after
    # event_key and user_id they make the event as every protobuf runtime writes it.
    templates = [track_request(n) for n in range(6)]
    tails = [
        pb.TrackRequest(attributes=t.attributes, tags=t.tags).SerializeToString() for t in templates
    ]
    bodies = []
    n = 0
    for _ in range(count):
        framed = []
        for _ in range(size):
            event = (
                pb.TrackRequest(
                    event_key=EVENTS[n % 2], user_id=f"{prefix}-{n}"
                ).SerializeToString()
                + tails[n % 6]
            )
            framed.append(_EVENTS_TAG + varint(len(event)) + event)
            n += 1
        bodies.append(b"".join(framed))
    return bodies


def activate_pool(servers: Sequence[Server], users: int) -> None:
    """Activates u-0 .. u-(users-1) in both experiments of `my_conversion`."""
    requests = [
        activate_request(f"u-{u}", u * 2 + e).SerializeToString()
        for u in range(users)
        for e in (0, 1)
    ]
    for server in servers:
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary(
                f"/{SERVICE}/Activate", request_serializer=None, response_deserializer=None
            )
            for start in range(0, len(requests), 100):  # within max_concurrent_streams
                futures = [call.future(r, timeout=30) for r in requests[start : start + 100]]
                for future in futures:
                    future.result()


# --- load generators -------------------------------------------------------------------


def find_ghz() -> str | None:
    found = shutil.which("ghz")
    if found:
        return found
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    candidate = Path(gopath) / "bin" / "ghz"
    return str(candidate) if candidate.exists() else None


def wkt_include() -> str:
    import grpc_tools  # type: ignore[import-untyped]

    return str(Path(grpc_tools.__file__).parent / "_proto")


def ghz_unary(
    ghz: str,
    server: Server,
    method: str,
    concurrency: int,
    duration: float,
    run_id: str,
    connections: int = 1,
    request: tuple[Any, str] | None = None,
    skip_first: int | None = None,
) -> Point:
    """`request`: ghz's --data-file contents (`{{.RequestNumber}}` in it is each request's
    number) and how the results name that payload, instead of this module's requests;
    `skip_first`: calls left out of the tally (default: a few per caller, as warm-up)."""
    workdir = Path(tempfile.mkdtemp(prefix="ghz-"))
    data_path = workdir / "data.json"
    data: Any
    if request is not None:
        data, payload = request
    elif method == "Activate":
        # A new user per request: every call decides, records an impression and commits it.
        data = activate_json(f"{run_id}-{{{{.RequestNumber}}}}", 0)
        payload = "ab_running, new user per request (impression + commit), 2 attributes"
    else:
        data = [track_json(n) for n in range(2 * POOL)]
        payload = f"{POOL} users (half activated), signup/my_conversion, 2 attrs, 2 tags"
    data_path.write_text(json.dumps(data))
    command = [
        ghz,
        "--insecure",
        "--proto",
        str(PROTO),
        "--import-paths",
        f"{ROOT / 'proto'},{wkt_include()}",
        "--call",
        f"{SERVICE}/{method}",
        "--data-file",
        str(data_path),
        "-c",
        str(concurrency),
        "-z",
        f"{duration}s",
        # When the duration is up, the calls in flight finish. ghz's default (close) closed the
        # connection under them: each failed Unavailable ("use of closed network connection"),
        # and a caller starting its next call just then failed Canceled ("the client
        # connection is closing"). Runs of 0.2 s against the bare server here: 92 of 120 ended
        # with such errors, none of 120 with `wait`. Subtracting one per caller hid most, not a
        # run with more cut calls than callers: the bench smoke test's odd failure.
        "--duration-stop",
        "wait",
        "--skipFirst",
        str(min(100, concurrency * 4) if skip_first is None else skip_first),
        "--connections",
        str(connections),
        "--timeout",
        "20s",
        "--format",
        "json",
        server.address,
    ]
    with measured(server) as usage:
        done = subprocess.run(command, capture_output=True, timeout=duration + 60, check=False)
    shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode != 0 and not done.stdout:
        raise RuntimeError(f"ghz failed: {done.stderr.decode(errors='replace')}")
    report = json.loads(done.stdout)
    latencies = {
        int(d["percentage"]): d["latency"] / 1e6 for d in report.get("latencyDistribution") or []
    }
    statuses = report.get("statusCodeDistribution") or {}
    ok = int(statuses.get("OK", 0))
    errors = sum(int(v) for k, v in statuses.items() if k != "OK")
    error_messages = sorted((report.get("errorDistribution") or {}).items())[:3]
    total_s = report.get("total", 0) / 1e9 or usage["wall"]
    return Point(
        scenario=f"unary {method}",
        target=server.name,
        loadgen=f"ghz {GHZ_VERSION}, {connections} connection{'s' if connections > 1 else ''}",
        concurrency=concurrency,
        payload=payload,
        duration_s=round(total_s, 2),
        ops=ok,
        events=ok,
        errors=errors,
        throughput=ok / total_s,
        p50_ms=latencies.get(50, 0.0),
        p99_ms=latencies.get(99, 0.0),
        cpu_pct=100 * usage["cpu"] / usage["wall"],
        cpu_us_per_event=1e6 * usage["cpu"] / max(1, ok),
        peak_rss_mb=usage["rss"],
        notes=[f"{count}x {message}" for message, count in error_messages] if errors else [],
    )


HTTPLOAD_SOURCE = ROOT / "bench" / "httpload"
HTTPLOAD_BINARY = ROOT / "build" / "httpload" / "httpload"


def httpload_binary() -> tuple[Path | None, str]:
    """bench/httpload built into build/httpload/ (again when its source is newer); (None, why)
    when it cannot be built."""
    newest = max(p.stat().st_mtime for p in HTTPLOAD_SOURCE.iterdir())
    if HTTPLOAD_BINARY.exists() and HTTPLOAD_BINARY.stat().st_mtime >= newest:
        return HTTPLOAD_BINARY, ""
    if shutil.which("go") is None:
        return None, "go not on PATH (it builds bench/httpload, the HTTP load generator)"
    HTTPLOAD_BINARY.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["go", "build", "-o", str(HTTPLOAD_BINARY), "."],
        cwd=HTTPLOAD_SOURCE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        return None, f"building bench/httpload failed: {done.stderr.strip()[-300:]}"
    return HTTPLOAD_BINARY, ""


def httpload_unary(
    httpload: Path,
    server: Server,
    url: str,
    body: str,
    headers: Sequence[str],
    concurrency: int,
    duration: float,
    point: tuple[str, str, str],
) -> Point:
    """POSTs `body` (`{n}` in it is each request's number) to `url` for `duration` s from
    `concurrency` callers; `point`: the point's scenario, target and payload as reported."""
    scenario, target, payload = point
    command = [str(httpload), "-url", url, "-body", body, "-c", str(concurrency)]
    command += ["-z", f"{duration}s", *(arg for h in headers for arg in ("-H", h))]
    with measured(server) as usage:
        done = subprocess.run(command, capture_output=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"httpload failed: {done.stderr.decode(errors='replace')}")
    report = json.loads(done.stdout)
    ok = int(report["ok"])
    return Point(
        scenario=scenario,
        target=target,
        loadgen="bench/httpload (Go, like hey; 1 keep-alive connection per caller)",
        concurrency=concurrency,
        payload=payload,
        duration_s=round(report["seconds"], 2),
        ops=ok,
        events=ok,
        errors=int(report["errors"]),
        throughput=ok / report["seconds"],
        p50_ms=report["p50_ms"],
        p99_ms=report["p99_ms"],
        cpu_pct=100 * usage["cpu"] / usage["wall"],
        cpu_us_per_event=1e6 * usage["cpu"] / max(1, ok),
        peak_rss_mb=usage["rss"],
        notes=[f"{n}x {s}" for s, n in report["statuses"].items() if not s.startswith("2")]
        + report["error_text"][:3],
    )


def run_workers(
    server: Server, specs: list[dict[str, Any]], timeout: float
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Starts worker processes, waits until all are ready, releases them together."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        for spec in specs
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"worker failed to start: {line!r}")
        with measured(server) as usage:
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(b"go\n")
                worker.stdin.flush()
            results = []
            for worker in workers:
                out, _ = worker.communicate(timeout=timeout)
                results.append(json.loads(out))
        return results, usage
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def python_unary(
    server: Server,
    method: str,
    concurrency: int,
    duration: float,
    max_requests: int,
    run_id: str,
    processes: int,
) -> Point:
    processes = max(1, min(processes, concurrency))
    specs = [
        {
            "kind": "unary",
            "port": server.port,
            "method": method,
            "concurrency": concurrency // processes + (i < concurrency % processes),
            "duration": duration,
            "max_requests": max_requests // processes,
            "prefix": f"{run_id}-p{i}",
        }
        for i in range(processes)
    ]
    results, usage = run_workers(server, specs, timeout=duration + 60)
    return _merge(
        server,
        f"unary {method}",
        f"python grpc.aio, {processes} process(es)",
        concurrency,
        _payload(method),
        results,
        usage,
        batch=0,
    )


def _payload(method: str) -> str:
    if method == "Activate":
        return "ab_running/ab_iphone, new user per request (impression + commit), 2 attributes"
    return f"{POOL} users (half activated), signup/my_conversion, 2 attrs, 2 tags"


def _merge(
    server: Server,
    scenario: str,
    loadgen: str,
    concurrency: int,
    payload: str,
    results: list[dict[str, Any]],
    usage: dict[str, float],
    batch: int,
) -> Point:
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    ops = sum(r["ops"] for r in results)
    events = sum(r["events"] for r in results)
    errors = sum(r["errors"] for r in results)
    wall = max(r["wall"] for r in results) or 1e-9
    return Point(
        scenario=scenario,
        target=server.name,
        loadgen=loadgen,
        concurrency=concurrency,
        payload=payload,
        duration_s=round(wall, 2),
        ops=ops,
        events=events,
        errors=errors,
        throughput=events / wall,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        cpu_pct=100 * usage["cpu"] / usage["wall"],
        cpu_us_per_event=1e6 * usage["cpu"] / max(1, events),
        peak_rss_mb=usage["rss"],
        batch=batch,
    )


def python_stream(
    server: Server,
    batch: int,
    streams: int,
    window: int,
    duration: float,
    max_events: int,
    processes: int,
) -> Point:
    processes = max(1, min(processes, streams))
    specs = [
        {
            "kind": "stream",
            "port": server.port,
            "batch": batch,
            "streams": streams // processes + (i < streams % processes),
            "window": window,
            "duration": duration,
            "max_batches": max(1, max_events // batch // processes),
            "offset": i * 7919,
        }
        for i in range(processes)
    ]
    results, usage = run_workers(server, specs, timeout=duration + 120)
    return _merge(
        server,
        STREAM,
        f"python grpc.aio, {processes} process(es), {window} batches in flight per stream",
        streams,
        f"batch {batch}: {POOL} users (half activated), signup/my_conversion, 2 attrs, 2 tags",
        results,
        usage,
        batch=batch,
    )


def new_users_stream(
    server: Server, batch: int, duration: float, max_events: int, run_id: str
) -> Point:
    """One TrackStream from one process, every event from a new user, every batch serialized
    before the clock starts and written as fast as HTTP/2 flow control allows (no window of
    its own: trackd reads a few batches ahead, then stops reading until they are committed).
    What one producer with fresh traffic gets, issue 17 item 4."""
    spec = {
        "kind": "stream",
        "port": server.port,
        "batch": batch,
        "streams": 1,
        "window": 0,
        "duration": duration,
        "max_batches": max(1, max_events // batch),
        "offset": 0,
        "new_users": f"{run_id}-{server.name}",
    }
    results, usage = run_workers(server, [spec], timeout=duration + 300)
    return _merge(
        server,
        NEW_USERS_STREAM,
        "python grpc.aio, 1 process, batches written as fast as flow control allows",
        1,
        f"batch {batch}: a new user per event (none activated), signup/my_conversion,"
        " 2 attrs, 2 tags",
        results,
        usage,
        batch=batch,
    )


# --- worker processes (never the server's process) ----------------------------------


CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


async def _unary_worker(spec: dict[str, Any]) -> dict[str, Any]:
    method = spec["method"]
    count = spec["max_requests"]
    if method == "Activate":
        requests = [
            activate_request(f"{spec['prefix']}-{n}", n).SerializeToString() for n in range(count)
        ]
    else:
        requests = [track_request(n).SerializeToString() for n in range(2 * POOL)]
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{spec['port']}", options=CHANNEL_OPTIONS
    ) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None
        )
        await call(track_request(0).SerializeToString() if method == "Track" else requests[-1])
        await _ready()
        latencies: list[float] = []
        errors = 0
        next_index = 0
        deadline = time.perf_counter() + spec["duration"]

        async def loop() -> None:
            nonlocal next_index, errors
            perf = time.perf_counter
            while next_index < count and perf() < deadline:
                request = requests[next_index % len(requests)]
                next_index += 1
                started = perf()
                try:
                    await call(request, timeout=20)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append((perf() - started) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(spec["concurrency"])))
        wall = time.perf_counter() - t0
    return {
        "ops": len(latencies),
        "events": len(latencies),
        "errors": errors,
        "wall": wall,
        "latencies_ms": latencies,
    }


async def _stream_worker(spec: dict[str, Any]) -> dict[str, Any]:
    size = spec["batch"]
    max_batches = spec["max_batches"]
    window = spec["window"]
    if spec.get("new_users"):
        bodies = new_user_bodies(spec["new_users"], size, max_batches)
    else:
        bodies = [batch_body(size, spec["offset"] + k * size) for k in range(4)]
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{spec['port']}", options=CHANNEL_OPTIONS
    ) as channel:
        method = channel.stream_stream(
            f"/{SERVICE}/TrackStream",
            request_serializer=None,
            response_deserializer=pb.TrackStreamResponse.FromString,
        )
        warm = method(None)
        await warm.write(with_sequence(batch_body(size, spec["offset"]), 0))
        await warm.read()
        await warm.done_writing()
        await _ready()
        sent = 0
        latencies: list[float] = []
        accepted = errors = 0
        deadline = time.perf_counter() + spec["duration"]

        async def one_stream() -> None:
            nonlocal sent, accepted, errors
            call = method(None)
            # Window 0: no limit of its own, only HTTP/2 flow control and the server's reading.
            in_flight = asyncio.Semaphore(window or max_batches)
            started: dict[int, float] = {}
            perf = time.perf_counter

            async def writer() -> None:
                nonlocal sent
                while sent < max_batches and perf() < deadline:
                    await in_flight.acquire()
                    sequence = sent
                    sent += 1
                    started[sequence] = perf()
                    await call.write(with_sequence(bodies[sequence % len(bodies)], sequence))
                await call.done_writing()

            async def reader() -> None:
                nonlocal accepted, errors
                async for reply in call:
                    latencies.append((perf() - started.pop(reply.sequence)) * 1000)
                    accepted += reply.accepted
                    errors += len(reply.errors) + (size if reply.code else 0)
                    in_flight.release()

            await asyncio.gather(writer(), reader())

        t0 = time.perf_counter()
        await asyncio.gather(*(one_stream() for _ in range(spec["streams"])))
        wall = time.perf_counter() - t0
    return {
        "ops": len(latencies),
        "events": accepted,
        "errors": errors,
        "wall": wall,
        "latencies_ms": latencies,
    }


async def _ready() -> None:
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    worker = _unary_worker if spec["kind"] == "unary" else _stream_worker
    result = asyncio.run(worker(spec))
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))

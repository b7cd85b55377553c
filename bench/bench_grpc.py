"""gRPC throughput of trackd against a bare grpc.aio server, side by side in one run.

Scenarios (issue 6, 1 and 2), each run against (a) trackd, (b) bench/bare_server.py and
(c) bare_server.py --durable (a commit before each answer and nothing else: what the
durability contract alone costs; not in --quick runs), alternating target by target at
every point so that drift on this shared machine hits them all:

  unary   Activate and Track at concurrency 1, 16, 64. Load generator: ghz when it is
          installed (PATH, $GOPATH/bin or ~/go/bin), else worker processes of this script
          (grpc.aio clients with pre-serialized requests, never in the server's process).
  stream  TrackStream at batch sizes 1, 50, 500, 5000: events acknowledged per second
          (durable SQLite commit on trackd), 4 streams in 2 producer processes with 2
          batches in flight per stream, pre-serialized batches.

Reported per point: throughput, p50/p99 latency (per request, or per batch from write to
acknowledgement), the server's CPU (from /proc/<pid>/stat, all threads of the server and
its child processes: trackd's event encoder is one) and peak RSS (VmHWM summed over those
processes, reset before each point through /proc/<pid>/clear_refs when allowed), and the
ratio trackd/bare. No thresholds: it reports, it does not judge.

    .venv/bin/python bench/bench_grpc.py [--quick] [--json] [--profile] [--no-write]

Results are appended to bench/results/<YYYY-MM-DD>.md (never overwritten) unless --quick
or --no-write; --json prints them as JSON on stdout. --profile also samples trackd with
py-spy under TrackStream 500 and unary Track load and adds the top frames to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from trackd.v1 import tracking_service_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "trackd" / "v1" / "tracking_service.proto"
DATAFILE = ROOT / "tests" / "data" / "datafile.json"
RESULTS_DIR = ROOT / "bench" / "results"
SERVICE = "trackd.v1.TrackingService"
GHZ_VERSION = "v0.120.0"

DEVICES = ("iPhone", "Android", "iPad")
AD_SOURCES = ("google", "facebook", "newsletter")
EVENTS = ("signup", "my_conversion")
POOL = 1000  # users u-0 .. u-999 in Track and TrackStream; the first half are activated


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
    out = bytearray(body)
    out.append(0x08)
    while True:
        low = sequence & 0x7F
        sequence >>= 7
        if sequence:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


# --- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _procs(self) -> list[Path]:
        # The process and its descendants: trackd's dispatcher encodes Event API JSON in a
        # spawned worker process, whose CPU and memory are the daemon's too.
        return [Path(f"/proc/{pid}") for pid in tree_pids(self.pid)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._procs():
            with contextlib.suppress(OSError):
                fields = (proc / "stat").read_text().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def reset_peak_rss(self) -> bool:
        ok = True
        for proc in self._procs():
            try:
                (proc / "clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def peak_rss_mb(self) -> float:
        """The sum of each process's peak (VmHWM): an upper bound of the tree's peak."""
        total = 0.0
        for proc in self._procs():
            with contextlib.suppress(OSError):
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
        return total

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        # Whatever is left of the session this bench started the server in (its children).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def tree_pids(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def _wait_started(popen: subprocess.Popen[bytes], log_path: Path, name: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("event") == "started":
                    return int(entry["port"])
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log_path.read_text()}")
        time.sleep(0.05)
    popen.kill()
    raise RuntimeError(f"{name} did not start:\n{log_path.read_text()}")


def start_server(name: str, command: list[str], workdir: Path) -> Server:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    return Server(name, popen, _wait_started(popen, log_path, name))


def start_trackd(workdir: Path, knobs: str = "") -> Server:
    """trackd, or with `knobs` trackd through bench/trackd_variant.py (named trackd+knobs)."""
    name = f"trackd+{knobs}" if knobs else "trackd"
    data_dir = workdir / f"{name}-data"
    data_dir.mkdir()
    command = trackd_command()
    if knobs:
        command = [sys.executable, str(ROOT / "bench" / "trackd_variant.py"), knobs]
    return start_server(
        name,
        serve_command(
            data_dir,
            DATAFILE,
            "--log-level",
            "info",
            # Room for every event of the run: the bench measures acceptance, not back-pressure.
            "--outbox-max-events",
            "100000000",
            trackd=command,
        ),
        workdir,
    )


def trackd_command() -> list[str]:
    """The installed `trackd` script (what users run), else `python -m trackd`."""
    trackd = Path(sys.executable).parent / "trackd"
    return [str(trackd)] if trackd.exists() else [sys.executable, "-m", "trackd"]


def serve_command(
    data_dir: Path,
    datafile: Path,
    *extra: str,
    listen: str = "127.0.0.1:0",
    trackd: list[str] | None = None,
) -> list[str]:
    """`trackd serve` on loopback with JSON logs (the benches read its `started` line)."""
    return [
        *(trackd or trackd_command()),
        "serve",
        "--listen",
        listen,
        "--data-dir",
        str(data_dir),
        "--datafile",
        str(datafile),
        "--log-format",
        "json",
        *extra,
    ]


def start_bare(workdir: Path, durable: bool = False) -> Server:
    """bench/bare_server.py; `durable`: the same with a commit before each answer, named
    bare+durable."""
    command = [sys.executable, str(ROOT / "bench" / "bare_server.py")]
    if not durable:
        return start_server("bare", command, workdir)
    log_dir = workdir / "bare-durable-data"
    log_dir.mkdir()
    return start_server("bare+durable", [*command, "--durable", str(log_dir)], workdir)


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


# --- measurements ----------------------------------------------------------------------


@dataclass
class Point:
    scenario: str  # "unary Activate", "unary Track", "stream"
    target: str  # "trackd", "bare" or "bare+durable"
    loadgen: str
    concurrency: int
    payload: str
    duration_s: float
    ops: int  # requests or batches completed
    events: int  # events acknowledged (unary: requests)
    errors: int
    throughput: float  # requests/s or events/s
    p50_ms: float
    p99_ms: float
    cpu_pct: float
    cpu_us_per_event: float
    peak_rss_mb: float
    batch: int = 0
    ratio: float | None = None  # trackd/bare throughput, on trackd's row
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@contextlib.contextmanager
def measured(server: Server) -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    server.reset_peak_rss()
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    yield out
    out["wall"] = time.perf_counter() - t0
    out["cpu"] = server.cpu_seconds() - cpu0
    out["rss"] = server.peak_rss_mb()


def settle(server: Server, limit: float = 90.0) -> float:
    """Waits (at most `limit` s) until the server is idle, e.g. trackd's dispatcher has
    delivered the previous point's backlog, so that each point starts from the same state."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        cpu0 = server.cpu_seconds()
        time.sleep(0.5)
        if server.cpu_seconds() - cpu0 < 0.05:
            break
    return time.perf_counter() - started


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
) -> Point:
    workdir = Path(tempfile.mkdtemp(prefix="ghz-"))
    data_path = workdir / "data.json"
    if method == "Activate":
        # A new user per request: every call decides, records an impression and commits it.
        data: Any = activate_json(f"{run_id}-{{{{.RequestNumber}}}}", 0)
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
        "--skipFirst",
        str(min(100, concurrency * 4)),
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
    # The calls in flight when -z expires are cut off (Canceled, or Unavailable as the
    # connection closes): at most one per concurrent caller, and not the server's errors.
    if report.get("endReason") == "timeout":
        cut = sum(int(statuses.get(code, 0)) for code in ("Canceled", "Unavailable"))
        errors -= min(cut, concurrency)
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


def run_workers(
    server: Server, specs: list[dict[str, Any]], timeout: float
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Starts worker processes, waits until all are ready, releases them together."""
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
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
        "stream",
        f"python grpc.aio, {processes} process(es), {window} batches in flight per stream",
        streams,
        f"batch {batch}: {POOL} users (half activated), signup/my_conversion, 2 attrs, 2 tags",
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
    bodies = [batch_body(size, spec["offset"] + k * size) for k in range(4)]
    max_batches = spec["max_batches"]
    window = spec["window"]
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{spec['port']}", options=CHANNEL_OPTIONS
    ) as channel:
        method = channel.stream_stream(
            f"/{SERVICE}/TrackStream",
            request_serializer=None,
            response_deserializer=pb.TrackStreamResponse.FromString,
        )
        warm = method(None)
        await warm.write(with_sequence(bodies[0], 0))
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
            in_flight = asyncio.Semaphore(window)
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


# --- profiling -------------------------------------------------------------------------


def py_spy() -> str | None:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def profile_under_load(
    server: Server, label: str, seconds: float, load: Any, workdir: Path
) -> dict[str, Any]:
    """Samples `server` with py-spy (native frames, all threads) while `load()` runs."""
    tool = py_spy()
    if tool is None:
        return {"label": label, "error": "py-spy not installed (pip install py-spy)"}
    raw = workdir / f"profile-{label.replace(' ', '-')}.txt"
    command = [
        tool,
        "record",
        "--pid",
        str(server.pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "100",
        "--format",
        "raw",
        "--native",
        "-o",
        str(raw),
    ]
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    point = load()
    try:
        _, err = spy.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    if not raw.exists():
        return {"label": label, "error": err.decode(errors="replace")[-500:]}
    return {"label": label, "load": asdict(point), **summarize_profile(raw.read_text())}


CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("disk sync wait (fsync/fdatasync)", ("fdatasync", "fsync (")),
    ("garbage collector", ("gc_collect",)),
    ("SQLite commit (outbox writer)", ("sqlite", "outbox/writer.py")),
    ("pickling / row encoding", ("pickle", "encode_rows", "_pickle")),
    ("Value conversion", ("values.py",)),
    ("stream event reading (trackd.wire)", ("wire.py",)),
    ("record building / uuid", ("records.py", "uuid", "tags.py")),
    ("attribution lookups", ("activation/", "tracking.py")),
    ("decision (bucketing, audiences)", ("decision/",)),
    ("dispatcher (payloads, file sink)", ("dispatcher.py", "payload.py", "sinks/", "json")),
    ("results counting", ("results.py",)),
    ("protobuf parse / serialize", ("upb", "protobuf", "message.c", "decode.c", "encode.c")),
    ("servicer translation", ("servicer.py",)),
    ("grpc aio / cygrpc / core", ("grpc", "cygrpc", "_cython", "aio", ".pyx", "libgrpc")),
    ("asyncio event loop", ("asyncio/", "selectors", "epoll")),
]


def _frame_key(frame: str) -> str:
    # "func (path/file.py:123)" -> "func (file.py)"; native frames have no line.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0] if where.rsplit(":", 1)[-1].isdigit() else where
    short = "/".join(Path(path).parts[-2:]) if path else ""
    return f"{name} ({short})" if short else name


def _category(stack: Sequence[str]) -> str:
    # The innermost frame that matches a category wins, so C time inside protobuf or
    # sqlite called from trackd code is counted as protobuf or sqlite.
    for frame in reversed(stack):
        low = frame.lower()
        for name, needles in CATEGORIES:
            if any(needle in low for needle in needles):
                return name
    return "other"


# A thread whose stack holds one of these is waiting (for work, the GIL or the network),
# not running: its samples are counted as idle and left out of the percentages.
WAITING = (
    "epoll_wait",
    "PyThread_acquire_lock_timed",
    "take_gil",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "sem_wait",
    "sem_timedwait",
    "nanosleep",
    "poll (libc",
    "select (libc",
)


def summarize_profile(text: str) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in text.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack_text.split(";") if f]
        if not frames:
            continue
        if any(marker in stack_text for marker in WAITING):
            idle += count
            continue
        total += count
        keys = [_frame_key(f) for f in frames]
        own[keys[-1]] += count
        for key in set(keys):
            inclusive[key] += count
        categories[_category(frames)] += count
    if total == 0:
        return {"samples": 0, "idle": idle, "self": [], "inclusive": [], "categories": []}

    def top(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "idle": idle,
        "self": top(own, 20),
        "inclusive": top(inclusive, 25),
        "categories": top(categories, len(CATEGORIES) + 1),
    }


# --- reporting -------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": version("protobuf"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def with_ratios(points: list[Point]) -> None:
    bare = {(p.scenario, p.concurrency, p.batch): p for p in points if p.target == "bare"}
    for p in points:
        base = bare.get((p.scenario, p.concurrency, p.batch))
        if p.target != "bare" and base is not None and base.throughput > 0:
            p.ratio = p.throughput / base.throughput


def point_tables(points: list[Point], level: str, ratio_label: str = "trackd/bare") -> list[str]:
    """One markdown table per scenario of `points`, headed at `level` ("###")."""
    lines: list[str] = []
    for scenario in dict.fromkeys(p.scenario for p in points):
        rows = [p for p in points if p.scenario == scenario]
        stream = scenario == "stream"
        unit = "events/s" if stream else "req/s"
        first = rows[0]
        lines += [
            f"{level} {'TrackStream, events acknowledged' if stream else scenario}",
            "",
            f"Load generator: {first.loadgen}."
            + (" Concurrency = concurrent streams." if stream else "")
            + f" Payload: {first.payload if not stream else first.payload.split(': ', 1)[1]}.",
            "",
            ("| batch " if stream else "")
            + f"| concurrency | target | duration s | {unit} | p50 ms | p99 ms | server CPU %"
            f" | CPU us/event | peak RSS MB | errors | {ratio_label} |",
            ("|---:" if stream else "") + "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in rows:
            ratio = f"**{p.ratio:.2f}**" if p.ratio is not None else ""
            lines.append(
                (f"| {p.batch} " if stream else "")
                + f"| {p.concurrency} | {p.target} | {p.duration_s:.1f} | {p.throughput:,.0f}"
                f" | {p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.cpu_pct:.0f} | {p.cpu_us_per_event:.1f}"
                f" | {p.peak_rss_mb:.0f} | {p.errors} | {ratio} |"
            )
        lines += [f"- {p.target} c={p.concurrency}: {note}" for p in rows for note in p.notes]
        lines.append("")
    return lines


def profile_tables(profiles: list[dict[str, Any]], level: str) -> list[str]:
    """The py-spy summaries: categories, top frames by self and inclusive time."""
    lines: list[str] = []
    for profile in profiles:
        lines += [f"{level} Profile: trackd under {profile['label']}", ""]
        if "error" in profile:
            lines += [f"Not profiled: {profile['error']}", ""]
            continue
        load = profile["load"]
        lines += [
            f"py-spy record --native at 100 Hz, all threads, {profile['samples']} busy"
            f" samples ({profile['idle']} idle ones left out: threads waiting in epoll, on a"
            f" lock or for the GIL), during {load['throughput']:,.0f}"
            f" {'events' if load['batch'] else 'req'}/s (sampling slows trackd down)."
            " Percentages are of the busy samples of all threads: the event loop, the SQLite"
            " writer thread and the to_thread workers.",
            "",
            "Where the time goes (innermost matching frame of each sample):",
            "",
            "| category | % |",
            "|---|---:|",
            *[f"| {name} | {pct} |" for name, pct in profile["categories"]],
            "",
            "Top frames by self time:",
            "",
            "| frame | self % |",
            "|---|---:|",
            *[f"| `{name}` | {pct} |" for name, pct in profile["self"]],
            "",
            "Top frames by inclusive time:",
            "",
            "| frame | incl. % |",
            "|---|---:|",
            *[f"| `{name}` | {pct} |" for name, pct in profile["inclusive"]],
            "",
        ]
    return lines


def markdown(
    points: list[Point],
    info: dict[str, str],
    profiles: list[dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    lines = [
        f"## gRPC: trackd vs bare grpc.aio ({now})",
        "",
        "`bench/bench_grpc.py` — trackd (durable SQLite outbox, file event sink, default"
        " settings but a 100M-event outbox cap) and `bench/bare_server.py` (same stubs and"
        " channel options, canned answers; and `--durable`, a commit before each answer)"
        " run side by side, point by point, in one run."
        " Both servers and the load generators share this machine: figures are noisy,"
        " ratios are the result.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    if args.variant:
        lines += [
            f"`trackd+{args.variant}` is trackd started through `bench/trackd_variant.py"
            f" {args.variant}`: an experiment measured beside the shipped daemon, not trackd"
            " as shipped.",
            "",
        ]
    lines += point_tables(points, "###")
    lines += profile_tables(profiles, "###")
    lines.append(f"Command: `bench/bench_grpc.py {' '.join(args.argv)}`".rstrip() + "")
    lines.append("")
    return "\n".join(lines)


def append_results(text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{dt.date.today().isoformat()}.md"
    new = not path.exists()
    with path.open("a") as out:
        if new:
            out.write(f"# Benchmark results, {dt.date.today().isoformat()}\n\n")
        out.write(text + "\n")
    return path


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-write", action="store_true", help="do not append to bench/results")
    parser.add_argument("--profile", action="store_true", help="py-spy trackd under load")
    parser.add_argument("--loadgen", choices=("auto", "ghz", "python"), default="auto")
    parser.add_argument("--only", choices=("unary", "stream"), default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--window", type=int, default=2, help="batches in flight per stream")
    parser.add_argument(
        "--variant",
        default="",
        help="also run trackd with these knobs (see bench/trackd_variant.py), e.g. sync-normal",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    duration = args.duration or (0.5 if quick else 5.0)
    stream_duration = args.duration or (0.5 if quick else 6.0)
    concurrencies = args.concurrency or ([1, 16] if quick else [1, 16, 64])
    batches = args.batches or ([1, 500] if quick else [1, 50, 500, 5000])
    max_requests = 200 if quick else 2_000_000
    max_events = 2_000 if quick else 5_000_000
    ghz = find_ghz() if args.loadgen != "python" else None
    if args.loadgen == "ghz" and ghz is None:
        raise SystemExit(f"ghz not found: go install github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}")
    run_id = f"r{os.getpid()}-{int(time.time())}"
    settle_limit = 0.0 if quick else 90.0
    points: list[Point] = []
    profiles: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        workdir = Path(tmp)
        servers = [start_trackd(workdir)]
        if args.variant:
            servers.append(start_trackd(workdir, args.variant))
        servers.append(start_bare(workdir))
        if not quick:
            servers.append(start_bare(workdir, durable=True))
        try:
            activate_pool(servers, 50 if quick else POOL // 2)

            def unary(server: Server, method: str, c: int, seconds: float) -> Point:
                tag = f"{run_id}-{method}-{c}-{server.name}"
                if ghz is not None:
                    return ghz_unary(ghz, server, method, c, seconds, tag)
                return python_unary(server, method, c, seconds, max_requests, tag, processes=2)

            def stream(server: Server, batch: int, seconds: float) -> Point:
                return python_stream(
                    server, batch, args.streams, args.window, seconds, max_events, processes=2
                )

            if args.only in (None, "unary"):
                for method in ("Activate", "Track"):
                    for c in concurrencies:
                        for server in servers:
                            settle(server, settle_limit)
                            points.append(unary(server, method, c, duration))
                            _progress(points[-1], args)
            if args.only in (None, "stream"):
                for batch in batches:
                    for server in servers:
                        settle(server, settle_limit)
                        points.append(stream(server, batch, stream_duration))
                        _progress(points[-1], args)
            if args.profile:
                trackd = servers[0]
                seconds = 3 if quick else 10
                settle(trackd, settle_limit)
                profiles.append(
                    profile_under_load(
                        trackd,
                        "TrackStream, batches of 500",
                        seconds,
                        lambda: stream(trackd, 500, seconds - 1.5),
                        workdir,
                    )
                )
                settle(trackd, settle_limit)
                profiles.append(
                    profile_under_load(
                        trackd,
                        "unary Track, concurrency 16",
                        seconds,
                        lambda: unary(trackd, "Track", 16, seconds - 1.5),
                        workdir,
                    )
                )
        finally:
            for server in servers:
                server.stop()
    with_ratios(points)
    return {"machine": machine(), "points": [asdict(p) for p in points], "profiles": profiles}


def _progress(point: Point, args: argparse.Namespace) -> None:
    if not args.quick:
        label = f"{point.scenario} c={point.concurrency}" + (
            f" batch={point.batch}" if point.batch else ""
        )
        print(
            f"{label:32} {point.target:6} {point.throughput:12,.0f}/s  p50 {point.p50_ms:7.2f} ms"
            f"  p99 {point.p99_ms:7.2f} ms  cpu {point.cpu_pct:4.0f}%  errors {point.errors}",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return worker_main(args.worker)
    result = run(args)
    points = [Point(**p) for p in result["points"]]
    if args.json:
        print(json.dumps(result, indent=2))
    if not (args.quick or args.no_write):
        text = markdown(points, result["machine"], result["profiles"], args)
        path = append_results(text)
        if not args.json:
            print(text)
        print(f"appended to {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: trackd and the bare server as processes, /proc readers,
measured points and their markdown tables, the machine's description.

The benchmarks are modules of the `bench` package, run from the repository root:

    .venv/bin/python -m bench.run_all [--quick]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "trackd" / "v1" / "tracking_service.proto"
DATAFILE = ROOT / "tests" / "data" / "datafile.json"
SERVICE = "trackd.v1.TrackingService"
RESULTS = ROOT / "bench" / "results"


# --- /proc readers ---------------------------------------------------------------------


def stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU from a /proc stat file: a process's, or one thread's (task/TID)."""
    # After the command name's closing parenthesis (which may hold spaces): utime, stime.
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` (all its threads), from /proc/PID/stat."""
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of `pid`, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


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

    def _pids(self) -> list[int]:
        # The process and its descendants: trackd's dispatcher encodes Event API JSON in a
        # spawned worker process, whose CPU and memory are the daemon's too.
        return tree_pids(self.pid)

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self._pids():
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total

    def cpu_split(self) -> dict[str, float]:
        """CPU seconds so far by where they ran: the main thread (a grpc.aio server's event
        loop), the process's other threads (trackd's outbox writer, WAL syncer and
        to_thread workers, gRPC's own threads) and its child processes (trackd's event
        encoder)."""
        split = {"loop": 0.0, "threads": 0.0, "children": 0.0}
        for pid in self._pids():
            with contextlib.suppress(OSError):
                if pid != self.pid:
                    split["children"] += cpu_seconds(pid)
                    continue
                main = stat_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))
                split["loop"] += main
                split["threads"] += cpu_seconds(pid) - main
        return split

    def reset_peak_rss(self) -> bool:
        ok = True
        for pid in self._pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def peak_rss_mb(self) -> float:
        """The sum of each process's peak (VmHWM): an upper bound of the tree's peak."""
        total = 0.0
        for pid in self._pids():
            with contextlib.suppress(OSError):
                total += peak_rss_mb(pid)
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


def started_port(log_path: Path, key: str = "port") -> int | None:
    """The port of the `started` line in a JSON log (trackd's, or the bare server's), if any;
    `key`: which of its ports (trackd's HTTP port is `http_port`)."""
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "started":
                return int(entry[key])
    return None


def wait_started(
    popen: subprocess.Popen[bytes],
    log_path: Path,
    name: str,
    limit: float = 30.0,
    poll: float = 0.05,
) -> int:
    """Waits for the `started` line of `popen`'s log; its port."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        port = started_port(log_path)
        if port is not None:
            return port
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log_path.read_text()}")
        time.sleep(poll)
    popen.kill()
    raise RuntimeError(f"{name} did not start:\n{log_path.read_text()}")


def start_server(name: str, command: list[str], workdir: Path) -> Server:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    return Server(name, popen, wait_started(popen, log_path, name))


def start_trackd(
    workdir: Path, knobs: str = "", extra: Sequence[str] = (), datafile: Path = DATAFILE
) -> Server:
    """trackd, or with `knobs` trackd through bench/trackd_variant.py (named trackd+knobs);
    `extra`: more `trackd serve` options (e.g. an --event-endpoint)."""
    name = f"trackd+{knobs}" if knobs else "trackd"
    data_dir = workdir / f"{name}-data"
    data_dir.mkdir()
    command = trackd_command()
    if knobs:
        command = [sys.executable, "-m", "bench.trackd_variant", knobs]
    return start_server(
        name,
        serve_command(
            data_dir,
            datafile,
            "--log-level",
            "info",
            # Room for every event of the run: the bench measures acceptance, not back-pressure.
            "--outbox-max-events",
            "100000000",
            *extra,
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


def start_bare(workdir: Path, durable: bool = False, loop: str = "asyncio") -> Server:
    """bench/bare_server.py; `durable`: the same with a commit before each answer, named
    bare+durable; `loop` "uvloop": on uvloop (trackd's default loop), named bare+uvloop."""
    command = [sys.executable, "-m", "bench.bare_server"]
    if loop != "asyncio":
        return start_server(f"bare+{loop}", [*command, "--loop", loop], workdir)
    if not durable:
        return start_server("bare", command, workdir)
    log_dir = workdir / "bare-durable-data"
    log_dir.mkdir()
    return start_server("bare+durable", [*command, "--durable", str(log_dir)], workdir)


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
        stream = scenario.startswith("stream")
        unit = "events/s" if stream else "req/s"
        first = rows[0]
        title = "TrackStream, events acknowledged" + scenario.removeprefix("stream")
        lines += [
            f"{level} {title if stream else scenario}",
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
            f"py-spy record --native at 100 Hz, all threads and child processes,"
            f" {profile['samples']} busy"
            f" samples ({profile['idle']} idle ones left out: threads waiting in epoll, on a"
            f" lock or for the GIL), during {load['throughput']:,.0f}"
            f" {'events' if load['batch'] else 'req'}/s (sampling slows trackd down)."
            " Percentages are of the busy samples of all threads: the event loop, the SQLite"
            " writer thread and the to_thread workers.",
            "",
            "Busy samples by thread (`child` is trackd's event-encoder process):",
            "",
            "| thread | % |",
            "|---|---:|",
            *[f"| {name} | {pct} |" for name, pct in profile.get("threads", [])],
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


def append_results(results_dir: Path, now: dt.datetime, text: str) -> Path:
    """Append `text` to results_dir/<YYYY-MM-DD>.md (never overwrites), titling a new file."""
    today = now.date().isoformat()
    path = results_dir / f"{today}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.read_text() if path.exists() else None
    with path.open("a") as out:
        if before is None:
            out.write(f"# Benchmark results, {today}\n\n")
        elif not before.endswith("\n\n"):  # a hand-written section may end without a gap
            out.write("\n" if before.endswith("\n") else "\n\n")
        out.write(text + "\n")
    return path


def report_run(
    report: dict[str, Any],
    argv: Sequence[str],
    section: Callable[[dict[str, Any], str], list[str]],
    script: str,
    *,
    as_json: bool,
    write: bool,
) -> None:
    """Prints a stand-alone bench's report (its JSON, or its section as markdown) and, with
    `write`, appends the section, stamped with the time, machine and command, to the results
    file."""
    now = dt.datetime.now().astimezone()
    lines = section(report, "##")
    lines[0] += f" ({now:%Y-%m-%d %H:%M:%S %z})"
    lines += [
        "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
        "",
        f"Command: `{' '.join([script, *argv])}`",
        "",
    ]
    text = "\n".join(lines)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(text)
    if write:
        path = append_results(RESULTS, now, text)
        print(f"appended to {path.relative_to(ROOT)}", file=sys.stderr)

"""Shared pieces of the reliability suite: figures, RSS samples, metrics, a fixed-port receiver."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.receiver import Receiver, Request

ROOT = Path(__file__).resolve().parents[2]
DATAFILE = ROOT / "tests" / "data" / "datafile.json"
FIGURES = ROOT / "build" / "reliability" / "figures.json"


def record(scenario: str, **figures: Any) -> None:
    """Writes one scenario's measured figures into build/reliability/figures.json.

    Scenarios from earlier runs stay in the file with their own timestamp, so running one
    test file refreshes only its rows; `python -m tests.reliability.report` renders the table.
    """
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = json.loads(FIGURES.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        existing = {}
    existing[scenario] = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), **figures}
    FIGURES.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads for pid {pid}")


async def metrics(address: str) -> dict[str, float]:
    """Scrapes http://address/metrics; label sets folded into the name (`name{k=v}`)."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{address}/metrics", timeout=10)
    response.raise_for_status()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TimedReceiver(Receiver):
    """A Receiver on a chosen port (so it can be down, then up, at the same URL) that also
    notes when each request was answered."""

    def __init__(self, port: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port = port
        self.times: list[float] = []

    async def __aenter__(self) -> TimedReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.port = port
        self.url = f"http://{host}:{port}{self.path}"
        return self

    async def _record(self, request: Request) -> None:
        self.times.append(time.monotonic())
        await super()._record(request)


def url_for(port: int, path: str = "/v1/events") -> str:
    return f"http://127.0.0.1:{port}{path}"

"""`trackd serve --workers 2` with no Redis: two processes on one port share their activations
in the host-local store (LMDB under the data dir), out of the box."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.integration.test_decisions_api import DATAFILE
from tests.integration.test_redis_workers import exercise
from tests.support.daemon import spawn
from tests.support.redis_server import free_port


@pytest.mark.slow
def test_two_workers_share_activations_without_redis(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "trackd"
    args = ("--listen", f"127.0.0.1:{port}", "--workers", "2", "--datafile", str(DATAFILE))
    with spawn(data_dir, *args) as process:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # spawn() waited for the first worker only
            started = [line for line in process.log_lines() if line.get("event") == "started"]
            if len(started) == 2:
                break
            time.sleep(0.05)
        assert {line["worker"] for line in started} == {0, 1}
        store = f"local:{(data_dir / 'activations').resolve()}"
        assert {line["activation_store"] for line in started} == {store}
        # Activate and Track each over a new connection: whichever worker answers either,
        # the conversion is attributed.
        asyncio.run(exercise(port, users=40))
        assert process.stop(signal.SIGTERM) == 0
    # The kernel spread the connections: both workers answered Activates.
    for index in (0, 1):
        events = (data_dir / f"worker-{index}" / "events.jsonl").read_text()
        assert "campaign_activated" in events, index

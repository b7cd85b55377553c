"""`trackd serve --workers 2` with no Redis: two processes on one port share their activations
in the host-local store (LMDB under the data dir), out of the box."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_decisions_api import DATAFILE
from tests.integration.test_redis_workers import exercise
from tests.support.daemon import spawn, trackd_command
from tests.support.redis_server import free_port


@pytest.mark.slow
def test_two_workers_share_activations_without_redis(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "trackd"
    args = ("--listen", f"127.0.0.1:{port}", "--workers", "2", "--datafile", str(DATAFILE))
    with spawn(data_dir, *args) as process:
        started = process.started_workers(2)
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


def test_a_store_that_cannot_be_opened_stops_the_start_with_exit_code_2(tmp_path: Path) -> None:
    store = tmp_path / "activations"
    store.mkdir()
    (store / "data.mdb").write_bytes(b"not an LMDB file" * 512)
    done = subprocess.run(
        trackd_command(
            "serve",
            *("--workers", "2", "--listen", f"127.0.0.1:{free_port()}"),
            *("--datafile", str(DATAFILE), "--log-format", "json"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRACKD_DATA_DIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot open the activation store {store}" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr

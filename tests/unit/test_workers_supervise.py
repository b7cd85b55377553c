"""The `--workers` supervisor with stand-in workers (real spawned processes, no daemon)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from trackd import workers
from trackd.config import Settings, SettingsError


def _runs(settings: Settings) -> int:
    """Counts this worker's starts in a file beside its data dir; returns the previous count."""
    marker = settings.data_dir.parent / "runs"
    runs = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(runs + 1))
    return runs


def fails_its_first_start(settings: Settings) -> int:
    _runs(settings)
    return workers.EXIT_STARTUP_FAILURE


def crashes_then_cannot_start_then_serves(settings: Settings) -> int:
    runs = _runs(settings)
    if runs == 0:
        return 1  # a crash
    if runs == 1:
        return workers.EXIT_STARTUP_FAILURE  # a restart that cannot start (a datafile mid-write)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    (settings.data_dir.parent / "serving").touch()  # only now can SIGTERM stop it cleanly
    stop.wait(30)
    return 0


def test_a_failed_first_start_stops_everything_with_exit_code_2(tmp_path: Path) -> None:
    code = workers.supervise(Settings(data_dir=tmp_path), 1, run=fails_its_first_start)
    assert code == workers.EXIT_STARTUP_FAILURE
    assert (tmp_path / "runs").read_text() == "1"  # never restarted


def test_a_restarted_worker_that_cannot_start_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "RESTART_DELAY_S", 0.05)
    marker = tmp_path / "runs"

    def stop_once_serving() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (tmp_path / "serving").exists():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)  # polling: the worker is another process

    stopper = threading.Thread(target=stop_once_serving)
    stopper.start()
    code = workers.supervise(
        Settings(data_dir=tmp_path), 1, run=crashes_then_cannot_start_then_serves
    )
    stopper.join()
    assert code == 0
    assert marker.read_text() == "3"


class _Writes:
    """Stands in for stderr: each write() as it was made."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_failed_start_tells_its_lines_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker of `--workers N` fails at once on the same stderr: written text then
    newline (print), two workers' lines ran together in CI. One write, newlines in it."""
    stderr = _Writes()
    monkeypatch.setattr("sys.stderr", stderr)
    assert workers.startup_failed(SettingsError(["one mistake", "another"])) == 2
    assert stderr.writes == ["trackd: one mistake\ntrackd: another\n"]

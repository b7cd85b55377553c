"""Outboxes a change of `--workers` leaves behind are found, so their events are not forgotten."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from tests.unit.test_outbox_results import A, impression
from trackd.config import Settings
from trackd.events.outbox import Outbox
from trackd.workers import stranded_outboxes, warn_about_stranded_outboxes

REDIS = "redis://127.0.0.1:6379/0"  # never contacted: only the layout matters here


async def outbox_with(path: Path, events: int) -> None:
    outbox = Outbox(path)
    await outbox.open()
    try:
        await outbox.append([impression(f"u{i}", A) for i in range(events)])
    finally:
        await outbox.close()


async def test_outboxes_of_another_worker_count_are_stranded(tmp_path: Path) -> None:
    await outbox_with(tmp_path / "outbox.sqlite3", 2)  # a single-process run
    for index, events in ((0, 1), (1, 0), (2, 3)):  # a three-worker run, worker-1 delivered all
        await outbox_with(tmp_path / f"worker-{index}" / "outbox.sqlite3", events)

    two = Settings(data_dir=tmp_path, workers=2, activation_store=REDIS, listen="127.0.0.1:1")
    assert stranded_outboxes(two) == {
        tmp_path / "outbox.sqlite3": 2,
        tmp_path / "worker-2" / "outbox.sqlite3": 3,
    }
    one = Settings(data_dir=tmp_path)
    assert stranded_outboxes(one) == {
        tmp_path / "worker-0" / "outbox.sqlite3": 1,
        tmp_path / "worker-2" / "outbox.sqlite3": 3,
    }
    with capture_logs() as logs:
        warn_about_stranded_outboxes(one)
    assert sorted((x["event"], x["undelivered"]) for x in logs) == [
        ("stranded_outbox", 1),
        ("stranded_outbox", 3),
    ]


def test_a_fresh_data_dir_strands_nothing(tmp_path: Path) -> None:
    assert stranded_outboxes(Settings(data_dir=tmp_path)) == {}

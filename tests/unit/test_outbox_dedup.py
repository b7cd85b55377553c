"""Exactly-once producers in the outbox: a receipt's (producer_id, sequence) is claimed in the
batch's own transaction, and a claimed key stores nothing and gives back the first ack."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.unit.test_outbox import conversions
from trackd.events.outbox import BatchKey, Outbox, Receipt

WINDOW = 3600.0


def receipt(sequence: int, ack: bytes = b"first", producer: str = "p-1") -> Receipt:
    return Receipt(BatchKey(producer, sequence), ack)


def stored_events(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (n,) = conn.execute("SELECT COALESCE(SUM(n), 0) FROM outbox").fetchone()
    return int(n)


def receipts(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT producer_id, sequence FROM receipts ORDER BY 2").fetchall()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_claimed_key_stores_nothing_and_answers_the_first_ack(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, dedup_window=WINDOW) as outbox:
        assert await outbox.append(conversions(3), receipt(1, b"ack-1")) is None
        assert await outbox.append(conversions(3), receipt(1, b"ack-again")) == b"ack-1"
        # Another sequence, or another producer with the same sequence, is a new batch.
        assert await outbox.append(conversions(2), receipt(2)) is None
        assert await outbox.append(conversions(2), receipt(1, producer="p-2")) is None
        assert stored_events(path) == 7
        assert outbox.depth == outbox.undelivered == 7
        assert (await outbox.stats()).duplicate_batches == 1


async def test_the_same_key_twice_in_one_transaction_is_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, dedup_window=WINDOW) as outbox:
        before = outbox.commits
        answers = await asyncio.gather(
            *(outbox.append(conversions(4), receipt(7, f"ack-{i}".encode())) for i in range(5))
        )
        assert outbox.commits - before < 5  # they did share transactions
        assert answers[0] is None
        assert answers[1:] == [b"ack-0"] * 4
        assert stored_events(path) == 4
        assert outbox.depth == 4


async def test_receipts_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, dedup_window=WINDOW) as outbox:
        await outbox.append(conversions(3), receipt(1, b"ack-1"))
    async with Outbox(path, dedup_window=WINDOW) as outbox:
        assert await outbox.append(conversions(3), receipt(1)) == b"ack-1"
        assert outbox.depth == 3
    assert stored_events(path) == 3


async def test_a_batch_of_no_events_is_remembered_too(tmp_path: Path) -> None:
    """A batch whose every event was invalid stores no row, but its answer is kept."""
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, dedup_window=WINDOW) as outbox:
        assert await outbox.append([], receipt(1, b"all-invalid")) is None
        assert await outbox.append([], receipt(1)) == b"all-invalid"
        assert outbox.depth == 0
    assert stored_events(path) == 0


async def test_a_key_older_than_the_window_is_a_new_batch_and_is_swept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    clock = Clock()
    async with Outbox(path, dedup_window=60.0, clock=clock) as outbox:
        await outbox.append(conversions(1), receipt(1, b"old"))
        await outbox.append(conversions(1), receipt(2, b"old"))
        clock.now += 59.0
        assert await outbox.append(conversions(1), receipt(1)) == b"old"  # within the window
        clock.now += 2.0
        # Past the window: stored again, with its new ack remembered.
        assert await outbox.append(conversions(1), receipt(1, b"new")) is None
        assert await outbox.append(conversions(1), receipt(1)) == b"new"
        assert stored_events(path) == 3
    # Sequence 2 expired unclaimed: deleted by the writer's sweep (here the one at open).
    async with Outbox(path, dedup_window=60.0, clock=clock):
        assert receipts(path) == [("p-1", 1)]


async def test_uint64_sequences_are_distinct_keys(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, dedup_window=WINDOW) as outbox:
        for sequence in (0, 2**63 - 1, 2**63, 2**64 - 1):
            assert await outbox.append(conversions(1), receipt(sequence)) is None
        for sequence in (0, 2**63 - 1, 2**63, 2**64 - 1):
            assert await outbox.append(conversions(1), receipt(sequence)) == b"first"
        assert stored_events(path) == 4


async def test_a_zero_window_turns_deduplication_off(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, dedup_window=0.0) as outbox:
        assert await outbox.append(conversions(2), receipt(1)) is None
        assert await outbox.append(conversions(2), receipt(1)) is None
        assert await outbox.append([], receipt(2)) is None
    assert stored_events(path) == 4
    assert receipts(path) == []


async def test_a_failed_transaction_claims_no_key(tmp_path: Path) -> None:
    """The receipt and the row commit together: a write that fails leaves neither."""
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, dedup_window=WINDOW) as outbox:
        with sqlite3.connect(path) as conn:  # makes the row's INSERT fail after the claim
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON outbox"
                " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        with pytest.raises(Exception, match="disk says no"):
            await outbox.append(conversions(2), receipt(1))
        assert receipts(path) == []
        with sqlite3.connect(path) as conn:
            conn.execute("DROP TRIGGER refuse")
        assert await outbox.append(conversions(2), receipt(1)) is None
        assert outbox.depth == 2
    assert stored_events(path) == 2


def test_dedup_window_is_a_setting_that_must_not_be_negative() -> None:
    from trackd.config import SettingsError, settings_from

    assert settings_from({}, {}).dedup_window == 86400.0
    assert settings_from({"dedup_window": "0"}, {}).dedup_window == 0.0
    assert settings_from({}, {"TRACKD_DEDUP_WINDOW": "90"}).dedup_window == 90.0
    with pytest.raises(SettingsError, match="--dedup-window: must not be negative"):
        settings_from({"dedup_window": "-1"}, {})


async def test_the_writer_sweeps_expired_receipts_inside_its_writes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    clock = Clock()
    async with Outbox(path, dedup_window=60.0, clock=clock) as outbox:
        await outbox.append(conversions(1), receipt(1))
        await outbox.append(conversions(1), receipt(2))
        assert receipts(path) == [("p-1", 1), ("p-1", 2)]
        clock.now += 61.0  # past the window, and a minute since the last sweep
        await outbox.append(conversions(1))  # any write: no receipt of its own
        assert receipts(path) == []

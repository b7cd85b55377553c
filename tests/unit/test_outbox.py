"""The SQLite outbox: committed before acknowledged, shared commits, bounded, crash-proof."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from trackd.datafile import ProjectConfig, parse_datafile
from trackd.errors import FailedPrecondition, OutboxFull, Unavailable
from trackd.events import payload, records
from trackd.events.outbox import DeadLetter, Outbox
from trackd.events.outbox import writer as outbox_writer
from trackd.events.records import Record
from trackd.events.tags import parse_tags

DATAFILE_PATH = Path(__file__).parents[1] / "data" / "datafile.json"
DATAFILE = json.loads(DATAFILE_PATH.read_text())
REPO = Path(__file__).parents[2]


def _config(**changes: Any) -> ProjectConfig:
    document = copy.deepcopy(DATAFILE)
    document.update(changes)
    return parse_datafile(json.dumps(document))


CONFIG = _config()


def conversions(n: int, user: str = "u", config: ProjectConfig = CONFIG) -> list[Record]:
    event = config.events_by_key["my_conversion"]
    tags = parse_tags({"revenue": 100})
    return [
        records.conversion(config, event, f"{user}{i}", {}, tags, [], now_ms=1) for i in range(n)
    ]


def _rows(path: Path) -> list[tuple[int, int, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, n, sent FROM outbox ORDER BY id").fetchall()


async def test_append_returns_once_the_row_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path) as outbox:
        await outbox.append(conversions(3))
        # Another connection sees it before anything is closed or flushed.
        assert [(n, sent) for _, n, sent in _rows(path)] == [(3, 0)]
        assert outbox.depth == outbox.undelivered == 3


async def test_a_round_of_unary_appends_alone_commits_as_one_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer round holding only unary calls' records is its INSERT alone, committed by
    SQLite as its own transaction: every statement costs the writer thread a GIL handoff
    with the event loop, and BEGIN and COMMIT around it cost two more. A round with an
    acknowledgement still runs in a transaction of its own."""
    monkeypatch.setattr(outbox_writer, "_IDLE_S", 60.0)  # no results step meanwhile
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path) as outbox:
        writer = outbox._writer
        assert writer is not None
        ran: list[str] = []
        writer._conn.set_trace_callback(ran.append)
        await outbox.append(conversions(2))
        await outbox.append(conversions(1))
        assert [statement.split(" (")[0] for statement in ran] == ["INSERT INTO outbox"] * 2
        assert [(n, sent) for _, n, sent in _rows(path)] == [(2, 0), (1, 0)]
        ran.clear()
        (first, _) = await outbox.read(0, 10)
        assert await outbox.ack([(first.row_id, 2)]) == 2
        writer._conn.set_trace_callback(None)
        assert (ran[0], ran[-1]) == ("BEGIN IMMEDIATE", "COMMIT")


async def test_unary_appends_over_a_transaction_left_open_fail_instead_of_hanging_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a transaction left open on the writer's connection (a ROLLBACK that failed), a
    bare INSERT would sit in it uncommitted while its calls were answered: the round takes
    the explicit path, whose BEGIN fails it, and the callers hear Unavailable."""
    monkeypatch.setattr(outbox_writer, "_IDLE_S", 60.0)  # no results step meanwhile
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        writer = outbox._writer
        assert writer is not None
        writer._conn.execute("BEGIN")
        with pytest.raises(Unavailable):
            await outbox.append(conversions(1))
        # The failed round's ROLLBACK ended that transaction too: the next round commits.
        assert not writer._conn.in_transaction
        await outbox.append(conversions(1))
        assert outbox.depth == 1


async def test_an_ack_of_rows_results_have_not_counted_tries_no_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged rows are deleted once results have counted them too: an ack of rows
    the results cursor has not reached keeps them (and runs no DELETE for nothing, one GIL
    handoff less), and the results step deletes them as it counts them."""
    monkeypatch.setattr(outbox_writer, "_IDLE_S", 60.0)  # no results step meanwhile
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path) as outbox:
        writer = outbox._writer
        assert writer is not None
        await outbox.append(conversions(2))
        (row,) = await outbox.read(0, 10)
        ran: list[str] = []
        writer._conn.set_trace_callback(ran.append)
        assert await outbox.ack([(row.row_id, 2)]) == 2
        writer._conn.set_trace_callback(None)
        assert not [statement for statement in ran if statement.startswith("DELETE")]
        assert _rows(path) == [(row.row_id, 2, 2)]
        await outbox.results(CONFIG, CONFIG.experiments_by_key["ab_running"])
        assert _rows(path) == []


async def test_concurrent_appends_share_commits(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        before = outbox.commits
        batches = [conversions(5, user=f"b{i}-") for i in range(200)]
        await asyncio.gather(*(outbox.append(batch) for batch in batches))
        assert outbox.undelivered == 1000
        # Far fewer transactions than appends, and the records of one transaction share
        # its row, each append's records kept together and in their order.
        commits = outbox.commits - before
        assert commits < 100
        rows = await outbox.read(0, 1000)
        assert 1 <= len(rows) <= commits
        assert sum(row.n for row in rows) == 1000
        users = [record.user_id for row in rows for record in row.records]
        assert sorted(users) == sorted(r.user_id for batch in batches for r in batch)
        for batch in batches:
            first = users.index(batch[0].user_id)
            assert users[first : first + 5] == [r.user_id for r in batch]


async def test_an_append_past_the_cap_raises_outbox_full_and_writes_nothing(
    tmp_path: Path,
) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3", max_events=10) as outbox:
        await outbox.append(conversions(8))
        with pytest.raises(OutboxFull, match="10 events"):
            await outbox.append(conversions(3))
        assert outbox.depth == 8
        assert len(_rows(outbox.path)) == 1
        await outbox.append(conversions(2))
        assert outbox.depth == 10


def decision_events(user: str, flags: int) -> records.DecisionEvents:
    """A Decide call's events as the tracker appends them: one record for `flags` events."""
    tails = tuple(
        (f"r{flag}", f"rule{flag}", f"r{flag}", f"v{flag}", "on", f"flag{flag}", "rollout", True)
        for flag in range(flags)
    )
    return records.DecisionEvents(
        records.DECISIONS, records.context_of(CONFIG), 7, 1, user, (), tails
    )


async def test_a_decide_calls_one_record_counts_as_its_events(tmp_path: Path) -> None:
    """A `DecisionEvents` record is as many events as it has tails wherever the outbox
    counts: the cap, the depth, the row's n, its records read back, and acknowledgements."""
    async with Outbox(tmp_path / "outbox.sqlite3", max_events=10) as outbox:
        first, second = decision_events("u1", 3), decision_events("u2", 4)
        await asyncio.gather(outbox.append([first]), outbox.append([second]))
        assert outbox.depth == outbox.undelivered == 7
        with pytest.raises(OutboxFull, match="10 events"):
            await outbox.append([decision_events("u3", 4)])
        assert sum(n for _, n, _ in _rows(outbox.path)) == 7
        rows = await outbox.read(0, 10)
        read = [record for row in rows for record in row.records]
        assert len(read) == sum(row.n for row in rows) == 7
        assert sorted(read) == sorted(
            records.from_plain(records.impression_tuples(first) + records.impression_tuples(second))
        )
        assert await outbox.ack([(row.row_id, row.n) for row in rows]) == 7
        assert outbox.depth == outbox.undelivered == 0
        assert (await outbox.stats()).delivered_events == 7


async def test_the_cap_counts_appends_still_being_committed(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3", max_events=10) as outbox:
        outcomes = await asyncio.gather(
            *(outbox.append(conversions(4)) for _ in range(5)), return_exceptions=True
        )
        assert sum(o is None for o in outcomes) == 2
        assert all(isinstance(o, OutboxFull) for o in outcomes if o is not None)
        assert outbox.depth == 8


async def test_delivered_events_free_room_under_the_cap(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3", max_events=5) as outbox:
        await outbox.append(conversions(5))
        (row,) = await outbox.read(0, 10)
        assert await outbox.ack([(row.row_id, 5)]) == 5
        await outbox.append(conversions(5))
        assert outbox.depth == 5


async def test_reopening_finds_every_committed_event(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    batch = conversions(4)
    async with Outbox(path) as outbox:
        await outbox.append(batch)
        await outbox.append(conversions(2))
    async with Outbox(path) as outbox:
        assert outbox.depth == 6
        rows = await outbox.read(0, 10)
        assert [len(r.records) for r in rows] == [4, 2]
        assert list(rows[0].records) == batch


async def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path):
        with pytest.raises(FailedPrecondition, match="in use"):
            await Outbox(path).open()


async def test_append_after_close_is_unavailable(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    await outbox.open()
    await outbox.close()
    with pytest.raises(Unavailable):
        await outbox.append(conversions(1))


async def test_a_cancelled_append_is_still_committed_and_counted(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        task = asyncio.ensure_future(outbox.append(conversions(3, user="cancelled-")))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await outbox.append(conversions(1, user="later-"))  # queued after it: stored after it
        assert outbox.undelivered == 4
        rows = await outbox.read(0, 10)
        assert [record.user_id for row in rows for record in row.records] == [
            "cancelled-0",
            "cancelled-1",
            "cancelled-2",
            "later-0",
        ]


async def test_acks_are_idempotent_and_partial(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        await outbox.append(conversions(10))
        (row,) = await outbox.read(0, 10)
        assert await outbox.ack([(row.row_id, 4)]) == 4
        assert await outbox.ack([(row.row_id, 4)]) == 0
        (again,) = await outbox.read(0, 10)
        assert again.sent == 4
        assert outbox.undelivered == 6
        assert await outbox.ack([(row.row_id, 10)]) == 6
        assert await outbox.read(0, 10) == []
        assert (await outbox.stats()).delivered_events == 10


async def test_one_ack_covers_many_rows_and_counts_each_event_once(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        for _ in range(5):
            await outbox.append(conversions(2))
        ids = [row.row_id for row in await outbox.read(0, 10)]
        await outbox.ack([(ids[0], 1)])
        # Rows out of order, one named twice, one past its end, one that does not exist.
        progress = [(ids[2], 2), (ids[0], 2), (ids[1], 1), (ids[1], 2), (ids[3], 9), (999, 1)]
        assert await outbox.ack(progress) == 1 + 2 + 2 + 2
        assert [(row.row_id, row.sent) for row in await outbox.read(0, 10)] == [(ids[4], 0)]
        assert outbox.undelivered == 2
        assert (await outbox.stats()).delivered_events == 8


async def test_a_read_stops_once_it_holds_enough_events(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        for n in (3, 3, 3, 3):
            await outbox.append(conversions(n))
        first = await outbox.read(0, 10)
        await outbox.ack([(first[0].row_id, 2)])  # one event of the first row left
        rows = await outbox.read(0, 10, max_events=4)
        assert [(r.n - r.sent) for r in rows] == [1, 3]  # 4 events: no third row
        assert len(await outbox.read(0, 10, max_events=5)) == 3
        assert len(await outbox.read(0, 2, max_events=100)) == 2  # the row limit holds too


async def test_dead_letters_are_stored_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path) as outbox:
        await outbox.append(conversions(3))
        (row,) = await outbox.read(0, 10)
        letter = DeadLetter(400, "bad request", 3, b'{"visitors":[]}')
        assert await outbox.ack([(row.row_id, 3)], letter) == 3
        (stored,) = await outbox.dead_letters()
        assert (stored.status, stored.reason, stored.events, stored.body) == (
            400,
            "bad request",
            3,
            b'{"visitors":[]}',
        )
        assert outbox.depth == 0
    async with Outbox(path) as outbox:
        assert (await outbox.stats()).dead_lettered_events == 3


async def test_stats_report_depth_and_the_oldest_undelivered_age(tmp_path: Path) -> None:
    now = [1000.0]
    async with Outbox(tmp_path / "outbox.sqlite3", clock=lambda: now[0]) as outbox:
        assert (await outbox.stats()).oldest_age_s is None
        await outbox.append(conversions(2))
        now[0] = 1010.0
        await outbox.append(conversions(1))
        now[0] = 1025.5
        stats = await outbox.stats()
        assert stats.depth_events == 3
        assert stats.oldest_age_s == pytest.approx(25.5)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from trackd.datafile import parse_datafile
    from trackd.events import records
    from trackd.events.outbox import Outbox

    config = parse_datafile(open(sys.argv[2]).read())
    event = config.events_by_key["my_conversion"]

    async def main() -> None:
        outbox = Outbox(sys.argv[1], synchronous=sys.argv[3])
        await outbox.open()
        i = 0
        while True:
            batch = [
                records.conversion(
                    config, event, f"u{i}-{j}", {}, {"revenue": 2}, [("40001", "42001")], now_ms=i
                )
                for j in range(50)
            ]
            await outbox.append(batch)
            print(" ".join(r.uuid for r in batch), flush=True)
            i += 1

    asyncio.run(main())
    """
)


def run_and_kill(path: Path, lines: int, synchronous: str = "FULL") -> list[str]:
    """Runs a process appending batches, SIGKILLs it after `lines` acknowledged batches and
    returns the uuids it saw acknowledged."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(DATAFILE_PATH), synchronous],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        for _ in range(lines):
            acknowledged += child.stdout.readline().decode().split()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    return acknowledged


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
async def test_every_acknowledged_event_survives_sigkill(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "outbox.sqlite3"
    acknowledged = await asyncio.to_thread(run_and_kill, path, 40, synchronous)
    assert len(acknowledged) == 40 * 50
    async with Outbox(path) as outbox:
        stored = {r.uuid for row in await outbox.read(0, 10_000) for r in row.records}
        assert set(acknowledged) <= stored
        assert outbox.depth == len(stored)


# A row exactly as trackd before the per-batch uuid draw wrote it (format 1: pickle of plain
# record tuples, uuids from uuid4-style draws): an impression and a conversion.
_FORMAT_1_ROW = bytes.fromhex(
    "80059569010000000000005d9428284b00288c053132303031948c053132303032948c0137948874948c24"
    "37643063326331612d316232652d346633612d386335642d366537663861396230633164948a06c869e5cf"
    "8b018c027532948c053230303031948c06646576696365948c07416e64726f69649487948c12246f70745f"
    "626f745f66696c746572696e6794680b89879486948c053430303031948c0a61625f72756e6e696e67948c"
    "053431303031948c053432303032948c0b766172696174696f6e5f62947494284b0168048c243062366231"
    "6638652d356437612d346331652d396134662d336632663666306538633131948a067b68e5cf8b018c0275"
    "3194680768088c066950686f6e65948794680b680b89879486948c053630303031948c0d6d795f636f6e76"
    "657273696f6e944d13054e7d94288c07726576656e7565944d13058c0863617465676f7279948c0573686f"
    "657394758c053430303031948c05343230303194869485947494652e"
)


async def test_a_row_written_by_an_earlier_trackd_is_read_and_encoded(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO outbox (created_ms, n, fmt, body) VALUES (1, 2, 1, ?)", (_FORMAT_1_ROW,)
        )
    context = ("12001", "12002", "7", True)
    bot_filtering = ("$opt_bot_filtering", "$opt_bot_filtering", False)
    async with Outbox(path) as outbox:
        assert outbox.undelivered == 2
        (row,) = await outbox.read(0, 10)
    assert row.fmt == 1
    assert row.records == (
        records.Impression(
            0, context, "7d0c2c1a-1b2e-4f3a-8c5d-6e7f8a9b0c1d", 1_700_000_000_456, "u2",
            (("20001", "device", "Android"), bot_filtering),
            "40001", "ab_running", "41001", "42002", "variation_b",
        ),
        records.Conversion(
            1, context, "0b6b1f8e-5d7a-4c1e-9a4f-3f2f6f0e8c11", 1_700_000_000_123, "u1",
            (("20001", "device", "iPhone"), bot_filtering), "60001", "my_conversion", 1299,
            None, {"revenue": 1299, "category": "shoes"}, (("40001", "42001"),),
        ),
    )  # fmt: skip
    batch = json.loads(payload.encode_batch(context, [tuple(r) for r in row.records]))
    assert [v["snapshots"][0]["events"][0]["uuid"] for v in batch["visitors"]] == [
        "7d0c2c1a-1b2e-4f3a-8c5d-6e7f8a9b0c1d",
        "0b6b1f8e-5d7a-4c1e-9a4f-3f2f6f0e8c11",
    ]

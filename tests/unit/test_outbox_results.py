"""Experiment results: counted from committed rows exactly once, surviving restarts."""

from __future__ import annotations

import asyncio
import json
import pickle
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_outbox import run_and_kill
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.events import records, results
from trackd.events.outbox import Outbox
from trackd.events.outbox.writer import Writer
from trackd.events.records import Record
from trackd.events.results import EventResults, ExperimentResults, VariationResults
from trackd.events.tags import parse_tags

DATAFILE = json.loads((Path(__file__).parents[1] / "data" / "datafile.json").read_text())
CONFIG = parse_datafile(json.dumps(DATAFILE))
EXPERIMENT = CONFIG.experiments_by_key["ab_running"]
A, B = EXPERIMENT.variations  # 42001 variation_a, 42002 variation_b


def impression(user: str, variation: Any, config: ProjectConfig = CONFIG) -> Record:
    experiment = config.experiments_by_key["ab_running"]
    return records.impression(config, experiment, variation, user, {}, now_ms=1)


def conversion(
    user: str, event_key: str, tags: dict[str, Any], attributions: list[tuple[str, str]]
) -> Record:
    return records.conversion(
        CONFIG, CONFIG.events_by_key[event_key], user, {}, parse_tags(tags), attributions, now_ms=2
    )


def event_results(results: ExperimentResults, variation_key: str) -> dict[str, EventResults]:
    (variation,) = [v for v in results.variations if v.variation_key == variation_key]
    return {e.event_key: e for e in variation.events}


SCENARIO: list[list[Record]] = [
    [impression("u1", A), impression("u2", A), impression("u3", B)],
    [impression("u1", A)],  # a repeat: still one visitor
    [
        conversion("u1", "my_conversion", {"revenue": 100, "value": 1.5}, [("40001", "42001")]),
        conversion("u1", "my_conversion", {"revenue": 50}, [("40001", "42001")]),
        conversion("u2", "my_conversion", {"value": 2.0}, [("40001", "42001")]),
        conversion("u3", "signup", {"revenue": 7}, [("40001", "42002"), ("40002", "42003")]),
        conversion("u4", "signup", {}, []),  # no attribution: counted nowhere
    ],
]

EXPECTED = ExperimentResults(
    "ab_running",
    "40001",
    (
        VariationResults(
            "variation_a",
            "42001",
            2,
            (EventResults("my_conversion", 2, 3, 150, 3.5),),
        ),
        VariationResults(
            "variation_b",
            "42002",
            1,
            (
                EventResults("my_conversion", 0, 0, 0, 0.0),
                EventResults("signup", 1, 1, 7, 0.0),
            ),
        ),
    ),
)


async def test_results_count_unique_visitors_converters_totals_and_sums(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        for batch in SCENARIO:
            await outbox.append(batch)
        assert await outbox.results(CONFIG, EXPERIMENT) == EXPECTED
        other = CONFIG.experiments_by_key["ab_iphone"]
        iphone = await outbox.results(CONFIG, other)
        assert event_results(iphone, "control")["signup"] == EventResults("signup", 1, 1, 7, 0.0)


async def test_results_survive_a_restart_and_keep_counting(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path) as outbox:
        for batch in SCENARIO:
            await outbox.append(batch)
        await outbox.results(CONFIG, EXPERIMENT)
    async with Outbox(path) as outbox:
        assert await outbox.results(CONFIG, EXPERIMENT) == EXPECTED
        await outbox.append([impression("u9", B), impression("u1", A)])
        results = await outbox.results(CONFIG, EXPERIMENT)
        assert [v.visitors for v in results.variations] == [2, 2]


async def test_rows_delivered_and_counted_are_deleted(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        await outbox.append(SCENARIO[0])
        await outbox.results(CONFIG, EXPERIMENT)
        (row,) = await outbox.read(0, 10)
        await outbox.ack([(row.row_id, 3)])
        with sqlite3.connect(outbox.path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)


async def test_a_delivered_row_is_kept_until_results_have_counted_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.sqlite3"
    # Hold the results consumer back, as if the writer never went idle.
    monkeypatch.setattr(Writer, "_results_step", lambda self, max_events: False)
    async with Outbox(path) as outbox:
        await outbox.append(SCENARIO[0])
        (row,) = await outbox.read(0, 10)
        await outbox.ack([(row.row_id, 3)])
        assert outbox.undelivered == 0
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT n, sent FROM outbox").fetchall() == [(3, 3)]
    monkeypatch.undo()
    async with Outbox(path) as outbox:
        results = await outbox.results(CONFIG, EXPERIMENT)
        assert [v.visitors for v in results.variations] == [2, 1]
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)


async def test_row_ids_are_never_reused_so_nothing_escapes_the_results_cursor(
    tmp_path: Path,
) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        await outbox.append([impression("u1", A)])
        await outbox.results(CONFIG, EXPERIMENT)
        (row,) = await outbox.read(0, 10)
        await outbox.ack([(row.row_id, 1)])  # the table is now empty
        await outbox.append([impression("u2", A)])
        results = await outbox.results(CONFIG, EXPERIMENT)
        assert results.variations[0].visitors == 2


async def test_results_after_sigkill_count_every_stored_event_exactly_once(
    tmp_path: Path,
) -> None:
    """The child counts results while it appends; killed at any point, the reopened outbox
    holds counts that match the stored events exactly: none lost, none counted twice."""
    path = tmp_path / "outbox.sqlite3"
    acknowledged = await asyncio.to_thread(run_and_kill, path, 60)
    async with Outbox(path) as outbox:
        stored = sum(len(row.records) for row in await outbox.read(0, 100_000))
        assert stored >= len(acknowledged)
        results = await outbox.results(CONFIG, EXPERIMENT)
        counted = event_results(results, "variation_a")["my_conversion"]
        assert (counted.conversions, counted.converters, counted.revenue) == (
            stored,
            stored,
            2 * stored,
        )


async def test_user_ids_that_differ_after_a_nul_are_distinct_visitors(tmp_path: Path) -> None:
    # SQLite's json_each cuts strings at NUL; gRPC strings may carry one.
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        await outbox.append([impression("a\x00b", A), impression("a\x00c", A), impression("a", A)])
        results = await outbox.results(CONFIG, EXPERIMENT)
        assert [v.visitors for v in results.variations] == [3, 0]


async def test_under_load_that_never_idles_results_are_counted_within_a_quarter_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counters (and fleet-wide results published from them) trail commits by a bounded
    time, not by a number of events: load that never lets the writer idle, far below
    100,000 events, still gets counted."""
    from trackd.events.outbox import writer

    monkeypatch.setattr(writer, "_IDLE_S", 3600.0)  # the writer never counts for being idle
    counted = threading.Event()  # set on the writer thread
    appended = 0

    def observe(conn: sqlite3.Connection, *counts: Any) -> None:
        counted.set()

    async with Outbox(tmp_path / "outbox.sqlite3", results_observer=observe) as outbox:

        async def append_until_counted() -> None:
            nonlocal appended
            while not counted.is_set() and appended < 60_000:
                await outbox.append([impression(f"load-{appended}", A)] * 10)
                appended += 10

        await asyncio.gather(*(append_until_counted() for _ in range(8)))
        assert counted.is_set(), f"{appended} events committed, none counted"
        assert appended < 60_000


def test_only_ab_test_impressions_are_counted_as_visitors() -> None:
    """Activate's and feature tests' impressions count; rollouts' and holdouts' decision
    events have no results and are never attributed, so they add no members."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(results.SCHEMA)

    def flag(user: str, rule_type: str, experiment_id: str) -> Record:
        record = impression(user, A)
        assert isinstance(record, records.Impression)
        return record._replace(experiment_id=experiment_id, flag_key="f", rule_type=rule_type)

    row = [
        flag("u1", records.RULE_TYPE_FEATURE_TEST, "40001"),
        flag("u2", records.RULE_TYPE_ROLLOUT, "81001"),
        flag("u3", records.RULE_TYPE_ROLLOUT, ""),
        flag("u4", records.RULE_TYPE_HOLDOUT, "90001"),
    ]
    fmt, body = records.encode_row(row)
    # An Activate impression as the version before flags stored it: eleven fields.
    old = pickle.dumps([tuple(impression("u5", A))[:11]], protocol=5)
    assert results.Counter().consume(conn, [(1, fmt, body), (2, records.ROW_FORMAT, old)]) == 5
    assert results.query(conn, "40001").visitors == {"42001": 2}
    assert conn.execute("SELECT COUNT(*) FROM results_members").fetchone() == (2,)


def test_a_stream_batch_row_counts_as_its_records_without_drawing_its_uuids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TrackStream batch (a columns row) is counted from its columns: the same results as
    the same conversions stored as records, and its uuids, which results never read, are not
    expanded (that was most of the writer thread's time, holding the GIL, under a stream of
    new users)."""
    batch = records.ConversionColumns(CONFIG, 2)
    for user, event_key, tags, attributions in [
        ("u1", "my_conversion", {"revenue": 100, "value": 1.5}, (("40001", "42001"),)),
        ("u9", "my_conversion", {"revenue": 3}, ()),  # unattributed: counted nowhere
        ("u1", "my_conversion", {"revenue": 50}, (("40001", "42001"),)),
        ("u3", "signup", {"revenue": 7}, (("40001", "42002"), ("40002", "42003"))),
    ]:
        batch.add(CONFIG.events_by_key[event_key], user, {}, parse_tags(tags), attributions)
    fmt, body = records.encode_row(batch)
    assert fmt == records.COLUMNS_FORMAT
    as_records = records.encode_rows(batch.records())

    def counted(row: tuple[int, int, bytes]) -> ExperimentResults:
        conn = sqlite3.connect(":memory:")
        conn.executescript(results.SCHEMA)
        assert results.Counter().consume(conn, [row]) == 4
        return results.assemble(results.query(conn, "40001"), CONFIG, EXPERIMENT)

    expected = counted((1, records.ROW_FORMAT, as_records))
    assert event_results(expected, "variation_a")["my_conversion"] == EventResults(
        "my_conversion", 1, 2, 150, 1.5
    )

    def no_uuids(seed: int, count: int) -> str:
        raise AssertionError("results expanded a batch's uuids")

    monkeypatch.setattr(records, "batch_uuids", no_uuids)
    assert counted((1, fmt, body)) == expected


async def test_the_writer_counts_its_own_rows_from_their_records_without_decoding_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows the writer encoded in this run are counted from the records it encoded them
    from: the same results, and no row pickled a moment ago is unpickled again on the
    writer thread (a Decide's rows, ~50 events a call, cost it ~0.5 us an event)."""

    def no_decoding(body: bytes, fmt: int = records.ROW_FORMAT) -> list[tuple[Any, ...]]:
        raise AssertionError("a row the writer encoded was decoded again")

    monkeypatch.setattr(results, "decode_unexpanded", no_decoding)
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        for batch in SCENARIO:
            await outbox.append(batch)
        assert await outbox.results(CONFIG, EXPERIMENT) == EXPECTED


def test_known_rows_count_as_their_records_beside_rows_decoded_from_their_bodies() -> None:
    """`consume` with some rows' records known: those count from the records (their
    bodies unread), the others, an old eleven-field impression row included, from their
    bodies; the counts are those of decoding every row."""
    flag_row: list[Record] = [
        record._replace(flag_key="f", rule_type=rule_type)
        for record, rule_type in [
            (impression("u1", A), records.RULE_TYPE_FEATURE_TEST),
            (impression("u2", B), records.RULE_TYPE_ROLLOUT),
            (impression("u3", B), records.RULE_TYPE_FEATURE_TEST),
        ]
        if isinstance(record, records.Impression)
    ]
    old = pickle.dumps([tuple(impression("u5", A))[:11]], protocol=5)
    rows = [
        (1, *records.encode_row(flag_row)),
        (2, records.ROW_FORMAT, old),
        (3, *records.encode_row(SCENARIO[2])),
    ]

    decoded = _counted(rows, {})
    unreadable = [(1, records.ROW_FORMAT, b"not a pickle"), rows[1], (3, records.ROW_FORMAT, b"")]
    assert _counted(unreadable, {1: flag_row, 3: SCENARIO[2]}) == decoded
    seen, raw, _ = decoded
    assert seen == 9
    assert raw.visitors == {"42001": 2, "42002": 1}


def _counted(rows: list[tuple[int, int, bytes]], known: Any = None) -> Any:
    """What a results step counts of `rows` (with the writer's `known` records) in a fresh
    database: the events seen, ab_running's counts and every member row."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(results.SCHEMA)
    seen = results.Counter().consume(conn, rows, known or {})
    members = conn.execute("SELECT * FROM results_members ORDER BY 1, 2").fetchall()
    return seen, results.query(conn, "40001"), members


def _feature_test_events(user: str, variation: Any) -> records.DecisionEvents:
    """A Decide call's events as one record: ab_running decided as a feature test (counted),
    then a rollout's and a holdout's decision (never counted)."""
    tails: tuple[records.EventTail, ...] = (
        ("40001", "ab_running", "41001", variation.id, variation.key, "f", "feature-test", True),
        ("81001", "pro_rule", "81009", "82001", "on", "g", "rollout", True),
        ("90001", "holdout", "90001", "92001", "off", "h", "holdout", False),
    )
    return records.DecisionEvents(
        records.DECISIONS, records.context_of(CONFIG), 99, 1, user, (), tails
    )


def test_decision_events_count_as_their_impressions_without_drawing_their_uuids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Decide call's `DecisionEvents` is counted from its tails, known or read from its
    row: the same visitors as its impressions stored one by one, every event seen, and no
    uuid drawn on the writer thread."""
    calls = [_feature_test_events("u1", A), _feature_test_events("u2", B)]
    row: list[records.OutboxRecord] = [impression("u3", A), *calls, impression("u1", A)]
    expanded = records.decode_rows(records.encode_rows(row))
    assert len(expanded) == 8

    one_by_one = _counted([(1, *records.encode_row(expanded))], {})
    assert one_by_one[:2] == (8, results.RawCounts({"42001": 2, "42002": 1}, {}))

    def no_uuids(seed: int, count: int) -> str:
        raise AssertionError("results drew a record's uuids")

    monkeypatch.setattr(records, "batch_uuids", no_uuids)
    assert _counted([(1, *records.encode_row(row))], {}) == one_by_one
    assert _counted([(1, records.ROW_FORMAT, b"unread")], {1: row}) == one_by_one


def test_a_row_with_a_malformed_record_is_skipped_whole_and_the_others_counted() -> None:
    """A tampered or torn row (its Decide record's tail cut short: the dispatcher dead-letters
    it) is skipped by the counter, none of it counted, instead of raising: raising rolled the
    results step back and retried it forever, holding the cursor."""
    good = _feature_test_events("u1", A)
    cut_short: Any = (good.tails[0], good.tails[1][:3])
    short = good._replace(user_id="u2", tails=cut_short)
    rows = [
        (1, *records.encode_row([impression("u3", B), short])),
        (2, *records.encode_row([good])),
    ]
    _, raw, members = _counted(rows)
    assert raw == results.RawCounts({"42001": 1}, {})
    assert [user for _, user in members] == ["u1"]


async def test_get_results_after_a_decide_calls_one_record_counts_its_feature_test(
    tmp_path: Path,
) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        await outbox.append([_feature_test_events("u1", A)])
        await outbox.append([_feature_test_events("u2", A), _feature_test_events("u1", A)])
        found = await outbox.results(CONFIG, EXPERIMENT)
    assert [(v.variation_key, v.visitors) for v in found.variations] == [
        ("variation_a", 2),
        ("variation_b", 0),
    ]

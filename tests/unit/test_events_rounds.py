"""Forming a delivery round from outbox rows as stored (what the encoder process runs)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.test_outbox import _config, conversions, decision_events
from trackd.datafile import ProjectConfig
from trackd.events import payload, records, rounds
from trackd.events.records import ROW_FORMAT, Record, decode_rows, decode_stored, encode_rows
from trackd.events.rounds import RowPart, form_round


def row(row_id: int, events: list[Record], sent: int = 0) -> RowPart:
    return (row_id, len(events), sent, ROW_FORMAT, encode_rows(events))


def visitors(body: bytes) -> list[str]:
    return [v["visitor_id"] for v in json.loads(body)["visitors"]]


def test_full_batches_follow_the_first_and_a_partial_one_waits() -> None:
    rows = [row(1, conversions(25, "a")), row(2, conversions(10, "b"), sent=2)]
    formed = form_round(rows, batch_size=10, max_batches=16)
    # 23 + 8 = 33 events: three full batches; the last 3 wait for their flush interval.
    assert [f.events for f in formed] == [10, 10, 10]
    assert [f.progress for f in formed] == [((1, 10),), ((1, 20),), ((1, 25), (2, 7))]
    assert visitors(formed[2].body) == [
        "a20",
        "a21",
        "a22",
        "a23",
        "a24",
        "b2",
        "b3",
        "b4",
        "b5",
        "b6",
    ]
    assert all(f.error is None for f in formed)


def test_the_first_batch_goes_whatever_its_size() -> None:
    (formed,) = form_round([row(7, conversions(3), sent=1)], batch_size=10, max_batches=16)
    assert (formed.progress, formed.events, visitors(formed.body)) == (((7, 3),), 2, ["u1", "u2"])


def test_a_round_holds_at_most_max_batches() -> None:
    formed = form_round([row(1, conversions(50))], batch_size=5, max_batches=3)
    assert [f.progress for f in formed] == [((1, 5),), ((1, 10),), ((1, 15),)]


def test_a_batch_never_mixes_contexts() -> None:
    old, new = (
        conversions(3, "o", _config(revision="7")),
        conversions(3, "n", _config(revision="8")),
    )
    formed = form_round([row(1, old + new)], batch_size=2, max_batches=16)
    assert [(json.loads(f.body)["revision"], f.events) for f in formed] == [
        ("7", 2),
        ("7", 1),
        ("8", 2),
    ]  # the last one ("8", 1) is partial and waits
    assert formed[1].progress == ((1, 3),)


def test_a_context_that_comes_back_starts_a_new_batch_and_the_order_is_kept() -> None:
    """Batches are consecutive runs of one context, at most batch_size long: a revision that
    returns after another is a batch of its own, never merged with its earlier events."""
    old, new = _config(revision="7"), _config(revision="8")
    events = conversions(5, "a", old) + conversions(3, "b", new) + conversions(1, "c", old)
    formed = form_round([row(1, events)], batch_size=2, max_batches=16)
    (rest,) = form_round([row(1, events, sent=8)], batch_size=2, max_batches=16)
    batches = [*formed, rest]
    assert [(json.loads(f.body)["revision"], f.events) for f in batches] == [
        ("7", 2),
        ("7", 2),
        ("7", 1),
        ("8", 2),
        ("8", 1),
        ("7", 1),
    ]
    assert [v for f in batches for v in visitors(f.body)] == [e.user_id for e in events]


def test_the_bytes_are_what_the_payload_module_makes() -> None:
    events = conversions(4)
    (formed,) = form_round([row(1, events)], batch_size=10, max_batches=16)
    assert formed.body == payload.encode_batch(events[0].context, events)


def test_an_undecodable_row_ends_the_batch_before_it_and_is_a_round_of_its_own() -> None:
    broken: RowPart = (2, 2, 0, ROW_FORMAT, b"\x00\xff")
    rows = [row(1, conversions(3)), broken, row(3, conversions(30))]
    (first,) = form_round(rows, batch_size=10, max_batches=16)
    assert (first.progress, first.error) == (((1, 3),), None)
    (dead,) = form_round(rows[1:], batch_size=10, max_batches=16)
    assert dead.progress == ((2, 2),)
    assert (dead.events, dead.body) == (2, b"\x00\xff")
    assert dead.error is not None and dead.error.startswith("undecodable outbox row")


def test_a_row_holding_other_than_n_events_is_undecodable() -> None:
    (_, _, sent, fmt, body) = row(4, conversions(3))
    (dead,) = form_round([(4, 5, sent, fmt, body)], batch_size=10, max_batches=16)
    assert dead.error == "undecodable outbox row: the row holds 3 events, not 5"
    assert dead.progress == ((4, 5),)


def test_a_row_the_last_round_ended_inside_is_not_decoded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next round starts where the last one stopped, inside the same row: its decoded
    records are kept from the last round, and the bytes are those of a fresh decode."""
    events = conversions(30)
    first, later = row(1, events), row(2, conversions(5, "v"))
    calls: list[bytes] = []

    def counted(body: bytes, fmt: int) -> Any:
        calls.append(body)
        return decode_stored(body, fmt)

    monkeypatch.setattr(rounds, "decode_stored", counted)
    (one,) = form_round([first], batch_size=10, max_batches=1)
    (two,) = form_round([(1, 30, 10, ROW_FORMAT, first[4]), later], batch_size=10, max_batches=1)
    assert calls == [first[4]]  # row 1 once; row 2 not reached
    assert two.body == payload.encode_batch(events[0].context, events[10:20])
    assert (one.progress, two.progress) == (((1, 10),), ((1, 20),))


def test_a_row_id_kept_from_the_last_round_with_other_bytes_is_decoded_anew() -> None:
    """Another outbox, or a database made anew, reuses row ids: only equal bytes are the
    same row."""
    form_round([row(1, conversions(3, "a"))], batch_size=10, max_batches=16)
    (formed,) = form_round([row(1, conversions(3, "b"))], batch_size=10, max_batches=16)
    assert visitors(formed.body) == ["b0", "b1", "b2"]


def test_a_round_over_decide_calls_records_is_the_round_over_their_impressions() -> None:
    """Rows of `DecisionEvents` (a Decide call's events as one record) form the very batches,
    byte for byte, and the very progress of the same impressions stored one by one, a round
    starting inside a row and batches ending inside a call's events included."""
    calls = [decision_events(f"user-{n}", 5) for n in range(6)]
    compact = [
        (1, 15, 4, ROW_FORMAT, encode_rows(calls[:3])),
        (2, 15, 0, ROW_FORMAT, encode_rows(calls[3:])),
    ]
    expanded = [
        (row_id, n, sent, fmt, encode_rows(decode_rows(body)))
        for row_id, n, sent, fmt, body in compact
    ]
    assert len(decode_rows(expanded[0][4])) == 15
    formed = form_round(compact, batch_size=4, max_batches=16)
    assert formed == form_round(expanded, batch_size=4, max_batches=16)
    assert [f.progress for f in formed][:4] == [((1, 8),), ((1, 12),), ((1, 15), (2, 1)), ((2, 5),)]
    assert all(f.error is None for f in formed)
    assert visitors(formed[0].body) == ["user-0"] + 3 * ["user-1"]


def test_decide_calls_records_among_others_form_the_batches_of_their_impressions() -> None:
    """Rows mixing an Activate impression, a conversion and Decide calls' records (a user id
    JSON escapes, attribute values of every type, a decision without a variation, a call
    of another revision, which a batch never mixes): the bodies and progress of the same
    events stored one by one, an odd batch size cutting calls and rows anywhere."""
    config, other = _config(), _config(revision="8")
    experiment = config.experiments_by_key["ab_running"]
    activate = records.impression(config, experiment, experiment.variations[0], "a", {}, now_ms=3)
    attributes = (("20001", "device", "iPhone"), ("$opt_x", "$opt_x", 3.5), ("e", "k", True))
    tails: tuple[records.EventTail, ...] = (
        ("40001", "ab_running", "41001", "42001", "variation_a", "f", "feature-test", True),
        ("81001", "pro_rule", "81009", "", "", "g", "rollout", False),
        ("90001", "holdout", "90001", "92001", "off", "h", "holdout", False),
    )

    def call(seed: int, user: str, on: ProjectConfig = config) -> records.DecisionEvents:
        context = records.context_of(on)
        return records.DecisionEvents(records.DECISIONS, context, seed, 9, user, attributes, tails)

    first: list[records.OutboxRecord] = [
        activate,
        call(11, 'u"1\n\u00e9'),
        *conversions(1, "c"),
        call(12, "u2"),
    ]
    second: list[records.OutboxRecord] = [call(13, "u3", other), call(14, "u4")]
    compact = [
        (1, 8, 1, ROW_FORMAT, encode_rows(first)),
        (2, 6, 0, ROW_FORMAT, encode_rows(second)),
    ]
    expanded = [
        (row_id, n, sent, fmt, encode_rows(decode_rows(body)))
        for row_id, n, sent, fmt, body in compact
    ]
    for batch_size in (1, 2, 3, 5, 100):
        formed = form_round(compact, batch_size=batch_size, max_batches=16)
        assert formed == form_round(expanded, batch_size=batch_size, max_batches=16)
        assert all(f.error is None for f in formed)
    # The first batch stops where the other revision's call starts.
    formed = form_round(compact, batch_size=100, max_batches=16)
    assert [(f.events, f.progress) for f in formed] == [(7, ((1, 8),))]


def test_an_irregular_decide_calls_record_goes_the_reference_way_and_a_malformed_one_dead() -> None:
    """A call's record with a value trackd never stores (a float timestamp) is encoded by
    the reference, as its impressions are; one that cannot expand (a short tail) makes its
    row undecodable: a round of its own, for the dead-letter table."""
    irregular = decision_events("u1", 3)._replace(timestamp=9.5)
    rows = [(1, 3, 0, ROW_FORMAT, encode_rows([irregular]))]
    expanded = [(1, 3, 0, ROW_FORMAT, encode_rows(decode_rows(rows[0][4])))]
    (formed,) = form_round(rows, batch_size=2, max_batches=16)
    assert [formed] == form_round(expanded, batch_size=2, max_batches=16)
    visitors = json.loads(formed.body)["visitors"]
    assert [v["snapshots"][0]["events"][0]["timestamp"] for v in visitors] == [9.5, 9.5]
    short_tail = ("r", "k", "c", "v", "on", "f", "rollout")
    short = decision_events("u2", 2)._replace(tails=(short_tail, short_tail))
    (dead,) = form_round([(2, 2, 0, ROW_FORMAT, encode_rows([short]))], 2, max_batches=16)
    assert dead.error is not None and "undecodable" in dead.error

"""Event records: resolved once from the config snapshot, stored as compact plain rows."""

from __future__ import annotations

import base64
import copy
import json
import pickle
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from trackd.datafile import ProjectConfig, parse_datafile
from trackd.errors import InvalidTag
from trackd.events import records
from trackd.events.records import Conversion, Impression, decode_rows, encode_rows
from trackd.events.tags import parse_tags

DATAFILE = json.loads((Path(__file__).parents[1] / "data" / "datafile.json").read_text())


def _config(**changes: Any) -> ProjectConfig:
    document = copy.deepcopy(DATAFILE)
    document.update(changes)
    return parse_datafile(json.dumps(document))


def _impression(config: ProjectConfig, attributes: dict[str, Any] | None = None) -> Impression:
    experiment = config.experiments_by_key["ab_running"]
    return records.impression(
        config, experiment, experiment.variations[1], "u1", attributes, now_ms=1_700_000_000_123
    )


def test_impression_carries_ids_keys_and_context_of_its_snapshot() -> None:
    config = _config()
    record = _impression(config, {"device": "iPhone"})
    assert record.context == ("12001", "12002", "7", True)
    assert (record.experiment_id, record.experiment_key) == ("40001", "ab_running")
    assert (record.variation_id, record.variation_key) == ("42002", "variation_b")
    assert record.campaign_id == "41001"
    assert record.timestamp == 1_700_000_000_123
    assert record.attributes == (
        ("20001", "device", "iPhone"),
        ("$opt_bot_filtering", "$opt_bot_filtering", False),
    )


def test_a_later_datafile_does_not_change_a_record() -> None:
    old = _config()
    record = _impression(old, {"device": "iPhone"})
    renamed = copy.deepcopy(DATAFILE)
    renamed["revision"] = "8"
    renamed["attributes"][0]["id"] = "29999"
    new = parse_datafile(json.dumps(renamed))
    assert _impression(new, {"device": "iPhone"}).attributes[0][0] == "29999"
    assert record.attributes[0][0] == "20001"
    assert record.context[2] == "7"


def test_campaign_id_falls_back_to_the_experiment_id_when_the_layer_id_is_empty() -> None:
    document = copy.deepcopy(DATAFILE)
    document["experiments"][0]["layerId"] = ""
    record = _impression(parse_datafile(json.dumps(document)))
    assert record.campaign_id == "40001"


def test_attributes_resolve_as_the_sdk_does() -> None:
    record = _impression(
        _config(botFiltering=True),
        {
            "device": "Android",  # datafile id
            "unknown": "dropped",  # not in the datafile
            "$opt_user_agent": "ua",  # reserved prefix: its own key is the id
            "ad_source": 2**53 + 1,  # beyond 2**53: invalid, skipped
            "flag": None,
        },
    )
    assert record.attributes == (
        ("20001", "device", "Android"),
        ("$opt_user_agent", "$opt_user_agent", "ua"),
        ("$opt_bot_filtering", "$opt_bot_filtering", True),
    )


def test_no_bot_filtering_attribute_when_the_datafile_has_none() -> None:
    document = copy.deepcopy(DATAFILE)
    del document["botFiltering"]
    assert _impression(parse_datafile(json.dumps(document))).attributes == ()


def test_conversion_takes_revenue_value_and_tags_from_parsed_tags() -> None:
    config = _config()
    record = records.conversion(
        config,
        config.events_by_key["my_conversion"],
        "u1",
        {},
        parse_tags({"revenue": 4200.0, "value": "2.5", "category": "shoes"}),
        [("40001", "42001")],
        now_ms=5,
    )
    assert (record.event_id, record.event_key) == ("60001", "my_conversion")
    assert (record.revenue, record.value) == (4200, 2.5)
    assert record.tags == {"revenue": 4200, "value": "2.5", "category": "shoes"}
    assert record.attributions == (("40001", "42001"),)


def test_conversion_parses_a_plain_tag_mapping_and_rejects_nan() -> None:
    config = _config()
    event = config.events_by_key["signup"]
    assert records.conversion(config, event, "u", None, {"revenue": 3}, [], now_ms=1).revenue == 3
    with pytest.raises(InvalidTag):
        records.conversion(config, event, "u", None, {"value": float("nan")}, [], now_ms=1)


def test_uuids_are_random_version_4_strings() -> None:
    pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    uuids = {records.new_uuid() for _ in range(10_000)}
    assert len(uuids) == 10_000
    assert all(pattern.match(u) for u in uuids)


def _is_random_uuid(text: str) -> bool:
    """An RFC 4122 version 4 UUID in its canonical lower-case form, as the SDKs send."""
    parsed = uuid.UUID(text)
    return str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def _batch_uuids(config: ProjectConfig, size: int) -> list[str]:
    event = config.events_by_key["signup"]
    columns = records.ConversionColumns(config, 1)
    for _ in range(size):
        columns.add(event, "u", None, parse_tags(None), ())
    return [record.uuid for record in columns.records()]


def test_a_batchs_uuids_are_distinct_random_version_4_uuids() -> None:
    """Each uuid of a TrackStream batch is as random as uuid4's: no prefix shared within a
    batch, no suffix shared by the same index of two batches."""
    config = _config()
    uuids = _batch_uuids(config, 70_001)
    assert len(set(uuids)) == 70_001
    assert all(_is_random_uuid(u) for u in uuids)
    assert len({u[:28] for u in uuids}) == 70_001
    again = _batch_uuids(config, 3)
    assert [u[-8:] for u in again] != [u[-8:] for u in uuids[:3]]


def test_a_track_uuid_looks_like_an_sdk_uuid_not_a_fixed_suffix() -> None:
    """Track's conversion is a batch of one: its uuid must not end in `00000000` (or any
    digits shared by every Track)."""
    config = _config()
    event = config.events_by_key["signup"]
    uuids = [
        records.conversion(config, event, "u", None, None, [], now_ms=1).uuid for _ in range(50)
    ]
    assert all(_is_random_uuid(u) for u in uuids)
    assert len({u[-8:] for u in uuids}) == 50


def test_batch_uuids_are_the_same_for_the_same_seed() -> None:
    """A row is decoded again at every delivery attempt: redelivery must repeat the uuids."""
    text = records.batch_uuids(12345, 4)
    assert text == records.batch_uuids(12345, 4)
    assert records.batch_uuids(12345, 3) == text[: 3 * 36]
    assert text != records.batch_uuids(12346, 4)


def test_a_columns_row_written_with_a_uuid_prefix_keeps_its_uuids() -> None:
    """Rows from before per-event uuids hold a 28-character prefix where the seed is now;
    they decode to the uuids they were acknowledged with."""
    config = _config()
    columns = records.ConversionColumns(config, 9)
    columns.add(config.events_by_key["signup"], "u1", None, parse_tags(None), ())
    columns.add(config.events_by_key["signup"], "u2", None, parse_tags(None), ())
    prefix = "0f1e2d3c-4b5a-4968-8776-5544"
    old = list(columns._columns())
    old[2] = prefix
    decoded = decode_rows(pickle.dumps(tuple(old), protocol=5), records.COLUMNS_FORMAT)
    assert [r.uuid for r in decoded] == [prefix + "00000000", prefix + "9e3779b1"]


def test_a_batch_as_columns_decodes_to_the_records_it_stands_for() -> None:
    config = _config()
    columns = records.ConversionColumns(config, 9)
    tags = parse_tags({"revenue": 10, "value": 0.1, "note": None})
    shared = {"device": "iPhone"}
    columns.add(config.events_by_key["purchase"], "u1", shared, tags, (("40011", "42011"),))
    columns.add(config.events_by_key["signup"], "u2", shared, parse_tags(None), ())
    columns.add(config.events_by_key["purchase"], "u3", {"ad_source": 7}, tags, ())
    fmt, body = records.encode_row(columns)
    assert fmt == records.COLUMNS_FORMAT
    expected = columns.records()
    assert decode_rows(body, fmt) == expected
    for record, (event, user, attributes, parsed, attributed) in zip(
        expected,
        [
            ("purchase", "u1", shared, tags, (("40011", "42011"),)),
            ("signup", "u2", shared, parse_tags(None), ()),
            ("purchase", "u3", {"ad_source": 7}, tags, ()),
        ],
        strict=True,
    ):
        alone = records.conversion(
            config, config.events_by_key[event], user, attributes, parsed, attributed, now_ms=9
        )
        assert record._replace(uuid="") == alone._replace(uuid="")
    # Shared values are stored once: three events cost less than three one-event rows.
    one = records.ConversionColumns(config, 9)
    one.add(config.events_by_key["purchase"], "u1", shared, tags, (("40011", "42011"),))
    assert len(body) < 2 * len(one.encode())


def test_columns_filled_in_bulk_are_the_row_of_the_same_events_added_one_by_one() -> None:
    """`extend` with each event's `shape` (what TrackStream does) stores what `add` stores,
    and refuses columns of different lengths."""
    config = _config()
    tags = parse_tags({"revenue": 10})
    shared = {"device": "iPhone"}
    events = [
        (config.events_by_key["purchase"], "u1", shared, tags, (("40011", "42011"),)),
        (config.events_by_key["signup"], "u2", shared, parse_tags(None), ()),
        (config.events_by_key["purchase"], "u3", shared, tags, ()),
    ]
    one_by_one = records.ConversionColumns(config, 9)
    bulk = records.ConversionColumns(config, 9)
    bulk.uuid_seed = one_by_one.uuid_seed
    for event, user, attributes, parsed, attributed in events:
        one_by_one.add(event, user, attributes, parsed, attributed)
    bulk.extend(
        [bulk.shape(event, attributes, parsed) for event, _, attributes, parsed, _ in events],
        [user for _, user, _, _, _ in events],
        [attributed for *_, attributed in events],
    )
    assert bulk.encode() == one_by_one.encode()
    with pytest.raises(ValueError):
        bulk.extend([bulk.shape(events[0][0], shared, tags)], ["u4", "u5"], [(), ()])
    assert len(bulk) == 3


def test_a_columns_row_with_uneven_columns_is_refused() -> None:
    config = _config()
    columns = records.ConversionColumns(config, 9)
    columns.add(config.events_by_key["signup"], "u1", None, parse_tags(None), ())
    columns.users.append("stray")
    with pytest.raises(ValueError):
        decode_rows(columns.encode(), records.COLUMNS_FORMAT)


def test_rows_round_trip_records_exactly() -> None:
    config = _config()
    batch = [
        _impression(config, {"device": "iPhone", "$opt_n": 1.5}),
        records.conversion(
            config,
            config.events_by_key["purchase"],
            "u2",
            {"ad_source": 7},
            parse_tags({"revenue": 10, "value": 0.1, "note": None, "ok": True}),
            [("40011", "42011")],
            now_ms=9,
        ),
    ]
    decoded = decode_rows(encode_rows(batch))
    assert decoded == batch
    assert [type(r) for r in decoded] == [Impression, Conversion]


def test_a_row_naming_a_class_is_refused() -> None:
    hostile = pickle.dumps([(0, ("a", "b", "c", True), Path("/etc/passwd"))])
    with pytest.raises(pickle.UnpicklingError, match="plain data only"):
        decode_rows(hostile)


def test_rows_from_one_snapshot_store_the_context_once() -> None:
    config = _config()
    one = len(encode_rows([_impression(config)]))
    many = len(encode_rows([_impression(config) for _ in range(100)]))
    assert many < 100 * one * 0.9


def test_equal_string_attributes_share_one_list_and_other_values_are_never_confused() -> None:
    config = _config()
    first = records.visitor_attributes(config, {"device": "iPhone"})
    assert records.visitor_attributes(config, {"device": "iPhone"}) is first
    # True == 1 == 1.0 in Python: such values must never come back from a cached list.
    for value in (True, 1, 1.0, "1", True):
        found = records.visitor_attributes(config, {"device": value})
        assert found[0][2] == value and type(found[0][2]) is type(value)
    assert records.visitor_attributes(config, {"device": ["x"]}) == (  # type: ignore[dict-item]
        ("$opt_bot_filtering", "$opt_bot_filtering", False),
    )


# One ROW_FORMAT row (an Activate impression, then a Track conversion) exactly as the version
# before flag decisions wrote it: its impression tuple has eleven fields.
_ROW_BEFORE_FLAGS = base64.b64decode(
    "gAWVPgEAAAAAAABdlCgoSwAojAUxMjAwMZSMBTEyMDAylIwBN5SIdJSMJDBmMGUwZDBjLTBiMGEtNDkwOC04NzA2"
    "LTA1MDQwMzAyMDEwMJSKBnto5c+LAYwCdTGUjAUyMDAwMZSMBmRldmljZZSMBmlQaG9uZZSHlIwSJG9wdF9ib3Rf"
    "ZmlsdGVyaW5nlGgLiYeUhpSMBTQwMDAxlIwKYWJfcnVubmluZ5SMBTQxMDAxlIwFNDIwMDKUjAt2YXJpYXRpb25f"
    "YpR0lChLAWgEjCQxZjBlMGQwYy0wYjBhLTQ5MDgtODcwNi0wNTA0MDMwMjAxMDGUigbIaeXPiwGMAnUylGgLaAuJ"
    "h5SFlIwFNjAwMDOUjAhwdXJjaGFzZZRLKk59lIwHcmV2ZW51ZZRLKnOMBTQwMDAxlIwFNDIwMDKUhpSFlHSUZS4="
)


def test_a_row_written_before_flag_decisions_decodes_to_activates_impression() -> None:
    assert len(records.decode_plain(_ROW_BEFORE_FLAGS)[0]) == 11
    impression, conversion = decode_rows(_ROW_BEFORE_FLAGS)
    assert isinstance(impression, Impression) and isinstance(conversion, Conversion)
    # What Activate builds today for the same decision, uuid and time.
    expected = _impression(_config(), {"device": "iPhone"})._replace(
        uuid="0f0e0d0c-0b0a-4908-8706-050403020100"
    )
    assert impression == expected
    assert (impression.flag_key, impression.rule_type, impression.enabled) == (
        "",
        "experiment",
        True,
    )
    assert (conversion.user_id, conversion.revenue, conversion.attributions) == (
        "u2",
        42,
        (("40001", "42002"),),
    )


def _decision_impression(config: ProjectConfig) -> Impression:
    return _impression(config)._replace(
        experiment_id="81001",
        experiment_key="pro_rule",
        campaign_id="81009",
        variation_id="",
        variation_key="",
        flag_key="checkout",
        rule_type=records.RULE_TYPE_ROLLOUT,
        enabled=False,
    )


def test_a_flag_decision_impression_round_trips_through_a_row_with_older_ones() -> None:
    config = _config()
    batch = [_impression(config), _decision_impression(config), _impression(config)]
    decoded = decode_rows(encode_rows(batch))
    assert decoded == batch
    assert [(r.flag_key, r.rule_type, r.enabled) for r in decoded if isinstance(r, Impression)] == [
        ("", "experiment", True),
        ("checkout", "rollout", False),
        ("", "experiment", True),
    ]
    old = records.decode_plain(_ROW_BEFORE_FLAGS)
    mixed = pickle.dumps(old + [tuple(r) for r in batch], protocol=5)
    assert decode_rows(mixed)[2:] == batch


def test_an_impression_of_an_unknown_length_is_refused() -> None:
    config = _config()
    short = pickle.dumps([tuple(_impression(config))[:10]], protocol=5)
    long = pickle.dumps([(*_impression(config), "extra")], protocol=5)
    for body in (short, long):
        with pytest.raises(TypeError):
            decode_rows(body)


# A bypassed holdout's tail, then a delivery rule's: the decision events of one flag.
_TAILS: tuple[records.EventTail, ...] = (
    ("90001", "holdout", "90001", "92001", "ho_off", "checkout", "holdout", False),
    ("81001", "pro_rule", "81009", "82001", "on", "checkout", "rollout", True),
)
_SEED = 0x0123456789ABCDEF0123456789ABCDEF

# One ROW_FORMAT row exactly as the version before `DecisionEvents` wrote a Decide call's
# events (decision_records, seed `_SEED`, user "u1" with device iPhone, `_TAILS`): one
# fourteen-field impression tuple per event.
_ROW_BEFORE_DECISION_EVENTS = base64.b64decode(
    "gAWVMAEAAAAAAABdlCgoSwAojAUxMjAwMZSMBTEyMDAylIwBN5SIdJSMJGRmMTkyZDZkLWEzYzMtNDE3NS1iNjI3"
    "LTgyMjc1MDQwZTZkNJSKBnto5c+LAYwCdTGUjAUyMDAwMZSMBmRldmljZZSMBmlQaG9uZZSHlIwSJG9wdF9ib3Rf"
    "ZmlsdGVyaW5nlGgLiYeUhpSMBTkwMDAxlIwHaG9sZG91dJRoDowFOTIwMDGUjAZob19vZmaUjAhjaGVja291dJRo"
    "D4l0lChLAGgEjCQ0OTM3ODM1Yy1hYzlmLTQ5ZGQtOWIyYi1kZDA2MDAwMGFmYTmUigZ7aOXPiwFoBmgNjAU4MTAw"
    "MZSMCHByb19ydWxllIwFODEwMDmUjAU4MjAwMZSMAm9ulGgSjAdyb2xsb3V0lIh0lGUu"
)


def _decision_events(
    config: ProjectConfig, user_id: str = "u1", tails: tuple[records.EventTail, ...] = _TAILS
) -> records.DecisionEvents:
    return records.DecisionEvents(
        records.DECISIONS,
        records.context_of(config),
        _SEED,
        1_700_000_000_123,
        user_id,
        records.visitor_attributes(config, {"device": "iPhone"}),
        tails,
    )


def test_a_decide_calls_decision_events_row_decodes_to_the_row_written_before_them() -> None:
    """A Decide call's events stored as one `DecisionEvents` record decode to exactly the
    impressions the version before stored one by one for the same seed (same uuids, same
    fields); that older row still decodes as it did."""
    config = _config()
    compact = encode_rows([_decision_events(config)])
    before = records.decode_plain(_ROW_BEFORE_DECISION_EVENTS)
    assert records.decode_plain(compact) == before
    assert records.decode_stored(compact) == [tuple(_decision_events(config))]  # as stored
    assert decode_rows(compact) == decode_rows(_ROW_BEFORE_DECISION_EVENTS)
    first, second = decode_rows(_ROW_BEFORE_DECISION_EVENTS)
    assert isinstance(first, Impression) and isinstance(second, Impression)
    assert (first.uuid, second.uuid) == (
        "df192d6d-a3c3-4175-b627-82275040e6d4",
        "4937835c-ac9f-49dd-9b2b-dd060000afa9",
    )
    assert (first.rule_type, second.rule_type, second.user_id) == ("holdout", "rollout", "u1")


def test_decision_events_expand_in_place_among_other_records_and_count_as_events() -> None:
    """Readers index a row event by event: each `DecisionEvents` becomes its impressions
    where it stands, between an Activate impression and a conversion; `event_count` counts
    them so, and the record as stored stays one tuple."""
    config = _config()
    activate = _impression(config)
    conversion = records.conversion(
        config, config.events_by_key["my_conversion"], "u2", {}, None, [], now_ms=1
    )
    first = _decision_events(config, "u3")
    second = _decision_events(config, "u4", _TAILS[1:])
    row: list[records.OutboxRecord] = [activate, first, conversion, second]
    body = encode_rows(row)
    assert decode_rows(body) == [
        activate,
        *(Impression._make(plain) for plain in records.impression_tuples(first)),
        conversion,
        *(Impression._make(plain) for plain in records.impression_tuples(second)),
    ]
    assert records.event_count(row) == records.event_count(records.decode_unexpanded(body)) == 5
    assert len(records.decode_plain(body)) == 5
    assert records.decode_unexpanded(body) == [tuple(record) for record in row]


def test_a_decision_events_row_is_a_fraction_of_its_impressions_row() -> None:
    """What the record is for: a row of Decide calls whose decisions share their tails (as
    Tracker's cache hands them out) stores each tail once, not an impression per event."""
    config = _config()
    tails = tuple(
        (f"r{flag}", f"rule{flag}", f"r{flag}", f"v{flag}", "on", f"flag{flag}", "rollout", True)
        for flag in range(50)
    )
    calls = [_decision_events(config, f"user-{n}", tails) for n in range(20)]
    compact = len(encode_rows(calls))
    expanded = len(encode_rows(decode_rows(encode_rows(calls))))
    assert compact * 4 < expanded


@pytest.mark.parametrize(
    "broken",
    [
        (records.DECISIONS, ("a", "p", "7", True), _SEED, 1, "u1", (), (_TAILS[0][:7],)),
        (records.DECISIONS, ("a", "p", "7", True), _SEED, 1, "u1", ()),
    ],
    ids=["a short tail", "a missing field"],
)
def test_a_malformed_decision_events_record_makes_its_row_undecodable(
    broken: tuple[Any, ...],
) -> None:
    body = pickle.dumps([broken], protocol=5)
    with pytest.raises(ValueError):
        records.decode_plain(body)

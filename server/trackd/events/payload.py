"""Optimizely Event API batches, built as optimizely-sdk 5.7 builds them.

Mirrors event/event_factory.py and event/payload.py: one visitor per event, impressions
(Activate's and flag decisions') as a `campaign_activated` event with one decision and its
metadata, conversions with revenue/value/tags, and the SDK's cleaning (a None revenue,
value, tags or decisions key is left out, wherever it appears). Only visitors sharing one
context (account, project, revision, anonymize_ip) go in one batch: `trackd.events.rounds`
forms the batches.

`event_batch` and `visitor` build the batch as dicts: the reference. What is delivered,
`encode_batch`, is the same JSON spliced from pieces cut from it and kept, about ten times
cheaper (figures below, at "the delivery body").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any, Final, NamedTuple

import trackd
from trackd.events.records import (
    CONVERSION,
    IMPRESSION,
    Context,
    Conversion,
    Impression,
    Record,
    StoredColumns,
    expand,
    from_plain,
    impression_tuples,
)
from trackd.events.tags import TagValue
from trackd.kept import kept

CLIENT_NAME: Final = "trackd"
ACTIVATE_EVENT_KEY: Final = "campaign_activated"
_DROPPED_WHEN_NONE: Final = frozenset({"revenue", "value", "tags", "decisions"})


def _variation_id(variation_id: str) -> str | None:
    # event_id_normalizer.normalize_variation_id: only a decimal-digit id is sent as is.
    if variation_id and variation_id.isascii() and variation_id.isdigit():
        return variation_id
    return None


def _clean_tags(tags: Mapping[str, TagValue]) -> dict[str, TagValue]:
    return {k: v for k, v in tags.items() if v is not None or k not in _DROPPED_WHEN_NONE}


def _attribute(entity_id: str, key: str, value: Any) -> dict[str, Any]:
    return {"entity_id": entity_id, "key": key, "type": "custom", "value": value}


def _attributes(record: Record) -> list[dict[str, Any]]:
    return [
        _attribute(entity_id, key, value)
        for entity_id, key, value in record.attributes
        if value is not None  # never stored; the SDK would drop such a "value" key
    ]


def _impression_snapshot(record: Impression) -> dict[str, Any]:
    return {
        "events": [
            {
                "entity_id": record.campaign_id,
                "uuid": record.uuid,
                "key": ACTIVATE_EVENT_KEY,
                "timestamp": record.timestamp,
            }
        ],
        "decisions": [
            {
                "campaign_id": record.campaign_id,
                "experiment_id": record.experiment_id,
                "variation_id": _variation_id(record.variation_id),
                # payload.Metadata; its cmab_uuid is never set (CMAB rules are not decided
                # by trackd: their decisions are errors, which send nothing).
                "metadata": {
                    "flag_key": record.flag_key,
                    "rule_key": record.experiment_key,
                    "rule_type": record.rule_type,
                    "variation_key": record.variation_key,
                    "enabled": record.enabled,
                },
            }
        ],
    }


def _conversion_snapshot(record: Conversion) -> dict[str, Any]:
    event: dict[str, Any] = {
        "entity_id": record.event_id,
        "uuid": record.uuid,
        "key": record.event_key,
        "timestamp": record.timestamp,
    }
    event.update(_conversion_extras(record.revenue, record.value, record.tags))
    return {"events": [event]}


def _conversion_extras(
    revenue: int | None, value: float | None, tags: Mapping[str, TagValue]
) -> dict[str, Any]:
    """A conversion event's revenue, value and tags, each only when it is set."""
    extras: dict[str, Any] = {}
    if revenue is not None:
        extras["revenue"] = revenue
    if value is not None:
        extras["value"] = value
    if tags:
        extras["tags"] = _clean_tags(tags)
    return extras


def visitor(record: Record) -> dict[str, Any]:
    if isinstance(record, Impression):
        snapshot = _impression_snapshot(record)
    else:
        snapshot = _conversion_snapshot(record)
    return {
        "snapshots": [snapshot],
        "attributes": _attributes(record),
        "visitor_id": record.user_id,
    }


def event_batch(context: Context, records: Iterable[Record]) -> dict[str, Any]:
    account_id, project_id, revision, anonymize_ip = context
    return {
        "account_id": account_id,
        "project_id": project_id,
        "revision": revision,
        "client_name": CLIENT_NAME,
        "client_version": trackd.__version__,
        "anonymize_ip": anonymize_ip,
        "enrich_decisions": True,
        "visitors": [visitor(record) for record in records],
    }


def encode(batch: Mapping[str, Any]) -> bytes:
    """The HTTP body / JSON line. NaN cannot occur (records reject it); refuse it anyway."""
    return _JSON.encode(batch).encode()


# json.dumps(batch, separators=(",", ":"), ensure_ascii=False, allow_nan=False), built once:
# json.dumps builds a new encoder on every call with those arguments.
_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --- the delivery body, spliced from pre-encoded pieces -----------------------------------
#
# `encode(event_batch(...))` builds a dozen dicts and lists per event and has json walk them:
# 17 us per event. Most of a visitor's JSON repeats: an impression's decision and metadata,
# a conversion's event, an attribute's ids, the batch header. Those pieces are cut from the
# reference's own output (so the two cannot drift apart) and kept; per event only its uuid,
# timestamp and visitor id are encoded, and its attribute list and a conversion's revenue,
# value and tags once per object its batch shares (a row pickles a value its events share
# once, so they decode to one object). CPU time per event, old -> new, on the 2-core
# development machine under load (thread_time_ns, best of 7): a Decide's 50 impressions of
# one user with 6 attributes 17.5 -> 1.4 us; 500 conversions of distinct users whose
# attribute and tag messages recur (TrackStream shares them, rpc.wire) 16.6 -> 1.45 us; the
# worst case, every event's attributes and tags distinct, 16.9 -> 8.8 us.
# tests/unit/test_events_payload_spliced.py proves the bytes equal.

# A value no record holds, put where a per-event value goes and split out of the JSON.
_SPLICE: Final = "\x00trackd:splice\x00"
_SPLICE_JSON: Final = _JSON.encode(_SPLICE)
_KEPT: Final = 4096  # entries each cache keeps; cleared when full (datafiles hold fewer)

_string: Final = encode_basestring  # what _JSON prints a str as

# The batch header by context; a visitor's JSON cut around its per-event values, by what
# the rest of it depends on; an attribute's JSON up to its value, by (entity_id, key). Keys
# hold only strings and bools checked to be bools: a key can then never equal one that
# prints differently (True == 1, but only a str equals a str).
_headers: dict[Context, str] = {}
_visitor_cuts: dict[tuple[Any, ...], tuple[str, str, str, str, str]] = {}
_attribute_heads: dict[tuple[str, str], str] = {}


class _Irregular(Exception):
    """A value trackd never stores, which the spliced path leaves to the reference."""


class ColumnsRun(NamedTuple):
    """Events `start` to `stop` of a `COLUMNS_FORMAT` row, as one part of a batch."""

    columns: StoredColumns
    start: int
    stop: int


class DecisionsRun(NamedTuple):
    """Events `start` to `stop` of a Decide call's `DecisionEvents` (its plain tuple, as a
    row stores it), as one part of a batch; `uuids` is its `records.decision_uuids`."""

    record: tuple[Any, ...]
    uuids: str
    start: int
    stop: int


# A batch's events, in order: runs of plain record tuples, runs of stored columns, and runs
# of a Decide call's events.
Part = Sequence[tuple[Any, ...]] | ColumnsRun | DecisionsRun


def plain_batch_text(context: Context, plain: Sequence[tuple[Any, ...]]) -> str:
    """`encode_batch`'s text, spliced from kept pieces. Raises for a value trackd never
    stores (a type other than those records hold, or a malformed record)."""
    return parts_text(context, [plain])


def parts_text(context: Context, parts: Sequence[Part]) -> str:
    """`encode_parts`' text, spliced: raises as `plain_batch_text` does."""
    if context[3] is not True and context[3] is not False:
        raise _Irregular("anonymize_ip")
    header = _headers.get(context) or _header(context)
    # By identity: `parts` holds every object for the whole call, so no id is reused.
    shared = _Shared({}, {})
    visitors: list[str] = []
    for part in parts:
        if isinstance(part, ColumnsRun):
            _run_visitors(part, shared, visitors)
        elif isinstance(part, DecisionsRun):
            _decisions_visitors(part, shared, visitors)
        else:
            _plain_visitors(part, shared, visitors)
    return f"{header}{','.join(visitors)}]}}"


class _Shared(NamedTuple):
    """The texts of one call's shared values, by identity: attribute lists, and a
    conversion's (revenue, value, tags)."""

    attribute_lists: dict[int, str]
    conversion_extras: dict[tuple[int, int, int], str]


def _plain_visitors(plain: Sequence[tuple[Any, ...]], shared: _Shared, visitors: list[str]) -> None:
    attribute_lists, conversion_extras = shared
    for item in plain:
        timestamp = item[3]
        if type(timestamp) is not int:
            raise _Irregular("timestamp")
        attributes = item[5]
        attribute_list = attribute_lists.get(id(attributes))
        if attribute_list is None:
            attribute_list = attribute_lists[id(attributes)] = _attribute_list(attributes)
        key: tuple[Any, ...]
        if item[0] == IMPRESSION:
            key = item[6:]
            if len(key) == _IMPRESSION_KEY and key[-1] is not True and key[-1] is not False:
                raise _Irregular("enabled")
            extras = ""
        elif item[0] == CONVERSION and len(item) == _CONVERSION_FIELDS:
            key = (CONVERSION, item[6], item[7])
            extras_key = (id(item[8]), id(item[9]), id(item[10]))
            found = conversion_extras.get(extras_key)
            if found is None:
                found = conversion_extras[extras_key] = _extras_text(item[8], item[9], item[10])
            extras = found
        else:
            raise _Irregular("record kind or length")
        uuid_at, timestamp_at, attributes_at, visitor_id_at, end = _visitor_cuts.get(
            key
        ) or _visitor_cut(key, item)
        visitors.append(
            f"{uuid_at}{_string(item[2])}{timestamp_at}{timestamp}{extras}"
            f"{attributes_at}{attribute_list}{visitor_id_at}{_string(item[4])}{end}"
        )


# A Decide call's events share all but their uuid and tail, and the tail is the key of its
# visitor's cut: `_plain_visitors` on the impressions, without building them. CPU time of a
# call's 50 events (1000 new users of bench_decide's datafile, thread_time, median of 7, 2
# busy shared cores), expanded into impressions then `_plain_visitors` -> this: 107 -> 57 us.
def _decisions_visitors(run: DecisionsRun, shared: _Shared, visitors: list[str]) -> None:
    record, uuids, start, stop = run
    _, context, _, timestamp, user_id, attributes, tails = record
    if type(timestamp) is not int:
        raise _Irregular("timestamp")
    attribute_lists = shared.attribute_lists
    attribute_list = attribute_lists.get(id(attributes))
    if attribute_list is None:
        attribute_list = attribute_lists[id(attributes)] = _attribute_list(attributes)
    visitor_id = _string(user_id)
    cuts = _visitor_cuts
    for at, tail in zip(range(36 * start, 36 * stop, 36), tails[start:stop], strict=True):
        if tail[-1] is not True and tail[-1] is not False:  # before the lookup: 1 == True
            raise _Irregular("enabled")
        uuid_at, timestamp_at, attributes_at, visitor_id_at, end = cuts.get(tail) or _visitor_cut(
            tail, (IMPRESSION, context, "", timestamp, user_id, attributes, *tail)
        )
        # A uuid of batch_uuids is hex digits and dashes: its JSON is itself in quotes.
        visitors.append(
            f'{uuid_at}"{uuids[at : at + 36]}"{timestamp_at}{timestamp}'
            f"{attributes_at}{attribute_list}{visitor_id_at}{visitor_id}{end}"
        )


# A TrackStream row's events share their timestamp and a handful of kinds (event, attribute
# list, tags: the same objects), and differ only in uuid and user id. So a kind's whole
# visitor is made once, by `_plain_visitors` itself from a record holding the splice mark
# for its uuid and user id, and cut there; each event is then its two values spliced in.
# Its uuid needs no escaping (hex digits and dashes), and user ids mostly none: checked once
# a run, in one call over them all. Only the run's own kinds are cut, once each a row.
# CPU time per event of `rounds.form_round` on 100 rows of 500 new users in 6 kinds
# (thread_time, median of 7, 2 busy shared cores), rows expanded into records and spliced
# per record -> this: 2.9 -> 1.55 us, decoding the rows included.
# tests/unit/test_events_payload_columns.py proves the bytes equal.
def _run_visitors(run: ColumnsRun, shared: _Shared, visitors: list[str]) -> None:
    columns, start, stop = run
    uuids = columns.uuids[start:stop]
    if not _none_escapes(uuids):
        raise _Irregular("a uuid json escapes")
    users = columns.users[start:stop]
    if not _none_escapes(users):  # a quote, backslash or control character: rare
        users = [_string(user_id)[1:-1] for user_id in users]
    kinds = columns.kinds[start:stop]
    cuts: dict[int, tuple[str, str, str]] = columns.kind_texts
    for kind in dict.fromkeys(kinds):
        if kind not in cuts:
            cuts[kind] = _kind_cut(columns, columns.shapes[kind], shared)
    visitors += [
        f"{uuid_at}{uuid}{visitor_id_at}{user_id}{end}"
        for uuid, user_id, (uuid_at, visitor_id_at, end) in zip(
            uuids, users, map(cuts.__getitem__, kinds), strict=True
        )
    ]


def _none_escapes(texts: Sequence[str]) -> bool:
    """Whether _JSON prints each of these strings as it is, in quotes (json escapes only
    quotes, backslashes and control characters: none in the whole, none in any part)."""
    joined = "".join(texts)  # (raises for a value that is no str: the reference then)
    return len(_string(joined)) == len(joined) + 2


def _kind_cut(
    columns: StoredColumns, shape: tuple[Any, Any, Any], shared: _Shared
) -> tuple[str, str, str]:
    """A kind's visitor up to its uuid's text, between that and its user id's, and after:
    all of it but two strings' texts without their quotes."""
    event, attribute_list, tag = shape
    one = columns._replace(
        uuids=[_SPLICE],
        events=[event],
        users=[_SPLICE],
        attributes=[attribute_list],
        tags=[tag],
        attributions=[()],
    )
    texts: list[str] = []
    _plain_visitors(expand(one), shared, texts)
    # (A field holding the splice mark itself splits into more parts: the unpacking fails.)
    uuid_at, visitor_id_at, end = texts[0].split(_SPLICE_JSON)
    # With the quotes of the uuid and the user id, whose text goes in as it is.
    return f'{uuid_at}"', f'"{visitor_id_at}"', f'"{end}'


_IMPRESSION_KEY: Final = len(Impression._fields) - 6  # the fields after the attributes
_CONVERSION_FIELDS: Final = len(Conversion._fields)


def _header(context: Context) -> str:
    if not all(type(field) is str for field in context[:3]):
        raise _Irregular("context")
    text = _JSON.encode(event_batch(context, ()))
    if not text.endswith("[]}"):
        raise _Irregular("header")
    return kept(_headers, context, text[:-2], _KEPT)


def _visitor_cut(key: tuple[Any, ...], item: tuple[Any, ...]) -> tuple[str, str, str, str, str]:
    """The visitor's JSON before its uuid, timestamp (and a conversion's extras), attribute
    list and visitor id, and after them."""
    is_conversion = item[0] == CONVERSION
    ids_and_keys = key[1:] if is_conversion else key[:7]
    if not all(type(field) is str for field in ids_and_keys):
        raise _Irregular("ids and keys")
    spliced = (item[0], item[1], _SPLICE, _SPLICE, _SPLICE, (), *item[6:])
    if is_conversion:
        spliced = (*spliced[:8], None, None, {}, ())  # no extras: they are spliced in
    document = visitor(from_plain([spliced])[0])
    document["attributes"] = _SPLICE
    # (A field holding the splice mark itself splits into more parts: the unpacking fails.)
    uuid_at, timestamp_at, attributes_at, visitor_id_at, end = _JSON.encode(document).split(
        _SPLICE_JSON
    )
    return kept(
        _visitor_cuts, key, (uuid_at, timestamp_at, attributes_at, visitor_id_at, end), _KEPT
    )


def _attribute_list(attributes: Sequence[tuple[str, str, Any]]) -> str:
    texts: list[str] = []
    for entity_id, key, value in attributes:
        if type(value) is str:  # most are: spared a call
            value_text = _string(value)
        elif value is None:
            continue  # as `_attributes` drops it
        else:
            value_text = _value_text(value)
        head = _attribute_heads.get((entity_id, key)) or _attribute_head(entity_id, key)
        texts.append(f"{head}{value_text}}}")
    return f"[{','.join(texts)}]"


def _attribute_head(entity_id: str, key: str) -> str:
    if type(entity_id) is not str or type(key) is not str:
        raise _Irregular("attribute ids")
    head, end = _JSON.encode(_attribute(entity_id, key, _SPLICE)).split(_SPLICE_JSON)
    if end != "}":  # the value must be the last member: `_attribute_list` closes it
        raise _Irregular("attribute layout")
    return kept(_attribute_heads, (entity_id, key), head, _KEPT)


def _extras_text(revenue: Any, value: Any, tags: Any) -> str:
    """A conversion's `_conversion_extras` as JSON members, each led by a comma."""
    extras = _conversion_extras(revenue, value, tags)
    return f",{_members(extras)[1:-1]}" if extras else ""


def _value_text(value: Any) -> str:
    """`value` as _JSON prints it: the types records hold directly (_JSON.encode costs a
    microsecond of set-up per call), anything else through _JSON."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None:
        return "null"
    if kind is dict:
        return _members(value)
    return _JSON.encode(value)  # NaN, a list: exactly as json does


def _members(mapping: dict[Any, Any]) -> str:
    texts: list[str] = []
    # A key that is no str (json would print 1 as "1") makes _string raise: the batch then
    # goes the reference way.
    for name, item in mapping.items():
        if type(item) is str:
            texts.append(f"{_string(name)}:{_string(item)}")
        else:
            texts.append(f"{_string(name)}:{_value_text(item)}")
    return f"{{{','.join(texts)}}}"


def encode_batch(context: Context, records: Sequence[tuple[Any, ...]]) -> bytes:
    """One delivery body, `encode(event_batch(context, records))`, spliced. The records may
    be plain tuples, as a row decodes (`records.decode_plain`)."""
    return encode_parts(context, [records])


def encode_parts(context: Context, parts: Sequence[Part]) -> bytes:
    """`encode_batch` of the records the parts hold, in order: what the encoder process
    builds a delivery round from (`trackd.events.rounds`), a TrackStream row's events
    straight from its columns."""
    try:
        return parts_text(context, parts).encode()
    except Exception:  # whatever it was, the reference's bytes, or its error, are the answer
        return encode(event_batch(context, from_plain(plain_records(parts))))


def plain_records(parts: Sequence[Part]) -> list[tuple[Any, ...]]:
    """The plain record tuples the parts hold, in order."""
    found: list[tuple[Any, ...]] = []
    for part in parts:
        if isinstance(part, ColumnsRun):
            found += expand(*part)
        elif isinstance(part, DecisionsRun):
            found += impression_tuples(part.record)[part.start : part.stop]
        else:
            found += part
    return found


__all__ = [
    "ACTIVATE_EVENT_KEY",
    "CLIENT_NAME",
    "ColumnsRun",
    "DecisionsRun",
    "Part",
    "encode",
    "encode_batch",
    "encode_parts",
    "event_batch",
    "parts_text",
    "plain_batch_text",
    "plain_records",
    "visitor",
]

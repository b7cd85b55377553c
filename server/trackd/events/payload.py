"""Optimizely Event API batches, built as optimizely-sdk 5.7 builds them.

Mirrors event/event_factory.py and event/payload.py: one visitor per event, impressions
(Activate's and flag decisions') as a `campaign_activated` event with one decision and its
metadata, conversions with revenue/value/tags, and the SDK's cleaning (a None revenue,
value, tags or decisions key is left out, wherever it appears). Only visitors sharing one
context (account, project, revision, anonymize_ip) go in one batch: `trackd.events.rounds`
forms the batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import trackd
from trackd.events.records import Context, Conversion, Impression, Record, from_plain
from trackd.events.tags import TagValue

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


def _attributes(record: Record) -> list[dict[str, Any]]:
    return [
        {"entity_id": entity_id, "key": key, "type": "custom", "value": value}
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
    if record.revenue is not None:
        event["revenue"] = record.revenue
    if record.value is not None:
        event["value"] = record.value
    if record.tags:
        event["tags"] = _clean_tags(record.tags)
    return {"events": [event]}


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


def encode_batch(context: Context, records: Sequence[Record]) -> bytes:
    """One delivery body; a module-level function so a worker process can run it."""
    return encode(event_batch(context, records))


def encode_plain_batch(context: Context, plain: Sequence[tuple[Any, ...]]) -> bytes:
    """`encode_batch` of records as plain tuples, as a row decodes (`records.decode_plain`):
    what the encoder process builds a delivery round from (`trackd.events.rounds`)."""
    return encode_batch(context, from_plain(plain))


def encode(batch: Mapping[str, Any]) -> bytes:
    """The HTTP body / JSON line. NaN cannot occur (records reject it); refuse it anyway."""
    return json.dumps(batch, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


__all__ = [
    "ACTIVATE_EVENT_KEY",
    "CLIENT_NAME",
    "encode",
    "encode_batch",
    "encode_plain_batch",
    "event_batch",
    "visitor",
]

"""Event API payloads, field for field against what optimizely-sdk 5.7 dispatches.

The SDK runs activate/track with a capturing dispatcher; trackd builds the same events from
the same datafile (taking the SDK's uuid and timestamp, whose values are random and
time-dependent) and the two JSON documents must be equal, apart from the client name and
version, which are each client's own.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from optimizely import project_config
from optimizely.error_handler import NoOpErrorHandler
from optimizely.event.event_factory import EventFactory
from optimizely.event.user_event_factory import UserEventFactory
from optimizely.helpers import enums
from optimizely.logger import NoOpLogger

from tests.support.oracle import (
    CapturingDispatcher,
    sdk_client,
    sdk_payload,
    sdk_uuids_and_timestamps,
    trackd_payload,
)
from trackd.datafile import parse_datafile
from trackd.events import records
from trackd.events.records import Record
from trackd.events.tags import TagValue, parse_tags

BASE = json.loads((Path(__file__).parents[1] / "data" / "datafile.json").read_text())


def _variant(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def _odd_ids() -> dict[str, Any]:
    """An empty layerId (campaign falls back to the experiment id), a non-numeric variation
    id (sent as null), and a datafile attribute whose key carries the reserved prefix."""
    document = _variant(botFiltering=True, anonymizeIP=False)
    experiment = document["experiments"][0]
    experiment["layerId"] = ""
    experiment["variations"][0]["id"] = "var_a"
    experiment["trafficAllocation"][0]["entityId"] = "var_a"
    document["attributes"].append({"id": "20009", "key": "$opt_reserved_in_datafile"})
    return document


DATAFILES = {
    "bot_filtering_false": _variant(),
    "bot_filtering_true": _variant(botFiltering=True),
    "bot_filtering_absent": _variant(botFiltering=None, anonymizeIP=False),
    "odd_ids": _odd_ids(),
}

ATTRIBUTE_SETS: dict[str, dict[str, Any]] = {
    "none": {},
    "known_and_unknown": {"device": "iPhone", "ad_source": 3, "not_in_datafile": "x"},
    "reserved_prefix": {
        "$opt_user_agent": "Mozilla",
        "$opt_bucketing_id": "b-1",
        "$opt_reserved_in_datafile": True,
        "$opt_bot_filtering": False,
    },
    "invalid_values_skipped": {
        "device": math.nan,
        "ad_source": 2**53 + 2,
        "$opt_x": math.inf,
        "$opt_none": None,
        "$opt_ok": -(2**53),
        "$opt_float": 1.5,
    },
}

TAG_SETS: dict[str, dict[str, TagValue]] = {
    "none": {},
    "revenue_value_other": {"revenue": 4200.0, "value": 12.5, "category": "shoes"},
    "fractional_revenue": {"revenue": 42.5, "value": "3.5"},
    "bool_and_big": {"revenue": True, "value": False, "big": 2.0**60, "neg": -7},
    "nulls_cleaned_like_the_sdk": {"revenue": None, "value": None, "tags": None, "note": None},
    "unparseable_value": {"value": "1,234", "revenue": -300},
}

USERS = ["user-1", "user-2", "vip_user"]


def _sdk(datafile: dict[str, Any]) -> tuple[Any, CapturingDispatcher]:
    captured = CapturingDispatcher()
    return sdk_client(json.dumps(datafile), captured), captured


@pytest.mark.parametrize("datafile_name", DATAFILES)
@pytest.mark.parametrize("attributes_name", ATTRIBUTE_SETS)
def test_impression_matches_the_sdk_activate(
    datafile_name: str, attributes_name: str, parity_counts: Counter[str]
) -> None:
    datafile = DATAFILES[datafile_name]
    attributes = ATTRIBUTE_SETS[attributes_name]
    config = parse_datafile(json.dumps(datafile))
    client, captured = _sdk(datafile)
    try:
        for user in USERS:
            variation_key = client.activate("ab_running", user, attributes)
            assert variation_key is not None
            (log_event,) = captured.events[-1:]
            ((uuid, timestamp),) = sdk_uuids_and_timestamps(log_event.params)
            experiment = config.experiments_by_key["ab_running"]
            variation = experiment.variations_by_key[variation_key]
            ours = records.impression(
                config, experiment, variation, user, attributes, now_ms=timestamp
            )._replace(uuid=uuid)
            assert trackd_payload([ours]) == sdk_payload(log_event.params)
            parity_counts["payload_impressions"] += 1
    finally:
        client.close()


@pytest.mark.parametrize("datafile_name", DATAFILES)
@pytest.mark.parametrize("attributes_name", ATTRIBUTE_SETS)
@pytest.mark.parametrize("tags_name", TAG_SETS)
def test_conversion_matches_the_sdk_track(
    datafile_name: str, attributes_name: str, tags_name: str, parity_counts: Counter[str]
) -> None:
    datafile = DATAFILES[datafile_name]
    attributes = ATTRIBUTE_SETS[attributes_name]
    parsed = parse_tags(TAG_SETS[tags_name])
    config = parse_datafile(json.dumps(datafile))
    client, captured = _sdk(datafile)
    try:
        for event_key in ("my_conversion", "signup"):
            # The SDK is handed what trackd's request parsing produces (whole doubles as
            # ints); no tags at all is the SDK's event_tags=None.
            client.track(event_key, "user-1", attributes, dict(parsed.tags) or None)
            (log_event,) = captured.events[-1:]
            ((uuid, timestamp),) = sdk_uuids_and_timestamps(log_event.params)
            ours = records.conversion(
                config,
                config.events_by_key[event_key],
                "user-1",
                attributes,
                parsed,
                [("40001", "42001")],  # attributions are trackd's own, never sent
                now_ms=timestamp,
            )._replace(uuid=uuid)
            assert trackd_payload([ours]) == sdk_payload(log_event.params)
            parity_counts["payload_conversions"] += 1
    finally:
        client.close()


def test_a_batch_of_many_visitors_matches_the_sdk_event_factory(
    parity_counts: Counter[str],
) -> None:
    """Several impressions and conversions in one batch, as the SDK's batch processor
    would build them with EventFactory.create_log_event."""
    datafile = DATAFILES["bot_filtering_true"]
    config = parse_datafile(json.dumps(datafile))
    sdk_config = project_config.ProjectConfig(
        json.dumps(datafile), NoOpLogger(), NoOpErrorHandler()
    )
    ours: list[Record] = []
    theirs = []
    for index, (attributes_name, tags_name) in enumerate(
        zip(ATTRIBUTE_SETS, TAG_SETS, strict=False)
    ):
        attributes = ATTRIBUTE_SETS[attributes_name]
        user = f"user-{index}"
        experiment = config.experiments_by_key["ab_iphone"]
        variation = experiment.variations[index % 2]
        sdk_experiment = sdk_config.get_experiment_from_key("ab_iphone")
        impression = UserEventFactory.create_impression_event(
            sdk_config,
            sdk_experiment,
            variation.id,
            "",
            "ab_iphone",
            enums.DecisionSources.EXPERIMENT,
            True,
            user,
            attributes,
            None,
        )
        assert impression is not None
        theirs.append(impression)
        ours.append(
            records.impression(
                config, experiment, variation, user, attributes, now_ms=impression.timestamp
            )._replace(uuid=impression.uuid)
        )
        parsed = parse_tags(TAG_SETS[tags_name])
        conversion = UserEventFactory.create_conversion_event(
            sdk_config,
            "purchase",
            user,
            attributes,
            dict(parsed.tags) or None,  # type: ignore[arg-type]
        )
        assert conversion is not None
        theirs.append(conversion)
        ours.append(
            records.conversion(
                config,
                config.events_by_key["purchase"],
                user,
                attributes,
                parsed,
                [],
                now_ms=conversion.timestamp,
            )._replace(uuid=conversion.uuid)
        )
    log_event = EventFactory.create_log_event(theirs, NoOpLogger())
    assert log_event is not None
    assert len(log_event.params["visitors"]) == len(ours) == 8
    assert trackd_payload(ours) == sdk_payload(log_event.params)
    parity_counts["payload_batches"] += 1

"""Event API batches: the SDK's shape (batches never mixing contexts: test_events_rounds)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import trackd
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.events import payload, records
from trackd.events.records import Record
from trackd.events.tags import parse_tags

DATAFILE = json.loads((Path(__file__).parents[1] / "data" / "datafile.json").read_text())


def _config(**changes: Any) -> ProjectConfig:
    document = copy.deepcopy(DATAFILE)
    document.update(changes)
    return parse_datafile(json.dumps(document))


def _impression(config: ProjectConfig, user: str = "u1") -> Record:
    experiment = config.experiments_by_key["ab_running"]
    return records.impression(
        config, experiment, experiment.variations[0], user, {"device": "x"}, now_ms=1
    )


def _conversion(config: ProjectConfig, tags: dict[str, Any]) -> Record:
    return records.conversion(
        config, config.events_by_key["signup"], "u1", {}, parse_tags(tags), [], now_ms=2
    )


def test_impression_visitor_has_one_decision_and_a_campaign_activated_event() -> None:
    record = _impression(_config())
    assert payload.visitor(record) == {
        "snapshots": [
            {
                "events": [
                    {
                        "entity_id": "41001",
                        "uuid": record.uuid,
                        "key": "campaign_activated",
                        "timestamp": 1,
                    }
                ],
                "decisions": [
                    {
                        "campaign_id": "41001",
                        "experiment_id": "40001",
                        "variation_id": "42001",
                        "metadata": {
                            "flag_key": "",
                            "rule_key": "ab_running",
                            "rule_type": "experiment",
                            "variation_key": "variation_a",
                            "enabled": True,
                        },
                    }
                ],
            }
        ],
        "attributes": [
            {"entity_id": "20001", "key": "device", "type": "custom", "value": "x"},
            {
                "entity_id": "$opt_bot_filtering",
                "key": "$opt_bot_filtering",
                "type": "custom",
                "value": False,
            },
        ],
        "visitor_id": "u1",
    }


def test_conversion_event_leaves_out_missing_revenue_value_and_tags() -> None:
    (event,) = payload.visitor(_conversion(_config(), {}))["snapshots"][0]["events"]
    assert set(event) == {"entity_id", "uuid", "key", "timestamp"}
    snapshot = payload.visitor(_conversion(_config(), {"revenue": 5, "value": 1.5}))["snapshots"][0]
    assert "decisions" not in snapshot
    assert snapshot["events"][0]["revenue"] == 5
    assert snapshot["events"][0]["value"] == 1.5
    assert snapshot["events"][0]["tags"] == {"revenue": 5, "value": 1.5}


def test_null_revenue_value_tags_and_decisions_tags_are_dropped_as_the_sdk_does() -> None:
    record = _conversion(_config(), {"revenue": None, "value": None, "decisions": None, "x": None})
    (event,) = payload.visitor(record)["snapshots"][0]["events"]
    assert event["tags"] == {"x": None}


def test_non_numeric_variation_id_is_sent_as_null() -> None:
    record = _impression(_config())._replace(variation_id="var_a")
    decision = payload.visitor(record)["snapshots"][0]["decisions"][0]
    assert decision["variation_id"] is None


def test_batch_header_names_trackd_and_the_context() -> None:
    config = _config()
    record = _impression(config)
    batch = payload.event_batch(record.context, [record])
    assert {k: v for k, v in batch.items() if k != "visitors"} == {
        "account_id": "12001",
        "project_id": "12002",
        "revision": "7",
        "client_name": "trackd",
        "client_version": trackd.__version__,
        "anonymize_ip": True,
        "enrich_decisions": True,
    }


def test_encode_is_compact_utf8_json_and_refuses_nan() -> None:
    body = payload.encode({"visitor_id": "ü", "n": 1})
    assert body == '{"visitor_id":"ü","n":1}'.encode()
    with pytest.raises(ValueError, match="JSON compliant"):
        payload.encode({"v": float("nan")})


def test_a_flag_decision_sends_its_flag_rule_type_and_enabled_in_the_metadata() -> None:
    record = _impression(_config())._replace(
        experiment_id="81001",
        experiment_key="pro_rule",
        campaign_id="81009",
        variation_id="82001",
        variation_key="on",
        flag_key="checkout",
        rule_type=records.RULE_TYPE_ROLLOUT,
        enabled=False,
    )
    (snapshot,) = payload.visitor(record)["snapshots"]
    assert snapshot["events"][0]["entity_id"] == "81009"
    assert snapshot["decisions"] == [
        {
            "campaign_id": "81009",
            "experiment_id": "81001",
            "variation_id": "82001",
            "metadata": {
                "flag_key": "checkout",
                "rule_key": "pro_rule",
                "rule_type": "rollout",
                "variation_key": "on",
                "enabled": False,
            },
        }
    ]


def test_a_decision_without_rule_or_variation_sends_empty_ids_and_a_null_variation() -> None:
    record = _impression(_config())._replace(
        experiment_id="",
        experiment_key="",
        campaign_id="",
        variation_id="",
        variation_key="",
        flag_key="checkout",
        rule_type=records.RULE_TYPE_ROLLOUT,
        enabled=False,
    )
    (snapshot,) = payload.visitor(record)["snapshots"]
    assert snapshot["events"][0]["entity_id"] == ""
    assert snapshot["decisions"][0] == {
        "campaign_id": "",
        "experiment_id": "",
        "variation_id": None,
        "metadata": {
            "flag_key": "checkout",
            "rule_key": "",
            "rule_type": "rollout",
            "variation_key": "",
            "enabled": False,
        },
    }

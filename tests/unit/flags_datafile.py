"""A small version 4 datafile with flags, written out by hand so each test can see its outcome.

Traffic is all or nothing (endOfRange 10000 or 0), so no test depends on where a hash lands.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from trackd.datafile import ProjectConfig, parse_datafile

VARIABLES = [
    {"id": "v_bool", "key": "show_banner", "type": "boolean", "defaultValue": "false"},
    {"id": "v_int", "key": "max_items", "type": "integer", "defaultValue": "3"},
    {"id": "v_double", "key": "discount", "type": "double", "defaultValue": "0.5"},
    {"id": "v_string", "key": "title", "type": "string", "defaultValue": "Checkout"},
    {"id": "v_json", "key": "layout", "type": "json", "defaultValue": '{"columns": 1}'},
    {
        "id": "v_old_json",
        "key": "legacy",
        "type": "string",
        "subType": "json",
        "defaultValue": '{"old": true}',
    },
]


def _rule(rule_id: str, key: str, variation: dict[str, Any], end: int, audiences: list[str]) -> Any:
    return {
        "id": rule_id,
        "key": key,
        "status": "Running",
        "layerId": f"layer_{rule_id}",
        "variations": [variation],
        "trafficAllocation": [{"entityId": variation["id"], "endOfRange": end}],
        "audienceIds": audiences,
        "forcedVariations": {},
    }


ON = {
    "id": "var_on",
    "key": "on",
    "featureEnabled": True,
    "variables": [{"id": "v_int", "value": "10"}],
}
OFF = {"id": "var_off", "key": "off", "featureEnabled": False, "variables": []}


def flags_document() -> dict[str, Any]:
    """Flag "checkout": A/B test "checkout_test" (everyone in "treatment", enabled, with a value
    for every variable), then rollout "iphone_rule" (device iPhone: "on"), "ad_rule" (ad_source
    my_campaign, traffic 0), "everyone_else" ("off"). Flag "empty": no rules at all."""
    treatment = {
        "id": "var_treatment",
        "key": "treatment",
        "featureEnabled": True,
        "variables": [
            {"id": "v_bool", "value": "true"},
            {"id": "v_int", "value": "7"},
            {"id": "v_double", "value": "1.25"},
            {"id": "v_string", "value": "Fast checkout"},
            {"id": "v_json", "value": '{"columns": 2, "tags": ["a"]}'},
            {"id": "v_old_json", "value": "[1, 2]"},
        ],
    }
    control = {"id": "var_control", "key": "control", "featureEnabled": False, "variables": []}
    return {
        "version": "4",
        "accountId": "1",
        "projectId": "2",
        "revision": "7",
        "sdkKey": "sdk-key-1",
        "environmentKey": "production",
        "sendFlagDecisions": True,
        "attributes": [{"id": "a1", "key": "device"}, {"id": "a2", "key": "ad_source"}],
        "audiences": [],
        "typedAudiences": [
            {
                "id": "aud_iphone",
                "name": "iPhone users",
                "conditions": [
                    "and",
                    {"name": "device", "type": "custom_attribute", "value": "iPhone"},
                ],
            },
            {
                "id": "aud_campaign",
                "name": "campaign",
                "conditions": [
                    "and",
                    {"name": "ad_source", "type": "custom_attribute", "value": "my_campaign"},
                ],
            },
        ],
        "events": [],
        "groups": [],
        "experiments": [
            {
                "id": "exp_checkout",
                "key": "checkout_test",
                "status": "Running",
                "layerId": "layer_1",
                "variations": [control, treatment],
                "trafficAllocation": [{"entityId": "var_treatment", "endOfRange": 10000}],
                "audienceIds": ["aud_campaign"],
                "forcedVariations": {"qa_user": "control"},
            }
        ],
        "featureFlags": [
            {
                "id": "flag_1",
                "key": "checkout",
                "experimentIds": ["exp_checkout"],
                "rolloutId": "rollout_1",
                "variables": copy.deepcopy(VARIABLES),
            },
            {"id": "flag_2", "key": "empty", "experimentIds": [], "rolloutId": "", "variables": []},
        ],
        "rollouts": [
            {
                "id": "rollout_1",
                "experiments": [
                    _rule("rule_iphone", "iphone_rule", ON, 10000, ["aud_iphone"]),
                    _rule("rule_ad", "ad_rule", ON, 0, ["aud_campaign"]),
                    _rule("rule_else", "everyone_else", OFF, 10000, []),
                ],
            }
        ],
        "integrations": [{"key": "odp", "host": "https://odp.example", "publicKey": "pk"}],
    }


def parse(document: dict[str, Any]) -> ProjectConfig:
    return parse_datafile(json.dumps(document))


def holdout(holdout_id: str, end: int = 10000, **extra: Any) -> dict[str, Any]:
    """A running holdout that takes `end` of 10000 buckets into its "ho_off" variation."""
    variation = {"id": f"{holdout_id}_var", "key": "ho_off", "featureEnabled": False}
    return {
        "id": holdout_id,
        "key": f"holdout_{holdout_id}",
        "status": "Running",
        "variations": [variation],
        "trafficAllocation": [{"entityId": variation["id"], "endOfRange": end}],
        "audienceIds": [],
        **extra,
    }

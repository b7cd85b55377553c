"""Flag decision events, field for field against what optimizely-sdk 5.7 dispatches for a
decide.

The SDK decides each flag with a capturing dispatcher. Its own decision (the Decision its
`_create_optimizely_decision` is handed: rule, variation, source, and a bypassed global
holdout) is turned into the plain `DecidedRule` the flag decision engine will hand
`trackd.events.decisions`, and the impressions that returns must be exactly the events the
SDK sent: as many, in the same order, with equal JSON documents apart from the uuid and
timestamp (taken from the SDK's) and the client name and version, which are each client's
own.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from optimizely.decision_service import Decision
from optimizely.optimizely_user_context import OptimizelyUserContext

from tests.support.oracle import (
    CapturingDispatcher,
    sdk_client,
    sdk_payload,
    sdk_uuids_and_timestamps,
    trackd_payload,
)
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.events.decisions import DecidedRule, decision_impressions
from trackd.events.records import AttributeValue


def _audience(audience_id: str, name: str, value: str) -> dict[str, Any]:
    condition = {"type": "custom_attribute", "name": name, "match": "exact", "value": value}
    return {"id": audience_id, "name": f"{name} {value}", "conditions": ["and", condition]}


def _variation(variation_id: str, key: str, enabled: bool) -> dict[str, Any]:
    return {"id": variation_id, "key": key, "featureEnabled": enabled, "variables": []}


def _rule(
    rule_id: str,
    key: str,
    variations: list[dict[str, Any]],
    ends: list[int],
    audience_ids: list[str] = (),  # type: ignore[assignment]
    layer_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": rule_id,
        "key": key,
        "status": "Running",
        "layerId": rule_id + "9" if layer_id is None else layer_id,
        "audienceIds": list(audience_ids),
        "forcedVariations": {},
        "variations": variations,
        "trafficAllocation": [
            {"entityId": variation["id"], "endOfRange": end}
            for variation, end in zip(variations, ends, strict=True)
        ],
        **extra,
    }


def _holdout(holdout_id: str, key: str, audience_id: str, **extra: Any) -> dict[str, Any]:
    variation = {"id": holdout_id + "1", "key": key + "_off", "featureEnabled": False}
    return {
        "id": holdout_id,
        "key": key,
        "status": "Running",
        "audienceIds": [audience_id],
        "variations": [variation],
        "trafficAllocation": [{"entityId": variation["id"], "endOfRange": 10000}],
        **extra,
    }


def _flag(flag_id: str, key: str, experiment_ids: list[str], rollout_id: str) -> dict[str, Any]:
    return {
        "id": flag_id,
        "key": key,
        "experimentIds": experiment_ids,
        "rolloutId": rollout_id,
        "variables": [],
    }


def _base() -> dict[str, Any]:
    """Flags with a feature test (half its users in a variation that is not enabled), a
    targeted-delivery test, a test in a mutually exclusive group, and rollouts: rules whose
    audience matches but whose traffic misses fall to "Everyone Else", a rule with an empty
    layerId and a non-numeric variation id, a rollout nobody is bucketed into, and a flag
    without any rule."""
    return {
        "version": "4",
        "accountId": "12001",
        "projectId": "12002",
        "revision": "31",
        "anonymizeIP": True,
        "attributes": [
            {"id": "20001", "key": "device"},
            {"id": "20002", "key": "plan"},
        ],
        "audiences": [],
        "typedAudiences": [
            _audience("30001", "device", "iPhone"),
            _audience("30002", "plan", "pro"),
            _audience("30003", "device", "Android"),
            _audience("30004", "device", "Pixel"),
            _audience("30005", "device", "iPad"),
        ],
        "events": [{"id": "60001", "key": "purchase", "experimentIds": ["40001"]}],
        "experiments": [
            _rule(
                "40001",
                "flag_test",
                [_variation("42001", "off_var", False), _variation("42002", "on_var", True)],
                [5000, 10000],
                ["30001"],
            ),
            _rule(  # a feature rollout: the SDK adds its flag's "Everyone Else" variation
                "40003",
                "fr_test",
                [_variation("42004", "fr_on", True)],
                [5000],
                type="fr",
            ),
            _rule(
                "40002",
                "td_test",
                [_variation("42003", "td_on", True)],
                [10000],
                type="td",
            ),
        ],
        "groups": [
            {
                "id": "50001",
                "policy": "random",
                "trafficAllocation": [{"entityId": "40005", "endOfRange": 10000}],
                "experiments": [
                    _rule(
                        "40005",
                        "grouped_test",
                        [_variation("42005", "g_a", True), _variation("42006", "g_b", False)],
                        [5000, 10000],
                    )
                ],
            }
        ],
        "featureFlags": [
            _flag("70001", "ab_flag", ["40001"], "80001"),
            _flag("70002", "rollout_flag", [], "80002"),
            _flag("70003", "empty_flag", [], ""),
            _flag("70004", "miss_flag", [], "80003"),
            _flag("70005", "td_flag", ["40002"], ""),
            _flag("70006", "grouped_flag", ["40005"], "80004"),
            _flag("70007", "fr_flag", ["40003"], "80005"),
        ],
        "rollouts": [
            {
                "id": "80001",
                "experiments": [
                    _rule(
                        "81001", "pro_rule", [_variation("82001", "on", True)], [10000], ["30002"]
                    ),
                    _rule("81002", "everyone_else_1", [_variation("82002", "off", False)], [10000]),
                ],
            },
            {
                "id": "80002",
                "experiments": [
                    _rule(
                        "81003",
                        "iphone_half",
                        [_variation("82003", "half_on", True)],
                        [5000],
                        ["30001"],
                    ),
                    _rule(
                        "81004",
                        "pro_odd_ids",
                        [_variation("var_pro", "pro_var", True)],
                        [10000],
                        ["30002"],
                        layer_id="",
                    ),
                    _rule(
                        "81005", "everyone_else_2", [_variation("82005", "all_on", True)], [10000]
                    ),
                ],
            },
            {
                "id": "80003",
                "experiments": [
                    _rule(
                        "81006", "pro_only", [_variation("82006", "p", True)], [10000], ["30002"]
                    ),
                    _rule("81007", "everyone_else_3", [_variation("82007", "n", True)], [0]),
                ],
            },
            {
                "id": "80004",
                "experiments": [
                    _rule("81008", "everyone_else_4", [_variation("82008", "e", False)], [10000]),
                ],
            },
            {
                "id": "80005",
                "experiments": [
                    _rule(
                        "81009", "everyone_else_5", [_variation("82009", "fr_else", True)], [10000]
                    ),
                ],
            },
        ],
    }


def _with_holdouts(document: dict[str, Any]) -> dict[str, Any]:
    """A global holdout (Android users), one that lets targeted deliveries through (Pixel
    users: their decide sends the holdout's event and then the decision's), and a local
    holdout on a delivery rule (iPad users)."""
    document["holdouts"] = [
        _holdout("90001", "global_holdout", "30003"),
        _holdout("90002", "bypass_holdout", "30004", excludeTargetedDeliveries=True),
    ]
    document["localHoldouts"] = [
        _holdout("90003", "local_holdout", "30005", includedRules=["81003", "81001"]),
    ]
    return document


def _variant(
    send: bool | None, bot: bool | None, holdouts: bool, anonymize_ip: bool = True
) -> dict[str, Any]:
    document = _base()
    document["anonymizeIP"] = anonymize_ip
    for key, value in (("sendFlagDecisions", send), ("botFiltering", bot)):
        if value is not None:
            document[key] = value
    return _with_holdouts(document) if holdouts else document


DATAFILES = {
    "send_true_bot_true_holdouts": _variant(True, True, True),
    "send_false_bot_false_holdouts": _variant(False, False, True),
    "send_absent_bot_absent": _variant(None, None, False),
    "send_true_bot_false_ip_kept": _variant(True, False, False, anonymize_ip=False),
}

ATTRIBUTE_SETS: dict[str, dict[str, Any]] = {
    "none": {},
    "iphone": {"device": "iPhone"},
    "pro_with_unknown_and_reserved": {
        "plan": "pro",
        "device": "Mac",
        "not_in_datafile": "x",
        "$opt_user_agent": "Mozilla",
        "$opt_bot_filtering": False,
    },
    "android_global_holdout": {"device": "Android"},
    "pixel_bypassed_holdout": {"device": "Pixel", "plan": "pro"},
    "ipad_local_holdout": {"device": "iPad", "plan": "pro"},
    "invalid_values_skipped": {"device": "iPhone", "plan": math.inf, "$opt_big": 2**53 + 2},
}

USERS = [f"user-{index}" for index in range(6)]
FLAGS = [flag["key"] for flag in _base()["featureFlags"]]

# (flag key, rule key or None for the flag-only kind, variation key): forced decisions,
# whose events name no rule (flag-only) or the forced rule.
FORCED = [
    ("ab_flag", None, "on"),  # flag-only: no rule, a delivery rule's variation
    ("ab_flag", "flag_test", "off_var"),  # a feature test's variation that is not enabled
    ("rollout_flag", "pro_odd_ids", "pro_var"),  # a delivery rule: a rollout decision
    ("empty_flag", None, "td_on"),  # not the flag's variation: ignored, no rule decides
]


def _config(document: dict[str, Any]) -> ProjectConfig:
    config = parse_datafile(json.dumps(document))
    assert config.send_flag_decisions is bool(document.get("sendFlagDecisions", False))
    return config


def _decided(decision: Decision) -> DecidedRule:
    """The SDK's Decision as the plain values trackd's engine will produce."""
    rule, variation = decision.experiment, decision.variation
    if isinstance(variation, dict):  # a holdout's
        variation_id, variation_key = variation["id"], variation["key"]
        enabled = bool(variation.get("featureEnabled") or False)
    elif variation is not None:
        variation_id, variation_key, enabled = variation.id, variation.key, variation.featureEnabled
    else:
        variation_id, variation_key, enabled = "", "", False
    return DecidedRule(
        source=str(decision.source),
        rule_id=rule.id if rule else "",
        rule_key=rule.key if rule else "",
        layer_id=getattr(rule, "layerId", "") or "",
        variation_id=variation_id,
        variation_key=variation_key,
        enabled=bool(enabled),
    )


class _SdkDecisions:
    """An SDK client whose decisions and dispatched events are kept."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.dispatched = CapturingDispatcher()
        self.client = sdk_client(json.dumps(document), self.dispatched)
        self.decisions: list[tuple[str, Decision, Decision | None]] = []
        create = self.client._create_optimizely_decision

        def kept(*args: Any, **kwargs: Any) -> Any:
            self.decisions.append((args[1], args[2], kwargs.get("holdout_decision")))
            return create(*args, **kwargs)

        self.client._create_optimizely_decision = kept


def _compare(
    sdk: _SdkDecisions,
    config: ProjectConfig,
    flag_key: str,
    user: str,
    attributes: Mapping[str, AttributeValue],
    decide: Any,
    parity_counts: Counter[str],
) -> list[dict[str, Any]]:
    """Decides once with the SDK, then builds trackd's events from the SDK's decision; returns
    the metadata of the events compared."""
    sent_before, decided_before = len(sdk.dispatched.events), len(sdk.decisions)
    decide()
    ((decided_flag, decision, holdout),) = sdk.decisions[decided_before:]
    assert decided_flag == flag_key
    theirs = [event.params for event in sdk.dispatched.events[sent_before:]]
    ours = decision_impressions(
        config,
        flag_key,
        _decided(decision),
        user,
        attributes,
        now_ms=0,
        bypassed_holdout=None if holdout is None else _decided(holdout),
    )
    assert len(ours) == len(theirs)
    metadata = []
    for record, params in zip(ours, theirs, strict=True):
        ((uuid, timestamp),) = sdk_uuids_and_timestamps(params)
        assert trackd_payload([record._replace(uuid=uuid, timestamp=timestamp)]) == sdk_payload(
            params
        )
        parity_counts["flag_payloads"] += 1
        (visitor,) = params["visitors"]
        metadata.append(visitor["snapshots"][0]["decisions"][0]["metadata"])
    parity_counts["flag_decides"] += 1
    if len(theirs) == 2:  # a bypassed holdout's event, then the decision's
        parity_counts["flag_decides_sending_two"] += 1
    return metadata


@pytest.mark.parametrize("datafile_name", DATAFILES)
@pytest.mark.parametrize("attributes_name", ATTRIBUTE_SETS)
def test_decision_events_match_the_sdk_decide(
    datafile_name: str, attributes_name: str, parity_counts: Counter[str]
) -> None:
    document = DATAFILES[datafile_name]
    attributes = ATTRIBUTE_SETS[attributes_name]
    config = _config(document)
    sdk = _SdkDecisions(document)
    try:
        for user in USERS:
            context = sdk.client.create_user_context(user, dict(attributes))
            for flag_key in FLAGS:
                _compare(
                    sdk,
                    config,
                    flag_key,
                    user,
                    attributes,
                    lambda context=context, flag_key=flag_key: context.decide(flag_key),
                    parity_counts,
                )
    finally:
        sdk.client.close()


@pytest.mark.parametrize("datafile_name", DATAFILES)
@pytest.mark.parametrize(("flag_key", "rule_key", "variation_key"), FORCED)
def test_forced_decision_events_match_the_sdk_decide(
    datafile_name: str,
    flag_key: str,
    rule_key: str | None,
    variation_key: str,
    parity_counts: Counter[str],
) -> None:
    document = DATAFILES[datafile_name]
    attributes = {"device": "iPhone"}
    config = _config(document)
    sdk = _SdkDecisions(document)
    try:
        for user in USERS:
            context = sdk.client.create_user_context(user, dict(attributes))
            assert context.set_forced_decision(
                OptimizelyUserContext.OptimizelyDecisionContext(flag_key, rule_key),
                OptimizelyUserContext.OptimizelyForcedDecision(variation_key),
            )
            sent = _compare(
                sdk,
                config,
                flag_key,
                user,
                attributes,
                lambda context=context: context.decide(flag_key),
                parity_counts,
            )
            if rule_key is None and variation_key == "on":  # a flag-only forced decision
                assert [(m["rule_type"], m["rule_key"], m["enabled"]) for m in sent] == [
                    ("feature-test", "", True)
                ]
    finally:
        sdk.client.close()


def _kinds_sent(
    document: dict[str, Any], attributes: dict[str, Any], counts: Counter[str]
) -> set[tuple[Any, ...]]:
    """(flag, rule_type, rule_key, enabled, variation key) of every event compared."""
    config = _config(document)
    sdk = _SdkDecisions(document)
    seen: set[tuple[Any, ...]] = set()
    try:
        for user in USERS:
            context = sdk.client.create_user_context(user, dict(attributes))
            for flag_key in FLAGS:
                for metadata in _compare(
                    sdk,
                    config,
                    flag_key,
                    user,
                    attributes,
                    lambda context=context, flag_key=flag_key: context.decide(flag_key),
                    counts,
                ):
                    seen.add(
                        (
                            metadata["flag_key"],
                            metadata["rule_type"],
                            metadata["rule_key"],
                            metadata["enabled"],
                            metadata["variation_key"],
                        )
                    )
    finally:
        sdk.client.close()
    return seen


def test_the_cases_compared_include_every_kind_of_decision_event() -> None:
    """The datafiles and attributes above really reach each case the events differ by (a
    guard against a datafile edit that would quietly stop comparing one)."""
    with_rollouts = _with_holdouts(_variant(True, True, False))
    seen: set[tuple[Any, ...]] = set()
    counts: Counter[str] = Counter()
    for attributes in ATTRIBUTE_SETS.values():
        seen |= _kinds_sent(with_rollouts, attributes, counts)
    assert counts["flag_decides_sending_two"] > 0
    kinds = {(flag, rule_type) for flag, rule_type, _, _, _ in seen}
    assert ("ab_flag", "feature-test") in kinds
    assert ("td_flag", "feature-test") in kinds
    assert ("grouped_flag", "feature-test") in kinds
    assert ("fr_flag", "feature-test", "fr_test", True, "fr_on") in seen
    assert ("fr_flag", "feature-test", "fr_test", True, "fr_else") in seen  # the added one
    assert ("ab_flag", "feature-test", "flag_test", False, "off_var") in seen  # not enabled
    assert ("rollout_flag", "rollout", "iphone_half", True, "half_on") in seen
    assert ("rollout_flag", "rollout", "everyone_else_2", True, "all_on") in seen
    assert ("ab_flag", "rollout", "everyone_else_1", False, "off") in seen  # not enabled
    assert ("rollout_flag", "rollout", "pro_odd_ids", True, "pro_var") in seen
    assert ("empty_flag", "rollout", "", False, "") in seen  # no rule, no variation
    assert ("miss_flag", "rollout", "", False, "") in seen  # rules, nobody bucketed
    assert ("ab_flag", "holdout", "global_holdout", False, "global_holdout_off") in seen
    assert ("rollout_flag", "holdout", "local_holdout", False, "local_holdout_off") in seen
    assert ("ab_flag", "holdout", "local_holdout", False, "local_holdout_off") in seen
    assert ("ab_flag", "holdout", "bypass_holdout", False, "bypass_holdout_off") in seen
    # Without sendFlagDecisions, a rollout sends nothing: only tests and holdouts do.
    quiet: set[tuple[Any, ...]] = set()
    for attributes in ATTRIBUTE_SETS.values():
        quiet |= _kinds_sent(_variant(False, True, True), attributes, Counter())
    assert {rule_type for _, rule_type, _, _, _ in quiet} == {"feature-test", "holdout"}

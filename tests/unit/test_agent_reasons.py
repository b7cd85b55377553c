"""trackd.agent_reasons: each reason trackd's flag engine gives, reworded as the Go SDK that
Agent runs words the same step. The reasons are the engine's own (decide_for_keys with
INCLUDE_REASONS on tests/unit/flags_datafile.py), so a change of trackd's wording that the
table no longer reads fails here. Every expected string is the Go SDK's format filled in,
with its place in github.com/optimizely/go-sdk/v2 v2.3.1 (the version Agent's go.mod pins)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.flags_datafile import flags_document, holdout, parse
from trackd.agent_reasons import worded_as_go
from trackd.decision.flags import DecideOption, FlagDecision, decide_for_keys

CAMPAIGN = {"ad_source": "my_campaign"}  # checkout_test's audience, and ad_rule's
IPHONE = {"device": "iPhone"}  # iphone_rule's audience

Document = dict[str, Any]


def decided(
    change: Callable[[Document], object] = lambda document: None,
    attributes: dict[str, str] | None = None,
    user_id: str = "user1",
    flag_key: str = "checkout",
    **kwargs: Any,
) -> tuple[FlagDecision, list[str]]:
    """The engine's decision with reasons, and its reasons worded as the Go SDK's."""
    document = flags_document()
    change(document)
    config = parse(document)
    [decision] = decide_for_keys(
        config, [flag_key], user_id, attributes or {}, {DecideOption.INCLUDE_REASONS}, **kwargs
    )
    return decision, worded_as_go(decision.reasons, config, flag_key)


def no_test_traffic(document: Document) -> None:
    document["experiments"][0]["trafficAllocation"] = []


def test_a_bucketed_feature_test_is_its_audience_check() -> None:
    _, go = decided(attributes=CAMPAIGN)
    assert go == [
        # pkg/decision/evaluator/audience_evaluator.go:46
        "Audiences for experiment checkout_test collectively evaluated to true.",
    ]


def test_a_whitelisted_user() -> None:
    _, go = decided(attributes=CAMPAIGN, user_id="qa_user")
    assert go == [
        # pkg/decision/experiment_whitelist_service.go:56
        'User "qa_user" is whitelisted into variation "control" of experiment "checkout_test".',
    ]


def test_a_forced_variation_is_the_go_sdks_override() -> None:
    _, go = decided(attributes=CAMPAIGN, forced_variation={"exp_checkout": "var_control"}.get)
    assert go == [
        # pkg/decision/experiment_override_service.go:113
        "Override variation control found for user user1",
    ]


def test_a_sticky_variation_is_the_go_sdks_user_profile() -> None:
    _, go = decided(attributes=CAMPAIGN, sticky_variation={"exp_checkout": "var_control"}.get)
    assert go == [
        # pkg/decision/persisting_experiment_service.go:106
        'User "user1" was previously bucketed into variation "control" of experiment '
        '"checkout_test".',
    ]


def test_a_feature_test_audience_mismatch_then_a_delivery_rule() -> None:
    _, go = decided(attributes=IPHONE)
    assert go == [
        # pkg/decision/evaluator/audience_evaluator.go:46
        "Audiences for experiment checkout_test collectively evaluated to false.",
        # pkg/decision/experiment_bucketer_service.go:64
        'User "user1" does not meet conditions to be in experiment "checkout_test".',
        # rule 1 bucketed: the bucketing step's audience check, audience_evaluator.go:52
        # (iphone_rule's tree is evaluated before it, in rollout_service.go, silently)
        "Audiences for experiment iphone_rule collectively evaluated to true.",
    ]


def test_outside_a_tests_traffic_then_each_kind_of_delivery_rule_step() -> None:
    decision, go = decided(no_test_traffic, attributes=CAMPAIGN)
    assert decision.rule_key == "everyone_else"
    assert go == [
        # pkg/decision/evaluator/audience_evaluator.go:46 (bucketing itself says nothing)
        "Audiences for experiment checkout_test collectively evaluated to true.",
        # pkg/decision/rollout_service.go:116, pkg/logging/log_messages.go:47
        'User "user1" does not meet conditions for targeting rule 1.',
        # rule 2's audience matches, its traffic misses: audience_evaluator.go:46
        "Audiences for experiment ad_rule collectively evaluated to true.",
        # the Everyone Else rule: audience_evaluator.go:52, then rollout_service.go:149,
        # pkg/logging/log_messages.go:45
        "Audiences for experiment everyone_else collectively evaluated to true.",
        'User "user1" meets conditions for targeting rule "Everyone Else".',
    ]


def test_not_in_the_tests_slot_of_its_exclusion_group() -> None:
    def grouped(document: Document) -> None:
        experiment = document["experiments"].pop()
        experiment["groupId"] = "g1"
        document["groups"] = [
            {
                "id": "g1",
                "policy": "random",
                "experiments": [experiment],
                "trafficAllocation": [{"entityId": "", "endOfRange": 10000}],
            }
        ]

    _, go = decided(grouped, attributes=CAMPAIGN)
    # pkg/decision/evaluator/audience_evaluator.go:46; the group's bucketing says nothing
    assert go[0] == "Audiences for experiment checkout_test collectively evaluated to true."


def test_a_holdout_the_user_is_in() -> None:
    def held_out(document: Document) -> None:
        document["holdouts"] = [holdout("h2")]

    _, go = decided(held_out, attributes=CAMPAIGN)
    assert go[:3] == [
        # pkg/decision/holdout_service.go:146 (no audience; 140 with one)
        "Audiences for holdout holdout_h2 collectively evaluated to true.",
        # pkg/decision/holdout_service.go:76
        "User user1 meets conditions for holdout holdout_h2.",
        # pkg/decision/holdout_service.go:105
        "User user1 is in variation ho_off of holdout holdout_h2.",
    ]


def test_forced_decisions_are_worded_alike_by_both_sdks() -> None:
    forced = {("checkout", None): "nope", ("checkout", "checkout_test"): "on"}
    _, go = decided(attributes=CAMPAIGN, forced_decisions=forced)
    assert go == [
        # pkg/decision/forced_decision_service.go:120 (target: "flag (%s)" [+ ", rule (%s)"])
        "Invalid variation is mapped to flag (checkout) and user (user1) "
        "in the forced decision map.",
        # pkg/decision/forced_decision_service.go:123
        "Variation (on) is mapped to flag (checkout), rule (checkout_test) and user (user1) "
        "in the forced decision map.",
    ]


def test_errors_unknown_flag_and_unreachable_cmab() -> None:
    config = parse(flags_document())
    [unknown] = decide_for_keys(config, ["nope"], "user1", {})
    assert unknown.error is not None
    # pkg/decide/decide_errors.go:30
    assert worded_as_go([unknown.error], config, "nope") == ['No flag was found for key "nope".']

    document = flags_document()
    document["experiments"][0]["cmab"] = {"attributeIds": [], "trafficAllocation": 10000}
    config = parse(document)
    options = {DecideOption.INCLUDE_REASONS}
    [cmab] = decide_for_keys(config, ["checkout"], "user1", CAMPAIGN, options)
    assert cmab.error is not None and "trackd does not call" in cmab.error
    # pkg/cmab/errors.go:26 (and 32): trackd's note on why is left out, as Agent has none
    go = "Failed to fetch CMAB data for experiment checkout_test."
    assert worded_as_go([cmab.error], config, "checkout") == [go]
    assert worded_as_go(cmab.reasons, config, "checkout")[-1] == go


def not_running(document: Document) -> None:
    document["experiments"][0]["status"] = "Paused"


def everyone_else_targeted(document: Document) -> None:
    document["rollouts"][0]["experiments"][-1]["audienceIds"] = ["aud_iphone"]


def local_holdout(document: Document) -> None:
    document["localHoldouts"] = [holdout("l1", includedRules=["rule_iphone"])]


def global_holdout(document: Document) -> None:
    document["holdouts"] = [holdout("h2")]


@pytest.mark.parametrize(
    ("change", "attributes", "kept"),
    [
        # The Go SDK does not check an experiment's status when deciding a flag.
        (not_running, CAMPAIGN, 'of experiment "checkout_test" (not_running).'),
        # It checks the Everyone Else rule's audience silently.
        (everyone_else_targeted, {}, "audience conditions for targeting rule Everyone Else."),
        # It has no local holdouts, and no reason naming the flag a holdout decided.
        (local_holdout, IPHONE, "is bucketed into local holdout 'holdout_l1' for rule"),
        (global_holdout, {}, "is bucketed into holdout 'holdout_h2' for feature flag"),
    ],
)
def test_a_reason_without_a_go_equivalent_is_kept_as_trackd_words_it(
    change: Callable[[Document], object], attributes: dict[str, str], kept: str
) -> None:
    decision, go = decided(change, attributes)
    [reason] = [r for r in decision.reasons if kept in r]
    assert reason in go

"""decide_all / decide_for_keys: each step of optimizely-sdk 5.7's flag decision, on a datafile
whose outcomes are written out (tests/unit/flags_datafile.py). The parity suite
(tests/parity/test_parity_flags.py) proves the same against the SDK on generated datafiles."""

from __future__ import annotations

from typing import Any

from tests.unit.flags_datafile import flags_document, holdout, parse
from trackd.datafile import ProjectConfig
from trackd.decision.flags import (
    DecideOption,
    FlagDecision,
    RuleType,
    decide_all,
    decide_for_keys,
)

IPHONE = {"device": "iPhone"}
CAMPAIGN = {"ad_source": "my_campaign"}


def checkout(
    config: ProjectConfig | None = None,
    attributes: dict[str, Any] | None = None,
    user_id: str = "user1",
    **kwargs: Any,
) -> FlagDecision:
    [decision] = decide_for_keys(
        config or parse(flags_document()), ["checkout"], user_id, attributes or {}, **kwargs
    )
    return decision


def summary(decision: FlagDecision) -> tuple[Any, ...]:
    return (decision.variation_key, decision.enabled, decision.rule_key, decision.rule_type)


def test_a_user_in_the_ab_test_gets_its_variation_and_variable_values() -> None:
    decision = checkout(attributes=CAMPAIGN)
    assert summary(decision) == ("treatment", True, "checkout_test", RuleType.FEATURE_TEST)
    assert decision.variables == {
        "show_banner": True,
        "max_items": 7,
        "discount": 1.25,
        "title": "Fast checkout",
        "layout": {"columns": 2, "tags": ["a"]},
        "legacy": [1, 2],
    }
    assert decision.error is None


def test_a_disabled_variation_gives_the_default_variable_values() -> None:
    decision = checkout(attributes=CAMPAIGN, user_id="qa_user")  # whitelisted into control
    assert summary(decision) == ("control", False, "checkout_test", RuleType.FEATURE_TEST)
    assert decision.variables["max_items"] == 3
    assert decision.variables["layout"] == {"columns": 1}


def test_outside_the_test_audience_the_first_matching_delivery_rule_decides() -> None:
    decision = checkout(attributes=IPHONE)
    assert summary(decision) == ("on", True, "iphone_rule", RuleType.ROLLOUT)
    assert decision.variables["max_items"] == 10


def test_a_delivery_rule_whose_audience_matches_but_traffic_misses_falls_to_everyone_else() -> None:
    document = flags_document()
    document["featureFlags"][0]["experimentIds"] = []  # so the campaign user reaches the rollout
    # ad_rule matches the campaign user with traffic 0; iphone_rule would match later rules'
    # users too, but after a miss only "Everyone Else" is tried.
    document["rollouts"][0]["experiments"][0], document["rollouts"][0]["experiments"][1] = (
        document["rollouts"][0]["experiments"][1],
        document["rollouts"][0]["experiments"][0],
    )
    decision = checkout(parse(document), attributes={**CAMPAIGN, **IPHONE})
    assert summary(decision) == ("off", False, "everyone_else", RuleType.ROLLOUT)


def test_a_flag_with_no_rules_is_off_as_a_rollout_decision_without_rule() -> None:
    [decision] = decide_for_keys(parse(flags_document()), ["empty"], "user1", {})
    assert summary(decision) == (None, False, None, RuleType.ROLLOUT)
    assert decision.variables == {}


def test_bucketing_id_attribute_replaces_the_user_id_for_bucketing_only() -> None:
    document = flags_document()
    document["experiments"][0]["trafficAllocation"] = [
        {"entityId": "var_treatment", "endOfRange": 5000}
    ]
    config = parse(document)
    outcomes = {
        summary(checkout(config, {**CAMPAIGN, "$opt_bucketing_id": "same"}, user_id=f"u{n}"))
        for n in range(40)
    }
    assert len(outcomes) == 1  # one bucketing id, one outcome, whatever the user id
    by_user = {summary(checkout(config, CAMPAIGN, user_id=f"u{n}")) for n in range(40)}
    assert len(by_user) == 2


def test_a_forced_decision_for_a_rule_beats_its_bucketing() -> None:
    forced = {("checkout", "checkout_test"): "control"}
    decision = checkout(attributes=CAMPAIGN, forced_decisions=forced)
    assert summary(decision) == ("control", False, "checkout_test", RuleType.FEATURE_TEST)
    # A delivery rule's forced decision: any variation of the flag, even another rule's.
    forced = {("checkout", "everyone_else"): "treatment"}
    decision = checkout(forced_decisions=forced)
    assert summary(decision) == ("treatment", True, "everyone_else", RuleType.ROLLOUT)


def test_a_forced_decision_for_the_whole_flag_comes_first_in_5_7() -> None:
    # optimizely-sdk 5.7 checks (flag, no rule) in _decide_for_keys before any rule, so it beats
    # a forced decision for one of the flag's rules; the decision names no rule.
    forced = {("checkout", None): "on", ("checkout", "checkout_test"): "control"}
    decision = checkout(attributes=CAMPAIGN, forced_decisions=forced)
    assert summary(decision) == ("on", True, None, RuleType.FEATURE_TEST)


def test_a_forced_decision_naming_no_variation_of_the_flag_is_ignored() -> None:
    forced = {("checkout", None): "nope", ("checkout", "checkout_test"): "nope"}
    decision = checkout(attributes=CAMPAIGN, forced_decisions=forced)
    assert summary(decision) == ("treatment", True, "checkout_test", RuleType.FEATURE_TEST)


def test_a_global_holdout_decides_before_every_rule() -> None:
    document = flags_document()
    document["holdouts"] = [holdout("h1", end=0), holdout("h2")]
    decision = checkout(parse(document), CAMPAIGN)
    assert summary(decision) == ("ho_off", False, "holdout_h2", RuleType.HOLDOUT)
    assert decision.variables["max_items"] == 3


def test_a_holdout_excluding_targeted_deliveries_skips_tests_but_not_the_rollout() -> None:
    document = flags_document()
    document["holdouts"] = [holdout("h1", excludeTargetedDeliveries=True)]
    config = parse(document)
    decision = checkout(config, {**CAMPAIGN, **IPHONE})
    assert summary(decision) == ("on", True, "iphone_rule", RuleType.ROLLOUT)
    assert decision.bypassed_holdout is not None
    assert decision.bypassed_holdout.holdout.key == "holdout_h1"
    # A "td" (targeted delivery) feature test is still tried.
    document["experiments"][0]["type"] = "td"
    decision = checkout(parse(document), CAMPAIGN)
    assert summary(decision) == ("treatment", True, "checkout_test", RuleType.FEATURE_TEST)


def test_a_local_holdout_decides_only_for_the_rules_it_includes() -> None:
    document = flags_document()
    document["localHoldouts"] = [holdout("l1", includedRules=["rule_iphone"])]
    config = parse(document)
    assert summary(checkout(config, IPHONE)) == ("ho_off", False, "holdout_l1", RuleType.HOLDOUT)
    assert summary(checkout(config, CAMPAIGN))[2] == "checkout_test"


def test_past_a_bypassed_global_holdout_only_a_delivery_rules_local_holdout_carries_it() -> None:
    # Without reasons, so a decision built at load (which carries no bypassed holdout) must
    # not stand in for the delivery rule's.
    document = flags_document()
    document["holdouts"] = [holdout("h1", excludeTargetedDeliveries=True)]
    document["localHoldouts"] = [holdout("l1", includedRules=["rule_iphone", "exp_checkout"])]
    decision = checkout(parse(document), IPHONE)
    assert summary(decision) == ("ho_off", False, "holdout_l1", RuleType.HOLDOUT)
    assert decision.bypassed_holdout is not None
    assert decision.bypassed_holdout.holdout.key == "holdout_h1"
    # A "td" feature test's local holdout: as in the SDK, no bypassed holdout beside it.
    document["experiments"][0]["type"] = "td"
    decision = checkout(parse(document), CAMPAIGN)
    assert summary(decision) == ("ho_off", False, "holdout_l1", RuleType.HOLDOUT)
    assert decision.bypassed_holdout is None


def test_a_stored_variation_is_sticky_unless_the_profile_is_ignored() -> None:
    stored = {"exp_checkout": "var_control"}.get
    decision = checkout(attributes=CAMPAIGN, sticky_variation=stored)
    assert decision.variation_key == "control"
    options = {DecideOption.IGNORE_USER_PROFILE_SERVICE}
    decision = checkout(attributes=CAMPAIGN, sticky_variation=stored, options=options)
    assert decision.variation_key == "treatment"


def test_sdk_style_forced_variations_apply_to_feature_tests() -> None:
    forced = {"exp_checkout": "var_control"}.get
    assert checkout(attributes=CAMPAIGN, forced_variation=forced).variation_key == "control"


def test_a_cmab_rule_is_an_error_decision_since_the_prediction_service_is_not_called() -> None:
    document = flags_document()
    document["experiments"][0]["cmab"] = {"attributeIds": [], "trafficAllocation": 10000}
    decision = checkout(parse(document), CAMPAIGN)
    assert summary(decision) == (None, False, None, None)
    assert decision.error is not None
    assert decision.error.startswith("Failed to fetch CMAB data for experiment checkout_test.")
    assert "cannot be reached" in decision.error
    assert decision.reasons[-1] == decision.error
    # Outside its CMAB traffic, the flag goes on to its rollout.
    document["experiments"][0]["cmab"]["trafficAllocation"] = 0
    assert summary(checkout(parse(document), CAMPAIGN))[2] == "everyone_else"


def test_decide_for_keys_answers_in_request_order_once_each_with_unknown_keys_as_errors() -> None:
    config = parse(flags_document())
    decisions = decide_for_keys(config, ["empty", "nope", "checkout", "empty"], "user1", {})
    assert [d.flag_key for d in decisions] == ["empty", "nope", "checkout"]
    unknown = decisions[1]
    assert (unknown.enabled, unknown.error) == (False, 'No flag was found for key "nope".')


def test_decide_all_decides_every_flag_in_datafile_order() -> None:
    decisions = decide_all(parse(flags_document()), "user1", IPHONE)
    assert [d.flag_key for d in decisions] == ["checkout", "empty"]


def test_every_flag_by_its_keys_decides_as_those_keys_asked_one_by_one() -> None:
    """decide_all (and decide_for_keys given config.flag_keys itself) walks flags_by_key rather
    than looking each key up: with a key written twice, the first place and the last flag, as
    a lookup per key gives."""
    document = flags_document()
    first = document["featureFlags"][0]
    document["featureFlags"].append({**first, "id": "flag_3", "rolloutId": ""})
    config = parse(document)
    assert config.flag_keys == ("checkout", "empty")
    asked_one_by_one = decide_for_keys(config, list(config.flag_keys), "user1", IPHONE)
    assert [summary(d) for d in asked_one_by_one] == [
        (None, False, None, RuleType.ROLLOUT),  # the second "checkout": no rollout, test missed
        (None, False, None, RuleType.ROLLOUT),
    ]
    for every_flag in (
        decide_all(config, "user1", IPHONE),
        decide_for_keys(config, config.flag_keys, "user1", IPHONE),
    ):
        assert every_flag == asked_one_by_one


def test_enabled_flags_only_leaves_out_disabled_flags_but_not_errors() -> None:
    config = parse(flags_document())
    options = {DecideOption.ENABLED_FLAGS_ONLY}
    decisions = decide_for_keys(config, ["checkout", "empty", "nope"], "user1", IPHONE, options)
    assert [d.flag_key for d in decisions] == ["checkout", "nope"]


def test_exclude_variables_leaves_the_variables_empty() -> None:
    decision = checkout(attributes=CAMPAIGN, options={DecideOption.EXCLUDE_VARIABLES})
    assert decision.variables == {}
    assert decision.enabled is True


def test_reasons_are_given_only_with_include_reasons() -> None:
    forced = {("checkout", "checkout_test"): "nope"}
    assert checkout(attributes=CAMPAIGN, forced_decisions=forced).reasons == ()
    decision = checkout(
        attributes=CAMPAIGN, forced_decisions=forced, options={DecideOption.INCLUDE_REASONS}
    )
    assert decision.reasons[0] == (
        "Invalid variation is mapped to flag (checkout), rule (checkout_test) "
        "and user (user1) in the forced decision map."
    )
    assert any("treatment" in reason for reason in decision.reasons)


def test_decisions_without_reasons_are_the_ones_built_at_load() -> None:
    config = parse(flags_document())
    flag = config.flags_by_key["checkout"]
    decision = checkout(config, IPHONE)
    assert decision is flag.outcomes.rollout_rules[0][0]
    excluded = checkout(config, IPHONE, options={DecideOption.EXCLUDE_VARIABLES})
    assert excluded is flag.outcomes_without_variables.rollout_rules[0][0]
    with_reasons = checkout(config, IPHONE, options={DecideOption.INCLUDE_REASONS})
    assert with_reasons is not decision
    assert summary(with_reasons) == summary(decision)


def test_delivery_rules_sharing_a_variation_each_return_their_own_built_decision() -> None:
    """The decisions built at load are found by the rule's place in the rollout and the
    traffic range the hash fell in: two rules giving the same variation stay apart."""
    document = flags_document()
    document["featureFlags"][0]["experimentIds"] = []
    document["rollouts"][0]["experiments"][1]["trafficAllocation"][0]["endOfRange"] = 10000
    config = parse(document)
    built = config.flags_by_key["checkout"].outcomes.rollout_rules
    iphone, campaign, other = (checkout(config, a) for a in (IPHONE, CAMPAIGN, {}))
    assert summary(iphone) == ("on", True, "iphone_rule", RuleType.ROLLOUT)
    assert summary(campaign) == ("on", True, "ad_rule", RuleType.ROLLOUT)
    assert summary(other) == ("off", False, "everyone_else", RuleType.ROLLOUT)
    assert iphone is built[0][0] and campaign is built[1][0] and other is built[2][0]


def test_a_whitelisted_variation_whose_id_a_later_one_repeats_is_still_the_one_decided() -> None:
    """The feature test's built decisions are by variation id, where the later variation of an
    id wins; the whitelist names the earlier one by key, which must not be swapped for it."""
    document = flags_document()
    [test] = document["experiments"]
    control, treatment = test["variations"]
    control["id"] = treatment["id"]
    for user_id, key, enabled in (("qa_user", "control", False), ("user1", "treatment", True)):
        decision = checkout(parse(document), CAMPAIGN, user_id=user_id)
        assert summary(decision) == (key, enabled, "checkout_test", RuleType.FEATURE_TEST)


class CountedAttributes(dict[str, Any]):
    """A user's attributes that count how often each one is read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)


def test_a_condition_tree_that_rules_share_is_evaluated_once_per_call() -> None:
    """Two flags' tests with equal audienceConditions (one tree, see ExperimentConditions)
    and the delivery rules' audiences: each tree is evaluated once for the user's call."""
    document = flags_document()
    [test] = document["experiments"]
    test["audienceConditions"] = ["or", "aud_iphone", "aud_campaign"]
    document["experiments"].append({**test, "id": "exp_2", "key": "second_test"})
    second = {"id": "flag_3", "key": "second", "experimentIds": ["exp_2"], "rolloutId": ""}
    document["featureFlags"].append({**second, "variables": []})
    config = parse(document)
    attributes = CountedAttributes()
    decisions = decide_all(config, "user1", attributes)
    assert [d.rule_key for d in decisions] == ["everyone_else", None, None]
    # Once for the tests' shared tree, once for a delivery rule's own audience.
    assert attributes.reads["device"] == 2
    assert attributes.reads["ad_source"] == 2

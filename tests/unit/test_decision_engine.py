"""decide(): each step of the SDK's order, on the bundled example datafile."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pytest
from optimizely.bucketer import Bucketer

from trackd.datafile import Experiment, ProjectConfig, parse_datafile
from trackd.decision import Decision, Reason, decide
from trackd.decision.conditions import Condition
from trackd.decision.engine import decide_for_user, reason_for_variation

EXAMPLE = files("trackd").joinpath("data/example_datafile.json").read_text()


@pytest.fixture(scope="module")
def config() -> ProjectConfig:
    return parse_datafile(EXAMPLE)


def experiment(config: ProjectConfig, key: str) -> Experiment:
    return config.experiments_by_key[key]


def user_with_bucket(parent_id: str, low: int, high: int, prefix: str = "user") -> str:
    """A user id whose bucket for `parent_id` falls in [low, high), by the SDK's bucketer."""
    bucketer = Bucketer()
    for n in range(100000):
        user_id = f"{prefix}{n}"
        if low <= bucketer._generate_bucket_value(user_id + parent_id) < high:
            return user_id
    raise AssertionError("no such user in range")


def test_user_in_traffic_is_bucketed_into_the_range_variation(config: ProjectConfig) -> None:
    checkout = experiment(config, "checkout_flow")
    low_user = user_with_bucket(checkout.id, 0, 5000)
    high_user = user_with_bucket(checkout.id, 5000, 10000)
    assert decide(config, checkout, low_user, {}) == Decision(
        checkout, checkout.variations_by_key["control"], Reason.BUCKETED
    )
    decision = decide(config, checkout, high_user, {})
    assert decision.variation == checkout.variations_by_key["one_page_checkout"]


def test_experiment_not_running_decides_nothing(config: ProjectConfig) -> None:
    paused = experiment(config, "free_shipping_banner")
    decision = decide(config, paused, "user1", {}, forced_variation_id="10418551356")
    assert (decision.variation, decision.reason) == (None, Reason.NOT_RUNNING)


def test_forced_variation_comes_before_whitelist_and_audiences(config: ProjectConfig) -> None:
    banner = experiment(config, "iphone_banner")
    off = banner.variations_by_key["banner_off"]
    decision = decide(config, banner, "qa_tester_1", {}, forced_variation_id=off.id)
    assert (decision.variation, decision.reason) == (off, Reason.FORCED)


def test_forced_variation_id_of_another_experiment_is_ignored(config: ProjectConfig) -> None:
    banner = experiment(config, "iphone_banner")
    decision = decide(config, banner, "qa_tester_1", {}, forced_variation_id="10389729780")
    assert decision.reason is Reason.WHITELISTED


def test_whitelisted_user_skips_audiences_and_traffic(config: ProjectConfig) -> None:
    banner = experiment(config, "iphone_banner")
    decision = decide(config, banner, "qa_tester_1", {"device": "Android"})
    assert (decision.variation, decision.reason) == (
        banner.variations_by_key["banner_on"],
        Reason.WHITELISTED,
    )


def test_sticky_variation_is_kept_while_it_is_still_a_variation(config: ProjectConfig) -> None:
    banner = experiment(config, "iphone_banner")
    off = banner.variations_by_key["banner_off"]
    decision = decide(config, banner, "someone", {}, sticky_variation_id=off.id)
    assert (decision.variation, decision.reason) == (off, Reason.STICKY)
    stale = decide(config, banner, "someone", {}, sticky_variation_id="removed-variation")
    assert stale.reason is Reason.AUDIENCE_MISMATCH


def test_user_outside_the_audience_is_not_bucketed(config: ProjectConfig) -> None:
    banner = experiment(config, "iphone_banner")
    for attributes in ({}, {"device": "Android"}, {"device": None}, {"device": 1}):
        assert decide(config, banner, "user1", attributes).reason is Reason.AUDIENCE_MISMATCH


def test_audience_results_keep_each_trees_answer_for_the_next_experiment(
    config: ProjectConfig,
) -> None:
    """decide_all passes one dict for the user's whole call: decide_for_user records a tree's
    answer in it and reads it back instead of evaluating the tree again."""
    banner = experiment(config, "iphone_banner")
    conditions = banner.audience_conditions
    assert conditions is not None

    def reason(attributes: dict[str, Any], answers: dict[Condition, bool]) -> Reason:
        user = "user1"
        return decide_for_user(config, banner, user, user, attributes, None, None, answers).reason

    answers: dict[Condition, bool] = {}
    assert reason({"device": "iPhone"}, answers) is not Reason.AUDIENCE_MISMATCH
    assert answers == {conditions: True}
    # The recorded answer wins over the attributes: the tree is not evaluated again.
    answers[conditions] = False
    assert reason({"device": "iPhone"}, answers) is Reason.AUDIENCE_MISMATCH
    assert reason({"device": "Android"}, {}) is Reason.AUDIENCE_MISMATCH


def test_bucket_beyond_the_last_range_is_outside_traffic(config: ProjectConfig) -> None:
    banner = experiment(config, "iphone_banner")  # traffic ends at 8000
    user_id = user_with_bucket(banner.id, 8000, 10000)
    decision = decide(config, banner, user_id, {"device": "iPhone"})
    assert (decision.variation, decision.reason) == (None, Reason.OUTSIDE_TRAFFIC)


def test_exclusive_group_lets_a_user_into_one_experiment_only(config: ProjectConfig) -> None:
    pricing = experiment(config, "pricing_page")
    in_slot = user_with_bucket(pricing.group_id or "", 0, 5000)
    out_of_slot = user_with_bucket(pricing.group_id or "", 5000, 10000)
    assert decide(config, pricing, in_slot, {}).reason is Reason.BUCKETED
    decision = decide(config, pricing, out_of_slot, {})
    assert (decision.variation, decision.reason) == (None, Reason.NOT_IN_GROUP_SLOT)


def test_bucketing_id_attribute_replaces_the_user_id_for_hashing(config: ProjectConfig) -> None:
    checkout = experiment(config, "checkout_flow")
    low = user_with_bucket(checkout.id, 0, 5000, prefix="household")
    high_user = user_with_bucket(checkout.id, 5000, 10000)
    attributes: dict[str, Any] = {"$opt_bucketing_id": low}
    assert (
        decide(config, checkout, high_user, attributes).variation
        == (checkout.variations_by_key["control"])
    )
    attributes["$opt_bucketing_id"] = 12345  # not a str: the SDK falls back to the user id
    assert (
        decide(config, checkout, high_user, attributes).variation
        == (checkout.variations_by_key["one_page_checkout"])
    )


def variant(mutate: Any) -> ProjectConfig:
    document = json.loads(EXAMPLE)
    mutate(document)
    return parse_datafile(json.dumps(document))


def test_range_with_empty_entity_id_is_outside_traffic() -> None:
    def empty_first_half(document: dict[str, Any]) -> None:
        document["experiments"][0]["trafficAllocation"][0]["entityId"] = ""

    config = variant(empty_first_half)
    checkout = config.experiments_by_key["checkout_flow"]
    user_id = user_with_bucket(checkout.id, 0, 5000)
    assert decide(config, checkout, user_id, {}).reason is Reason.OUTSIDE_TRAFFIC


def test_overlapping_group_experiments_are_bucketed_independently() -> None:
    def overlapping(document: dict[str, Any]) -> None:
        document["groups"][0]["policy"] = "overlapping"

    config = variant(overlapping)
    pricing = config.experiments_by_key["pricing_page"]
    out_of_slot = user_with_bucket("19228", 5000, 10000)
    assert decide(config, pricing, out_of_slot, {}).reason is Reason.BUCKETED


def test_experiment_with_a_blank_key_is_never_bucketed() -> None:
    """The SDK's bucketer returns nothing for a blank key; whitelists still apply."""

    def blank_key(document: dict[str, Any]) -> None:
        document["experiments"][0]["key"] = "  "
        document["experiments"][0]["forcedVariations"] = {"vip": "control"}

    config = variant(blank_key)
    blank = config.experiments_by_key["  "]
    assert decide(config, blank, "anyone", {}).reason is Reason.OUTSIDE_TRAFFIC
    assert decide(config, blank, "vip", {}).reason is Reason.WHITELISTED


def test_reason_for_variation_names_the_reason_decide_gives(config: ProjectConfig) -> None:
    """Every experiment of the example datafile, users whitelisted and not, forced and sticky
    ids that are variations of the experiment, of another one, or none: wherever decide
    returns a variation, reason_for_variation gives decide's reason."""
    experiments = list(config.experiments_by_id.values())
    foreign = "no-such-variation"
    checked: set[Reason] = set()
    for experiment in experiments:
        whitelisted = list(experiment.outcomes.whitelisted)
        ids = [None, foreign, *experiment.variations_by_id]
        for user_id in [*whitelisted, *(f"user{n}" for n in range(40))]:
            for attributes in ({}, {"device": "iPhone", "country": "US", "age": 30}):
                for forced in ids:
                    for sticky in ids:
                        decision = decide(
                            config,
                            experiment,
                            user_id,
                            attributes,
                            forced_variation_id=forced,
                            sticky_variation_id=sticky,
                        )
                        if decision.variation is None:
                            continue
                        reason = reason_for_variation(
                            experiment,
                            user_id,
                            forced_variation_id=forced,
                            sticky_variation_id=sticky,
                        )
                        assert reason is decision.reason, (experiment.key, user_id, forced, sticky)
                        checked.add(reason)
    assert checked == {Reason.FORCED, Reason.WHITELISTED, Reason.STICKY, Reason.BUCKETED}

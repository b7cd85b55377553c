"""parse_datafile on flags: what it indexes from featureFlags, rollouts, variables, holdouts,
CMAB and integrations, and the datafiles it refuses (the ones optimizely-sdk 5.7 refuses)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.flags_datafile import flags_document, holdout, parse
from trackd.datafile.model import Cmab, Integration, VariableType
from trackd.errors import DatafileError


def test_flags_rollouts_and_rules_are_indexed_in_datafile_order() -> None:
    config = parse(flags_document())
    assert config.flag_keys == ("checkout", "empty")
    checkout = config.flags_by_key["checkout"]
    assert [rule.key for rule in checkout.experiments] == ["checkout_test"]
    assert checkout.experiments[0] is config.experiments_by_id["exp_checkout"]
    assert checkout.rollout is config.rollouts_by_id["rollout_1"]
    assert [rule.key for rule in checkout.rollout.rules] == [
        "iphone_rule",
        "ad_rule",
        "everyone_else",
    ]
    assert config.flag_by_experiment_id["exp_checkout"] is checkout
    assert config.flags_by_key["empty"].rollout is None
    # Delivery rules are not experiments Activate or Track know.
    assert "iphone_rule" not in config.experiments_by_key


def test_project_fields_for_flags_are_read() -> None:
    config = parse(flags_document())
    assert config.send_flag_decisions is True
    assert (config.sdk_key, config.environment_key) == ("sdk-key-1", "production")
    assert config.integrations == (Integration("odp", "https://odp.example", "pk"),)


def test_absent_flag_sections_give_an_empty_index_and_send_flag_decisions_false() -> None:
    document = flags_document()
    for key in ("featureFlags", "rollouts", "sendFlagDecisions", "integrations"):
        del document[key]
    config = parse(document)
    assert (config.flag_keys, dict(config.rollouts_by_id)) == ((), {})
    assert config.send_flag_decisions is False
    assert config.integrations == ()


def test_variables_are_typed_once_and_string_json_becomes_json() -> None:
    checkout = parse(flags_document()).flags_by_key["checkout"]
    assert [(v.key, v.type) for v in checkout.variables] == [
        ("show_banner", VariableType.BOOLEAN),
        ("max_items", VariableType.INTEGER),
        ("discount", VariableType.DOUBLE),
        ("title", VariableType.STRING),
        ("layout", VariableType.JSON),
        ("legacy", VariableType.JSON),
    ]
    assert checkout.default_variables == {
        "show_banner": False,
        "max_items": 3,
        "discount": 0.5,
        "title": "Checkout",
        "layout": {"columns": 1},
        "legacy": {"old": True},
    }
    assert checkout.variables_by_variation_id["var_treatment"] == {
        "show_banner": True,
        "max_items": 7,
        "discount": 1.25,
        "title": "Fast checkout",
        "layout": {"columns": 2, "tags": ["a"]},
        "legacy": [1, 2],
    }
    # A variation that sets only some variables takes the defaults for the rest.
    assert checkout.variables_by_variation_id["var_on"]["max_items"] == 10
    assert checkout.variables_by_variation_id["var_on"]["title"] == "Checkout"


def test_values_the_sdk_cannot_cast_become_none() -> None:
    document = flags_document()
    variables = document["featureFlags"][0]["variables"]
    variables[1]["defaultValue"] = "1.5"  # integer
    variables[2]["defaultValue"] = "cheap"  # double
    variables[4]["defaultValue"] = "{not json"
    variables[0]["defaultValue"] = "True"  # boolean: only "true" is true
    defaults = parse(document).flags_by_key["checkout"].default_variables
    assert (defaults["max_items"], defaults["discount"], defaults["layout"]) == (None, None, None)
    assert defaults["show_banner"] is False


def test_variations_carry_feature_enabled_and_their_variable_values() -> None:
    experiment = parse(flags_document()).experiments_by_id["exp_checkout"]
    treatment = experiment.variations_by_key["treatment"]
    assert treatment.feature_enabled is True
    assert ("v_int", "7") in treatment.variable_usages
    assert experiment.variations_by_key["control"].feature_enabled is False


def test_forced_decision_variations_span_every_rule_of_the_flag() -> None:
    checkout = parse(flags_document()).flags_by_key["checkout"]
    assert set(checkout.variations_by_key) == {"control", "treatment", "on", "off"}


def test_global_holdouts_ignore_included_rules_and_only_running_ones_are_decided() -> None:
    document = flags_document()
    document["holdouts"] = [
        holdout("h1", includedRules=["rule_iphone"], includedFlags=["flag_2"]),
        holdout("h2", status="Draft"),
    ]
    config = parse(document)
    assert [h.key for h in config.holdouts] == ["holdout_h1", "holdout_h2"]
    assert [h.key for h in config.global_holdouts] == ["holdout_h1"]
    assert config.global_holdouts[0].included_rules is None
    assert dict(config.holdouts_by_rule_id) == {}


def test_local_holdouts_are_indexed_by_rule_and_dropped_without_included_rules() -> None:
    document = flags_document()
    document["localHoldouts"] = [
        holdout("l1", includedRules=["rule_iphone", "exp_checkout"]),
        holdout("l2"),  # no includedRules: 5.7 leaves it out entirely
        holdout("l3", includedRules=None),
        holdout("l4", includedRules=["rule_iphone"], excludeTargetedDeliveries=True),
    ]
    config = parse(document)
    assert [h.key for h in config.holdouts] == ["holdout_l1", "holdout_l4"]
    assert [h.key for h in config.holdouts_by_rule_id["rule_iphone"]] == [
        "holdout_l1",
        "holdout_l4",
    ]
    assert [h.key for h in config.holdouts_by_rule_id["exp_checkout"]] == ["holdout_l1"]
    assert config.global_holdouts == ()


def test_cmab_experiments_keep_their_traffic_and_attributes() -> None:
    document = flags_document()
    document["experiments"][0]["cmab"] = {"attributeIds": ["a1"], "trafficAllocation": 5000}
    document["experiments"][0]["type"] = "cmab"
    experiment = parse(document).experiments_by_id["exp_checkout"]
    assert experiment.cmab == Cmab(("a1",), 5000)
    assert experiment.type == "cmab"


def test_feature_rollout_experiments_gain_the_everyone_else_variation() -> None:
    document = flags_document()
    document["experiments"][0]["type"] = "fr"
    config = parse(document)
    experiment = config.experiments_by_id["exp_checkout"]
    assert [v.key for v in experiment.variations] == ["control", "treatment", "off"]
    assert experiment.traffic_allocation[-1].end_of_range == 10000
    assert config.flags_by_key["checkout"].experiments[0] is experiment
    assert config.experiments_by_key["checkout_test"] is experiment


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda d: d["featureFlags"][0].update(experimentIds=["missing"]),
            "featureFlags[0] names experiment 'missing'",
        ),
        (
            lambda d: d["featureFlags"][0].update(rolloutId="missing"),
            "featureFlags[0] names rollout 'missing'",
        ),
        (
            lambda d: d["featureFlags"][0]["variables"][0].pop("defaultValue"),
            "missing required key 'defaultValue' in featureFlags[0].variables[0]",
        ),
        (
            lambda d: d["featureFlags"][0].pop("rolloutId"),
            "missing required key 'rolloutId' in featureFlags[0]",
        ),
        (
            lambda d: d["rollouts"][0]["experiments"][0].pop("forcedVariations"),
            "missing required key 'forcedVariations' in rollouts[0].experiments[0]",
        ),
        (
            lambda d: d.update(holdouts=[{"id": "h", "key": "h"}]),
            "missing required key",
        ),
        (lambda d: d.update(sendFlagDecisions="yes"), "'sendFlagDecisions' must be a boolean"),
        (
            lambda d: d["experiments"][0]["variations"][1].update(variables=5),
            "'experiments[0].variations[1].variables' must be an array, got integer",
        ),
    ],
)
def test_datafiles_the_sdk_refuses_are_refused_with_a_reason(
    change: Callable[[dict[str, Any]], object], reason: str
) -> None:
    document = flags_document()
    change(document)
    with pytest.raises(DatafileError, match=re.escape(reason)):
        parse(document)


def test_a_feature_test_id_shared_with_a_delivery_rule_names_the_rule_as_in_the_sdk() -> None:
    # The SDK's experiment_id_map takes rollout rules after top-level experiments, so a rule
    # with the id of a top-level experiment replaces it wherever a flag names that id.
    document = flags_document()
    document["rollouts"][0]["experiments"][0]["id"] = "exp_checkout"
    checkout = parse(document).flags_by_key["checkout"]
    assert checkout.experiments[0].key == "iphone_rule"


def test_a_falsy_variables_value_is_no_variables_as_in_the_sdk() -> None:
    document = flags_document()
    document["experiments"][0]["variations"][1]["variables"] = 0
    treatment = parse(document).experiments_by_id["exp_checkout"].variations_by_key["treatment"]
    assert treatment.variable_usages == ()


def test_of_flags_with_one_key_the_last_is_kept_and_owns_its_experiments() -> None:
    document = flags_document()
    duplicate = {**document["featureFlags"][0], "id": "flag_3", "experimentIds": []}
    document["featureFlags"].append(duplicate)
    config = parse(document)
    assert config.flag_keys == ("checkout", "empty")
    assert config.flags_by_key["checkout"].id == "flag_3"
    assert "exp_checkout" not in config.flag_by_experiment_id

"""parse_datafile: what it indexes from a datafile, and the one-line reasons it refuses one."""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from typing import Any

import pytest

from trackd.datafile import ProjectConfig, Variation, parse_datafile
from trackd.decision.conditions import Exact
from trackd.errors import DatafileError

EXAMPLE = files("trackd").joinpath("data/example_datafile.json").read_text()


def example() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(EXAMPLE)
    return document


def parse(document: dict[str, Any]) -> ProjectConfig:
    return parse_datafile(json.dumps(document))


def refusal(document: Any) -> str:
    text = document if isinstance(document, str | bytes) else json.dumps(document)
    with pytest.raises(DatafileError) as raised:
        parse_datafile(text)
    return str(raised.value)


def test_example_datafile_parses_with_its_project_identity() -> None:
    config = parse_datafile(EXAMPLE)
    assert (config.version, config.account_id, config.project_id, config.revision) == (
        "4",
        "12133785640",
        "6460519658291200",
        "135",
    )
    assert config.anonymize_ip is True
    assert config.bot_filtering is False
    assert config.raw_json == EXAMPLE
    assert set(config.events_by_key) == {
        "my_conversion",
        "add_to_cart",
        "purchase",
        "checkout_completed",
    }
    assert set(config.attributes_by_key) == {"device", "ad_source", "beta_user", "country"}


def test_bytes_are_accepted_and_kept_as_text() -> None:
    assert parse_datafile(EXAMPLE.encode()).raw_json == EXAMPLE


def test_group_experiments_are_indexed_with_their_group_id_and_policy() -> None:
    config = parse_datafile(EXAMPLE)
    pricing = config.experiments_by_key["pricing_page"]
    assert (pricing.group_id, pricing.group_policy) == ("19228", "random")
    assert config.experiments_by_id[pricing.id] is pricing
    assert config.groups_by_id["19228"].experiments == ("10417730432", "10418551353")
    top_level = config.experiments_by_key["checkout_flow"]
    assert (top_level.group_id, top_level.group_policy) == (None, None)


def test_experiment_ids_keep_datafile_order_top_level_first() -> None:
    assert parse_datafile(EXAMPLE).experiment_ids == (
        "10390977673",
        "10420810910",
        "10430000001",  # checkout_ab, the checkout_redesign flag's A/B test
        "10417730432",
        "10418551353",
    )


def test_experiment_indexes_variations_by_id_and_key() -> None:
    experiment = parse_datafile(EXAMPLE).experiments_by_key["iphone_banner"]
    on = Variation("10418510625", "banner_on")
    assert experiment.variations_by_key["banner_on"] == on
    assert experiment.variations_by_id["10418510625"] == on
    assert experiment.forced_variations == {"qa_tester_1": "banner_on"}
    assert experiment.whitelist == {"qa_tester_1": on}
    assert experiment.is_running


def test_whitelist_drops_entries_naming_no_variation() -> None:
    document = example()
    document["experiments"][1]["forcedVariations"] = {"a": "banner_on", "b": "gone"}
    experiment = parse(document).experiments_by_key["iphone_banner"]
    assert set(experiment.whitelist) == {"a"}
    assert experiment.forced_variations == {"a": "banner_on", "b": "gone"}


def test_audience_conditions_are_parsed_once_and_linked_into_the_experiment() -> None:
    experiment = parse_datafile(EXAMPLE).experiments_by_key["iphone_banner"]
    conditions = experiment.audience_conditions
    assert isinstance(conditions, Exact)
    assert (conditions.name, conditions.value) == ("device", "iPhone")


def test_experiments_with_equal_audience_conditions_share_one_tree() -> None:
    """So a decide_all evaluates it once per user (see ExperimentConditions)."""
    document = example()
    banner = document["experiments"][1]
    banner["audienceConditions"] = ["or", "11154", "11160"]
    twin = {**copy.deepcopy(banner), "id": "twin_id", "key": "twin"}
    twin["audienceConditions"] = ["or", "11154", "11160"]
    other = {**copy.deepcopy(banner), "id": "other_id", "key": "other"}
    other["audienceConditions"] = ["and", "11154", "11160"]
    document["experiments"] += [twin, other]
    experiments = parse(document).experiments_by_key
    shared = experiments["iphone_banner"].audience_conditions
    assert shared is not None
    assert experiments["twin"].audience_conditions is shared
    assert experiments["other"].audience_conditions is not shared


def test_experiment_without_audiences_has_no_conditions_to_evaluate() -> None:
    assert parse_datafile(EXAMPLE).experiments_by_key["checkout_flow"].audience_conditions is None


def test_typed_audiences_replace_string_audiences_with_the_same_id() -> None:
    document = example()
    document["audiences"][0]["conditions"] = json.dumps(
        [{"name": "device", "type": "custom_attribute", "value": "Android"}]
    )
    config = parse(document)
    conditions = config.audiences_by_id["11154"].conditions
    assert isinstance(conditions, Exact)
    assert conditions.value == "iPhone"


def test_audience_conditions_win_over_audience_ids() -> None:
    document = example()
    experiment = document["experiments"][1]
    experiment["audienceIds"] = ["no_such_audience"]
    assert parse(document).experiments_by_key["iphone_banner"].audience_conditions is not None
    experiment["audienceConditions"] = []
    assert parse(document).experiments_by_key["iphone_banner"].audience_conditions is None


def test_null_audience_conditions_fall_back_to_audience_ids() -> None:
    document = example()
    document["experiments"][1]["audienceConditions"] = None
    conditions = parse(document).experiments_by_key["iphone_banner"].audience_conditions
    assert isinstance(conditions, Exact)


def test_group_experiment_replaces_top_level_experiment_with_the_same_id() -> None:
    document = example()
    duplicate = copy.deepcopy(document["groups"][0]["experiments"][0])
    duplicate["key"] = "stale_copy"
    document["experiments"].append(duplicate)
    config = parse(document)
    assert config.experiments_by_id["10417730432"].key == "pricing_page"
    assert config.experiments_by_id["10417730432"].group_id == "19228"


def test_version_2_and_3_datafiles_are_accepted() -> None:
    for version in ("2", "3"):
        document = example()
        document["version"] = version
        assert parse(document).version == version


def test_traffic_allocation_keeps_ranges_in_order() -> None:
    experiment = parse_datafile(EXAMPLE).experiments_by_key["iphone_banner"]
    assert [(r.end_of_range, r.entity_id) for r in experiment.traffic_allocation] == [
        (4000, "10418510624"),
        (8000, "10418510625"),
    ]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(version="5"), "unsupported datafile version '5' (supported: 2, 3, 4)"),
        (lambda d: d.update(version=4), "unsupported datafile version 4 (supported: 2, 3, 4)"),
        (lambda d: d.pop("version"), "missing required key 'version'"),
        (lambda d: d.pop("experiments"), "missing required key 'experiments'"),
        (lambda d: d.pop("groups"), "missing required key 'groups'"),
        (lambda d: d.update(experiments={}), "'experiments' must be an array, got object"),
        (lambda d: d.update(revision=135), "'revision' must be a string, got integer"),
        (lambda d: d.update(anonymizeIP="yes"), "'anonymizeIP' must be a boolean, got string"),
        (
            lambda d: d["experiments"][0].pop("layerId"),
            "missing required key 'layerId' in experiments[0]",
        ),
        (
            lambda d: d["experiments"][1]["variations"][0].update(id=7),
            "'experiments[1].variations[0].id' must be a string, got integer",
        ),
        (
            lambda d: d["experiments"][0]["trafficAllocation"][0].update(endOfRange="5000"),
            "'experiments[0].trafficAllocation[0].endOfRange' must be an integer, got string",
        ),
        (
            lambda d: d["experiments"][0].update(forcedVariations=[]),
            "'experiments[0].forcedVariations' must be an object, got array",
        ),
        (
            lambda d: d["groups"][0]["experiments"][1].update(status=None),
            "'groups[0].experiments[1].status' must be a string, got null",
        ),
        (
            lambda d: d["audiences"][0].update(conditions='["and"'),
            "audiences[0].conditions is not JSON",
        ),
        (
            lambda d: d["events"][0].update(experimentIds=[1]),
            "'events[0].experimentIds[0]' must be a string, got integer",
        ),
    ],
)
def test_invalid_datafile_is_refused_with_a_reason_naming_the_problem(
    mutate: Any, reason: str
) -> None:
    document = example()
    mutate(document)
    assert refusal(document).startswith(reason)


def test_text_that_is_not_json_is_refused() -> None:
    assert refusal("{not json").startswith("not JSON: ")


def test_json_that_is_not_an_object_is_refused() -> None:
    assert refusal("[]") == "the datafile must be a JSON object, got array"


def test_bytes_that_are_not_utf8_are_refused() -> None:
    assert refusal(b"\xff{}").startswith("not UTF-8: ")


def test_region_is_read_as_the_sdks_read_it() -> None:
    document = json.loads(EXAMPLE)
    document.pop("region", None)
    assert parse_datafile(json.dumps(document)).region == "US"
    document["region"] = None
    assert parse_datafile(json.dumps(document)).region == "US"
    document["region"] = "EU"
    assert parse_datafile(json.dumps(document)).region == "EU"
    document["region"] = 3
    with pytest.raises(DatafileError, match="'region' must be a string or null"):
        parse_datafile(json.dumps(document))

"""However the flag parts of a datafile are damaged, parse_datafile answers with a config or a
DatafileError (never another exception), and a config it answers with can decide every flag."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.flags_datafile import flags_document, holdout
from tests.unit.test_datafile_fuzz import damaged, json_values, paths
from trackd.datafile import parse_datafile
from trackd.decision.flags import DecideOption, decide_all
from trackd.errors import DatafileError

DOCUMENT = flags_document()
DOCUMENT["experiments"][0]["cmab"] = {"attributeIds": ["a1"], "trafficAllocation": 5000}
DOCUMENT["holdouts"] = [holdout("h1", excludeTargetedDeliveries=True)]
DOCUMENT["localHoldouts"] = [holdout("l1", includedRules=["rule_iphone"])]
FLAG_SECTIONS = ("featureFlags", "rollouts", "holdouts", "localHoldouts", "integrations")
FLAG_PATHS = [
    path for path in paths(DOCUMENT)[1:] if path[0] in FLAG_SECTIONS or path[0] == "experiments"
]


@pytest.mark.slow
@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(FLAG_PATHS), json_values, st.booleans()), min_size=1, max_size=3
    )
)
def test_damaged_flags_give_a_config_or_a_datafile_error(
    edits: list[tuple[tuple[Any, ...], Any, bool]],
) -> None:
    document: Any = DOCUMENT
    for path, replacement, delete in edits:
        try:
            document = damaged(document, path, replacement, delete)
        except (KeyError, IndexError, TypeError):
            continue
    try:
        config = parse_datafile(json.dumps(document))
    except DatafileError as error:
        assert str(error) and "\n" not in str(error)
        return
    options = {DecideOption.INCLUDE_REASONS}
    for attributes in ({}, {"device": "iPhone", "ad_source": "my_campaign"}):
        decisions = decide_all(config, "user1", attributes, options)
        assert [d.flag_key for d in decisions] == list(config.flag_keys)

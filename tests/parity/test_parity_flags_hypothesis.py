"""Flag decisions and variable casting agree with optimizely-sdk 5.7.0 on hypothesis-drawn input
(derandomized): the generated-datafile suite (test_parity_flags.py) covers datafile shapes;
these draw the parts with the most rules: values cast to each variable type, and decide calls
mixing forced decisions, stored profiles, bucketing ids and every pure option."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizely import optimizely
from optimizely.helpers.sdk_settings import OptimizelySdkSettings
from optimizely.logger import NoOpLogger
from optimizely.project_config import ProjectConfig as SdkProjectConfig

from tests.parity.conftest import PARITY_COUNTS
from tests.parity.flags_generator import PURE_OPTIONS, DecideCall, FlagsGenerator
from tests.parity.test_parity_conditions import quiet_sdk as quiet_sdk  # autouse: the SDK's logging
from tests.parity.test_parity_decisions import is_known_sdk_crash
from tests.parity.test_parity_flags import (
    ProfileService,
    UnreachableCmabService,
    our_decisions,
    same_value,
    sdk_decisions,
)
from tests.support.oracle import CapturingDispatcher
from trackd.datafile import parse_datafile
from trackd.datafile.flags import typed_value

PARITY = settings(
    max_examples=3000,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DATAFILES = 40


variable_values = st.one_of(
    st.text(alphabet='0123456789.-+eE_ ntrufalsNIij{}[]":,', max_size=12),
    st.sampled_from(
        ["true", "false", "1e400", "-0", "0x10", "١٢", "NaN", "Infinity", '{"a": [1]}']
    ),
    st.text(max_size=6),
)


@pytest.mark.slow
@PARITY
@given(
    value=variable_values,
    variable_type=st.sampled_from(["boolean", "integer", "double", "string", "json", "unknown"]),
)
def test_variable_values_are_cast_as_the_sdk_casts_them(value: str, variable_type: str) -> None:
    try:
        expected = SdkProjectConfig.get_typecast_value(None, value, variable_type)  # type: ignore[arg-type]
    except Exception:
        expected = None
    assert same_value(typed_value(value, variable_type), expected)
    PARITY_COUNTS["flags_hypothesis_casts"] += 1


class Fixture:
    """A few generated datafiles loaded by both, shared by every drawn call."""

    def __init__(self) -> None:
        generator = FlagsGenerator(99)
        self.cases = []
        for _ in range(DATAFILES):
            datafile = generator.flag_datafile()
            text = json.dumps(datafile)
            profiles = ProfileService()
            sdk = optimizely.Optimizely(
                text,
                event_dispatcher=CapturingDispatcher(),
                logger=NoOpLogger(),
                user_profile_service=profiles,
                settings=OptimizelySdkSettings(odp_disabled=True),
                cmab_service=UnreachableCmabService(),  # type: ignore[arg-type]
            )
            self.cases.append((datafile, parse_datafile(text), sdk, profiles))

    def close(self) -> None:
        for _, _, sdk, _ in self.cases:
            sdk.close()


@pytest.fixture(scope="module")
def fixture() -> Iterator[Fixture]:
    loaded = Fixture()
    yield loaded
    loaded.close()


def rules_and_variations(
    datafile: dict[str, Any], flag: dict[str, Any]
) -> tuple[list[str], list[Any]]:
    experiments = FlagsGenerator.all_experiments(datafile)
    rules = [e for e in experiments if e["id"] in flag["experimentIds"]]
    rules += [
        rule
        for rollout in datafile["rollouts"]
        if rollout["id"] == flag["rolloutId"]
        for rule in rollout["experiments"]
    ]
    return [rule["key"] for rule in rules], [v for rule in rules for v in rule["variations"]]


@st.composite
def calls(draw: st.DrawFn, datafile: dict[str, Any]) -> DecideCall:
    flags = datafile["featureFlags"]
    keys = [flag["key"] for flag in flags]
    flag_keys = draw(st.none() | st.lists(st.sampled_from([*keys, "no_such_flag"]), min_size=1))
    attributes: dict[str, Any] = {
        "device": draw(st.sampled_from(["iPhone", "Android", "", None])),
        "age": draw(st.integers(-5, 120) | st.floats(allow_nan=False)),
        "app_version": draw(st.sampled_from(["1.2.3", "2.0.0-beta", "1.2", "x"])),
    }
    bucketing = draw(st.none() | st.text(max_size=4) | st.integers())
    if bucketing is not None:
        attributes["$opt_bucketing_id"] = bucketing
    call = DecideCall(
        user_id=draw(st.sampled_from(["vip0", "vip1", "", "user1"]) | st.text(max_size=6)),
        attributes=attributes,
        options=draw(st.lists(st.sampled_from(PURE_OPTIONS), unique=True)),
        flag_keys=flag_keys,
    )
    for flag in flags:
        rule_keys, variations = rules_and_variations(datafile, flag)
        for rule_key in draw(st.lists(st.sampled_from([None, *rule_keys]), max_size=2)):
            names = [v["key"] for v in variations] + ["no_such_variation"]
            call.forced[(flag["key"], rule_key)] = draw(st.sampled_from(names))
        for experiment_id in flag["experimentIds"]:
            ids = [v["id"] for v in variations] + ["stale"]
            if draw(st.booleans()):
                call.profile[experiment_id] = draw(st.sampled_from(ids))
    return call


@pytest.mark.slow
@PARITY
@given(data=st.data())
def test_drawn_decide_calls_agree_with_sdk(fixture: Fixture, data: st.DataObject) -> None:
    datafile, config, sdk, profiles = data.draw(st.sampled_from(fixture.cases))
    call = data.draw(calls(datafile))
    try:
        expected = sdk_decisions(sdk, profiles, call)
    except Exception as error:
        if not is_known_sdk_crash(error):
            raise
        PARITY_COUNTS["flags_hypothesis_sdk_raised_skipped"] += 1
        return
    ours = our_decisions(config, call)
    requested = dict.fromkeys(call.flag_keys or config.flag_keys)
    assert [d.flag_key for d in ours] == [key for key in requested if key in expected]
    for decision in ours:
        actual = (
            decision.variation_key,
            decision.enabled,
            decision.rule_key,
            dict(decision.variables),
        )
        assert same_value(list(actual), list(expected[decision.flag_key])), (
            f"{decision.flag_key}: ours {actual}, sdk {expected[decision.flag_key]}\n{call}"
        )
        PARITY_COUNTS["flags_hypothesis_flag_decisions"] += 1

"""The bundled example datafile carries flags (so `make run` shows Decide), and they decide as
optimizely-sdk 5.7 decides them: an A/B feature test with variables of every type, and a
rollout of two targeted delivery rules before "Everyone Else"."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest
from optimizely import optimizely
from optimizely.helpers.sdk_settings import OptimizelySdkSettings
from optimizely.logger import NoOpLogger

from tests.support.oracle import CapturingDispatcher
from trackd.datafile import parse_datafile
from trackd.decision.flags import decide_all

EXAMPLE = files("trackd").joinpath("data/example_datafile.json").read_text()
USERS = 400


@pytest.fixture
def sdk() -> Iterator[optimizely.Optimizely]:
    logging.getLogger("optimizely").setLevel(logging.CRITICAL + 1)
    client = optimizely.Optimizely(
        EXAMPLE,
        event_dispatcher=CapturingDispatcher(),
        logger=NoOpLogger(),
        settings=OptimizelySdkSettings(odp_disabled=True),
    )
    assert client.is_valid  # the SDK's own schema validation passes
    try:
        yield client
    finally:
        client.close()


def attributes_of(n: int) -> dict[str, Any]:
    """Every audience case: beta users, US visitors, both, neither, and no attributes."""
    attributes: dict[str, Any] = {}
    if n % 5 == 1:
        attributes["beta_user"] = True
    if n % 5 == 2:
        attributes["beta_user"] = False
    if n % 3 == 0:
        attributes["country"] = "US"
    elif n % 3 == 1:
        attributes["country"] = "FR"
    return attributes


def test_the_example_flags_have_every_variable_type_and_the_contracted_keys() -> None:
    config = parse_datafile(EXAMPLE)
    checkout = config.flags_by_key["checkout_redesign"]
    assert {v.key: v.type for v in checkout.variables} == {
        "show_banner": "boolean",
        "max_items": "integer",
        "discount": "double",
        "headline": "string",
        "layout": "json",
    }
    ab = config.experiments_by_key["checkout_ab"]
    assert set(ab.variations_by_key) == {"control", "treatment"}
    rollout = config.flags_by_key["free_shipping"].rollout
    assert rollout is not None
    rules = rollout.rules
    assert [rule.key for rule in rules][:2] == ["beta_users", "country_us"]
    assert len(rules) == 3 and not rules[-1].audience_ids  # "Everyone Else" last


def test_the_example_flags_decide_as_the_sdk_decides(sdk: optimizely.Optimizely) -> None:
    config = parse_datafile(EXAMPLE)
    outcomes: Counter[tuple[str, str | None, str | None]] = Counter()
    for n in range(USERS):
        user_id, attributes = f"user-{n}", attributes_of(n)
        theirs = sdk.create_user_context(user_id, attributes).decide_all(["DISABLE_DECISION_EVENT"])
        ours = decide_all(config, user_id, attributes)
        assert [d.flag_key for d in ours] == list(theirs) == ["checkout_redesign", "free_shipping"]
        for decision in ours:
            expected = theirs[decision.flag_key]
            assert (
                decision.variation_key,
                decision.enabled,
                decision.rule_key,
                dict(decision.variables),
            ) == (
                expected.variation_key,
                expected.enabled,
                expected.rule_key,
                expected.variables,
            ), (user_id, attributes, decision.flag_key)
            outcomes[(decision.flag_key, decision.rule_key, decision.variation_key)] += 1

    # Every path of both flags was taken, so the agreement above covers each of them.
    rollout = config.flags_by_key["free_shipping"].rollout
    assert rollout is not None
    everyone_else = rollout.rules[-1]
    assert outcomes[("checkout_redesign", "checkout_ab", "control")] > 0
    assert outcomes[("checkout_redesign", "checkout_ab", "treatment")] > 0
    assert outcomes[("free_shipping", "beta_users", "on")] > 0
    assert outcomes[("free_shipping", "country_us", "on")] > 0
    assert outcomes[("free_shipping", everyone_else.key, "off")] > 0

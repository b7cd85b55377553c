"""When a flag decision sends decision events, and what they hold (optimizely-sdk 5.7's rules;
field-for-field parity with the SDK: tests/parity/test_flag_payload_parity.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trackd.datafile import parse_datafile
from trackd.events import decisions, payload
from trackd.events.decisions import (
    DecidedRule,
    decision_events,
    decision_impressions,
    decision_records,
    decision_tails,
)
from trackd.events.records import (
    DECISIONS,
    IMPRESSION,
    RULE_TYPE_FEATURE_TEST,
    RULE_TYPE_HOLDOUT,
    RULE_TYPE_ROLLOUT,
    DecisionEvents,
    Impression,
    batch_uuids,
    context_of,
    decode_rows,
    encode_rows,
    impression_tuples,
    visitor_attributes,
)

BASE = parse_datafile((Path(__file__).parents[1] / "data" / "datafile.json").read_text())


class _Config:
    """trackd's parse of the legacy datafile, with `sendFlagDecisions` (the flags' datafile
    model is built elsewhere)."""

    def __init__(self, send_flag_decisions: bool) -> None:
        self.account_id = BASE.account_id
        self.project_id = BASE.project_id
        self.revision = BASE.revision
        self.anonymize_ip = BASE.anonymize_ip
        self.bot_filtering = BASE.bot_filtering
        self.attributes_by_key = BASE.attributes_by_key
        self.send_flag_decisions = send_flag_decisions


SENDS = _Config(send_flag_decisions=True)
QUIET = _Config(send_flag_decisions=False)

FEATURE_TEST = DecidedRule(
    RULE_TYPE_FEATURE_TEST, "40001", "flag_test", "41001", "42002", "on", True
)
DELIVERY = DecidedRule(RULE_TYPE_ROLLOUT, "81001", "pro_rule", "81009", "82001", "on", True)
NOTHING = DecidedRule(RULE_TYPE_ROLLOUT)
HOLDOUT = DecidedRule(RULE_TYPE_HOLDOUT, "90001", "holdout", "", "92001", "ho_off", False)


def _sent(config: _Config, decided: DecidedRule, **kwargs: Any) -> list[tuple[str, str]]:
    found = decision_impressions(config, "checkout", decided, "u1", None, now_ms=5, **kwargs)
    return [(record.rule_type, record.experiment_key) for record in found]


@pytest.mark.parametrize("config", [SENDS, QUIET], ids=["send", "quiet"])
def test_feature_tests_and_holdouts_always_send_rollouts_only_with_send_flag_decisions(
    config: _Config,
) -> None:
    assert _sent(config, FEATURE_TEST) == [("feature-test", "flag_test")]
    assert _sent(config, HOLDOUT) == [("holdout", "holdout")]
    rollouts = [("rollout", "pro_rule")] if config.send_flag_decisions else []
    assert _sent(config, DELIVERY) == rollouts
    assert _sent(config, NOTHING) == [(r, "") for r, _ in rollouts]


def test_a_bypassed_holdout_is_sent_first_even_when_the_rollout_is_not() -> None:
    assert _sent(SENDS, DELIVERY, bypassed_holdout=HOLDOUT) == [
        ("holdout", "holdout"),
        ("rollout", "pro_rule"),
    ]
    assert _sent(QUIET, DELIVERY, bypassed_holdout=HOLDOUT) == [("holdout", "holdout")]
    assert _sent(QUIET, FEATURE_TEST, bypassed_holdout=HOLDOUT) == [
        ("holdout", "holdout"),
        ("feature-test", "flag_test"),
    ]
    # A decision that is itself a holdout's sends only its own event.
    assert _sent(QUIET, HOLDOUT, bypassed_holdout=HOLDOUT) == [("holdout", "holdout")]


def test_the_record_names_the_flag_rule_and_variation_of_the_decision() -> None:
    (record,) = decision_impressions(
        SENDS, "checkout", DELIVERY, "u1", {"device": "iPhone", "x": 1}, now_ms=5
    )
    assert record.context == ("12001", "12002", "7", True)
    assert (record.user_id, record.timestamp) == ("u1", 5)
    assert record.attributes == (
        ("20001", "device", "iPhone"),
        ("$opt_bot_filtering", "$opt_bot_filtering", False),
    )
    assert (record.experiment_id, record.experiment_key, record.campaign_id) == (
        "81001",
        "pro_rule",
        "81009",
    )
    assert (record.variation_id, record.variation_key) == ("82001", "on")
    assert (record.flag_key, record.rule_type, record.enabled) == ("checkout", "rollout", True)


def test_campaign_is_the_rule_id_for_a_holdout_or_a_rule_without_a_layer() -> None:
    with_layer = DecidedRule(RULE_TYPE_HOLDOUT, "90001", "holdout", "41001", "92001", "h", False)
    (record,) = decision_impressions(QUIET, "f", with_layer, "u1", None, now_ms=5)
    assert record.campaign_id == "90001"  # the SDK never reads a holdout's layerId
    no_layer = DecidedRule(RULE_TYPE_ROLLOUT, "81004", "r", "", "82004", "v", True)
    (record,) = decision_impressions(SENDS, "f", no_layer, "u1", None, now_ms=5)
    assert record.campaign_id == "81004"


def test_without_a_variation_nothing_is_enabled_and_no_variation_is_named() -> None:
    # A flag-only forced decision names no rule; a decision without a variation, no key.
    no_variation = DecidedRule(RULE_TYPE_ROLLOUT, "81001", "pro_rule", "", "", "stale", True)
    (record,) = decision_impressions(SENDS, "f", no_variation, "u1", None, now_ms=5)
    assert (record.variation_id, record.variation_key, record.enabled) == ("", "", False)
    decision = payload.visitor(record)["snapshots"][0]["decisions"][0]
    assert decision["variation_id"] is None
    assert decision["metadata"]["enabled"] is False


def test_decision_records_are_plain_data_a_row_round_trips() -> None:
    found = decision_impressions(
        SENDS, "checkout", DELIVERY, "u1", {"device": "x"}, now_ms=5, bypassed_holdout=HOLDOUT
    )
    assert decode_rows(encode_rows(found)) == list(found)
    assert [type(record.rule_type) for record in found] == [str, str]


def test_decision_records_are_the_impressions_their_fields_name() -> None:
    """Built without Impression's own constructor (for speed): still Impressions, each field
    where the NamedTuple puts it, one uuid each."""
    tails = decision_tails(SENDS, "checkout", DELIVERY, bypassed_holdout=HOLDOUT)
    found = decision_records(SENDS, "u1", {"device": "x"}, tails, now_ms=5)
    assert [type(record) for record in found] == [Impression, Impression]
    visitor = visitor_attributes(SENDS, {"device": "x"})
    assert found == [
        Impression(IMPRESSION, context_of(SENDS), record.uuid, 5, "u1", visitor, *tail)
        for record, tail in zip(found, tails, strict=True)
    ]
    assert [record.rule_type for record in found] == [RULE_TYPE_HOLDOUT, RULE_TYPE_ROLLOUT]
    assert len({record.uuid for record in found}) == 2
    assert all(len(record) == len(Impression._fields) for record in found)


def test_a_decide_calls_events_are_one_record_whose_impressions_take_uuids_from_its_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`decision_events`: the call's shared fields once, its tails (the very tuples given,
    which a row's pickle then stores once) and one seed. Expanded, each tail is the
    impression `decision_records` builds, its uuid the next 36 characters of the seed's
    `batch_uuids`, in order; no tails, no record."""
    monkeypatch.setattr(decisions, "new_seed", lambda: 12345)
    tails = decision_tails(SENDS, "checkout", DELIVERY, bypassed_holdout=HOLDOUT)
    visitor = visitor_attributes(SENDS, {"device": "x"})
    events = decision_events(SENDS, "u1", {"device": "x"}, list(tails), now_ms=5)
    assert events == DecisionEvents(DECISIONS, context_of(SENDS), 12345, 5, "u1", visitor, tails)
    assert events is not None and all(a is b for a, b in zip(events.tails, tails, strict=True))
    text = batch_uuids(12345, 2)
    expected = [
        (IMPRESSION, context_of(SENDS), text[:36], 5, "u1", visitor, *tails[0]),
        (IMPRESSION, context_of(SENDS), text[36:], 5, "u1", visitor, *tails[1]),
    ]
    assert impression_tuples(events) == expected
    assert decision_records(SENDS, "u1", {"device": "x"}, tails, now_ms=5) == [
        Impression._make(plain) for plain in expected
    ]
    assert decision_events(SENDS, "u1", None, [], now_ms=5) is None

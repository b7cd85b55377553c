"""The decision events a flag decision sends, by optimizely-sdk 5.7's rules.

Mirrors Optimizely._create_optimizely_decision and _send_impression_event, with
UserEventFactory.create_impression_event and EventFactory._create_visitor:

- a global holdout the user was bucketed into, but which lets targeted deliveries through
  (`excludeTargetedDeliveries`), sends its own event first, unless the decision is itself a
  holdout's;
- the decision sends one when it came from a feature test or a holdout, and a rollout's (a
  delivery rule, or no rule at all) only when the datafile's `sendFlagDecisions` is true;
- a decision without a rule (nothing matched, or a flag-only forced decision) is sent with
  empty rule, campaign and experiment ids, as the SDK's default experiment has; without a
  variation, with an empty variation key and a null variation id.

What the SDK decides before those rules is the caller's: DISABLE_DECISION_EVENT sends
nothing, and neither does a decision that is an error (a CMAB rule whose service cannot be
reached), so the caller does not ask. Pure: no I/O, nothing remembered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from trackd.events.records import (
    DECISIONS,
    RULE_TYPE_FEATURE_TEST,
    RULE_TYPE_HOLDOUT,
    AttributeValue,
    ConfigLike,
    DecisionEvents,
    EventTail,
    Impression,
    context_of,
    impression_tuples,
    new_seed,
    visitor_attributes,
)

# The decision sources that send an event whatever `sendFlagDecisions` says.
_ALWAYS_SENT: Final = frozenset({RULE_TYPE_FEATURE_TEST, RULE_TYPE_HOLDOUT})


class FlagEventConfig(ConfigLike, Protocol):
    """What decision events read from the datafile, beyond what every record reads."""

    @property
    def send_flag_decisions(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class DecidedRule:
    """What a flag decision chose, as plain values: the SDK's Decision (experiment,
    variation, source) named by ids and keys.

    `variation_key` is the key the SDK's event names: the first variation of the flag (its
    experiments', then its delivery rules', in datafile order) with the variation's id, or
    for a holdout the holdout's variation. The two differ only in a datafile that reuses a
    variation id under another key.
    """

    source: str  # records.RULE_TYPE_FEATURE_TEST, RULE_TYPE_ROLLOUT or RULE_TYPE_HOLDOUT
    rule_id: str = ""  # the experiment, delivery rule or holdout; "" when there is none
    rule_key: str = ""
    layer_id: str = ""  # the rule's layerId; never read for a holdout, which has none
    variation_id: str = ""  # "" when there is no variation
    variation_key: str = ""
    enabled: bool = False  # the variation's featureEnabled; False without a variation


def decision_tails(
    config: FlagEventConfig,
    flag_key: str,
    decided: DecidedRule,
    *,
    bypassed_holdout: DecidedRule | None = None,
) -> tuple[EventTail, ...]:
    """The decision events one decide of `flag_key` sends, in the order the SDK sends them:
    none, one, or two when `bypassed_holdout` (a global holdout with
    excludeTargetedDeliveries the user was bucketed into) comes with another decision."""
    found: list[EventTail] = []
    if bypassed_holdout is not None and decided.source != RULE_TYPE_HOLDOUT:
        found.append(_tail(flag_key, bypassed_holdout))
    if decided.source in _ALWAYS_SENT or config.send_flag_decisions:
        found.append(_tail(flag_key, decided))
    return tuple(found)


def decision_events(
    config: ConfigLike,
    user_id: str,
    attributes: Mapping[str, AttributeValue] | None,
    tails: Sequence[EventTail],
    *,
    now_ms: int,
) -> DecisionEvents | None:
    """One decide call's impressions as one record, None for none: the user's visitor
    attributes resolved once, one uuid seed for the call, and each decision's tail."""
    if not tails:
        return None
    return DecisionEvents(
        DECISIONS,
        context_of(config),
        new_seed(),
        now_ms,
        user_id,
        visitor_attributes(config, attributes),
        tuple(tails),
    )


def decision_records(
    config: ConfigLike,
    user_id: str,
    attributes: Mapping[str, AttributeValue] | None,
    tails: Sequence[EventTail],
    *,
    now_ms: int,
) -> list[Impression]:
    """One decide call's impressions (`decision_events`), each its own record."""
    events = decision_events(config, user_id, attributes, tails, now_ms=now_ms)
    if events is None:
        return []
    return [Impression._make(plain) for plain in impression_tuples(events)]


def decision_impressions(
    config: FlagEventConfig,
    flag_key: str,
    decided: DecidedRule,
    user_id: str,
    attributes: Mapping[str, AttributeValue] | None,
    *,
    now_ms: int,
    bypassed_holdout: DecidedRule | None = None,
) -> tuple[Impression, ...]:
    """The impressions one decide of `flag_key` commits (`decision_tails`, as records)."""
    tails = decision_tails(config, flag_key, decided, bypassed_holdout=bypassed_holdout)
    return tuple(decision_records(config, user_id, attributes, tails, now_ms=now_ms))


def _tail(flag_key: str, decided: DecidedRule) -> EventTail:
    rule_id = decided.rule_id
    # A holdout is no Experiment in the SDK, so its layerId is never read.
    layer_id = "" if decided.source == RULE_TYPE_HOLDOUT else decided.layer_id
    has_variation = bool(decided.variation_id)
    return (
        rule_id,
        decided.rule_key,
        layer_id or rule_id,
        decided.variation_id if has_variation else "",
        decided.variation_key if has_variation else "",
        flag_key,
        decided.source,
        has_variation and bool(decided.enabled),  # the SDK: no variation, not enabled
    )


__all__ = [
    "DecidedRule",
    "EventTail",
    "FlagEventConfig",
    "decision_events",
    "decision_impressions",
    "decision_records",
    "decision_tails",
]

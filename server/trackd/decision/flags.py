"""Decide feature flags exactly as optimizely-sdk 5.7's `decide` does (optimizely.py
`_decide_for_keys`, decision_service.py `get_decision_for_flag`). Pure: no I/O, no clock.

Order for one flag:
1. a forced decision for the flag alone (no rule): in 5.7 this is checked in `_decide_for_keys`
   before anything else, so it beats a forced decision for one of the flag's rules;
2. running global holdouts, in order: the first that buckets the user decides the flag, unless
   it has excludeTargetedDeliveries, in which case only "td" feature tests and the rollout are
   tried and the holdout is reported beside the result (`bypassed_holdout`);
3. feature tests in `experimentIds` order: a forced decision for (flag, rule), then the rule's
   local holdouts, then the experiment decided as Activate decides it (trackd.decision.engine);
4. the rollout's delivery rules in order: a forced decision for (flag, rule), the rule's local
   holdouts, then audience and traffic; a rule whose audience matches but whose traffic misses
   skips to the last rule, "Everyone Else".

What depends on state outside the datafile comes in as arguments: forced decisions, the
SDK-style forced variations and the user profile (stickiness), so the caller chooses whether
they come from the daemon's stores. Rules that need Optimizely's cloud at decision time (CMAB)
are decided as the SDK decides when that service cannot be reached: an error decision.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping

import mmh3

from trackd.datafile.model import (
    AttributeValue,
    Experiment,
    FeatureFlag,
    FlagDecision,
    FlagOutcomes,
    Holdout,
    HoldoutHit,
    ProjectConfig,
    Reason,
    RuleType,
    Variation,
)
from trackd.decision.bucketing import HASH_SEED, bucket, bucketing_id_of
from trackd.decision.conditions import Condition
from trackd.decision.engine import decide, decide_for_user

__all__ = [
    "DecideOption",
    "FlagDecision",
    "HoldoutHit",
    "RuleType",
    "decide_all",
    "decide_for_keys",
    "unknown_flag",
]

TARGETED_DELIVERY_TYPE = "td"  # the only feature tests tried past a bypassed holdout

ForcedDecisions = Mapping[tuple[str, str | None], str]
"""(flag key, rule key or None for the whole flag) -> variation key, for one user."""
VariationLookup = Callable[[str], str | None]
"""Experiment id -> variation id, or None."""
NO_FORCED_DECISIONS: ForcedDecisions = {}


class DecideOption(enum.Enum):
    """The SDK's OptimizelyDecideOption; DISABLE_DECISION_EVENT only matters to the caller."""

    DISABLE_DECISION_EVENT = "DISABLE_DECISION_EVENT"
    ENABLED_FLAGS_ONLY = "ENABLED_FLAGS_ONLY"
    IGNORE_USER_PROFILE_SERVICE = "IGNORE_USER_PROFILE_SERVICE"
    INCLUDE_REASONS = "INCLUDE_REASONS"
    EXCLUDE_VARIABLES = "EXCLUDE_VARIABLES"


def decide_all(
    config: ProjectConfig,
    user_id: str,
    attributes: Mapping[str, AttributeValue],
    options: Collection[DecideOption] = (),
    *,
    forced_decisions: ForcedDecisions = NO_FORCED_DECISIONS,
    forced_variation: VariationLookup | None = None,
    sticky_variation: VariationLookup | None = None,
) -> list[FlagDecision]:
    """Every flag, in datafile order (the SDK's decide_all)."""
    return decide_for_keys(
        config,
        config.flag_keys,
        user_id,
        attributes,
        options,
        forced_decisions=forced_decisions,
        forced_variation=forced_variation,
        sticky_variation=sticky_variation,
    )


def decide_for_keys(
    config: ProjectConfig,
    flag_keys: Iterable[str],
    user_id: str,
    attributes: Mapping[str, AttributeValue],
    options: Collection[DecideOption] = (),
    *,
    forced_decisions: ForcedDecisions = NO_FORCED_DECISIONS,
    forced_variation: VariationLookup | None = None,
    sticky_variation: VariationLookup | None = None,
) -> list[FlagDecision]:
    """One decision per distinct key, in request order; an unknown key gets an error entry.

    With ENABLED_FLAGS_ONLY the disabled decisions are left out, errors are not (as the SDK).
    """
    include_reasons = DecideOption.INCLUDE_REASONS in options
    exclude_variables = DecideOption.EXCLUDE_VARIABLES in options
    enabled_only = DecideOption.ENABLED_FLAGS_ONLY in options
    if DecideOption.IGNORE_USER_PROFILE_SERVICE in options:
        sticky_variation = None
    bucketing_id = bucketing_id_of(user_id, attributes)
    # One user, one set of attributes: a condition tree's answer holds for every flag of the
    # call. Rules with equal audienceConditions share one tree (ExperimentConditions), feature
    # tests included, so a project whose flags target the same audiences evaluates each once:
    # 118 against 146 us per user on bench_decide's 50 flags, whose tests had no memo.
    audience_results: dict[Condition, bool] = {}
    # Likewise a holdout's variation for this user: every flag checks the global holdouts.
    holdout_variations: dict[Holdout, Variation | None] = {}
    decisions = []
    # Every flag (decide_all, and the daemon's Decide without keys): flags_by_key holds them
    # in flag_keys' order already, so neither the dedup nor a lookup per key is needed
    # (~4 us of a 50-flag decide_all).
    keyed_flags: Iterable[tuple[str, FeatureFlag | None]] = (
        config.flags_by_key.items()
        if flag_keys is config.flag_keys
        else [(key, config.flags_by_key.get(key)) for key in dict.fromkeys(flag_keys)]
    )
    for key, flag in keyed_flags:
        if flag is None:
            decisions.append(unknown_flag(key))
            continue
        # Positionally: as keywords these 12 arguments cost ~95 ns more per flag.
        decision = _decide(
            config,
            flag,
            user_id,
            bucketing_id,
            attributes,
            forced_decisions,
            forced_variation,
            sticky_variation,
            [] if include_reasons else None,
            exclude_variables,
            audience_results,
            holdout_variations,
        )
        if enabled_only and not decision.enabled and decision.error is None:
            continue
        decisions.append(decision)
    return decisions


def unknown_flag(key: str) -> FlagDecision:
    return FlagDecision(
        flag_key=key,
        enabled=False,
        variation=None,
        rule=None,
        rule_type=None,
        variables={},
        error=f'No flag was found for key "{key}".',
    )


def _decide(
    config: ProjectConfig,
    flag: FeatureFlag,
    user_id: str,
    bucketing_id: str,
    attributes: Mapping[str, AttributeValue],
    forced_decisions: ForcedDecisions,
    forced_variation: VariationLookup | None,
    sticky_variation: VariationLookup | None,
    reasons: list[str] | None,
    exclude_variables: bool,
    audience_results: dict[Condition, bool],
    holdout_variations: dict[Holdout, Variation | None],
    /,
) -> FlagDecision:
    # Decisions without reasons, bypassed holdout or excluded variables were built at load
    # (flag.outcomes); `plain` says this call may return those. The "built, else new" step is
    # written out at each return below but the rare local holdout's (`_local_holdout`): one
    # helper for all measured 3.15-3.21 us per flag against 2.82-2.88 inline (50-flag
    # decide_all), past the 3 us budget.
    plain = reasons is None
    outcomes = flag.outcomes_without_variables if exclude_variables else flag.outcomes

    if forced_decisions:
        variation = _forced(flag, None, forced_decisions, user_id, reasons)
        if variation is not None:
            return _new(flag, reasons, exclude_variables, None, variation, RuleType.FEATURE_TEST)

    bypassed: HoldoutHit | None = None
    for holdout in config.global_holdouts:
        hit = _holdout_hit(config, holdout, user_id, attributes, reasons, holdout_variations)
        if hit is None:
            continue
        if reasons is not None:
            reasons.append(
                f"The user '{user_id}' is bucketed into holdout '{holdout.key}' "
                f"for feature flag '{flag.key}'."
            )
        if not holdout.exclude_targeted_deliveries:
            if plain:
                built = _built(outcomes.holdouts, holdout.rule, hit.variation)
                if built is not None:
                    return built
            return _new(
                flag, reasons, exclude_variables, holdout.rule, hit.variation, RuleType.HOLDOUT
            )
        bypassed = hit
        plain = False
        break

    local_holdouts = config.holdouts_by_rule_id
    for experiment in flag.experiments:
        if bypassed is not None and experiment.type != TARGETED_DELIVERY_TYPE:
            continue
        if forced_decisions:
            variation = _forced(flag, experiment.key, forced_decisions, user_id, reasons)
            if variation is not None:
                return _new(
                    flag,
                    reasons,
                    exclude_variables,
                    experiment,
                    variation,
                    RuleType.FEATURE_TEST,
                    bypassed,
                )
        if local_holdouts and experiment.id in local_holdouts:
            hit = _local_holdout_hit(
                config, experiment, user_id, attributes, reasons, holdout_variations
            )
            if hit is not None:
                # As in the SDK, a local holdout's decision does not carry a bypassed one.
                return _local_holdout(flag, outcomes, hit, reasons, exclude_variables, None)
        decision = decide_for_user(
            config,
            experiment,
            user_id,
            bucketing_id,
            attributes,
            forced_variation(experiment.id) if forced_variation else None,
            sticky_variation(experiment.id) if sticky_variation else None,
            audience_results,
        )
        cmab = experiment.cmab
        if cmab is not None and decision.reason in (Reason.BUCKETED, Reason.OUTSIDE_TRAFFIC):
            # The SDK buckets a CMAB experiment against cmab.trafficAllocation alone, then asks
            # Optimizely's prediction service, which trackd never calls: what the SDK does when
            # the service cannot be reached is an error decision for the whole flag.
            if bucket(bucketing_id, experiment.id) < cmab.traffic_allocation:
                return _cmab_unreachable(flag, experiment, reasons)
            continue
        variation = decision.variation
        if variation is not None:
            if reasons is not None:
                reasons.append(
                    f'User "{user_id}" is in variation "{variation.key}" of experiment '
                    f"{experiment.key} ({decision.reason.value})."
                )
            if plain:
                built = outcomes.feature_tests[experiment].get(variation.id)
                # Not built when a whitelist names a variation whose id a later one repeats.
                if built is not None and built.variation is variation:
                    return built
            return _new(
                flag,
                reasons,
                exclude_variables,
                experiment,
                variation,
                RuleType.FEATURE_TEST,
                bypassed,
            )
        if reasons is not None:
            reasons.append(
                f'User "{user_id}" is in no variation of experiment "{experiment.key}" '
                f"({decision.reason.value})."
            )

    rollout = flag.rollout
    if rollout is None:
        return (
            outcomes.off
            if plain
            else _new(flag, reasons, exclude_variables, None, None, RuleType.ROLLOUT, bypassed)
        )
    rules = rollout.rules
    last = len(rules) - 1
    index = 0
    while index <= last:
        rule = rules[index]
        if forced_decisions:
            variation = _forced(flag, rule.key, forced_decisions, user_id, reasons)
            if variation is not None:
                return _new(
                    flag, reasons, exclude_variables, rule, variation, RuleType.ROLLOUT, bypassed
                )
        if local_holdouts and rule.id in local_holdouts:
            hit = _local_holdout_hit(config, rule, user_id, attributes, reasons, holdout_variations)
            if hit is not None:
                return _local_holdout(flag, outcomes, hit, reasons, exclude_variables, bypassed)
        conditions = rule.audience_conditions
        qualified: bool | None = True
        # decide_for_user's audience step, inlined as the hash below is.
        if conditions is not None:
            qualified = audience_results.get(conditions)
            if qualified is None:
                qualified = audience_results[conditions] = conditions.evaluate(attributes) is True
        if qualified:
            # Traffic alone: the SDK checks no status, whitelist or group for delivery rules.
            # Inlined, with the hash (see trackd.decision.bucketing): a helper cost ~0.2 us a
            # rule, about 1 us per user on bench_decide.
            variation = None
            if rule.is_bucketable:
                in_range = rule.every_hash_range
                if in_range is None:
                    hashed = mmh3.hash(bucketing_id + rule.id, HASH_SEED, False)
                    in_range = bisect_right(rule.hash_ends, hashed)
                if plain:
                    built = outcomes.rollout_rules[index][in_range]
                    if built is not None:
                        return built
                variation = rule.outcomes.by_range[in_range].variation
            if variation is not None:
                if reasons is not None:
                    reasons.append(f'User "{user_id}" bucketed into a {_rule_name(index, last)}.')
                return _new(
                    flag, reasons, exclude_variables, rule, variation, RuleType.ROLLOUT, bypassed
                )
            if index != last:
                if reasons is not None:
                    reasons.append(
                        f'User "{user_id}" not bucketed into a {_rule_name(index, last)}. '
                        'Checking "Everyone Else" rule now.'
                    )
                index = last
                continue
        elif reasons is not None:
            reasons.append(
                f'User "{user_id}" does not meet audience conditions for {_rule_name(index, last)}.'
            )
        index += 1
    return (
        outcomes.off
        if plain
        else _new(flag, reasons, exclude_variables, None, None, RuleType.ROLLOUT, bypassed)
    )


def _new(
    flag: FeatureFlag,
    reasons: list[str] | None,
    exclude_variables: bool,
    rule: Experiment | None,
    variation: Variation | None,
    rule_type: RuleType,
    bypassed: HoldoutHit | None = None,
) -> FlagDecision:
    """A decision built for this call: one with reasons, a bypassed holdout, no variables."""
    return flag.decision(
        rule,
        variation,
        rule_type,
        exclude_variables=exclude_variables,
        reasons=() if reasons is None else tuple(reasons),
        bypassed_holdout=bypassed,
    )


def _local_holdout(
    flag: FeatureFlag,
    outcomes: FlagOutcomes,
    hit: HoldoutHit,
    reasons: list[str] | None,
    exclude_variables: bool,
    bypassed: HoldoutHit | None,
) -> FlagDecision:
    """The decision of a local holdout that took the user: built at load unless this call has
    reasons or carries a bypassed global holdout. Only a hit calls it, so the helper costs the
    common path nothing (see `_decide` on why the other returns inline this step)."""
    rule, variation = hit.holdout.rule, hit.variation
    if reasons is None and bypassed is None:
        built = _built(outcomes.holdouts, rule, variation)
        if built is not None:
            return built
    return _new(flag, reasons, exclude_variables, rule, variation, RuleType.HOLDOUT, bypassed)


def _rule_name(index: int, last: int) -> str:
    return "targeting rule " + ("Everyone Else" if index == last else str(index + 1))


def _built(
    table: Mapping[str, Mapping[str, FlagDecision]], rule: Experiment, variation: Variation
) -> FlagDecision | None:
    """The decision built at load for this rule and variation, if it is that one (ids may
    repeat across a datafile's rules)."""
    by_variation = table.get(rule.id)
    decision = None if by_variation is None else by_variation.get(variation.id)
    if decision is None or decision.rule is not rule or decision.variation is not variation:
        return None
    return decision


def _forced(
    flag: FeatureFlag,
    rule_key: str | None,
    forced_decisions: ForcedDecisions,
    user_id: str,
    reasons: list[str] | None,
) -> Variation | None:
    """A forced decision naming a variation of any of the flag's rules (validated_forced_decision);
    one naming anything else is ignored."""
    variation_key = forced_decisions.get((flag.key, rule_key))
    if variation_key is None:
        return None
    variation = flag.variations_by_key.get(variation_key)
    if reasons is not None:
        rule = "" if rule_key is None else f", rule ({rule_key})"
        if variation is None:
            reasons.append(
                f"Invalid variation is mapped to flag ({flag.key}){rule} "
                f"and user ({user_id}) in the forced decision map."
            )
        else:
            reasons.append(
                f"Variation ({variation_key}) is mapped to flag ({flag.key}){rule} "
                f"and user ({user_id}) in the forced decision map."
            )
    return variation


def _holdout_hit(
    config: ProjectConfig,
    holdout: Holdout,
    user_id: str,
    attributes: Mapping[str, AttributeValue],
    reasons: list[str] | None,
    decided: dict[Holdout, Variation | None],
) -> HoldoutHit | None:
    # A holdout is an experiment with no whitelist and no group: status, audience, traffic.
    if holdout in decided:
        variation = decided[holdout]
    else:
        variation = decided[holdout] = decide(config, holdout.rule, user_id, attributes).variation
    if variation is None:
        return None
    if reasons is not None:
        reasons.append(
            f"The user '{user_id}' is bucketed into variation '{variation.key}' "
            f"of holdout '{holdout.key}'."
        )
    return HoldoutHit(holdout, variation)


def _local_holdout_hit(
    config: ProjectConfig,
    rule: Experiment,
    user_id: str,
    attributes: Mapping[str, AttributeValue],
    reasons: list[str] | None,
    decided: dict[Holdout, Variation | None],
) -> HoldoutHit | None:
    for holdout in config.holdouts_by_rule_id[rule.id]:
        hit = _holdout_hit(config, holdout, user_id, attributes, reasons, decided)
        if hit is not None:
            if reasons is not None:
                reasons.append(
                    f"The user '{user_id}' is bucketed into local holdout '{holdout.key}' "
                    f"for rule '{rule.key}'."
                )
            return hit
    return None


def _cmab_unreachable(
    flag: FeatureFlag, experiment: Experiment, reasons: list[str] | None
) -> FlagDecision:
    message = (
        f"Failed to fetch CMAB data for experiment {experiment.key}. "
        "(trackd does not call Optimizely's CMAB prediction service: decided as the SDK "
        "decides when that service cannot be reached)"
    )
    return FlagDecision(
        flag_key=flag.key,
        enabled=False,
        variation=None,
        rule=None,
        rule_type=None,
        variables={},
        reasons=(*(reasons or ()), message),
        error=message,
    )

"""Decide a user's variation in one experiment, in the Python SDK's order (get_variation).

This is the hot path. Everything that depends only on the datafile was settled at load: the
whitelist resolved, traffic reduced to a bisect table, audiences compiled, and every Decision
the experiment can produce built in advance. A call is a few lookups, one or two hashes and,
when audiences apply, a walk of the condition tree; it allocates only the hash keys.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping

import mmh3

from trackd.datafile.model import AttributeValue, Decision, Experiment, ProjectConfig, Reason
from trackd.decision.bucketing import HASH_SEED, bucketing_id_of
from trackd.decision.conditions import Condition

__all__ = ["Decision", "Reason", "decide", "decide_for_user", "reason_for_variation"]


def decide(
    config: ProjectConfig,
    experiment: Experiment,
    user_id: str,
    attributes: Mapping[str, AttributeValue],
    *,
    forced_variation_id: str | None = None,
    sticky_variation_id: str | None = None,
) -> Decision:
    """The variation `user_id` gets in `experiment`, and why.

    Order: not running, forced, datafile whitelist, sticky, audiences, group slot, traffic.
    A forced or sticky id that is not (or no longer) a variation of the experiment is ignored.
    """
    return decide_for_user(
        config,
        experiment,
        user_id,
        bucketing_id_of(user_id, attributes),
        attributes,
        forced_variation_id,
        sticky_variation_id,
        None,
    )


def decide_for_user(
    config: ProjectConfig,
    experiment: Experiment,
    user_id: str,
    bucketing_id: str,
    attributes: Mapping[str, AttributeValue],
    forced_variation_id: str | None,
    sticky_variation_id: str | None,
    audience_results: dict[Condition, bool] | None,
    /,
) -> Decision:
    """`decide` for a caller deciding many experiments for one user (decide_all): the bucketing
    id found once, every argument positional (keywords cost ~50 ns a call), and
    `audience_results` remembering each condition tree's answer for these attributes."""
    outcomes = experiment.outcomes
    if not experiment.is_running:
        return outcomes.not_running
    if forced_variation_id is not None:
        decision = outcomes.forced.get(forced_variation_id)
        if decision is not None:
            return decision
    decision = outcomes.whitelisted.get(user_id)
    if decision is not None:
        return decision
    if sticky_variation_id is not None:
        decision = outcomes.sticky.get(sticky_variation_id)
        if decision is not None:
            return decision
    conditions = experiment.audience_conditions
    if conditions is not None:
        remembered = None if audience_results is None else audience_results.get(conditions)
        if remembered is None:
            remembered = conditions.evaluate(attributes) is True
            if audience_results is not None:
                audience_results[conditions] = remembered
        if not remembered:
            return outcomes.audience_mismatch

    if experiment.is_exclusive:
        group = config.groups_by_id[experiment.group_id]  # type: ignore[index]
        # The hash bisected unscaled, here and below (see trackd.decision.bucketing).
        index = bisect_right(
            group.slot_hash_ends, mmh3.hash(bucketing_id + group.id, HASH_SEED, False)
        )
        if index == len(group.slot_hash_ends) or group.slot_experiment_ids[index] != experiment.id:
            return outcomes.not_in_group_slot
    if not experiment.is_bucketable:
        return outcomes.outside_traffic
    in_range = experiment.every_hash_range
    if in_range is None:
        hashed = mmh3.hash(bucketing_id + experiment.id, HASH_SEED, False)
        in_range = bisect_right(experiment.hash_ends, hashed)
    # One decision per bucket range, plus outside_traffic past the last one.
    return outcomes.by_range[in_range]


def reason_for_variation(
    experiment: Experiment,
    user_id: str,
    *,
    forced_variation_id: str | None = None,
    sticky_variation_id: str | None = None,
) -> Reason:
    """Why `decide`, given the same ids, put the user in the variation it returned: for a
    caller that has that variation (Decide's flag engine) and needs only the reason, without
    evaluating audiences and hashing again. Meaningless when `decide` returned no variation.
    The checks are decide's own, in its order; tests/unit/test_decision_engine.py holds the
    two to the same answer."""
    outcomes = experiment.outcomes
    if forced_variation_id is not None and forced_variation_id in outcomes.forced:
        return Reason.FORCED
    if user_id in outcomes.whitelisted:
        return Reason.WHITELISTED
    if sticky_variation_id is not None and sticky_variation_id in outcomes.sticky:
        return Reason.STICKY
    return Reason.BUCKETED

"""The parsed datafile: an immutable snapshot, indexed once so decisions only do lookups.

It also holds what a decision says (`Reason`, `Decision`): every Decision an experiment can
produce is built here at load, so deciding allocates nothing, and the decision package
imports this module, never the other way round.

Every mapping here is a plain dict typed as read-only `Mapping`: nothing mutates a snapshot
after `parse_datafile` returns it, and a dict lookup is cheaper than a proxy's on the hot path.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trackd.decision.conditions import Condition

AttributeValue = str | bool | int | float | None

RUNNING = "Running"  # the only status the Python SDK decides for (ALLOWED_EXPERIMENT_STATUS)
RANDOM_GROUP_POLICY = "random"  # the only group policy that makes experiments exclusive


@dataclass(frozen=True, slots=True)
class Variation:
    id: str
    key: str
    feature_enabled: bool = False
    """`featureEnabled`, read for its truth as the SDK does; a flag is on only when this is."""
    variable_usages: tuple[tuple[str, object], ...] = ()
    """(variable id, value as written) per entry of the variation's `variables`, in order."""


@dataclass(frozen=True, slots=True)
class TrafficRange:
    """One traffic allocation entry: buckets below `end_of_range` go to `entity_id`."""

    end_of_range: int
    entity_id: str


def first_match_table(
    ranges: tuple[TrafficRange, ...],
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Reduce ranges to strictly increasing ends, so a bisect finds what a first-match scan would.

    The SDK walks the list and takes the first range whose end exceeds the bucket; a range whose
    end does not exceed an earlier one can never be that first match, so it is dropped.
    """
    ends: list[int] = []
    entity_ids: list[str] = []
    for traffic_range in ranges:
        if not ends or traffic_range.end_of_range > ends[-1]:
            ends.append(traffic_range.end_of_range)
            entity_ids.append(traffic_range.entity_id)
    return tuple(ends), tuple(entity_ids)


MAX_TRAFFIC_VALUE = 10000  # buckets are [0, 10000): endOfRange's scale
HASH_VALUES = 2**32  # MurmurHash3's 32-bit unsigned results, which a bucket scales down


def hash_end(end_of_range: int) -> int:
    """The least hash whose bucket is at or past `end_of_range`.

    A bucket is hash * 10000 >> 32 (trackd.decision.bucketing), which is >= end exactly when
    hash * 10000 >= end * 2**32, i.e. hash >= ceil(end * 2**32 / 10000), for any integer end.
    So a bisect of the raw hash over these ends lands where a bisect of the bucket over the
    ends would, without scaling the hash: 243 against 152 ns per hash measured (2026-12-07).
    """
    return -(-end_of_range * HASH_VALUES // MAX_TRAFFIC_VALUE)


class Reason(enum.Enum):
    """The step of the SDK's order that chose a decision."""

    BUCKETED = "bucketed"
    FORCED = "forced"  # set through the SDK-style set_forced_variation API
    WHITELISTED = "whitelisted"  # the experiment's forcedVariations in the datafile
    STICKY = "sticky"  # a variation remembered from an earlier activation
    NOT_RUNNING = "not_running"
    AUDIENCE_MISMATCH = "audience_mismatch"
    OUTSIDE_TRAFFIC = "outside_traffic"
    NOT_IN_GROUP_SLOT = "not_in_group_slot"


@dataclass(frozen=True, slots=True, repr=False)
class Decision:
    """What a decision says: the variation (or none) and why."""

    experiment: Experiment
    variation: Variation | None  # None: the user sees no variation of this experiment
    reason: Reason

    def __repr__(self) -> str:
        # Keys only: the experiment's own repr spells out its whole configuration.
        variation = self.variation.key if self.variation else None
        return f"Decision({self.experiment.key!r}, {variation!r}, {self.reason.name})"


@dataclass(frozen=True, slots=True, eq=False)
class Outcomes:
    """Every Decision an experiment can produce, built at load so deciding allocates nothing."""

    not_running: Decision
    audience_mismatch: Decision
    not_in_group_slot: Decision
    outside_traffic: Decision
    forced: Mapping[str, Decision]  # variation id -> FORCED
    sticky: Mapping[str, Decision]  # variation id -> STICKY
    whitelisted: Mapping[str, Decision]  # user id -> WHITELISTED
    by_range: tuple[Decision, ...]
    """BUCKETED (or OUTSIDE_TRAFFIC) per bucket end; one more, OUTSIDE_TRAFFIC, past the last."""


# Experiments, groups, audiences and the config compare by identity (eq=False): they hold
# mappings, and two snapshots are never "equal" in any sense a caller could rely on.
@dataclass(frozen=True, slots=True, eq=False)
class Experiment:
    id: str
    key: str
    status: str
    layer_id: str
    variations: tuple[Variation, ...]
    variations_by_id: Mapping[str, Variation]
    variations_by_key: Mapping[str, Variation]
    traffic_allocation: tuple[TrafficRange, ...]
    forced_variations: Mapping[str, str]  # datafile whitelist: user id -> variation key
    # Parsed audienceConditions (or audienceIds when absent), audiences already linked in;
    # None when there is nothing to evaluate, i.e. everyone qualifies.
    audience_conditions: Condition | None
    group_id: str | None
    group_policy: str | None
    audience_ids: tuple[str, ...] = ()
    type: str | None = None
    """The experiment's `type` ("ab", "mab", "cmab", "td", "fr"), None when absent."""
    cmab: Cmab | None = None

    # Derived once from the fields above; not constructor arguments.
    whitelist: Mapping[str, Variation] = field(init=False, repr=False)
    """User id -> variation for whitelist entries naming a real variation (others are ignored)."""
    hash_ends: tuple[int, ...] = field(init=False, repr=False)
    """The traffic's first-match ends, as hashes (see `hash_end`)."""
    every_hash_range: int | None = field(init=False, repr=False)
    """The range of `hash_ends` every hash lands in, when they all land in one (traffic of
    10000 to one variation, or of 0): then no hash is needed. None otherwise."""
    bucket_variations: tuple[Variation | None, ...] = field(init=False, repr=False)
    """Variation per end; None where the entity id is "" or names no variation."""
    is_exclusive: bool = field(init=False, repr=False)
    """In a group with policy "random": the user must first land in this experiment's slot."""
    is_bucketable: bool = field(init=False, repr=False)
    """The SDK's bucketer refuses experiments whose key is blank, whatever the traffic says."""
    is_running: bool = field(init=False, repr=False)
    """status == "Running", exactly (the SDK's only decidable status)."""
    outcomes: Outcomes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        whitelist = {
            user_id: self.variations_by_key[variation_key]
            for user_id, variation_key in self.forced_variations.items()
            if variation_key in self.variations_by_key
        }
        ends, entity_ids = first_match_table(self.traffic_allocation)
        variations = tuple(self.variations_by_id.get(entity_id) for entity_id in entity_ids)
        object.__setattr__(self, "whitelist", whitelist)
        hash_ends = tuple(map(hash_end, ends))
        lowest, highest = bisect_right(hash_ends, 0), bisect_right(hash_ends, HASH_VALUES - 1)
        object.__setattr__(self, "hash_ends", hash_ends)
        object.__setattr__(self, "every_hash_range", lowest if lowest == highest else None)
        object.__setattr__(self, "bucket_variations", variations)
        object.__setattr__(self, "is_exclusive", self.group_policy == RANDOM_GROUP_POLICY)
        object.__setattr__(self, "is_bucketable", bool(self.key.strip()))
        object.__setattr__(self, "is_running", self.status == RUNNING)
        object.__setattr__(self, "outcomes", self._outcomes())

    def _outcomes(self) -> Outcomes:
        def each_variation(reason: Reason) -> dict[str, Decision]:
            return {v.id: Decision(self, v, reason) for v in self.variations_by_id.values()}

        outside_traffic = Decision(self, None, Reason.OUTSIDE_TRAFFIC)
        bucketed = each_variation(Reason.BUCKETED)
        return Outcomes(
            not_running=Decision(self, None, Reason.NOT_RUNNING),
            audience_mismatch=Decision(self, None, Reason.AUDIENCE_MISMATCH),
            not_in_group_slot=Decision(self, None, Reason.NOT_IN_GROUP_SLOT),
            outside_traffic=outside_traffic,
            forced=each_variation(Reason.FORCED),
            sticky=each_variation(Reason.STICKY),
            whitelisted={
                user_id: Decision(self, variation, Reason.WHITELISTED)
                for user_id, variation in self.whitelist.items()
            },
            by_range=(
                *(outside_traffic if v is None else bucketed[v.id] for v in self.bucket_variations),
                outside_traffic,
            ),
        )


@dataclass(frozen=True, slots=True)
class Cmab:
    """An experiment's `cmab`: its variation comes from Optimizely's prediction service."""

    attribute_ids: tuple[str, ...]
    traffic_allocation: int
    """Buckets below this are in the experiment (the SDK buckets against this one end)."""


@dataclass(frozen=True, slots=True, eq=False)
class Group:
    id: str
    policy: str
    traffic_allocation: tuple[TrafficRange, ...]
    experiments: tuple[str, ...]  # experiment ids, datafile order

    slot_hash_ends: tuple[int, ...] = field(init=False, repr=False)
    """The traffic's first-match ends, as hashes (see `hash_end`)."""
    slot_experiment_ids: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ends, entity_ids = first_match_table(self.traffic_allocation)
        object.__setattr__(self, "slot_hash_ends", tuple(map(hash_end, ends)))
        object.__setattr__(self, "slot_experiment_ids", entity_ids)


class VariableType:
    BOOLEAN = "boolean"
    DOUBLE = "double"
    INTEGER = "integer"
    JSON = "json"
    STRING = "string"


@dataclass(frozen=True, slots=True, eq=False)
class Variable:
    """A flag variable; `type` is "json" for the older string type with subType "json"."""

    id: str
    key: str
    type: str
    default_value: object
    """The default, already of the variable's type (None where the SDK cannot cast it)."""


@dataclass(frozen=True, slots=True, eq=False)
class Rollout:
    """Delivery rules in order; the last is "Everyone Else"."""

    id: str
    rules: tuple[Experiment, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Holdout:
    """A holdout, decided as an experiment with no whitelist and no group (see flags.py)."""

    rule: Experiment
    included_rules: tuple[str, ...] | None
    """Rule ids a local holdout applies to; None for a global one (the `holdouts` section)."""
    exclude_targeted_deliveries: bool

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def key(self) -> str:
        return self.rule.key


class RuleType(enum.Enum):
    """What decided a flag: the SDK's decision source, as decision events carry it."""

    FEATURE_TEST = "feature-test"
    ROLLOUT = "rollout"
    HOLDOUT = "holdout"


@dataclass(frozen=True, slots=True)
class HoldoutHit:
    holdout: Holdout
    variation: Variation


@dataclass(frozen=True, slots=True)
class FlagDecision:
    """One flag's decision, field for field what the SDK's OptimizelyDecision says."""

    flag_key: str
    enabled: bool
    variation: Variation | None
    rule: Experiment | None
    """The deciding rule: a feature test, a delivery rule or a holdout's; None for a forced
    decision on the whole flag, for no decision and for errors."""
    rule_type: RuleType | None
    """None only with `error`."""
    variables: Mapping[str, object]
    """Key -> typed value (json ones parsed); shared between decisions: read, never mutate."""
    reasons: tuple[str, ...] = ()
    error: str | None = None
    """Why no decision could be made: an unknown flag key, an unreachable CMAB service."""
    bypassed_holdout: HoldoutHit | None = None
    """A global holdout with excludeTargetedDeliveries that bucketed the user; the SDK sends its
    impression as well as the decision's own."""

    @property
    def variation_key(self) -> str | None:
        return None if self.variation is None else self.variation.key

    @property
    def rule_key(self) -> str | None:
        return None if self.rule is None else self.rule.key


@dataclass(frozen=True, slots=True, eq=False)
class FlagOutcomes:
    """The flag's decisions without reasons, built at load.

    Building a FlagDecision costs more than the rest of a typical rule's decision (frozen
    dataclasses set each field through object.__setattr__), so the common ones are made once.
    Rules are found by identity or position, not id: ids may repeat across a datafile's rules.
    """

    off: FlagDecision
    """No rule decided: off, with the default variables, reported as a rollout decision."""
    feature_tests: Mapping[Experiment, Mapping[str, FlagDecision]]
    """Feature test -> variation id -> decision."""
    rollout_rules: tuple[tuple[FlagDecision | None, ...], ...]
    """Per delivery rule, in order: the decision of each traffic range of the rule's
    `outcomes.by_range` (None where the range gives no variation)."""
    holdouts: Mapping[str, Mapping[str, FlagDecision]]
    """Holdout id -> variation id -> decision."""


@dataclass(frozen=True, slots=True, eq=False)
class FeatureFlag:
    id: str
    key: str
    experiments: tuple[Experiment, ...]
    """The feature-test rules, in `experimentIds` order."""
    rollout: Rollout | None
    variables: tuple[Variable, ...]
    """Declared variables; with duplicate keys the last wins, in the first one's place."""
    variations_by_id: Mapping[str, Variation]
    """Every variation of the flag's rules (tests, then delivery rules), the first of an id
    winning: the one a decision event names (the SDK's flag_variations_map)."""
    variations_by_key: Mapping[str, Variation]
    """Every variation of the flag's rules, the first of a key winning (forced decisions)."""
    default_variables: Mapping[str, object]
    """Key -> typed value when the flag is off (or the variation is not enabled)."""
    variables_by_variation_id: Mapping[str, Mapping[str, object]]
    """Key -> typed value per enabled variation id (the flag's and the holdouts')."""
    unknown_variation_variables: Mapping[str, object]
    """What the SDK returns for an enabled variation whose id no experiment declares."""
    holdouts: InitVar[tuple[Holdout, ...]]
    """Every holdout that may decide the flag: its outcomes are built too."""

    outcomes: FlagOutcomes = field(init=False, repr=False)
    outcomes_without_variables: FlagOutcomes = field(init=False, repr=False)
    """The same with EXCLUDE_VARIABLES."""

    def __post_init__(self, holdouts: tuple[Holdout, ...]) -> None:
        object.__setattr__(self, "outcomes", self._outcomes(holdouts, exclude_variables=False))
        object.__setattr__(
            self, "outcomes_without_variables", self._outcomes(holdouts, exclude_variables=True)
        )

    def _outcomes(self, holdouts: tuple[Holdout, ...], *, exclude_variables: bool) -> FlagOutcomes:
        def each_variation(rule: Experiment, rule_type: RuleType) -> dict[str, FlagDecision]:
            return {
                variation.id: self.decision(
                    rule, variation, rule_type, exclude_variables=exclude_variables
                )
                for variation in rule.variations_by_id.values()
            }

        def each_range(rule: Experiment) -> tuple[FlagDecision | None, ...]:
            decisions = each_variation(rule, RuleType.ROLLOUT)
            return tuple(
                None if bucketed.variation is None else decisions[bucketed.variation.id]
                for bucketed in rule.outcomes.by_range
            )

        rules = self.rollout.rules if self.rollout else ()
        return FlagOutcomes(
            off=self.decision(None, None, RuleType.ROLLOUT, exclude_variables=exclude_variables),
            feature_tests={
                test: each_variation(test, RuleType.FEATURE_TEST) for test in self.experiments
            },
            rollout_rules=tuple(each_range(rule) for rule in rules),
            holdouts={
                holdout.id: each_variation(holdout.rule, RuleType.HOLDOUT) for holdout in holdouts
            },
        )

    def variables_for(self, variation: Variation | None, enabled: bool) -> Mapping[str, object]:
        if not enabled or variation is None:
            return self.default_variables
        return self.variables_by_variation_id.get(variation.id, self.unknown_variation_variables)

    def decision(
        self,
        rule: Experiment | None,
        variation: Variation | None,
        rule_type: RuleType,
        *,
        exclude_variables: bool = False,
        reasons: tuple[str, ...] = (),
        bypassed_holdout: HoldoutHit | None = None,
    ) -> FlagDecision:
        """A decision of this flag: on when the variation is, variables as the SDK gives them."""
        enabled = variation is not None and variation.feature_enabled
        return FlagDecision(
            flag_key=self.key,
            enabled=enabled,
            variation=variation,
            rule=rule,
            rule_type=rule_type,
            variables={} if exclude_variables else self.variables_for(variation, enabled),
            reasons=reasons,
            bypassed_holdout=bypassed_holdout,
        )


@dataclass(frozen=True, slots=True)
class Integration:
    key: str
    host: str | None
    public_key: str | None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    key: str
    experiment_ids: frozenset[str]  # empty: the event belongs to every experiment


@dataclass(frozen=True, slots=True)
class Attribute:
    id: str
    key: str


@dataclass(frozen=True, slots=True, eq=False)
class Audience:
    id: str
    name: str
    conditions: Condition  # parsed once at load


@dataclass(frozen=True, slots=True, eq=False)
class ProjectConfig:
    version: str
    account_id: str
    project_id: str
    revision: str
    anonymize_ip: bool
    bot_filtering: bool | None
    experiments_by_key: Mapping[str, Experiment]
    experiments_by_id: Mapping[str, Experiment]
    events_by_key: Mapping[str, Event]
    attributes_by_key: Mapping[str, Attribute]
    audiences_by_id: Mapping[str, Audience]
    groups_by_id: Mapping[str, Group]
    raw_json: str
    experiment_ids: tuple[str, ...] = ()
    """Experiment ids in datafile order: top-level experiments, then each group's."""
    sdk_key: str | None = None
    environment_key: str | None = None
    region: str = "US"
    """Where the project's data lives ("US" or "EU"): picks the Event API host."""
    flags_by_key: Mapping[str, FeatureFlag] = field(default_factory=dict)
    flag_keys: tuple[str, ...] = ()
    """Flag keys in datafile order, each once: what decide_all decides."""
    feature_test_ids: tuple[str, ...] = ()
    """The feature tests of those flags, in that order, each once: the activations a
    decide_all can read."""
    rollouts_by_id: Mapping[str, Rollout] = field(default_factory=dict)
    flag_by_experiment_id: Mapping[str, FeatureFlag] = field(default_factory=dict)
    """Feature-test rule id -> its flag (the SDK's experiment_feature_map; the last flag wins)."""
    holdouts: tuple[Holdout, ...] = ()
    """Every holdout parsed, running or not, global first."""
    global_holdouts: tuple[Holdout, ...] = ()
    """Running global holdouts, in order: tried before any rule of every flag."""
    holdouts_by_rule_id: Mapping[str, tuple[Holdout, ...]] = field(default_factory=dict)
    """Running local holdouts per rule id they include, in datafile order."""
    send_flag_decisions: bool = False
    integrations: tuple[Integration, ...] = ()

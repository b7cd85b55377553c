"""Feature flags, rollouts, holdouts and integrations, read as optimizely-sdk 5.7 reads them
(optimizely/project_config.py) and indexed once, so a flag decision only does lookups.

Where the SDK's constructor would raise (a flag naming an experiment or rollout that does not
exist, a variable or holdout missing a required key) the datafile is refused with DatafileError,
as the SDK refuses it. Variable values are cast to their type here, once: what the SDK casts on
every decide (and turns into None when the cast fails) is already settled at load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from trackd.datafile.experiments import parse_experiment, parse_traffic, parse_variations
from trackd.datafile.fields import (
    JsonObject,
    array,
    json_object,
    optional,
    required,
    string,
    strings,
)
from trackd.datafile.model import (
    Experiment,
    FeatureFlag,
    Holdout,
    Integration,
    Rollout,
    TrafficRange,
    Variable,
    VariableType,
    Variation,
)
from trackd.decision.audience import ExperimentConditions
from trackd.errors import DatafileError

FEATURE_ROLLOUT_TYPE = "fr"  # a feature test whose misses get the flag's "Everyone Else"
EVERYONE_ELSE_END = 10000


@dataclass(frozen=True, slots=True)
class ParsedFlags:
    flags: tuple[FeatureFlag, ...]
    flags_by_key: Mapping[str, FeatureFlag]
    rollouts_by_id: Mapping[str, Rollout]
    flag_by_experiment_id: Mapping[str, FeatureFlag]
    experiments_by_id: Mapping[str, Experiment]
    """The experiments again, "fr" ones with their flag's "Everyone Else" variation added."""
    holdouts: tuple[Holdout, ...]
    global_holdouts: tuple[Holdout, ...]
    holdouts_by_rule_id: Mapping[str, tuple[Holdout, ...]]
    integrations: tuple[Integration, ...]


def typed_value(value: object, variable_type: str) -> object:
    """A variable value as the SDK casts it (get_typecast_value); None where that raises."""
    try:
        if variable_type == VariableType.BOOLEAN:
            return value == "true"
        if variable_type == VariableType.INTEGER:
            return int(value)  # type: ignore[call-overload]
        if variable_type == VariableType.DOUBLE:
            return float(value)  # type: ignore[arg-type]
        if variable_type == VariableType.JSON:
            return json.loads(value)  # type: ignore[arg-type]
    except Exception:  # the SDK's bare except: any failure is "no value"
        return None
    return value


def parse_flags(
    document: JsonObject,
    experiments_by_id: Mapping[str, Experiment],
    conditions: ExperimentConditions,
) -> ParsedFlags:
    rollouts_by_id: dict[str, Rollout] = {}
    for index, item in enumerate(_list(document, "rollouts")):
        where = f"rollouts[{index}]"
        rollout_object = json_object(item, where)
        rules = tuple(
            parse_experiment(rule, f"{where}.experiments[{position}]", conditions, None, None)
            for position, rule in enumerate(array(rollout_object, "experiments", where))
        )
        rollout = Rollout(id=string(rollout_object, "id", where), rules=rules)
        rollouts_by_id[rollout.id] = rollout
    rollout_rules = {rule.id: rule for rollout in rollouts_by_id.values() for rule in rollout.rules}

    holdouts, global_holdouts, holdouts_by_rule_id = _holdouts(document, conditions)
    experiments = dict(experiments_by_id)
    raw_flags = [
        (f"featureFlags[{index}]", json_object(item, f"featureFlags[{index}]"))
        for index, item in enumerate(_list(document, "featureFlags"))
    ]
    # "fr" experiments gain their flag's "Everyone Else" variation before anything reads them.
    for where, flag_object in raw_flags:
        everyone_else = _everyone_else(_rollout(flag_object, where, rollouts_by_id))
        if everyone_else is None:
            continue
        for experiment_id in strings(flag_object, "experimentIds", where):
            experiment = _sdk_experiment(experiment_id, experiments, rollout_rules)
            if (
                experiment is not None
                and experiment is experiments.get(experiment_id)
                and experiment.type == FEATURE_ROLLOUT_TYPE
            ):
                experiments[experiment_id] = _with_everyone_else(experiment, everyone_else)

    usages = _variable_usages([*experiments.values(), *rollout_rules.values()])
    holdout_variations = [
        variation for holdout in holdouts for variation in holdout.rule.variations
    ]
    flags = []
    for where, flag_object in raw_flags:
        tests: list[Experiment] = []
        for experiment_id in strings(flag_object, "experimentIds", where):
            test = _sdk_experiment(experiment_id, experiments, rollout_rules)
            if test is None:
                raise DatafileError(
                    f"{where} names experiment {experiment_id!r}, which is not there"
                )
            tests.append(test)
        flag_rollout = _rollout(flag_object, where, rollouts_by_id)
        variables = _variables(flag_object, where)
        flag_variations = _flag_variations([*tests, *(flag_rollout.rules if flag_rollout else ())])
        flags.append(
            FeatureFlag(
                id=string(flag_object, "id", where),
                key=string(flag_object, "key", where),
                experiments=tuple(tests),
                rollout=flag_rollout,
                variables=tuple(variable for variable, _ in variables.values()),
                variations_by_id=flag_variations,
                variations_by_key=_first_by_key(flag_variations.values()),
                default_variables={
                    key: variable.default_value for key, (variable, _) in variables.items()
                },
                variables_by_variation_id={
                    variation.id: _enabled_values(variables, usages[variation.id])
                    for variation in [*flag_variations.values(), *holdout_variations]
                    if variation.id in usages
                },
                unknown_variation_variables={
                    key: typed_value(None, variable.type)
                    for key, (variable, _) in variables.items()
                },
                holdouts=holdouts,
            )
        )
    flags_by_key = {flag.key: flag for flag in flags}
    # Over the flags the key index kept (of duplicate keys, the last), as the SDK's map.
    flag_by_experiment_id = {
        rule.id: flag for flag in flags_by_key.values() for rule in flag.experiments
    }
    return ParsedFlags(
        flags=tuple(flags),
        flags_by_key=flags_by_key,
        rollouts_by_id=rollouts_by_id,
        flag_by_experiment_id=flag_by_experiment_id,
        experiments_by_id=experiments,
        holdouts=holdouts,
        global_holdouts=global_holdouts,
        holdouts_by_rule_id=holdouts_by_rule_id,
        integrations=_integrations(document),
    )


def _sdk_experiment(
    experiment_id: str,
    experiments: Mapping[str, Experiment],
    rollout_rules: Mapping[str, Experiment],
) -> Experiment | None:
    """What the SDK's experiment_id_map holds for an id: a rollout rule replaces a top-level
    experiment of the same id, and a group's experiment replaces both."""
    experiment = experiments.get(experiment_id)
    if experiment is not None and experiment.group_id is not None:
        return experiment
    return rollout_rules.get(experiment_id, experiment)


def _list(document: JsonObject, key: str) -> list[object]:
    """An optional top-level array; absent or null is empty (the SDK's config.get(key, []))."""
    if document.get(key) is None:
        return []
    return array(document, key, "")


def _rollout(
    flag_object: JsonObject, where: str, rollouts_by_id: Mapping[str, Rollout]
) -> Rollout | None:
    rollout_id = string(flag_object, "rolloutId", where)
    if not rollout_id:
        return None
    rollout = rollouts_by_id.get(rollout_id)
    if rollout is None:
        raise DatafileError(f"{where} names rollout {rollout_id!r}, which is not there")
    return rollout


def _everyone_else(rollout: Rollout | None) -> Variation | None:
    """The first variation of the rollout's last rule (the SDK's _get_everyone_else_variation)."""
    if rollout is None or not rollout.rules or not rollout.rules[-1].variations:
        return None
    return rollout.rules[-1].variations[0]


def _with_everyone_else(experiment: Experiment, everyone_else: Variation) -> Experiment:
    """The experiment with "Everyone Else" appended to its variations and to its traffic, up to
    the end: buckets its own ranges leave out get the flag's default delivery."""
    return replace(
        experiment,
        variations=(*experiment.variations, everyone_else),
        variations_by_id={**experiment.variations_by_id, everyone_else.id: everyone_else},
        variations_by_key={**experiment.variations_by_key, everyone_else.key: everyone_else},
        traffic_allocation=(
            *experiment.traffic_allocation,
            TrafficRange(EVERYONE_ELSE_END, everyone_else.id),
        ),
    )


def _variable_usages(rules: Iterable[Experiment]) -> dict[str, dict[str, object]]:
    """Variation id -> variable id -> value as written, over every experiment and rule; as in
    the SDK's variation_variable_usage_map, a later variation with the same id wins."""
    usages: dict[str, dict[str, object]] = {}
    for rule in rules:
        for variation in rule.variations_by_key.values():
            usages[variation.id] = dict(variation.variable_usages)
    return usages


def _variables(flag_object: JsonObject, where: str) -> dict[str, tuple[Variable, object]]:
    """Key -> (variable, default as written); the last of a key wins, in the first one's place."""
    variables: dict[str, tuple[Variable, object]] = {}
    for index, item in enumerate(array(flag_object, "variables", where)):
        variable_where = f"{where}.variables[{index}]"
        variable_object = json_object(item, variable_where)
        variable_type = required(variable_object, "type", variable_where)
        # JSON variables are written as strings with subType "json" by older projects.
        if variable_type == VariableType.STRING and variable_object.get("subType") == "json":
            variable_type = VariableType.JSON
        default = required(variable_object, "defaultValue", variable_where)
        key = string(variable_object, "key", variable_where)
        variable = Variable(
            id=string(variable_object, "id", variable_where),
            key=key,
            type=variable_type if isinstance(variable_type, str) else str(variable_type),
            default_value=typed_value(default, variable_type),
        )
        variables[key] = (variable, default)
    return variables


def _enabled_values(
    variables: Mapping[str, tuple[Variable, object]], usages: Mapping[str, object]
) -> dict[str, object]:
    """The variation's value of each variable (the default where it sets none), typed."""
    return {
        key: typed_value(usages.get(variable.id, default), variable.type)
        for key, (variable, default) in variables.items()
    }


def _flag_variations(rules: Iterable[Experiment]) -> dict[str, Variation]:
    """Every variation of the rules by id, the first of an id kept (the SDK's
    flag_variations_map)."""
    by_id: dict[str, Variation] = {}
    for rule in rules:
        for variation in rule.variations_by_id.values():
            by_id.setdefault(variation.id, variation)
    return by_id


def _first_by_key(variations: Iterable[Variation]) -> dict[str, Variation]:
    by_key: dict[str, Variation] = {}
    for variation in variations:
        by_key.setdefault(variation.key, variation)
    return by_key


def _holdouts(
    document: JsonObject, conditions: ExperimentConditions
) -> tuple[tuple[Holdout, ...], tuple[Holdout, ...], dict[str, tuple[Holdout, ...]]]:
    """All holdouts, the running global ones, and the running local ones per rule id.

    As in 5.7: a global holdout's `includedRules` is ignored; a local one without
    `includedRules` (or with null) is left out entirely; `includedFlags` and `excludedFlags`
    are not read at all; only status "Running" is decided.
    """
    holdouts: list[Holdout] = []
    global_holdouts: list[Holdout] = []
    by_rule_id: dict[str, list[Holdout]] = {}
    for index, item in enumerate(_list(document, "holdouts")):
        holdout = _holdout(
            json_object(item, f"holdouts[{index}]"), f"holdouts[{index}]", None, conditions
        )
        holdouts.append(holdout)
        if holdout.rule.is_running:
            global_holdouts.append(holdout)
    for index, item in enumerate(_list(document, "localHoldouts")):
        where = f"localHoldouts[{index}]"
        holdout_object = json_object(item, where)
        if holdout_object.get("includedRules") is None:
            continue
        included = tuple(strings(holdout_object, "includedRules", where))
        holdout = _holdout(holdout_object, where, included, conditions)
        holdouts.append(holdout)
        if holdout.rule.is_running:
            for rule_id in included:
                by_rule_id.setdefault(rule_id, []).append(holdout)
    return (
        tuple(holdouts),
        tuple(global_holdouts),
        {rule_id: tuple(rule_holdouts) for rule_id, rule_holdouts in by_rule_id.items()},
    )


def _holdout(
    holdout_object: JsonObject,
    where: str,
    included_rules: tuple[str, ...] | None,
    conditions: ExperimentConditions,
) -> Holdout:
    variations = parse_variations(holdout_object, where)
    audience_ids = strings(holdout_object, "audienceIds", where)
    conditions_or_ids = holdout_object.get("audienceConditions")
    if conditions_or_ids is None:
        conditions_or_ids = audience_ids
    # A holdout is decided as an experiment that has no whitelist and no group.
    rule = Experiment(
        id=string(holdout_object, "id", where),
        key=string(holdout_object, "key", where),
        status=string(holdout_object, "status", where),
        layer_id="",
        variations=tuple(variations),
        variations_by_id={variation.id: variation for variation in variations},
        variations_by_key={variation.key: variation for variation in variations},
        traffic_allocation=parse_traffic(holdout_object, where),
        forced_variations={},
        audience_conditions=conditions.compile(conditions_or_ids),
        group_id=None,
        group_policy=None,
        audience_ids=tuple(audience_ids),
    )
    return Holdout(
        rule=rule,
        included_rules=included_rules,
        exclude_targeted_deliveries=bool(holdout_object.get("excludeTargetedDeliveries", False)),
    )


def _integrations(document: JsonObject) -> tuple[Integration, ...]:
    integrations = []
    for index, item in enumerate(_list(document, "integrations")):
        where = f"integrations[{index}]"
        integration_object = json_object(item, where)
        integrations.append(
            Integration(
                key=string(integration_object, "key", where),
                host=optional(integration_object, "host", str, "a string or null", None, where),
                public_key=optional(
                    integration_object, "publicKey", str, "a string or null", None, where
                ),
            )
        )
    return tuple(integrations)

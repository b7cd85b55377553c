"""Datafile experiments (also rollout rules and holdouts) -> Experiment, as the SDK reads them."""

from __future__ import annotations

from trackd.datafile.fields import (
    JsonObject,
    array,
    json_object,
    optional,
    required,
    string,
    strings,
    wrong_kind,
)
from trackd.datafile.model import Cmab, Experiment, TrafficRange, Variation
from trackd.decision.audience import ExperimentConditions


def parse_experiment(
    item: object,
    where: str,
    conditions: ExperimentConditions,
    group_id: str | None,
    group_policy: str | None,
) -> Experiment:
    experiment_object = json_object(item, where)
    variations = parse_variations(experiment_object, where)
    forced = required(experiment_object, "forcedVariations", where)
    if not isinstance(forced, dict):
        raise wrong_kind(f"{where}.forcedVariations", "an object", forced)
    for user_id, variation_key in forced.items():
        if not isinstance(variation_key, str):
            raise wrong_kind(f"{where}.forcedVariations[{user_id!r}]", "a string", variation_key)
    audience_ids = strings(experiment_object, "audienceIds", where)
    # get_audience_conditions_or_ids: audienceConditions, when present and not null, win.
    conditions_or_ids = experiment_object.get("audienceConditions")
    if conditions_or_ids is None:
        conditions_or_ids = audience_ids
    return Experiment(
        type=optional(experiment_object, "type", str, "a string or null", None, where),
        cmab=parse_cmab(experiment_object, where),
        id=string(experiment_object, "id", where),
        key=string(experiment_object, "key", where),
        status=string(experiment_object, "status", where),
        layer_id=string(experiment_object, "layerId", where),
        variations=tuple(variations),
        variations_by_id={variation.id: variation for variation in variations},
        variations_by_key={variation.key: variation for variation in variations},
        traffic_allocation=parse_traffic(experiment_object, where),
        forced_variations=forced,
        audience_conditions=conditions.compile(conditions_or_ids),
        group_id=group_id,
        group_policy=group_policy,
        audience_ids=tuple(audience_ids),
    )


def parse_variations(parent: JsonObject, where: str) -> list[Variation]:
    variations = []
    for index, variation_item in enumerate(array(parent, "variations", where)):
        variation_where = f"{where}.variations[{index}]"
        variation_object = json_object(variation_item, variation_where)
        usages = []
        # As the SDK's Variation: a missing or empty (falsy) `variables` is no variables.
        usage_items = (
            array(variation_object, "variables", variation_where)
            if variation_object.get("variables")
            else []
        )
        for position, usage_item in enumerate(usage_items):
            usage_where = f"{variation_where}.variables[{position}]"
            usage_object = json_object(usage_item, usage_where)
            usages.append(
                (
                    string(usage_object, "id", usage_where),
                    required(usage_object, "value", usage_where),
                )
            )
        variations.append(
            Variation(
                id=string(variation_object, "id", variation_where),
                key=string(variation_object, "key", variation_where),
                feature_enabled=bool(variation_object.get("featureEnabled")),
                variable_usages=tuple(usages),
            )
        )
    return variations


def parse_cmab(experiment_object: JsonObject, where: str) -> Cmab | None:
    """The SDK treats an experiment as CMAB when `cmab` is truthy; it then reads its traffic."""
    cmab = experiment_object.get("cmab")
    if not cmab:
        return None
    cmab_where = f"{where}.cmab"
    cmab_object = json_object(cmab, cmab_where)
    traffic = required(cmab_object, "trafficAllocation", cmab_where)
    if not isinstance(traffic, int) or isinstance(traffic, bool):
        raise wrong_kind(f"{cmab_where}.trafficAllocation", "an integer", traffic)
    attribute_ids = cmab_object.get("attributeIds") or []
    return Cmab(
        tuple(strings({"attributeIds": attribute_ids}, "attributeIds", cmab_where)), traffic
    )


def parse_traffic(parent: JsonObject, where: str) -> tuple[TrafficRange, ...]:
    ranges = []
    for index, item in enumerate(array(parent, "trafficAllocation", where)):
        range_where = f"{where}.trafficAllocation[{index}]"
        range_object = json_object(item, range_where)
        end = required(range_object, "endOfRange", range_where)
        if not isinstance(end, int) or isinstance(end, bool):
            raise wrong_kind(f"{range_where}.endOfRange", "an integer", end)
        ranges.append(TrafficRange(end, string(range_object, "entityId", range_where)))
    return tuple(ranges)

"""Datafile JSON -> ProjectConfig, checked against the keys and kinds the SDK's schema requires.

What the SDK accepts and how it indexes follows optimizely/project_config.py: group experiments
carry their group's id and policy and replace a top-level experiment with the same id;
typedAudiences replace audiences with the same id; with duplicate keys, the last one wins.
"""

from __future__ import annotations

import json
from typing import Any

from trackd.datafile.model import (
    Attribute,
    Audience,
    Event,
    Experiment,
    Group,
    ProjectConfig,
    TrafficRange,
    Variation,
)
from trackd.decision.audience import compile_audience_conditions, compile_experiment_conditions
from trackd.decision.conditions import Condition
from trackd.errors import DatafileError

SUPPORTED_VERSIONS = ("2", "3", "4")
REQUIRED_KEYS = (
    "version",
    "accountId",
    "projectId",
    "revision",
    "experiments",
    "events",
    "audiences",
    "attributes",
    "groups",
)

JsonObject = dict[str, Any]


def parse_datafile(data: str | bytes) -> ProjectConfig:
    """Parse and index a datafile; raises DatafileError with a one-line reason."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DatafileError(f"not UTF-8: {error}") from None
    try:
        document = json.loads(data)
    except ValueError as error:
        raise DatafileError(f"not JSON: {error}") from None
    except RecursionError:
        raise DatafileError("not JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise DatafileError(f"the datafile must be a JSON object, got {_kind(document)}")
    try:
        return _project_config(document, data)
    except RecursionError:
        raise DatafileError("audience conditions are nested too deeply") from None


def _project_config(document: JsonObject, raw_json: str) -> ProjectConfig:
    version = document.get("version")
    if "version" in document and version not in SUPPORTED_VERSIONS:
        supported = ", ".join(SUPPORTED_VERSIONS)
        raise DatafileError(f"unsupported datafile version {version!r} (supported: {supported})")
    for key in REQUIRED_KEYS:
        if key not in document:
            raise DatafileError(f"missing required key {key!r}")

    audiences = _audiences(document)
    audience_conditions = {audience.id: audience.conditions for audience in audiences.values()}

    experiments_by_id: dict[str, Experiment] = {}
    for index, item in enumerate(_array(document, "experiments", "")):
        experiment = _experiment(item, f"experiments[{index}]", audience_conditions, None, None)
        experiments_by_id[experiment.id] = experiment
    groups_by_id: dict[str, Group] = {}
    for index, item in enumerate(_array(document, "groups", "")):
        where = f"groups[{index}]"
        group_object = _object(item, where)
        group_id = _string(group_object, "id", where)
        policy = _string(group_object, "policy", where)
        group_experiments: dict[str, Experiment] = {}
        for position, experiment_item in enumerate(_array(group_object, "experiments", where)):
            experiment = _experiment(
                experiment_item,
                f"{where}.experiments[{position}]",
                audience_conditions,
                group_id,
                policy,
            )
            group_experiments[experiment.id] = experiment
        experiments_by_id.update(group_experiments)
        groups_by_id[group_id] = Group(
            id=group_id,
            policy=policy,
            traffic_allocation=_traffic(group_object, where),
            experiments=tuple(group_experiments),
        )

    events_by_key: dict[str, Event] = {}
    for index, item in enumerate(_array(document, "events", "")):
        where = f"events[{index}]"
        event_object = _object(item, where)
        event = Event(
            id=_string(event_object, "id", where),
            key=_string(event_object, "key", where),
            experiment_ids=frozenset(_strings(event_object, "experimentIds", where)),
        )
        events_by_key[event.key] = event
    attributes_by_key: dict[str, Attribute] = {}
    for index, item in enumerate(_array(document, "attributes", "")):
        where = f"attributes[{index}]"
        attribute_object = _object(item, where)
        attribute = Attribute(
            id=_string(attribute_object, "id", where), key=_string(attribute_object, "key", where)
        )
        attributes_by_key[attribute.key] = attribute

    return ProjectConfig(
        version=_string(document, "version", ""),
        account_id=_string(document, "accountId", ""),
        project_id=_string(document, "projectId", ""),
        revision=_string(document, "revision", ""),
        anonymize_ip=_optional(document, "anonymizeIP", bool, "a boolean", False),
        bot_filtering=_optional(document, "botFiltering", bool, "a boolean or null", None),
        experiments_by_key={
            experiment.key: experiment for experiment in experiments_by_id.values()
        },
        experiments_by_id=experiments_by_id,
        events_by_key=events_by_key,
        attributes_by_key=attributes_by_key,
        audiences_by_id=audiences,
        groups_by_id=groups_by_id,
        raw_json=raw_json,
        experiment_ids=tuple(experiments_by_id),
        sdk_key=_optional(document, "sdkKey", str, "a string or null", None),
        environment_key=_optional(document, "environmentKey", str, "a string or null", None),
        # As the SDKs read it: absent or null is "US".
        region=_optional(document, "region", str, "a string or null", "US"),
    )


def _audiences(document: JsonObject) -> dict[str, Audience]:
    audiences: dict[str, Audience] = {}
    for list_key in ("audiences", "typedAudiences"):
        if list_key == "typedAudiences" and "typedAudiences" not in document:
            continue
        for index, item in enumerate(_array(document, list_key, "")):
            where = f"{list_key}[{index}]"
            audience_object = _object(item, where)
            conditions = _required(audience_object, "conditions", where)
            if list_key == "audiences":
                if not isinstance(conditions, str):
                    raise _wrong_kind(f"{where}.conditions", "a string", conditions)
            else:
                # typedAudiences hold the structure itself; the SDK re-serialises it and then
                # decodes it exactly as a string-encoded one.
                conditions = json.dumps(conditions)
            try:
                compiled = compile_audience_conditions(conditions)
            except ValueError as error:
                raise DatafileError(f"{where}.conditions is not JSON: {error}") from None
            audience_id = _string(audience_object, "id", where)
            audiences[audience_id] = Audience(
                id=audience_id, name=_string(audience_object, "name", where), conditions=compiled
            )
    return audiences


def _experiment(
    item: object,
    where: str,
    audience_conditions: dict[str, Condition],
    group_id: str | None,
    group_policy: str | None,
) -> Experiment:
    experiment_object = _object(item, where)
    variations = []
    for index, variation_item in enumerate(_array(experiment_object, "variations", where)):
        variation_where = f"{where}.variations[{index}]"
        variation_object = _object(variation_item, variation_where)
        variations.append(
            Variation(
                id=_string(variation_object, "id", variation_where),
                key=_string(variation_object, "key", variation_where),
            )
        )
    forced = _required(experiment_object, "forcedVariations", where)
    if not isinstance(forced, dict):
        raise _wrong_kind(f"{where}.forcedVariations", "an object", forced)
    for user_id, variation_key in forced.items():
        if not isinstance(variation_key, str):
            raise _wrong_kind(f"{where}.forcedVariations[{user_id!r}]", "a string", variation_key)
    audience_ids = _strings(experiment_object, "audienceIds", where)
    # get_audience_conditions_or_ids: audienceConditions, when present and not null, win.
    conditions_or_ids = experiment_object.get("audienceConditions")
    if conditions_or_ids is None:
        conditions_or_ids = audience_ids
    return Experiment(
        id=_string(experiment_object, "id", where),
        key=_string(experiment_object, "key", where),
        status=_string(experiment_object, "status", where),
        layer_id=_string(experiment_object, "layerId", where),
        variations=tuple(variations),
        variations_by_id={variation.id: variation for variation in variations},
        variations_by_key={variation.key: variation for variation in variations},
        traffic_allocation=_traffic(experiment_object, where),
        forced_variations=forced,
        audience_conditions=compile_experiment_conditions(conditions_or_ids, audience_conditions),
        group_id=group_id,
        group_policy=group_policy,
        audience_ids=tuple(audience_ids),
    )


def _traffic(parent: JsonObject, where: str) -> tuple[TrafficRange, ...]:
    ranges = []
    for index, item in enumerate(_array(parent, "trafficAllocation", where)):
        range_where = f"{where}.trafficAllocation[{index}]"
        range_object = _object(item, range_where)
        end = _required(range_object, "endOfRange", range_where)
        if not isinstance(end, int) or isinstance(end, bool):
            raise _wrong_kind(f"{range_where}.endOfRange", "an integer", end)
        ranges.append(TrafficRange(end, _string(range_object, "entityId", range_where)))
    return tuple(ranges)


def _required(parent: JsonObject, key: str, where: str) -> Any:
    if key not in parent:
        raise DatafileError(f"missing required key {key!r}" + (f" in {where}" if where else ""))
    return parent[key]


def _string(parent: JsonObject, key: str, where: str) -> str:
    value = _required(parent, key, where)
    if not isinstance(value, str):
        raise _wrong_kind(_path(where, key), "a string", value)
    return value


def _array(parent: JsonObject, key: str, where: str) -> list[Any]:
    value = _required(parent, key, where)
    if not isinstance(value, list):
        raise _wrong_kind(_path(where, key), "an array", value)
    return value


def _strings(parent: JsonObject, key: str, where: str) -> list[str]:
    values = _array(parent, key, where)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise _wrong_kind(f"{_path(where, key)}[{index}]", "a string", value)
    return values


def _object(value: object, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise _wrong_kind(where, "an object", value)
    return value


def _optional(parent: JsonObject, key: str, kind: type, expected: str, default: Any) -> Any:
    """An optional top-level value; null counts as absent."""
    value = parent.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _wrong_kind(key, expected, value)
    return value


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _wrong_kind(path: str, expected: str, value: object) -> DatafileError:
    return DatafileError(f"{path!r} must be {expected}, got {_kind(value)}")


def _kind(value: object) -> str:
    """The JSON name of a decoded value's kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"

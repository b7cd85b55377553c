"""Datafile JSON -> ProjectConfig, checked against the keys and kinds the SDK's schema requires.

What the SDK accepts and how it indexes follows optimizely/project_config.py: group experiments
carry their group's id and policy and replace a top-level experiment with the same id;
typedAudiences replace audiences with the same id; with duplicate keys, the last one wins.
"""

from __future__ import annotations

import json

from trackd.datafile.experiments import parse_experiment, parse_traffic
from trackd.datafile.fields import (
    JsonObject,
    array,
    json_object,
    kind_of,
    optional,
    required,
    string,
    strings,
    wrong_kind,
)
from trackd.datafile.flags import parse_flags
from trackd.datafile.model import Attribute, Audience, Event, Experiment, Group, ProjectConfig
from trackd.decision.audience import ExperimentConditions, compile_audience_conditions
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
        raise DatafileError(f"the datafile must be a JSON object, got {kind_of(document)}")
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
    conditions = ExperimentConditions(
        {audience.id: audience.conditions for audience in audiences.values()}
    )

    experiments_by_id: dict[str, Experiment] = {}
    for index, item in enumerate(array(document, "experiments", "")):
        experiment = parse_experiment(item, f"experiments[{index}]", conditions, None, None)
        experiments_by_id[experiment.id] = experiment
    groups_by_id: dict[str, Group] = {}
    for index, item in enumerate(array(document, "groups", "")):
        where = f"groups[{index}]"
        group_object = json_object(item, where)
        group_id = string(group_object, "id", where)
        policy = string(group_object, "policy", where)
        group_experiments: dict[str, Experiment] = {}
        for position, experiment_item in enumerate(array(group_object, "experiments", where)):
            experiment = parse_experiment(
                experiment_item,
                f"{where}.experiments[{position}]",
                conditions,
                group_id,
                policy,
            )
            group_experiments[experiment.id] = experiment
        experiments_by_id.update(group_experiments)
        groups_by_id[group_id] = Group(
            id=group_id,
            policy=policy,
            traffic_allocation=parse_traffic(group_object, where),
            experiments=tuple(group_experiments),
        )

    events_by_key: dict[str, Event] = {}
    for index, item in enumerate(array(document, "events", "")):
        where = f"events[{index}]"
        event_object = json_object(item, where)
        event = Event(
            id=string(event_object, "id", where),
            key=string(event_object, "key", where),
            experiment_ids=frozenset(strings(event_object, "experimentIds", where)),
        )
        events_by_key[event.key] = event
    attributes_by_key: dict[str, Attribute] = {}
    for index, item in enumerate(array(document, "attributes", "")):
        where = f"attributes[{index}]"
        attribute_object = json_object(item, where)
        attribute = Attribute(
            id=string(attribute_object, "id", where), key=string(attribute_object, "key", where)
        )
        attributes_by_key[attribute.key] = attribute

    flags = parse_flags(document, experiments_by_id, conditions)
    flag_keys = tuple(dict.fromkeys(flag.key for flag in flags.flags))
    return ProjectConfig(
        version=string(document, "version", ""),
        account_id=string(document, "accountId", ""),
        project_id=string(document, "projectId", ""),
        revision=string(document, "revision", ""),
        anonymize_ip=optional(document, "anonymizeIP", bool, "a boolean", False),
        bot_filtering=optional(document, "botFiltering", bool, "a boolean or null", None),
        experiments_by_key={
            experiment.key: experiment for experiment in flags.experiments_by_id.values()
        },
        experiments_by_id=flags.experiments_by_id,
        events_by_key=events_by_key,
        attributes_by_key=attributes_by_key,
        audiences_by_id=audiences,
        groups_by_id=groups_by_id,
        raw_json=raw_json,
        experiment_ids=tuple(experiments_by_id),
        sdk_key=optional(document, "sdkKey", str, "a string or null", None),
        environment_key=optional(document, "environmentKey", str, "a string or null", None),
        # As the SDKs read it: absent or null is "US".
        region=optional(document, "region", str, "a string or null", "US"),
        flags_by_key=flags.flags_by_key,
        flag_keys=flag_keys,
        feature_test_ids=tuple(
            dict.fromkeys(
                experiment.id
                for key in flag_keys
                for experiment in flags.flags_by_key[key].experiments
            )
        ),
        rollouts_by_id=flags.rollouts_by_id,
        flag_by_experiment_id=flags.flag_by_experiment_id,
        holdouts=flags.holdouts,
        global_holdouts=flags.global_holdouts,
        holdouts_by_rule_id=flags.holdouts_by_rule_id,
        send_flag_decisions=optional(document, "sendFlagDecisions", bool, "a boolean", False),
        integrations=flags.integrations,
    )


def _audiences(document: JsonObject) -> dict[str, Audience]:
    audiences: dict[str, Audience] = {}
    for list_key in ("audiences", "typedAudiences"):
        if list_key == "typedAudiences" and "typedAudiences" not in document:
            continue
        for index, item in enumerate(array(document, list_key, "")):
            where = f"{list_key}[{index}]"
            audience_object = json_object(item, where)
            conditions = required(audience_object, "conditions", where)
            if list_key == "audiences":
                if not isinstance(conditions, str):
                    raise wrong_kind(f"{where}.conditions", "a string", conditions)
            else:
                # typedAudiences hold the structure itself; the SDK re-serialises it and then
                # decodes it exactly as a string-encoded one.
                conditions = json.dumps(conditions)
            try:
                compiled = compile_audience_conditions(conditions)
            except ValueError as error:
                raise DatafileError(f"{where}.conditions is not JSON: {error}") from None
            audience_id = string(audience_object, "id", where)
            audiences[audience_id] = Audience(
                id=audience_id, name=string(audience_object, "name", where), conditions=compiled
            )
    return audiences

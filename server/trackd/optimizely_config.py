"""A datafile's OptimizelyConfig, the SDKs' read-only view of a project, as Optimizely
Agent's `GET /v1/config` answers it (the JSON field names of its OpenAPI description).

Computed as optimizely-sdk 5.7 computes `get_optimizely_config()`, which tests compare it
with: experiments (groups' included) and flags by key, each rule with its audiences as a
readable expression of audience names and each variation with its variables (a feature
test's enabled variation has its own values; other variations, and every delivery rule's,
have the flag's defaults, as that SDK has them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Json = dict[str, Any]

OPERATORS = ("and", "or", "not")
DUMMY_AUDIENCE = "$opt_dummy_audience"  # a placeholder some datafiles carry; never shown
FEATURE_ROLLOUT = "fr"  # an experiment type: see _everyone_else_added


def _variable_type(variable: Mapping[str, Any]) -> str:
    """JSON variables are strings with a `json` subType in the datafile."""
    if variable["type"] == "string" and variable.get("subType") == "json":
        return "json"
    return str(variable["type"])


def _audiences(datafile: Mapping[str, Any]) -> list[Json]:
    """Typed audiences first, their conditions as JSON text, then the others not shadowed."""
    typed = [
        {"id": a["id"], "name": a.get("name"), "conditions": json.dumps(a.get("conditions"))}
        for a in datafile.get("typedAudiences", [])
    ]
    shadowed = {a["id"] for a in typed}
    return typed + [
        {"id": a["id"], "name": a.get("name"), "conditions": a.get("conditions")}
        for a in datafile.get("audiences", [])
        if a["id"] not in shadowed and a["id"] != DUMMY_AUDIENCE
    ]


def audience_expression(conditions: Sequence[Any], names: Mapping[str, str]) -> str:
    """`["or", "1", ["and", "2", "3"]]` as `"us" OR ("eu" AND "mobile")`, the way the SDKs
    write a rule's audiences (an id without a known name stays an id)."""

    def name(audience_id: Any) -> str:
        return '"' + str(names.get(audience_id, audience_id)) + '"'

    length = len(conditions)
    if length == 0:
        return ""
    if length == 1 and conditions[0] not in OPERATORS:
        return name(conditions[0])
    if (
        length == 2
        and conditions[0] in OPERATORS
        and not isinstance(conditions[1], list)
        and conditions[1] not in OPERATORS
    ):
        return ("NOT " if conditions[0] == "not" else "") + name(conditions[1])
    operator = "OR"
    text = ""
    for index, item in enumerate(conditions):
        last = index + 1 == length
        if item in OPERATORS:
            operator = item.upper()
        elif isinstance(item, list):
            inner = "(" + audience_expression(item, names) + ")"
            text += f"{operator} {inner}" if last else f"{inner} "
        elif index + 1 < length - 1:
            text += f"{name(item)} {operator} "
        elif last:
            text += f"{operator} {name(item)}"
        else:
            text += f"{name(item)} "
    return text


def _everyone_else_added(
    flags: Sequence[Mapping[str, Any]],
    rollouts: Mapping[str, Mapping[str, Any]],
    experiments: Mapping[str, Mapping[str, Any]],
) -> dict[str, list[Json]]:
    """Variations the SDK adds to feature-rollout ("fr") tests: their flag's "Everyone Else"
    variation (its rollout's last rule's first), by experiment id."""
    added: dict[str, list[Json]] = {}
    for flag in flags:
        rules = rollouts.get(flag.get("rolloutId") or "", {}).get("experiments") or []
        variations = rules[-1].get("variations") or [] if rules else []
        if not variations:
            continue
        everyone_else = {
            "id": variations[0]["id"],
            "key": variations[0]["key"],
            "featureEnabled": bool(variations[0].get("featureEnabled", False)),
            "variables": variations[0].get("variables") or [],
        }
        for experiment_id in flag.get("experimentIds", []):
            if experiments.get(experiment_id, {}).get("type") == FEATURE_ROLLOUT:
                added.setdefault(experiment_id, []).append(everyone_else)
    return added


def optimizely_config(datafile: Mapping[str, Any]) -> Json:
    audiences = _audiences(datafile)
    names = {a["id"]: a["name"] or "" for a in audiences if a["id"] is not None}
    flags = datafile.get("featureFlags", [])
    flag_of_experiment = {eid: flag for flag in flags for eid in flag.get("experimentIds", [])}
    defaults = {
        flag["id"]: {
            v["key"]: {
                "id": v["id"],
                "key": v["key"],
                "type": _variable_type(v),
                "value": v["defaultValue"],
            }
            for v in flag.get("variables", [])
        }
        for flag in flags
    }

    def variables(variation: Mapping[str, Any], flag: Mapping[str, Any] | None) -> Json:
        if flag is None:
            return {}
        values = {key: dict(variable) for key, variable in defaults[flag["id"]].items()}
        if variation.get("featureEnabled"):
            by_id = {variable["id"]: variable for variable in values.values()}
            for given in variation.get("variables", []):
                if given["id"] in by_id:
                    by_id[given["id"]]["value"] = given["value"]
        return values

    rollouts = {r["id"]: r for r in datafile.get("rollouts", [])}
    experiments = [
        *datafile.get("experiments", []),
        *(e for group in datafile.get("groups", []) for e in group.get("experiments", [])),
    ]
    added = _everyone_else_added(flags, rollouts, {e["id"]: e for e in experiments})

    def rule(experiment: Mapping[str, Any], *, delivery_flag: Mapping[str, Any] | None) -> Json:
        """A delivery rule's variations get the flag's defaults (`delivery_flag`); a feature
        test's, its variations' own values."""
        flag = flag_of_experiment.get(experiment["id"])
        variations = [*experiment.get("variations", []), *added.get(experiment["id"], ())]
        return {
            "id": experiment["id"],
            "key": experiment["key"],
            "audiences": audience_expression(experiment.get("audienceConditions") or [], names),
            "variationsMap": {
                variation["key"]: {
                    "id": variation["id"],
                    "key": variation["key"],
                    "featureEnabled": bool(variation.get("featureEnabled")),
                    "variablesMap": (
                        {k: dict(v) for k, v in defaults[delivery_flag["id"]].items()}
                        if delivery_flag is not None
                        else variables(variation, flag)
                    ),
                }
                for variation in variations
            },
        }

    by_id = {e["id"]: rule(e, delivery_flag=None) for e in experiments}
    features = {}
    for flag in flags:
        tests = [by_id[eid] for eid in flag.get("experimentIds", [])]
        rollout = rollouts.get(flag.get("rolloutId"), {})
        features[flag["key"]] = {
            "id": flag["id"],
            "key": flag["key"],
            "experimentRules": tests,
            "deliveryRules": [rule(r, delivery_flag=flag) for r in rollout.get("experiments", [])],
            "variablesMap": defaults[flag["id"]],
            "experimentsMap": {test["key"]: test for test in tests},
        }
    return {
        "environmentKey": datafile.get("environmentKey") or "",
        "sdkKey": datafile.get("sdkKey") or "",
        "revision": datafile.get("revision", ""),
        "experimentsMap": {e["key"]: by_id[e["id"]] for e in experiments},
        "featuresMap": features,
        "attributes": [{"id": a["id"], "key": a["key"]} for a in datafile.get("attributes", [])],
        "audiences": audiences,
        "events": [
            {"id": e["id"], "key": e["key"], "experimentIds": e.get("experimentIds", [])}
            for e in datafile.get("events", [])
        ],
    }

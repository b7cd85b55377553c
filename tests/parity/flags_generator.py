"""Seeded random version 4 datafiles with feature flags, and decide calls, for differential
tests against optimizely-sdk's decide.

Built on DatafileGenerator (audiences of every shape, experiments, mutually exclusive groups,
whitelists), to which it adds: flags whose feature tests are those experiments (typed "ab",
"td", "fr" or CMAB), rollouts of several delivery rules ending with "Everyone Else", variables of
every type with valid and uncastable values, global and local holdouts, and calls with forced
decisions (flag-only and flag+rule, valid and not), stored profiles and every pure option.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from tests.parity.datafile_generator import DatafileGenerator

PURE_OPTIONS = (
    "ENABLED_FLAGS_ONLY",
    "EXCLUDE_VARIABLES",
    "INCLUDE_REASONS",
    "IGNORE_USER_PROFILE_SERVICE",
)
EXPERIMENT_TYPES = (None, None, "ab", "ab", "td", "fr", "mab", "cmab")
VARIABLE_VALUES: dict[str, tuple[str, ...]] = {
    "boolean": ("true", "false", "false", "TRUE", "yes", ""),
    "integer": ("0", "42", "-7", "10000000000", " 12 ", "1_000", "1.5", "abc", ""),
    "double": ("0", "4.5", "-1e3", "12", "1e400", "abc", ""),
    "string": ("hello", "", "true", "42", '{"a": 1}', "ünï"),
    "json": ('{"a": 1, "b": [1, 2.5, "x"]}', "{}", "[1, 2]", '"s"', "3", "{bad", ""),
}


@dataclass
class DecideCall:
    user_id: str
    attributes: dict[str, Any]
    options: list[str]
    flag_keys: list[str] | None  # None: decide_all
    forced: dict[tuple[str, str | None], str] = field(default_factory=dict)
    profile: dict[str, str] = field(default_factory=dict)  # experiment id -> variation id
    # Through the SDK's set_forced_variation: experiment key -> variation key.
    forced_variations: dict[str, str] = field(default_factory=dict)


@dataclass
class FlagCase:
    datafile: dict[str, Any]
    calls: list[DecideCall] = field(default_factory=list)

    @property
    def datafile_json(self) -> str:
        return json.dumps(self.datafile)


class FlagsGenerator(DatafileGenerator):
    def variable(self) -> dict[str, Any]:
        r = self.random
        variable_type = r.choice(("boolean", "integer", "double", "string", "json", "subtype"))
        variable: dict[str, Any] = {"id": self.new_id(), "key": f"var_{self.next_id}"}
        if variable_type == "subtype":
            variable.update(type="string", subType="json")
            variable_type = "json"
        else:
            variable["type"] = variable_type
        variable["defaultValue"] = self.variable_value(variable_type)
        return variable

    def variable_value(self, variable_type: str) -> str:
        values = VARIABLE_VALUES[variable_type]
        r = self.random
        # Mostly values of the type; sometimes one the SDK cannot cast.
        return r.choice(values[:3]) if r.random() < 0.8 else r.choice(values)

    def flag_variation(self, variation: dict[str, Any], variables: list[dict[str, Any]]) -> None:
        r = self.random
        roll = r.random()
        if roll < 0.45:
            variation["featureEnabled"] = True
        elif roll < 0.9:
            variation["featureEnabled"] = False
        usages = []
        for variable in variables:
            if r.random() < 0.8:
                variable_type = "json" if variable.get("subType") == "json" else variable["type"]
                usages.append({"id": variable["id"], "value": self.variable_value(variable_type)})
        if r.random() < 0.1:
            usages.append({"id": "404", "value": "no such variable"})
        if usages or r.random() < 0.5:
            variation["variables"] = usages

    def rule(self, audience_ids: list[str], variations: list[dict[str, Any]], last: bool) -> Any:
        r = self.random
        rule_id = self.new_id()
        pool = [*audience_ids, "404404"]
        rule: dict[str, Any] = {
            "id": rule_id,
            "key": f"rule_{rule_id}" if not last else f"everyone_else_{rule_id}",
            "status": r.choice(("Running",) * 8 + ("Paused", "Archived")),
            "layerId": self.new_id(),
            "variations": variations,
            "trafficAllocation": self.traffic([v["id"] for v in variations], [self.new_id()]),
            "audienceIds": [] if last else r.sample(pool, r.randint(0, min(2, len(pool)))),
            "forcedVariations": {},
        }
        if last and r.random() < 0.7:
            rule["trafficAllocation"] = [{"entityId": variations[0]["id"], "endOfRange": 10000}]
        elif not last and r.random() < 0.5:
            rule["audienceConditions"] = self.tree(lambda: r.choice(pool), 2)
        return rule

    def holdout(self, audience_ids: list[str], rule_ids: list[str], local: bool) -> Any:
        r = self.random
        holdout_id = self.new_id()
        variations = [{"id": self.new_id(), "key": "ho_off", "featureEnabled": r.random() < 0.15}]
        pool = [*audience_ids, "404404"]
        holdout: dict[str, Any] = {
            "id": holdout_id,
            "key": f"holdout_{holdout_id}",
            "status": r.choice(("Running",) * 6 + ("Draft", "Concluded", "Archived")),
            "variations": variations,
            "trafficAllocation": [
                {"entityId": r.choice((variations[0]["id"], "", "404")), "endOfRange": end}
                for end in sorted(r.randint(0, 4000) for _ in range(r.randint(0, 2)))
            ],
            "audienceIds": r.sample(pool, r.randint(0, min(1, len(pool)))),
            # 5.7 reads neither; a generator that sets them proves they change nothing.
            "includedFlags": [],
            "excludedFlags": [],
        }
        if r.random() < 0.4:
            holdout["excludeTargetedDeliveries"] = r.random() < 0.6
        if local:
            if r.random() < 0.9 and rule_ids:
                holdout["includedRules"] = r.sample(rule_ids, r.randint(1, min(3, len(rule_ids))))
        elif r.random() < 0.1:
            holdout["includedRules"] = rule_ids[:1]  # ignored on a global holdout
        return holdout

    def flag_datafile(self) -> dict[str, Any]:
        r = self.random
        datafile = self.datafile("4")
        audience_ids = sorted(
            {a["id"] for a in datafile["audiences"]} | {a["id"] for a in datafile["typedAudiences"]}
        )
        experiments = datafile["experiments"] + [
            e for group in datafile["groups"] for e in group["experiments"]
        ]
        for _ in range(r.randint(0, 3)):
            experiments.append(self.experiment("4", audience_ids))
            datafile["experiments"].append(experiments[-1])
        r.shuffle(experiments)
        flags, rollouts, rule_ids = [], [], []
        for _ in range(r.randint(1, 5)):
            flag_id = self.new_id()
            variables = [self.variable() for _ in range(r.randint(0, 4))]
            if variables and r.random() < 0.05:
                variables.append({**variables[0], "id": self.new_id()})  # a duplicate key
            tests = [experiments.pop() for _ in range(min(len(experiments), r.randint(0, 2)))]
            for test in tests:
                for variation in test["variations"]:
                    self.flag_variation(variation, variables)
                test_type = r.choice(EXPERIMENT_TYPES)
                if test_type is not None:
                    test["type"] = test_type
                if test_type == "cmab" or r.random() < 0.05:
                    test["cmab"] = {"attributeIds": [], "trafficAllocation": r.randint(0, 10000)}
            rollout_id = ""
            if r.random() < 0.8:
                shared = [
                    {"id": self.new_id(), "key": key}
                    for key in r.sample(("on", "off", "blue", "green"), r.randint(1, 3))
                ]
                for variation in shared:
                    self.flag_variation(variation, variables)
                count = r.randint(1, 4)
                rules = [
                    self.rule(
                        audience_ids,
                        copy.deepcopy(r.sample(shared, r.randint(1, len(shared)))),
                        index == count - 1,
                    )
                    for index in range(count)
                ]
                rollout_id = self.new_id()
                rollouts.append({"id": rollout_id, "experiments": rules})
                rule_ids += [rule["id"] for rule in rules]
            rule_ids += [test["id"] for test in tests]
            flags.append(
                {
                    "id": flag_id,
                    "key": f"flag_{flag_id}",
                    "experimentIds": [test["id"] for test in tests],
                    "rolloutId": rollout_id,
                    "variables": variables,
                }
            )
        datafile["featureFlags"] = flags
        datafile["rollouts"] = rollouts
        datafile["sendFlagDecisions"] = r.random() < 0.5
        if r.random() < 0.5:
            datafile["holdouts"] = [
                self.holdout(audience_ids, rule_ids, local=False) for _ in range(r.randint(0, 2))
            ]
        if r.random() < 0.5:
            datafile["localHoldouts"] = [
                self.holdout(audience_ids, rule_ids, local=True) for _ in range(r.randint(0, 3))
            ]
        if r.random() < 0.2:
            datafile["integrations"] = [{"key": "odp", "host": "h", "publicKey": "k"}]
        datafile["sdkKey"] = "sdk-key"
        datafile["environmentKey"] = "production"
        return datafile

    def decide_call(self, datafile: dict[str, Any]) -> DecideCall:
        r = self.random
        flags = datafile["featureFlags"]
        options = [option for option in PURE_OPTIONS if r.random() < 0.2]
        flag_keys: list[str] | None = None
        if r.random() < 0.5:
            flag_keys = [f["key"] for f in r.sample(flags, r.randint(1, len(flags)))]
            if r.random() < 0.2:
                flag_keys.insert(r.randint(0, len(flag_keys)), "no_such_flag")
        call = DecideCall(self.user_id(), self.attributes(), options, flag_keys)
        rules_by_flag = {
            f["key"]: [
                *(e for e in self.all_experiments(datafile) if e["id"] in f["experimentIds"]),
                *(
                    rule
                    for rollout in datafile["rollouts"]
                    if rollout["id"] == f["rolloutId"]
                    for rule in rollout["experiments"]
                ),
            ]
            for f in flags
        }
        for flag in flags:
            rules = rules_by_flag[flag["key"]]
            variation_keys = [v["key"] for rule in rules for v in rule["variations"]]
            if r.random() < 0.12:
                rule_key = r.choice([None, *(rule["key"] for rule in rules)])
                if variation_keys and r.random() < 0.85:
                    call.forced[(flag["key"], rule_key)] = r.choice(variation_keys)
                else:
                    call.forced[(flag["key"], rule_key)] = "no_such_variation"
            for rule in rules:
                if rule["id"] in flag["experimentIds"] and r.random() < 0.1:
                    call.profile[rule["id"]] = (
                        r.choice(rule["variations"])["id"] if r.random() < 0.85 else "stale"
                    )
                if rule["id"] in flag["experimentIds"] and r.random() < 0.05:
                    call.forced_variations[rule["key"]] = r.choice(rule["variations"])["key"]
        return call

    @staticmethod
    def all_experiments(datafile: dict[str, Any]) -> list[dict[str, Any]]:
        return datafile["experiments"] + [
            e for group in datafile["groups"] for e in group["experiments"]
        ]

    def flag_case(self, calls: int) -> FlagCase:
        case = FlagCase(self.flag_datafile())
        case.calls = [self.decide_call(case.datafile) for _ in range(calls)]
        return case

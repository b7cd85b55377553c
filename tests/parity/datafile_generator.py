"""Seeded random datafiles and users for differential tests against optimizely-sdk.

Everything generated is a datafile the SDK accepts (it passes the SDK's JSON schema) and a
call the SDK answers; the shapes aim at the corners: traffic gaps and empty entity ids,
exclusive and overlapping groups, audiences in both encodings, every match type, numbers at
the 2**53 limit, values of the wrong kind, whitelists naming missing variations.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTE_NAMES = ("device", "ad_source", "age", "app_version", "plan", "score", "beta")
STATUSES = ("Running",) * 30 + ("Paused", "Not started", "Archived", "Launched", "running")
MATCH_TYPES = (
    "exact",
    None,  # no "match" key: exact
    "exists",
    "substring",
    "gt",
    "ge",
    "lt",
    "le",
    "semver_eq",
    "semver_gt",
    "semver_ge",
    "semver_lt",
    "semver_le",
    "qualified",
    "regex",  # unknown to the SDK
)
STRINGS = ("iPhone", "Android", "iPhone 15", "phone", "", "Phone", "facebook", "ad", "1.2.3")
VERSIONS = (
    "1.2.3",
    "1.2",
    "1",
    "2",
    "1.2.4",
    "1.10.0",
    "1.2.3-beta",
    "1.2.3-alpha",
    "1.2.3-beta.2",
    "1.2.3+build.5",
    "1.2.3-beta+exp.sha",
    "1.2.3+build-7",
    "2.0.0-rc1",
    "1.2.3.4",
    "1..2",
    "a.b.c",
    "1.2.3 ",
    "",
    "-1",
    "1.2.3-",
    "01.2.3",
    "1.2.x",
    "+1",
    "1.2-beta",
)
LIMIT = 2**53
NUMBERS: tuple[int | float, ...] = (
    0,
    1,
    -1,
    17,
    42,
    42.0,
    42.5,
    -3.25,
    1e300,
    LIMIT,
    LIMIT - 1,
    LIMIT + 1,
    -LIMIT,
    -LIMIT - 1,
    float(LIMIT),
    float(LIMIT) * 2,
    -float(LIMIT),
)
ODD_VALUES: tuple[Any, ...] = (True, False, None, [1, 2], {"name": "nested"})


@dataclass
class Case:
    """One datafile and the calls to compare on it."""

    datafile: dict[str, Any]
    calls: list[Call] = field(default_factory=list)

    @property
    def datafile_json(self) -> str:
        return json.dumps(self.datafile)


@dataclass
class Call:
    experiment_key: str
    user_id: str
    attributes: dict[str, Any]
    forced_variation_key: str | None = None  # set through set_forced_variation first
    sticky_variation_id: str | None = None  # returned by the user profile service


class DatafileGenerator:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.next_id = 1000
        self.blank_key_used = False
        # Condition values per attribute name: users often get one, so audiences match.
        self.condition_values: dict[str, list[Any]] = {}

    def new_id(self) -> str:
        self.next_id += self.random.randint(1, 97)
        return str(self.next_id)

    # ---- audiences ----------------------------------------------------------------------

    def condition_value(self, match: str | None) -> Any:
        r = self.random
        roll = r.random()
        if match == "qualified":
            # An unhashable segment name makes the SDK refuse the whole datafile.
            return r.choice(STRINGS) if roll < 0.8 else r.choice(NUMBERS)
        if roll < 0.08:
            return r.choice(ODD_VALUES)
        if match in ("gt", "ge", "lt", "le"):
            return r.choice(NUMBERS) if roll < 0.85 else r.choice(STRINGS)
        if match and match.startswith("semver"):
            return r.choice(VERSIONS) if roll < 0.9 else r.choice(NUMBERS)
        if match in ("exact", None):
            return r.choice((r.choice(STRINGS), r.choice(NUMBERS), r.choice((True, False))))
        return r.choice(STRINGS)

    def leaf(self) -> dict[str, Any]:
        r = self.random
        match = r.choice(MATCH_TYPES)
        leaf: dict[str, Any] = {
            "name": r.choice(ATTRIBUTE_NAMES),
            "type": r.choices(
                ("custom_attribute", "third_party_dimension", "custom_dimension"), (12, 1, 1)
            )[0],
            "value": self.condition_value(match),
        }
        if match is not None:
            leaf["match"] = match
        if "value" in leaf:
            self.condition_values.setdefault(leaf["name"], []).append(leaf["value"])
        if r.random() < 0.05:
            del leaf["value"]
        return leaf

    def tree(self, make_leaf: Any, depth: int) -> Any:
        r = self.random
        if depth <= 0 or r.random() < 0.35:
            return make_leaf()
        operands = [self.tree(make_leaf, depth - 1) for _ in range(r.randint(1, 3))]
        head = r.choices(("and", "or", "not", None), (4, 4, 2, 1))[0]
        if head is None and len(operands) == 1 and isinstance(operands[0], list):
            # [[...]]: the SDK's OptimizelyConfig (built in its constructor) fails on these.
            head = "or"
        return operands if head is None else [head, *operands]

    def audience_conditions(self) -> Any:
        r = self.random
        if r.random() < 0.15:
            return self.leaf()  # a bare leaf, no list around it
        # The classic shape the app writes: and / or / or / leaves.
        if r.random() < 0.3:
            return ["and", ["or", ["or", *[self.leaf() for _ in range(r.randint(1, 3))]]]]
        return self.tree(self.leaf, 3)

    # ---- experiments --------------------------------------------------------------------

    def traffic(self, entity_ids: list[str], spare_ids: list[str]) -> list[dict[str, Any]]:
        r = self.random
        count = r.randint(0, 5)
        ends = sorted(r.randint(0, 10000) for _ in range(count))
        if ends and r.random() < 0.5:
            ends[-1] = 10000
        ranges = []
        for end in ends:
            roll = r.random()
            if roll < 0.75 and entity_ids:
                entity = r.choice(entity_ids)
            elif roll < 0.9:
                entity = ""
            else:
                entity = r.choice(spare_ids) if spare_ids else "999999"
            ranges.append({"entityId": entity, "endOfRange": end})
        if r.random() < 0.1:
            r.shuffle(ranges)
        return ranges

    def experiment_key(self, experiment_id: str) -> str:
        # Rarely a blank key: the SDK's bucketer refuses those. One per datafile, so keys
        # stay unique (the SDK's key index would keep only the last of duplicates).
        if not self.blank_key_used and self.random.random() < 0.03:
            self.blank_key_used = True
            return " "
        return f"exp_{experiment_id}"

    def experiment(self, version: str, audience_ids: list[str]) -> dict[str, Any]:
        r = self.random
        experiment_id = self.new_id()
        variations = [
            {"id": self.new_id(), "key": f"v{index}_{experiment_id}"}
            for index in range(r.randint(1, 4))
        ]
        variation_ids = [variation["id"] for variation in variations]
        whitelist = {}
        for index in range(r.choice((0, 0, 1, 2))):
            whitelist[f"vip{index}"] = (
                r.choice(variations)["key"] if r.random() < 0.8 else "no_such_variation"
            )
        pool = [*audience_ids, "404404"]
        experiment: dict[str, Any] = {
            "id": experiment_id,
            "key": self.experiment_key(experiment_id),
            "layerId": self.new_id(),
            "status": r.choice(STATUSES),
            "variations": variations,
            "trafficAllocation": self.traffic(variation_ids, [self.new_id()]),
            "audienceIds": r.sample(pool, r.randint(0, min(2, len(pool)))),
            "forcedVariations": whitelist,
        }
        if version == "4" and r.random() < 0.7:
            roll = r.random()
            if roll < 0.1:
                experiment["audienceConditions"] = []
            elif roll < 0.15:
                experiment["audienceConditions"] = None
            elif roll < 0.2:
                experiment["audienceConditions"] = r.choice(pool)
            else:
                experiment["audienceConditions"] = self.tree(lambda: r.choice(pool), 3)
        return experiment

    def datafile(self, version: str | None = None) -> dict[str, Any]:
        """A random datafile; `version` fixes its version (else drawn, as before)."""
        r = self.random
        if version is None:
            version = r.choice(("2", "3", "4"))
        self.blank_key_used = False
        self.condition_values = {}
        audiences = []
        for _ in range(r.randint(0, 4)):
            audience_id = self.new_id()
            audiences.append(
                {
                    "id": audience_id,
                    "name": f"audience {audience_id}",
                    "conditions": json.dumps(self.audience_conditions()),
                }
            )
        typed_audiences = []
        if version != "2":
            for _ in range(r.randint(0, 3)):
                # Sometimes replace an audience of the same id, as the app does.
                if audiences and r.random() < 0.5:
                    audience_id = r.choice(audiences)["id"]
                else:
                    audience_id = self.new_id()
                typed_audiences.append(
                    {
                        "id": audience_id,
                        "name": f"typed {audience_id}",
                        "conditions": self.audience_conditions(),
                    }
                )
        audience_ids = sorted({a["id"] for a in audiences} | {a["id"] for a in typed_audiences})
        experiments = [self.experiment(version, audience_ids) for _ in range(r.randint(0, 3))]
        groups = []
        for _ in range(r.choice((0, 0, 1, 2))):
            group_id = self.new_id()
            members = [self.experiment(version, audience_ids) for _ in range(r.randint(1, 3))]
            groups.append(
                {
                    "id": group_id,
                    "policy": r.choices(("random", "overlapping"), (4, 1))[0],
                    "trafficAllocation": self.traffic([m["id"] for m in members], [self.new_id()]),
                    "experiments": members,
                }
            )
        datafile: dict[str, Any] = {
            "version": version,
            "accountId": "12133785640",
            "projectId": self.new_id(),
            "revision": str(r.randint(1, 500)),
            "anonymizeIP": r.random() < 0.5,
            "botFiltering": r.random() < 0.5,
            "attributes": [{"id": self.new_id(), "key": name} for name in ATTRIBUTE_NAMES],
            "audiences": audiences,
            "events": [{"id": self.new_id(), "key": "my_conversion", "experimentIds": []}],
            "experiments": experiments,
            "groups": groups,
        }
        if version != "2":
            datafile["typedAudiences"] = typed_audiences
        if version == "4":
            datafile["featureFlags"] = []
            datafile["rollouts"] = []
        return datafile

    # ---- users --------------------------------------------------------------------------

    def attribute_value(self, name: str) -> Any:
        r = self.random
        seen = self.condition_values.get(name)
        if seen and r.random() < 0.5:
            value = r.choice(seen)
            if isinstance(value, list | dict):
                return None
            if isinstance(value, int | float) and not isinstance(value, bool) and r.random() < 0.3:
                return r.choice((value + 1, value - 1, float(value), value / 2))
            return value
        roll = r.random()
        if roll < 0.1:
            return r.choice((True, False, None, float("nan"), float("inf"), -float("inf")))
        if name == "app_version" and roll < 0.7:
            return r.choice(VERSIONS)
        if roll < 0.55:
            return r.choice(STRINGS + VERSIONS[:4])
        return r.choice(NUMBERS)

    def attributes(self) -> dict[str, Any]:
        r = self.random
        names = [name for name in ATTRIBUTE_NAMES if r.random() < 0.8]
        attributes = {name: self.attribute_value(name) for name in names}
        roll = r.random()
        if roll < 0.15:
            attributes["$opt_bucketing_id"] = f"bucket{r.randint(0, 50)}"
        elif roll < 0.22:
            attributes["$opt_bucketing_id"] = r.choice((7, 7.5, True, None, ""))
        return attributes

    def user_id(self) -> str:
        r = self.random
        roll = r.random()
        if roll < 0.1:
            return r.choice(("vip0", "vip1"))
        if roll < 0.13:
            return r.choice(("", "ユーザー", "user with spaces", "ü"))
        return f"user{r.randint(0, 10**6)}"

    def case(self, calls_per_experiment: int) -> Case:
        r = self.random
        case = Case(self.datafile())
        experiments = case.datafile["experiments"] + [
            experiment for group in case.datafile["groups"] for experiment in group["experiments"]
        ]
        for experiment in experiments:
            variations = experiment["variations"]
            for _ in range(calls_per_experiment):
                call = Call(experiment["key"], self.user_id(), self.attributes())
                roll = r.random()
                if roll < 0.05:
                    call.forced_variation_key = r.choice(variations)["key"]
                elif roll < 0.1:
                    call.sticky_variation_id = (
                        r.choice(variations)["id"] if r.random() < 0.8 else "stale"
                    )
                case.calls.append(call)
        return case

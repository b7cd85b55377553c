"""A valid Optimizely datafile (version 4) of about a target size, for start-up benchmarks.

Deterministic: the same size gives the same bytes. It is made of repeated "units", each a
slice of what a large real project holds: attributes, legacy (string) and typed audiences
with exact/substring/numeric matches, running, paused and audience-targeted experiments
with 2-4 variations and whitelists, one mutually exclusive group, and conversion events
naming several experiments. The unit count is grown until the file reaches the target.

    .venv/bin/python -m bench.gen_datafile 10MB -o /tmp/big.json

Every experiment key is `exp_<unit>_<n>`; `exp_0_0` is running with no audience, so a
client can Activate it whatever the size.

`build_flags(n)` makes the Decide benchmark's datafile instead: n feature flags, each with an
A/B test, two targeted delivery rules, "Everyone Else" and a variable of every type.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXPERIMENTS_PER_UNIT = 6
ATTRIBUTES_PER_UNIT = 2
DEVICES = ("iPhone", "Android", "iPad", "desktop")


def _variations(unit: int, n: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"8{unit:07d}{n}{v}",
            "key": f"v{v}",
            "featureEnabled": False,
            "variables": [],
        }
        for v in range(count)
    ]


def _traffic(entity_ids: list[str]) -> list[dict[str, Any]]:
    step = 10_000 // len(entity_ids)
    return [
        {
            "entityId": entity_id,
            "endOfRange": 10_000 if i == len(entity_ids) - 1 else step * (i + 1),
        }
        for i, entity_id in enumerate(entity_ids)
    ]


def _experiment(unit: int, n: int, audience_ids: list[str]) -> dict[str, Any]:
    variations = _variations(unit, n, 2 + (unit + n) % 3)
    status = "Paused" if n == 5 else "Running"
    return {
        "id": f"4{unit:07d}{n}",
        "key": f"exp_{unit}_{n}",
        "layerId": f"5{unit:07d}{n}",
        "status": status,
        "audienceIds": audience_ids,
        "audienceConditions": ["or", *audience_ids] if audience_ids else [],
        "forcedVariations": {
            f"qa_{unit}_{n}_{k}": variations[k % len(variations)]["key"] for k in range(3)
        },
        "variations": variations,
        "trafficAllocation": _traffic([v["id"] for v in variations]),
    }


def _legacy_conditions(attribute: str, value: str) -> str:
    leaf = {"name": attribute, "type": "custom_attribute", "value": value}
    return json.dumps(["and", ["or", ["or", leaf]]])


def unit(u: int) -> dict[str, list[dict[str, Any]]]:
    """One slice of the datafile: every id and key carries `u`, so slices never collide."""
    device_attr, score_attr = f"device_{u}", f"score_{u}"
    attributes = [
        {"id": f"2{u:07d}0", "key": device_attr},
        {"id": f"2{u:07d}1", "key": score_attr},
    ]
    legacy_id, typed_id = f"3{u:07d}0", f"3{u:07d}1"
    audiences = [
        {
            "id": legacy_id,
            "name": f"{DEVICES[u % 4]} users {u}",
            "conditions": _legacy_conditions(device_attr, DEVICES[u % 4]),
        },
        {
            "id": typed_id,
            "name": f"engaged {u}",
            "conditions": '["or", {"match": "exact", "name": "$opt_dummy_attribute",'
            ' "type": "custom_attribute", "value": "$opt_dummy_value"}]',
        },
    ]
    typed = [
        {
            "id": typed_id,
            "name": f"engaged {u}",
            "conditions": [
                "and",
                [
                    "or",
                    {"name": score_attr, "type": "custom_attribute", "match": "gt", "value": 50},
                ],
                [
                    "not",
                    [
                        "or",
                        {
                            "name": device_attr,
                            "type": "custom_attribute",
                            "match": "substring",
                            "value": "test",
                        },
                    ],
                ],
            ],
        }
    ]
    plain = [
        _experiment(u, 0, []),
        _experiment(u, 1, [legacy_id]),
        _experiment(u, 2, [typed_id]),
        _experiment(u, 3, [legacy_id, typed_id]),
    ]
    grouped = [_experiment(u, 4, []), _experiment(u, 5, [])]
    group = {
        "id": f"6{u:07d}",
        "policy": "random",
        "trafficAllocation": _traffic([e["id"] for e in grouped]),
        "experiments": grouped,
    }
    ids = [e["id"] for e in plain + grouped]
    events = [
        {"id": f"7{u:07d}0", "key": f"purchase_{u}", "experimentIds": ids},
        {"id": f"7{u:07d}1", "key": f"signup_{u}", "experimentIds": ids[:2]},
        {"id": f"7{u:07d}2", "key": f"page_view_{u}", "experimentIds": []},
    ]
    return {
        "attributes": attributes,
        "audiences": audiences,
        "typedAudiences": typed,
        "experiments": plain,
        "groups": [group],
        "events": events,
    }


def build(units: int) -> str:
    document: dict[str, Any] = {
        "version": "4",
        "accountId": "12001",
        "projectId": "12002",
        "revision": str(units),
        "anonymizeIP": True,
        "botFiltering": False,
        "sdkKey": "bench",
        "environmentKey": "production",
        "attributes": [],
        "audiences": [],
        "typedAudiences": [],
        "experiments": [],
        "groups": [],
        "events": [],
        "rollouts": [],
        "featureFlags": [],
    }
    for u in range(units):
        for key, items in unit(u).items():
            document[key].extend(items)
    # Indented as datafiles served by the CDN are not, but as people commit them.
    return json.dumps(document, indent=1)


def generate(target_bytes: int) -> str:
    """The smallest datafile of whole units that is at least `target_bytes` long."""
    per_unit = max(1, len(build(8)) - len(build(0))) / 8
    units = max(1, int(target_bytes / per_unit))
    text = build(units)
    while len(text) < target_bytes:
        units += max(1, int((target_bytes - len(text)) / per_unit))
        text = build(units)
    return text


# --- flags: the Decide benchmark's datafile -------------------------------------------------

FLAG_AUDIENCES: list[dict[str, Any]] = [
    {
        "id": "flag_ios",
        "name": "iOS",
        "conditions": [
            "and",
            {"name": "device", "type": "custom_attribute", "match": "exact", "value": "iPhone"},
        ],
    },
    {
        "id": "flag_adult",
        "name": "adults",
        "conditions": [
            "and",
            ["or", {"name": "age", "type": "custom_attribute", "match": "ge", "value": 18}],
        ],
    },
    {
        "id": "flag_new_app",
        "name": "new app",
        "conditions": [
            "and",
            {
                "name": "app_version",
                "type": "custom_attribute",
                "match": "semver_ge",
                "value": "2.1.0",
            },
        ],
    },
    {
        "id": "flag_us_pro",
        "name": "US pro plan",
        "conditions": [
            "and",
            {"name": "country", "type": "custom_attribute", "match": "exact", "value": "US"},
            {"name": "plan", "type": "custom_attribute", "match": "substring", "value": "pro"},
        ],
    },
]
FLAG_ATTRIBUTES = ("device", "age", "app_version", "country", "plan")
# (key, type, default, treatment's value): one variable of each type per flag.
FLAG_VARIABLES = (
    ("enabled_banner", "boolean", "false", "true"),
    ("max_items", "integer", "10", "25"),
    ("discount", "double", "0.0", "0.15"),
    ("headline", "string", "Checkout", "Check out in one step"),
    ("layout", "json", '{"columns": 1}', '{"columns": 2, "steps": ["cart", "pay"]}'),
)


def _flag_variation(f: int, suffix: str, key: str, on: bool, values: list[str]) -> dict[str, Any]:
    return {
        "id": f"fv{f}_{suffix}",
        "key": key,
        "featureEnabled": on,
        "variables": [{"id": f"var{f}_{n}", "value": value} for n, value in enumerate(values)],
    }


def _flag_rule(
    rule_id: str, key: str, variation: dict[str, Any], end: int, audiences: list[str]
) -> dict[str, Any]:
    return {
        "id": rule_id,
        "key": key,
        "status": "Running",
        "layerId": rule_id,
        "variations": [variation],
        "trafficAllocation": [{"entityId": variation["id"], "endOfRange": end}],
        "audienceIds": audiences,
        "audienceConditions": ["or", *audiences] if audiences else [],
        "forcedVariations": {},
    }


def flag(f: int) -> dict[str, list[dict[str, Any]]]:
    """Flag `flag_<f>`: an A/B test (`ab_<f>`, control/treatment, half the traffic; every
    other one targeted), two targeted delivery rules and "Everyone Else", 5 variables."""
    defaults = [default for _, _, default, _ in FLAG_VARIABLES]
    treated = [value for _, _, _, value in FLAG_VARIABLES]
    audience_ids = [a["id"] for a in FLAG_AUDIENCES]
    targeted = [audience_ids[f % 4], audience_ids[(f + 1) % 4]] if f % 2 else []
    ab = _flag_rule(
        f"ab{f}", f"ab_{f}", _flag_variation(f, "c", "control", True, defaults), 2500, targeted
    )
    treatment = _flag_variation(f, "t", "treatment", True, treated)
    ab["variations"].append(treatment)
    ab["trafficAllocation"].append({"entityId": treatment["id"], "endOfRange": 5000})
    on = _flag_variation(f, "on", "on", True, treated)
    off = _flag_variation(f, "off", "off", False, defaults)
    rules = [
        _flag_rule(f"dr{f}_1", f"delivery_{f}_1", on, 3000, [audience_ids[(f + 2) % 4]]),
        _flag_rule(f"dr{f}_2", f"delivery_{f}_2", on, 6000, [audience_ids[(f + 3) % 4]]),
        _flag_rule(f"ee{f}", f"everyone_else_{f}", off, 10000, []),
    ]
    variables = [
        {"id": f"var{f}_{n}", "key": key, "type": kind, "defaultValue": default}
        for n, (key, kind, default, _) in enumerate(FLAG_VARIABLES)
    ]
    return {
        "experiments": [ab],
        "rollouts": [{"id": f"ro{f}", "experiments": rules}],
        "featureFlags": [
            {
                "id": f"flag{f}",
                "key": f"flag_{f}",
                "experimentIds": [ab["id"]],
                "rolloutId": f"ro{f}",
                "variables": variables,
            }
        ],
    }


def build_flags(flag_count: int) -> str:
    """A version 4 datafile of `flag_count` flags (see `flag`), as a current project serves it."""
    document: dict[str, Any] = {
        "version": "4",
        "accountId": "12001",
        "projectId": "12003",
        "revision": str(flag_count),
        "anonymizeIP": True,
        "botFiltering": False,
        "sdkKey": "bench-flags",
        "environmentKey": "production",
        "sendFlagDecisions": True,
        "attributes": [{"id": f"fa{n}", "key": key} for n, key in enumerate(FLAG_ATTRIBUTES)],
        "audiences": [],
        "typedAudiences": FLAG_AUDIENCES,
        "experiments": [],
        "groups": [],
        "events": [{"id": "fe0", "key": "purchase", "experimentIds": []}],
        "rollouts": [],
        "featureFlags": [],
        "integrations": [],
    }
    for f in range(flag_count):
        for key, items in flag(f).items():
            document[key].extend(items)
    document["events"][0]["experimentIds"] = [e["id"] for e in document["experiments"]]
    return json.dumps(document)


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", help="target size, e.g. 1MB, 10MB, 200KB")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
    args = parser.parse_args(argv)
    text = generate(parse_size(args.size))
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

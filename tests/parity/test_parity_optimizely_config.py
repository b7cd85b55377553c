"""Agent's GET /v1/config body (trackd.optimizely_config) is optimizely-sdk's
get_optimizely_config(), field for field, on the project's datafiles and generated ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from optimizely import optimizely
from optimizely.helpers.sdk_settings import OptimizelySdkSettings
from optimizely.logger import NoOpLogger
from optimizely.optimizely_config import OptimizelyExperiment, OptimizelyVariable

from tests.parity.flags_generator import FlagsGenerator
from tests.parity.test_parity_decisions import quiet_sdk as quiet_sdk  # autouse: the SDK's logging
from tests.support.oracle import CapturingDispatcher
from trackd.optimizely_config import optimizely_config

ROOT = Path(__file__).resolve().parents[2]
DATAFILES = [
    ROOT / "server/trackd/data/example_datafile.json",
    ROOT / "tests/data/datafile.json",
    ROOT / "tests/data/flags_datafile.json",
    ROOT / "tests/data/clients_datafile.json",
]


def _variables(variables: dict[str, OptimizelyVariable]) -> dict[str, Any]:
    return {
        key: {"id": v.id, "key": v.key, "type": v.type, "value": v.value}
        for key, v in variables.items()
    }


def _rule(experiment: OptimizelyExperiment) -> dict[str, Any]:
    return {
        "id": experiment.id,
        "key": experiment.key,
        "audiences": experiment.audiences,
        "variationsMap": {
            key: {
                "id": v.id,
                "key": v.key,
                "featureEnabled": bool(v.feature_enabled),
                "variablesMap": _variables(v.variables_map),
            }
            for key, v in experiment.variations_map.items()
        },
    }


def sdk_config(datafile_json: str) -> dict[str, Any]:
    """The SDK's OptimizelyConfig with Agent's JSON field names."""
    sdk = optimizely.Optimizely(
        datafile_json,
        event_dispatcher=CapturingDispatcher(),
        logger=NoOpLogger(),
        settings=OptimizelySdkSettings(odp_disabled=True),
    )
    try:
        config = sdk.get_optimizely_config()
        assert config is not None
        return {
            "environmentKey": config.environment_key,
            "sdkKey": config.sdk_key,
            "revision": config.revision,
            "experimentsMap": {k: _rule(e) for k, e in config.experiments_map.items()},
            "featuresMap": {
                key: {
                    "id": f.id,
                    "key": f.key,
                    "experimentRules": [_rule(e) for e in f.experiment_rules],
                    "deliveryRules": [_rule(e) for e in f.delivery_rules],
                    "variablesMap": _variables(f.variables_map),
                    "experimentsMap": {k: _rule(e) for k, e in f.experiments_map.items()},
                }
                for key, f in config.features_map.items()
            },
            "attributes": [{"id": a.id, "key": a.key} for a in config.attributes],
            "audiences": [
                {"id": a.id, "name": a.name, "conditions": a.conditions} for a in config.audiences
            ],
            "events": [
                {"id": e.id, "key": e.key, "experimentIds": e.experiment_ids} for e in config.events
            ],
        }
    finally:
        sdk.close()


@pytest.mark.parametrize("path", DATAFILES, ids=lambda path: path.name)
def test_the_projects_datafiles(path: Path) -> None:
    text = path.read_text()
    ours = optimizely_config(json.loads(text))
    assert ours == sdk_config(text)
    assert ours["experimentsMap"] or ours["featuresMap"]  # something was compared


@pytest.mark.parametrize("seed", range(4))
def test_generated_datafiles(seed: int) -> None:
    generator = FlagsGenerator(seed)
    compared = 0
    for _ in range(10):
        case = generator.flag_case(0)
        ours = optimizely_config(json.loads(case.datafile_json))
        assert ours == sdk_config(case.datafile_json), f"seed {seed}"
        compared += sum(len(f["deliveryRules"]) for f in ours["featuresMap"].values())
    assert compared > 0  # delivery rules, the intricate part, were among them

"""The README's grpcurl commands, run verbatim (but for the port) against a live daemon."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import spawn
from tests.support.go_tools import go_tool

README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDRESS = "127.0.0.1:50051"


def readme_commands() -> list[str]:
    text = README.read_text()
    block = re.search(r"<!-- grpcurl-examples:start -->\s*```sh\n(.*?)```", text, flags=re.DOTALL)
    assert block, "README lost its grpcurl examples block"
    return [line for line in block.group(1).splitlines() if line.startswith("grpcurl ")]


def test_readme_shows_a_grpcurl_call_for_every_rpc() -> None:
    targets = {command.split()[-1] for command in readme_commands()}
    service = "trackd.v1.TrackingService"
    rpcs = {
        f"{service}/{name}"
        for name in (
            "Activate",
            "GetVariation",
            "Track",
            "TrackStream",
            "GetExperimentResults",
            "SetForcedVariation",
            "GetForcedVariation",
            "GetConfig",
            "Decide",
            "SetForcedDecision",
            "GetForcedDecision",
            "RemoveForcedDecision",
            "RemoveAllForcedDecisions",
        )
    }
    assert rpcs | {"list", service, "grpc.health.v1.Health/Check"} <= targets


def test_every_readme_grpcurl_command_works(tmp_path: Path) -> None:
    tool = go_tool("grpcurl")
    with spawn(tmp_path) as daemon:
        address = f"127.0.0.1:{daemon.port}"
        outputs = {}
        for command in readme_commands():
            argv = ["bash", "-c", command.replace("grpcurl ", f"{tool} ", 1)]
            argv[-1] = argv[-1].replace(README_ADDRESS, address)
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, f"{command}\n{result.stderr}"
            outputs[command.split()[-1]] = result.stdout
        assert daemon.stop() == 0

    assert "trackd.v1.TrackingService" in outputs["list"].split()
    activate = json.loads(outputs["trackd.v1.TrackingService/Activate"])
    assert activate["variation_key"] in ("control", "one_page_checkout")
    track = json.loads(outputs["trackd.v1.TrackingService/Track"])
    assert track["attributions"][0]["experiment_key"] == "checkout_flow"
    ack = json.loads(outputs["trackd.v1.TrackingService/TrackStream"])
    assert ack["accepted"] == 1
    forced = json.loads(outputs["trackd.v1.TrackingService/GetForcedVariation"])
    assert forced["variation_key"] == "one_page_checkout"
    # The last Decide: two flags of the bundled example datafile, with reasons.
    decided = json.loads(outputs["trackd.v1.TrackingService/Decide"])["decisions"]
    assert [d["flag_key"] for d in decided] == ["checkout_redesign", "free_shipping"]
    assert not any("error" in d for d in decided), decided
    assert all(d["reasons"] for d in decided)
    forced_decision = json.loads(outputs["trackd.v1.TrackingService/GetForcedDecision"])
    assert forced_decision["variation_key"] == "treatment"
    assert json.loads(outputs["trackd.v1.TrackingService/RemoveForcedDecision"])["removed"]
    config = json.loads(outputs["trackd.v1.TrackingService/GetConfig"])
    assert config["revision"]
    assert json.loads(outputs["grpc.health.v1.Health/Check"])["status"] == "SERVING"


@pytest.mark.parametrize("command", readme_commands())
def test_readme_commands_name_the_default_address(command: str) -> None:
    assert README_ADDRESS in command

"""Damaged datafiles, at start and on reload: one clear error, and the live config is kept."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reliability.support import DATAFILE, record
from tests.support.daemon import client_for, settings_for, trackd_command
from tests.support.polling import eventually
from trackd.datafile import parse_datafile
from trackd.errors import DatafileError
from trackd.v1 import tracking_service_pb2 as pb

GOOD = DATAFILE.read_bytes()


def edited(**changes: Any) -> bytes:
    document = json.loads(GOOD)
    document.update(changes)
    return json.dumps(document).encode()


def wrong_types() -> bytes:
    document = json.loads(GOOD)
    document["experiments"][0]["trafficAllocation"] = "all of it"
    return json.dumps(document).encode()


FAULTS: dict[str, bytes] = {
    "truncated": GOOD[: len(GOOD) // 2],
    "empty": b"",
    "wrong_version": edited(version="99"),
    "wrong_types": wrong_types(),
    "experiments_not_a_list": edited(experiments="none"),
    "garbage_10mb": random.Random(7).randbytes(10 * 1024 * 1024),
    "nested_10mb": b"[" * (10 * 1024 * 1024),
}
RESULTS: dict[str, str] = {}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_damaged_datafile_stops_serve_with_one_line(tmp_path: Path, fault: str) -> None:
    path = tmp_path / "datafile.json"
    path.write_bytes(FAULTS[fault])
    result = subprocess.run(
        trackd_command("serve", "--data-dir", str(tmp_path), "--datafile", str(path)),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    lines = result.stderr.strip().splitlines()
    message = lines[0].replace(str(path), "PATH")[:110] if lines else ""
    RESULTS[f"start:{fault}"] = f"exit {result.returncode}: {message}"
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr[:2000]
    assert str(path) in lines[0] or "datafile" in lines[0].lower()
    assert len(lines[0]) < 500  # clear, not a dump of the 10 MB


async def test_damaged_reloads_keep_the_live_config(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_bytes(edited(revision="100"))
    started = time.monotonic()
    async with client_for(settings_for(tmp_path, datafile=path)) as client:
        reloader = client.daemon.reloader
        for n, (fault, content) in enumerate(FAULTS.items(), start=1):
            staged = path.with_name("staged.json")
            staged.write_bytes(content)
            os.replace(staged, path)
            await eventually(lambda n=n: sum(reloader.failures.values()) >= n, within=10)
            config = await client.stub.GetConfig(pb.GetConfigRequest())
            decided = await client.stub.Activate(
                pb.ActivateRequest(experiment_key="ab_running", user_id=f"u-{fault}")
            )
            RESULTS[f"reload:{fault}"] = f"kept revision {config.revision}"
            assert config.revision == "100", fault
            assert decided.variation_key and decided.revision == "100"
        path.with_name("staged.json").write_bytes(edited(revision="101"))
        os.replace(path.with_name("staged.json"), path)

        async def recovered() -> bool:
            return (await client.stub.GetConfig(pb.GetConfigRequest())).revision == "101"

        await eventually(recovered, within=10)
        failures = dict(reloader.failures)
    record(
        "datafile_faults",
        faults=len(FAULTS),
        reload_failures_counted=failures,
        recovered_to_good_revision=True,
        seconds=round(time.monotonic() - started, 1),
        **{key: RESULTS[key] for key in sorted(RESULTS) if key.startswith("start:")},
    )


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    cut=st.integers(0, len(GOOD)),
    flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), max_size=8),
)
def test_byte_damage_gives_a_config_or_a_datafile_error(
    cut: int, flips: list[tuple[int, int]]
) -> None:
    """Byte-level damage (truncation and flipped bytes), beside tests/unit's structural fuzz."""
    data = bytearray(GOOD)
    for index, byte in flips:
        data[index] = byte
    try:
        parse_datafile(bytes(data[:cut]))
    except DatafileError as error:
        assert str(error) and "\n" not in str(error)

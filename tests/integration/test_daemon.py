"""The `trackd` command as a user runs it: flags, env, bad starts, health, reflection, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.daemon import spawn, trackd_command
from tests.support.go_tools import go_tool
from tests.support.redis_server import free_port
from trackd.config import OPTIONS
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"


def run_trackd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        trackd_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_documents_every_flag_and_its_env_var() -> None:
    result = run_trackd("--help")
    assert result.returncode == 0
    for option in OPTIONS:
        assert f"--{option.name}" in result.stdout
        assert option.env in result.stdout
    serve_help = run_trackd("serve", "--help")
    for option in OPTIONS:
        assert f"--{option.name}" in serve_help.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"version": "5"}), "version"),
        (json.dumps({"version": "4", "accountId": "1"}), "missing"),
    ],
)
def test_a_bad_datafile_stops_serve_with_one_line_naming_it(
    tmp_path: Path, content: str, problem: str
) -> None:
    datafile = tmp_path / "broken.json"
    datafile.write_text(content)
    result = run_trackd("serve", "--datafile", str(datafile), "--data-dir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(datafile) in lines[0]
    assert problem in lines[0]


def test_a_missing_datafile_is_one_line_too(tmp_path: Path) -> None:
    result = run_trackd("serve", "--datafile", str(tmp_path / "absent.json"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "absent.json" in result.stderr


@pytest.mark.parametrize(
    ("name", "content", "flag"),
    [
        ("broken.json", "{not json", "--datafile"),
        ("tokens.toml", 'a = ["nope"]\nb = []\n', "--auth-tokens"),  # two mistakes
    ],
)
def test_a_bad_start_reads_the_same_with_one_process_or_workers(
    tmp_path: Path, name: str, content: str, flag: str
) -> None:
    """`--workers N` starts each worker as `trackd serve` starts its one process: the same
    lines on stderr (one per mistake) and exit code 2."""
    path = tmp_path / name
    path.write_text(content)
    alone = run_trackd("serve", flag, str(path), "--data-dir", str(tmp_path / "one"))
    assert alone.returncode == 2
    lines = alone.stderr.strip().splitlines()
    assert all(line.startswith("trackd: ") for line in lines), lines
    workers = run_trackd(
        "serve",
        flag,
        str(path),
        "--data-dir",
        str(tmp_path / "two"),
        "--workers",
        "2",
        "--activation-store",
        "redis://127.0.0.1:9/0",  # never reached: the workers stop before opening it
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--log-format",
        "json",
    )
    assert workers.returncode == 2
    told = [line for line in workers.stderr.splitlines() if line.startswith("trackd: ")]
    assert told and set(told) == set(lines), workers.stderr


def test_invalid_settings_are_reported_one_line_each(tmp_path: Path) -> None:
    result = run_trackd(
        "serve",
        "--listen",
        "nowhere",
        "--activation-ttl",
        "soon",
        env={"TRACKD_EVENT_BATCH_SIZE": "0"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any("--activation-ttl" in line for line in lines), lines
    ok_ttl = run_trackd("serve", "--listen", "nowhere", env={"TRACKD_EVENT_BATCH_SIZE": "0"})
    lines = ok_ttl.stderr.strip().splitlines()
    assert any("--listen" in line for line in lines), lines
    assert any("--event-batch-size" in line for line in lines), lines


def test_serves_activate_health_and_reflection_then_drains_on_sigterm(tmp_path: Path) -> None:
    with spawn(tmp_path, "--datafile", str(DATAFILE)) as daemon:
        with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING

            stub = pb_grpc.TrackingServiceStub(channel)
            reply = stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="u1"))
            assert reply.variation_key in ("variation_a", "variation_b")

            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = list(
                reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                )
            )
            names = {s.name for s in answers[0].list_services_response.service}
            assert "trackd.v1.TrackingService" in names
            assert "grpc.health.v1.Health" in names

        checked = run_trackd("health", "--address", f"127.0.0.1:{daemon.port}")
        assert checked.returncode == 0
        assert "SERVING" in checked.stdout

        assert daemon.stop(signal.SIGTERM) == 0
        events = [line["event"] for line in daemon.log_lines()]
        assert events.index("started") < events.index("stopping") < events.index("stopped")


def test_health_fails_when_nothing_listens(tmp_path: Path) -> None:
    result = run_trackd("health", "--address", "127.0.0.1:1", "--timeout", "1")
    assert result.returncode == 1


def test_env_vars_configure_serve(tmp_path: Path) -> None:
    with spawn(tmp_path, env={"TRACKD_DATAFILE": str(DATAFILE)}) as daemon:
        with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
            config = pb_grpc.TrackingServiceStub(channel).GetConfig(pb.GetConfigRequest())
        assert config.revision == "7"
        assert daemon.stop(signal.SIGINT) == 0


def test_the_bundled_example_datafile_serves_the_seed_doc_event(tmp_path: Path) -> None:
    with spawn(tmp_path) as daemon:
        with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
            config = pb_grpc.TrackingServiceStub(channel).GetConfig(pb.GetConfigRequest())
        assert "my_conversion" in {e.key for e in config.events}
        assert {"device", "ad_source"} <= {a.key for a in config.attributes}
        assert len(config.experiments) >= 2
        assert daemon.stop() == 0


def test_grpcurl_lists_and_calls_activate_through_reflection(tmp_path: Path) -> None:
    tool = go_tool("grpcurl")
    with spawn(tmp_path, "--datafile", str(DATAFILE)) as daemon:
        address = f"127.0.0.1:{daemon.port}"
        listed = subprocess.run(
            [tool, "-plaintext", address, "list"], capture_output=True, text=True, timeout=30
        )
        assert listed.returncode == 0, listed.stderr
        assert "trackd.v1.TrackingService" in listed.stdout.split()
        body = json.dumps(
            {
                "experiment_key": "ab_iphone",
                "user_id": "user123",
                "attributes": {"device": "iPhone", "age": 31},
            }
        )
        called = subprocess.run(
            [tool, "-plaintext", "-d", body, address, "trackd.v1.TrackingService/Activate"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert called.returncode == 0, called.stderr
        reply = json.loads(called.stdout)
        assert reply.get("variation_key", reply.get("variationKey")) in ("control", "treatment")
        assert reply["reason"] == "DECISION_REASON_BUCKETED"
        assert daemon.stop() == 0

"""Prometheus metrics scraped from live daemons, and the per-RPC log line."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from tests.support.daemon import client_for, settings_for, spawn
from tests.support.polling import eventually
from trackd.v1 import tracking_service_pb2 as pb

DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def scrape_until(port: int, check: Callable[[Samples], bool]) -> Samples:
    latest: Samples = {}

    async def satisfied() -> bool:
        nonlocal latest
        latest = await scrape(port)
        return check(latest)

    await eventually(satisfied)
    return latest


async def test_metrics_cover_rpcs_cache_outbox_delivery_and_datafile(tmp_path: Path) -> None:
    datafile = tmp_path / "datafile.json"
    datafile.write_bytes(DATAFILE.read_bytes())
    settings = settings_for(tmp_path, datafile=datafile, metrics_listen="127.0.0.1:0")
    async with client_for(settings) as client:
        port = client.daemon.metrics_port
        assert port
        stub = client.stub
        await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="u1"))
        await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="u1"))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Activate(pb.ActivateRequest(experiment_key="nope", user_id="u1"))
        await stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="u1"))
        datafile.write_text("{broken")

        def settled(s: Samples) -> bool:
            return (value(s, "trackd_events_delivered_total") or 0) >= 2 and (
                value(s, "trackd_datafile_reload_failures_total", reason="invalid") == 1
            )

        samples = await scrape_until(port, settled)
        service = "trackd.v1.TrackingService"
        rpc = {"service": service, "method": "Activate"}
        assert value(samples, "trackd_rpc_handled_total", **rpc, code="OK") == 2
        assert value(samples, "trackd_rpc_handled_total", **rpc, code="NOT_FOUND") == 1
        assert value(samples, "trackd_rpc_duration_seconds_count", **rpc, code="OK") == 2
        assert value(samples, "trackd_rpc_duration_seconds_bucket", **rpc, code="OK", le="+Inf")
        assert value(samples, "trackd_activation_cache_entries") == 1
        assert (value(samples, "trackd_activation_cache_hits_total") or 0) >= 1
        for name in ("evictions", "expiries", "dropped", "misses"):
            assert value(samples, f"trackd_activation_cache_{name}_total") is not None, name
        assert value(samples, "trackd_outbox_depth_events") == 0
        assert value(samples, "trackd_outbox_oldest_age_seconds") == 0
        assert value(samples, "trackd_events_dead_lettered_total") == 0
        assert value(samples, "trackd_delivery_retries_total") == 0
        assert (value(samples, "trackd_delivery_batches_total") or 0) >= 1
        assert value(samples, "trackd_datafile_info", revision="7") == 1
        assert (value(samples, "trackd_datafile_loaded_timestamp_seconds") or 0) > 0
        assert value(samples, "trackd_datafile_reloads_total") == 0
        assert value(samples, "trackd_streams_open") == 0
        assert value(samples, "trackd_streams_rejected_total") == 0


async def test_undelivered_events_show_as_outbox_depth_and_retries(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        metrics_listen="127.0.0.1:0",
        event_endpoint="http://127.0.0.1:9/unreachable",  # discard port: nothing listens
    )
    async with client_for(settings) as client:
        assert client.daemon.metrics_port
        await client.stub.Track(pb.TrackRequest(event_key="purchase", user_id="u1"))

        def waiting(s: Samples) -> bool:
            return (value(s, "trackd_delivery_retries_total") or 0) >= 1

        samples = await scrape_until(client.daemon.metrics_port, waiting)
        assert value(samples, "trackd_outbox_depth_events") == 1
        assert (value(samples, "trackd_outbox_oldest_age_seconds") or 0) > 0


async def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    async with client_for(settings_for(tmp_path)) as client:
        assert client.daemon.metrics_port is None
        assert client.daemon.registry is None


async def test_other_paths_are_404_and_other_methods_405(tmp_path: Path) -> None:
    async with client_for(settings_for(tmp_path, metrics_listen="127.0.0.1:0")) as client:
        base = f"http://127.0.0.1:{client.daemon.metrics_port}"
        async with httpx.AsyncClient() as http:
            assert (await http.get(base + "/nope")).status_code == 404
            assert (await http.post(base + "/metrics")).status_code == 405
            assert (await http.get(base + "/")).status_code == 200


def test_metrics_scraped_from_a_spawned_daemon_that_then_exits_0_on_sigterm(
    tmp_path: Path,
) -> None:
    args = ("--datafile", str(DATAFILE), "--metrics-listen", "127.0.0.1:0")
    with spawn(tmp_path, *args) as process:
        [started] = [line for line in process.log_lines() if line["event"] == "started"]
        with grpc.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        response = httpx.get(f"http://{started['metrics']}/metrics")
        samples = parse(response.text)
        labels = {"service": "grpc.health.v1.Health", "method": "Check", "code": "OK"}
        assert value(samples, "trackd_rpc_handled_total", **labels) == 1
        assert process.stop(signal.SIGTERM) == 0


# -- the per-RPC log line ----------------------------------------------------------------------


async def rpc_lines(tmp_path: Path, **overrides: Any) -> list[dict[str, Any]]:
    async with client_for(settings_for(tmp_path, **overrides)) as client:
        with capture_logs(processors=[merge_contextvars]) as logs:
            for n in range(5):
                await client.stub.GetVariation(
                    pb.GetVariationRequest(experiment_key="checkout_flow", user_id=f"u{n}"),
                    metadata=(("x-request-id", f"req-{n}"),),
                )
            await client.stub.GetConfig(pb.GetConfigRequest())
    return [line for line in logs if line["event"] == "rpc"]


async def test_no_rpc_lines_at_info_by_default(tmp_path: Path) -> None:
    assert await rpc_lines(tmp_path) == []


async def test_every_rpc_is_one_line_at_debug_with_request_id_and_method(tmp_path: Path) -> None:
    lines = await rpc_lines(tmp_path, log_level="debug")
    assert len(lines) == 6
    assert {line["log_level"] for line in lines} == {"debug"}
    assert [line["request_id"] for line in lines[:5]] == [f"req-{n}" for n in range(5)]
    assert lines[0]["method"] == "trackd.v1.TrackingService/GetVariation"
    assert lines[0]["code"] == "OK"
    assert lines[5]["method"] == "trackd.v1.TrackingService/GetConfig"
    assert len(lines[5]["request_id"]) == 16  # made up when the caller sent none


async def test_sampling_logs_rpcs_at_info(tmp_path: Path) -> None:
    lines = await rpc_lines(tmp_path, log_sample_rate=1.0)
    assert len(lines) == 6
    assert {line["log_level"] for line in lines} == {"info"}
    assert all(line["sampled"] for line in lines)


async def test_errors_logged_inside_an_rpc_carry_its_request_id(tmp_path: Path) -> None:
    # The servicer's own log lines run inside the bound context.
    async with client_for(settings_for(tmp_path, log_level="debug")) as client:
        with capture_logs(processors=[merge_contextvars]) as logs:
            with pytest.raises(grpc.aio.AioRpcError):
                await client.stub.Activate(
                    pb.ActivateRequest(experiment_key="", user_id="u"),
                    metadata=(("x-request-id", "abc"),),
                )
            # An abort sends its status before the handler unwinds, so the client can see
            # the error before the server has written the line: wait for it, still capturing.
            await eventually(lambda: any(line["event"] == "rpc" for line in logs))
    [line] = [line for line in logs if line["event"] == "rpc"]
    assert (line["request_id"], line["code"]) == ("abc", "INVALID_ARGUMENT")
    json.dumps(line)  # renderable as a JSON line

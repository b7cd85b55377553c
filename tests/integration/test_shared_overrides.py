"""`trackd serve --workers 2`: an override set through one connection is honoured by both
workers at once, and removing it removes it everywhere, with the overrides in a real Redis
and in the host-local store (issue #18)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.test_decisions_api import DATAFILE, attrs
from tests.support.daemon import spawn
from tests.support.redis_server import free_port, redis_server
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

EXPERIMENT = "ab_running"
VARIATIONS = ("variation_a", "variation_b")
USERS = 20
FRESH_CHANNELS = 12  # per user and read: the kernel spreads new connections over both workers


@contextmanager
def activation_store(kind: str, tmp_path: Path) -> Iterator[tuple[str, ...]]:
    """The flags that put two workers on the store: Redis, or the default local one."""
    if kind == "local":
        yield ()
        return
    with redis_server(tmp_path / "redis") as redis:
        yield ("--activation-store", redis.url)


async def call(port: int, method: str, request: object) -> Any:
    """One call over a new connection, so any worker may answer it."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.TrackingServiceStub(channel)
        return await getattr(stub, method)(request)


async def exercise(port: int) -> None:
    forced: dict[str, str] = {}
    for i in range(USERS):
        user = f"qa-{i}"
        bucketed = await call(port, "GetVariation", _variation_request(user))
        forced[user] = next(v for v in VARIATIONS if v != bucketed.variation_key)
        await call(
            port,
            "SetForcedVariation",
            pb.SetForcedVariationRequest(
                experiment_key=EXPERIMENT, user_id=user, variation_key=forced[user]
            ),
        )
        await call(
            port,
            "SetForcedDecision",
            pb.SetForcedDecisionRequest(
                user_id=user, flag_key="any_flag", rule_key="any_rule", variation_key=user
            ),
        )
    for user, variation_key in forced.items():
        activated = await call(
            port,
            "Activate",
            pb.ActivateRequest(experiment_key=EXPERIMENT, user_id=user, attributes=attrs()),
        )
        assert activated.variation_key == variation_key, user
        for _ in range(FRESH_CHANNELS):
            held = await call(
                port,
                "GetForcedVariation",
                pb.GetForcedVariationRequest(experiment_key=EXPERIMENT, user_id=user),
            )
            assert held.variation_key == variation_key, user
            decision = await call(port, "GetForcedDecision", _decision_request(user))
            assert decision.variation_key == user
    # Removing it through one connection removes it for every later one.
    for user in forced:
        await call(
            port,
            "SetForcedVariation",
            pb.SetForcedVariationRequest(experiment_key=EXPERIMENT, user_id=user),
        )
        await call(
            port, "RemoveAllForcedDecisions", pb.RemoveAllForcedDecisionsRequest(user_id=user)
        )
        for _ in range(FRESH_CHANNELS):
            held = await call(
                port,
                "GetForcedVariation",
                pb.GetForcedVariationRequest(experiment_key=EXPERIMENT, user_id=user),
            )
            assert held.variation_key == "", user
            decision = await call(port, "GetForcedDecision", _decision_request(user))
            assert decision.variation_key == "", user


def _variation_request(user: str) -> pb.GetVariationRequest:
    return pb.GetVariationRequest(experiment_key=EXPERIMENT, user_id=user, attributes=attrs())


def _decision_request(user: str) -> pb.GetForcedDecisionRequest:
    return pb.GetForcedDecisionRequest(user_id=user, flag_key="any_flag", rule_key="any_rule")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "local"])
def test_an_override_set_through_one_worker_is_honoured_and_removed_by_both(
    kind: str, tmp_path: Path
) -> None:
    port = free_port()
    data_dir = tmp_path / "trackd"
    args = ("--listen", f"127.0.0.1:{port}", "--workers", "2", "--datafile", str(DATAFILE))
    with activation_store(kind, tmp_path) as store, spawn(data_dir, *args, *store) as process:
        started = process.started_workers(2)
        assert {line["worker"] for line in started} == {0, 1}
        asyncio.run(exercise(port))
        assert process.stop(signal.SIGTERM) == 0
    # Both workers answered: each recorded some of the forced users' first impressions.
    for index in (0, 1):
        events = (data_dir / f"worker-{index}" / "events.jsonl").read_text()
        assert "campaign_activated" in events, index

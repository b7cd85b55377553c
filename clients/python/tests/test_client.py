"""The wrapper's calls against an in-process TrackingService that answers as trackd does while
its Redis activation store is unreachable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from trackd_client import Client
from trackd_client._proto.v1 import tracking_service_pb2 as pb
from trackd_client._proto.v1 import tracking_service_pb2_grpc as pb_grpc
from trackd_client.aio import AsyncClient


class RedisDownTracking(pb_grpc.TrackingServiceServicer):
    def Activate(
        self, request: pb.ActivateRequest, context: grpc.ServicerContext
    ) -> pb.ActivateResponse:
        return pb.ActivateResponse(
            experiment_key=request.experiment_key, variation_key="a", attribution_degraded=True
        )

    def Track(self, request: pb.TrackRequest, context: grpc.ServicerContext) -> pb.TrackResponse:
        return pb.TrackResponse(uuid="u-1", attribution_unknown=True)


@pytest.fixture
def address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_TrackingServiceServicer_to_server(RedisDownTracking(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_attribution_degraded_and_unknown_reach_the_caller(address: str) -> None:
    with Client(address) as client:
        assert client.activate_detail("ab_running", "u").attribution_degraded is True
        detail = client.track_detail("my_conversion", "u", tags={"revenue": 1})
        assert (detail.attribution_unknown, detail.uuid, list(detail.attributions)) == (
            True,
            "u-1",
            [],
        )
        assert client.track("my_conversion", "u") == []


def test_the_async_client_carries_them_too(address: str) -> None:
    async def calls() -> tuple[bool, bool]:
        async with AsyncClient(address) as client:
            activation = await client.activate_detail("ab_running", "u")
            conversion = await client.track_detail("my_conversion", "u")
            return activation.attribution_degraded, conversion.attribution_unknown

    assert asyncio.run(calls()) == (True, True)

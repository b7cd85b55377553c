"""Two real trackd replicas sharing one real redis-server: attribution, TTL, results, outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.integration.test_decisions_api import DATAFILE, attrs
from tests.support.daemon import Client, client_for, settings_for
from tests.support.polling import eventually
from tests.support.redis_server import RedisServer, redis_server
from trackd.v1 import tracking_service_pb2 as pb


@pytest.fixture
def redis(tmp_path: Path) -> Any:
    # Append-only: a restart keeps what was activated, as a production Redis would.
    with redis_server(tmp_path / "redis", persist=True) as running:
        yield running


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, redis: RedisServer, **overrides: Any
) -> AsyncIterator[tuple[Client, Client]]:
    def settings(name: str) -> Any:
        return settings_for(
            tmp_path / name, datafile=DATAFILE, activation_store=redis.url, **overrides
        )

    async with client_for(settings("a")) as a, client_for(settings("b")) as b:
        yield a, b


async def activate(client: Client, user_id: str, key: str = "ab_running") -> pb.ActivateResponse:
    request = pb.ActivateRequest(experiment_key=key, user_id=user_id, attributes=attrs())
    reply: pb.ActivateResponse = await client.stub.Activate(request)
    return reply


async def track(client: Client, user_id: str, event_key: str = "my_conversion") -> Any:
    return await client.stub.Track(pb.TrackRequest(event_key=event_key, user_id=user_id))


def attributed(reply: pb.TrackResponse) -> set[tuple[str, str]]:
    return {(a.experiment_key, a.variation_key) for a in reply.attributions}


async def test_activate_on_replica_a_and_track_on_replica_b_is_attributed(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with replicas(tmp_path, redis) as (a, b):
        first = await activate(a, "ann")
        assert first.impression_recorded and not first.attribution_degraded
        reply = await track(b, "ann")
        assert attributed(reply) == {("ab_running", first.variation_key)}
        assert not reply.attribution_unknown
        # Sticky across replicas: B neither decides afresh nor sends a second impression.
        again = await activate(b, "ann")
        assert (again.variation_key, again.impression_recorded) == (first.variation_key, False)
        # TrackStream on B sees A's activation too.
        stream = b.stub.TrackStream()
        await stream.write(
            pb.TrackStreamRequest(
                sequence=1,
                events=[
                    pb.TrackRequest(event_key="my_conversion", user_id="ann"),
                    pb.TrackRequest(event_key="my_conversion", user_id="nobody"),
                ],
            )
        )
        ack = await stream.read()
        await stream.done_writing()
        assert (ack.accepted, ack.attributed, ack.attribution_unknown) == (2, 1, False)


async def test_the_ttl_holds_across_replicas(tmp_path: Path, redis: RedisServer) -> None:
    # Long enough that a loaded machine still tracks within it: the guard below only says the
    # first check ran inside the TTL, which is what its assertion needs.
    ttl = 3.0
    async with replicas(tmp_path, redis, activation_ttl=ttl) as (a, b):
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await activate(a, "ben")
        assert attributed(await track(b, "ben")) == {("ab_running", first.variation_key)}
        assert loop.time() - started < ttl  # the check above really was within the TTL
        await asyncio.sleep(ttl + 0.2)
        assert attributed(await track(b, "ben")) == set()
        fresh = await activate(b, "ben")
        assert fresh.impression_recorded  # decided afresh after expiry: a new impression
        assert attributed(await track(a, "ben")) == {("ab_running", fresh.variation_key)}


async def test_results_are_the_fleets_on_either_replica(tmp_path: Path, redis: RedisServer) -> None:
    async with replicas(tmp_path, redis) as (a, b):
        users = [f"user-{i}" for i in range(20)]
        variations: dict[str, str] = {}
        for i, user in enumerate(users):
            variations[user] = (await activate(a if i % 2 else b, user)).variation_key
        for i, user in enumerate(users[:10]):
            await track(b if i % 2 else a, user)  # tracked on the other replica
        expected_visitors = {
            key: list(variations.values()).count(key) for key in variations.values()
        }

        async def fleet_counts(client: Client) -> bool:
            reply = await client.stub.GetExperimentResults(
                pb.GetExperimentResultsRequest(experiment_key="ab_running")
            )
            assert reply.fleet_wide
            visitors = {v.variation_key: v.visitors for v in reply.variations if v.visitors}
            converters = sum(
                e.converters
                for v in reply.variations
                for e in v.events
                if e.event_key == "my_conversion"
            )
            return visitors == expected_visitors and converters == 10

        for client in (a, b):
            await eventually(lambda client=client: fleet_counts(client), within=10)


async def test_a_redis_restart_mid_run_is_survived(tmp_path: Path, redis: RedisServer) -> None:
    async with replicas(tmp_path, redis) as (a, b):
        before = await activate(a, "cal")
        with capture_logs() as logs:
            redis.stop()
            # Decisions go on, and say that attribution is degraded.
            down = await activate(b, "dee")
            assert down.variation_key and down.attribution_degraded
            assert down.impression_recorded  # at least once: stickiness could not be checked
            again = await activate(a, "cal")
            assert again.variation_key == before.variation_key  # deterministic bucketing
            assert again.attribution_degraded
            # Conversions are recorded, with attribution unknown.
            lost = await track(b, "cal")
            assert lost.uuid and lost.attribution_unknown and not lost.attributions
            assert b.daemon.tracker.unattributed_tracks == 1
            assert a.daemon.tracker.degraded_activations == 1
            results = await a.stub.GetExperimentResults(
                pb.GetExperimentResultsRequest(experiment_key="ab_running")
            )
            assert not results.fleet_wide  # this replica's own counts meanwhile
            redis.start()

            async def recovered() -> bool:
                reply = await track(b, "cal")
                return not reply.attribution_unknown

            await eventually(recovered, within=10)
        events = [line["event"] for line in logs]
        assert "activation_store_unavailable" in events
        assert "activation_store_recovered" in events
        # The activation made before the outage is still there (Redis's append-only file).
        assert attributed(await track(b, "cal")) == {("ab_running", before.variation_key)}
        sticky = await activate(b, "cal")
        assert (sticky.impression_recorded, sticky.attribution_degraded) == (False, False)


async def test_deployments_with_their_own_key_prefix_share_nothing(
    tmp_path: Path, redis: RedisServer
) -> None:
    blue = settings_for(tmp_path / "blue", datafile=DATAFILE, activation_store=redis.url)
    green = settings_for(
        tmp_path / "green",
        datafile=DATAFILE,
        activation_store=redis.url,
        redis_key_prefix="green:",
    )
    async with client_for(blue) as a, client_for(green) as b:
        first = await activate(a, "eve")
        assert attributed(await track(a, "eve")) == {("ab_running", first.variation_key)}
        assert attributed(await track(b, "eve")) == set()
        assert (await activate(b, "eve")).impression_recorded  # news to the green deployment


async def test_metrics_say_when_redis_is_unreachable(tmp_path: Path, redis: RedisServer) -> None:
    from tests.integration.test_metrics import scrape, value

    settings = settings_for(
        tmp_path, datafile=DATAFILE, activation_store=redis.url, metrics_listen="127.0.0.1:0"
    )
    async with client_for(settings) as client:
        port = client.daemon.metrics_port
        assert port
        await activate(client, "fay")
        assert value(await scrape(port), "trackd_activation_store_up") == 1
        redis.stop()
        assert (await activate(client, "gus")).attribution_degraded
        assert (await track(client, "fay")).attribution_unknown
        samples = await scrape(port)
        assert value(samples, "trackd_activation_store_up") == 0
        assert value(samples, "trackd_activations_degraded_total") == 1
        assert value(samples, "trackd_conversions_attribution_unknown_total") == 1
        redis.start()

        async def back_up() -> bool:
            await track(client, "fay")
            return value(await scrape(port), "trackd_activation_store_up") == 1

        await eventually(back_up, within=10)


async def test_a_datafile_that_arrives_while_redis_is_down_is_served(
    tmp_path: Path, redis: RedisServer
) -> None:
    import json

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.support.datafile_server import DatafileServer

    def revision(number: str, *, stop: bool = False) -> bytes:
        data: dict[str, Any] = json.loads(DATAFILE.read_text())
        data["revision"] = number
        if stop:
            for experiment in data["experiments"]:
                if experiment["key"] == "ab_running":
                    experiment["status"] = "Paused"
        return json.dumps(data).encode()

    redis.stop()
    async with DatafileServer(revision("31"), etag='"v31"') as cdn:
        settings = settings_for(
            tmp_path, datafile_url=cdn.url, datafile_poll_interval=0.05, activation_store=redis.url
        )
        async with client_for(settings) as client:
            health = health_pb2_grpc.HealthStub(client.channel)

            async def serving() -> bool:
                reply = await health.Check(health_pb2.HealthCheckRequest())
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, within=10)  # the first datafile, Redis still down
            redis.start()
            first = await activate(client, "hal")

            async def remembered() -> bool:  # once the store's retry interval has passed
                return not (await activate(client, "hal")).attribution_degraded

            await eventually(remembered, within=10)
            assert attributed(await track(client, "hal")) == {("ab_running", first.variation_key)}
            with capture_logs() as logs:

                def logged(event: str) -> bool:
                    return any(x["event"] == event and x.get("revision") == "32" for x in logs)

                redis.stop()
                cdn.publish(revision("32", stop=True), etag='"v32"')

                async def reloaded() -> bool:
                    return (await client.stub.GetConfig(pb.GetConfigRequest())).revision == "32"

                await eventually(reloaded, within=10)
                # Revision 32 is served before its drop is tried: restarting Redis as soon as
                # it is served let that drop succeed at once, so nothing was left to drop late.
                await eventually(lambda: logged("activations_drop_deferred"), within=10)
                redis.start()
                # The stopped experiment's activations are dropped once Redis is back, and no
                # conversion was credited to it meanwhile.
                assert attributed(await track(client, "hal")) == set()
                await eventually(lambda: logged("activations_dropped_late"), within=10)
            assert await serving()

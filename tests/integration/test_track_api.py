"""Track, TrackStream, results and delivery over real gRPC, SQLite and a local HTTP receiver."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Value

from tests.integration.test_decisions_api import DATAFILE, attrs
from tests.support.daemon import Client, client_for, settings_for
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Reply
from trackd.v1 import tracking_service_pb2 as pb


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def tracked(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Client]:
    settings = settings_for(tmp_path, datafile=DATAFILE, event_endpoint=receiver.url)
    async with client_for(settings) as connected:
        yield connected


def keys(reply: pb.TrackResponse) -> set[tuple[str, str]]:
    return {(a.experiment_key, a.variation_key) for a in reply.attributions}


async def activate(client: Client, experiment_key: str, user_id: str, **attributes: Any) -> str:
    reply = await client.stub.Activate(
        pb.ActivateRequest(
            experiment_key=experiment_key, user_id=user_id, attributes=attrs(**attributes)
        )
    )
    return reply.variation_key


async def test_track_is_attributed_only_after_activate(tracked: Client) -> None:
    before = await tracked.stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="ann"))
    assert keys(before) == set()
    assert before.uuid
    variation = await activate(tracked, "ab_running", "ann")
    after = await tracked.stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="ann"))
    assert keys(after) == {("ab_running", variation)}
    # Another user's activation never leaks into this user's attributions.
    other = await tracked.stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="zed"))
    assert keys(other) == set()


async def test_attribution_follows_the_events_experiment_ids(tracked: Client) -> None:
    running = await activate(tracked, "ab_running", "ben")
    iphone = await activate(tracked, "ab_iphone", "ben", device="iPhone")
    assert iphone
    # signup lists no experiments: it belongs to all of them.
    signup = await tracked.stub.Track(pb.TrackRequest(event_key="signup", user_id="ben"))
    assert keys(signup) == {("ab_running", running), ("ab_iphone", iphone)}
    # purchase belongs to grp_a only, where ben was never activated.
    purchase = await tracked.stub.Track(pb.TrackRequest(event_key="purchase", user_id="ben"))
    assert keys(purchase) == set()


async def test_attribution_and_stickiness_end_with_the_ttl(tmp_path: Path) -> None:
    # A TTL long enough that the Track right after Activate is inside it on a slow machine;
    # its end is then waited for as a condition (a Track never extends an activation).
    settings = settings_for(tmp_path, datafile=DATAFILE, activation_ttl=1.0)
    async with client_for(settings) as client:
        asked = asyncio.get_running_loop().time()  # the activation is stored after this
        await activate(client, "ab_running", "cat")
        inside = await client.stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="cat"))
        assert len(inside.attributions) == 1

        async def expired() -> bool:
            track = pb.TrackRequest(event_key="my_conversion", user_id="cat")
            return keys(await client.stub.Track(track)) == set()

        await eventually(expired)
        assert asyncio.get_running_loop().time() - asked >= 1.0  # not before the TTL
        again = await client.stub.Activate(
            pb.ActivateRequest(experiment_key="ab_running", user_id="cat")
        )
        assert again.reason == pb.DECISION_REASON_BUCKETED
        assert again.impression_recorded


async def test_bad_track_requests_get_clear_statuses(tracked: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await tracked.stub.Track(pb.TrackRequest(event_key="nope", user_id="u"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (unknown.value.details() or "")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(grpc.aio.AioRpcError) as not_finite:
            await tracked.stub.Track(
                pb.TrackRequest(
                    event_key="my_conversion", user_id="u", tags={"value": Value(number_value=bad)}
                )
            )
        assert not_finite.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as empty_user:
        await tracked.stub.Track(pb.TrackRequest(event_key="my_conversion", user_id=""))
    assert empty_user.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_impressions_and_conversions_reach_the_event_endpoint(
    tracked: Client, receiver: Receiver
) -> None:
    variation = await activate(tracked, "ab_running", "dee", device="iPhone")
    await tracked.stub.Track(
        pb.TrackRequest(
            event_key="my_conversion",
            user_id="dee",
            attributes=attrs(device="iPhone"),
            tags=attrs(revenue=4200.0, value=3.5, category="shoes"),
        )
    )
    await receiver.wait_for_events(2)
    batch = receiver.received[0]
    assert (batch["account_id"], batch["project_id"], batch["revision"]) == ("12001", "12002", "7")
    assert batch["client_name"] == "trackd"
    visitors = receiver.visitors
    impression = visitors[0]["snapshots"][0]
    assert impression["events"][0]["key"] == "campaign_activated"
    assert impression["decisions"][0]["experiment_id"] == "40001"
    assert impression["decisions"][0]["metadata"]["variation_key"] == variation
    assert visitors[0]["attributes"][0]["entity_id"] == "20001"
    conversion = visitors[1]["snapshots"][0]["events"][0]
    assert (conversion["key"], conversion["entity_id"]) == ("my_conversion", "60001")
    assert conversion["revenue"] == 4200
    assert conversion["value"] == 3.5
    assert conversion["tags"] == {"revenue": 4200, "value": 3.5, "category": "shoes"}


async def test_one_impression_per_user_and_experiment_within_the_ttl(
    tracked: Client, receiver: Receiver
) -> None:
    for _ in range(5):
        await activate(tracked, "ab_running", "eve")
    await activate(tracked, "ab_running", "fay")
    await receiver.wait_for_events(2)
    await asyncio.sleep(0.2)  # a few flush intervals: nothing more arrives
    ids = [v["visitor_id"] for v in receiver.visitors]
    assert sorted(ids) == ["eve", "fay"]


async def test_results_count_visitors_and_conversions_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, datafile=DATAFILE)
    async with client_for(settings) as client:
        variations = {}
        for user in ("u1", "u2", "u3"):
            variations[user] = await activate(client, "ab_running", user)
        for user, revenue in (("u1", 100), ("u1", 50), ("u2", 10)):
            await client.stub.Track(
                pb.TrackRequest(
                    event_key="my_conversion", user_id=user, tags=attrs(revenue=revenue)
                )
            )
        await client.stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="stranger"))

    async with client_for(settings) as client:
        results = await client.stub.GetExperimentResults(
            pb.GetExperimentResultsRequest(experiment_key="ab_running")
        )
    assert results.experiment_id == "40001"
    by_variation = {v.variation_key: v for v in results.variations}
    assert set(by_variation) == {"variation_a", "variation_b"}
    expected_visitors = {"variation_a": 0, "variation_b": 0}
    expected_revenue = {"variation_a": 0, "variation_b": 0}
    expected_conversions = {"variation_a": 0, "variation_b": 0}
    expected_converters: dict[str, set[str]] = {"variation_a": set(), "variation_b": set()}
    for variation in variations.values():
        expected_visitors[variation] += 1
    for user, revenue in (("u1", 100), ("u1", 50), ("u2", 10)):
        expected_revenue[variations[user]] += revenue
        expected_conversions[variations[user]] += 1
        expected_converters[variations[user]].add(user)
    for key, result in by_variation.items():
        assert result.visitors == expected_visitors[key]
        events = {e.event_key: e for e in result.events}
        got = events.get("my_conversion")
        conversions = got.conversions if got else 0
        assert conversions == expected_conversions[key]
        assert (got.revenue if got else 0) == expected_revenue[key]
        assert (got.converters if got else 0) == len(expected_converters[key])


async def test_a_streamed_event_is_delivered_exactly_as_the_same_track_call(
    tracked: Client, receiver: Receiver
) -> None:
    await activate(tracked, "ab_running", "dee", device="iPhone")

    def event(user_id: str) -> pb.TrackRequest:
        return pb.TrackRequest(
            event_key="my_conversion",
            user_id=user_id,
            attributes=attrs(device="iPhone", ad_source="google"),
            tags=attrs(revenue=4200.0, value=3.5, category="shoes"),
        )

    await tracked.stub.Track(event("dee"))

    async def requests() -> AsyncIterator[pb.TrackStreamRequest]:
        yield pb.TrackStreamRequest(sequence=1, events=[event("dee"), event("eve"), event("dee")])

    [ack] = [ack async for ack in tracked.stub.TrackStream(requests())]
    assert (ack.accepted, ack.attributed) == (3, 2)
    await receiver.wait_for_events(5)  # the impression, the Track, the three streamed

    def comparable(visitor: dict[str, Any]) -> dict[str, Any]:
        [snapshot] = visitor["snapshots"]
        [conversion] = snapshot["events"]
        conversion = {k: v for k, v in conversion.items() if k not in ("uuid", "timestamp")}
        # A protobuf map has no order on the wire, so neither has the attribute list made
        # from it: each request's map may arrive in another order.
        attributes = sorted(visitor["attributes"], key=lambda a: a["entity_id"])
        return {
            **visitor,
            "attributes": attributes,
            "snapshots": [{**snapshot, "events": [conversion]}],
        }

    tracked_one, *streamed = receiver.visitors[1:]
    assert [comparable(v) for v in streamed] == [
        comparable(tracked_one),
        {**comparable(tracked_one), "visitor_id": "eve"},
        comparable(tracked_one),
    ]
    uuids = [v["snapshots"][0]["events"][0]["uuid"] for v in receiver.visitors]
    assert len(set(uuids)) == 5


async def test_a_stream_of_100_batches_is_acknowledged_batch_by_batch(tracked: Client) -> None:
    await activate(tracked, "ab_running", "s-0")

    def batch(sequence: int) -> pb.TrackStreamRequest:
        events = []
        for n in range(20):
            if n == 3:
                events.append(pb.TrackRequest(event_key="unknown_event", user_id=f"s-{n}"))
            elif n == 7 and sequence % 2 == 0:
                events.append(pb.TrackRequest(event_key="my_conversion", user_id=""))
            elif n == 11:
                events.append(
                    pb.TrackRequest(
                        event_key="my_conversion",
                        user_id="s-11",
                        tags={"value": Value(number_value=math.nan)},
                    )
                )
            else:
                events.append(pb.TrackRequest(event_key="my_conversion", user_id=f"s-{n}"))
        return pb.TrackStreamRequest(sequence=sequence, events=events)

    async def requests() -> AsyncIterator[pb.TrackStreamRequest]:
        for sequence in range(1, 101):
            yield batch(sequence)

    acks = [ack async for ack in tracked.stub.TrackStream(requests())]
    assert [ack.sequence for ack in acks] == list(range(1, 101))
    for ack in acks:
        expected_errors = [(3, grpc.StatusCode.NOT_FOUND), (11, grpc.StatusCode.INVALID_ARGUMENT)]
        if ack.sequence % 2 == 0:
            expected_errors.insert(1, (7, grpc.StatusCode.INVALID_ARGUMENT))
        assert [(e.index, e.code) for e in ack.errors] == [
            (index, code.value[0]) for index, code in expected_errors
        ]
        assert ack.accepted == 20 - len(expected_errors)
        assert ack.attributed == 1  # only s-0 was activated
        assert ack.code == 0
        assert all(e.message for e in ack.errors)


async def test_an_oversized_stream_batch_is_rejected_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, datafile=DATAFILE, max_stream_batch=10)
    async with client_for(settings) as client:

        async def requests() -> AsyncIterator[pb.TrackStreamRequest]:
            event = pb.TrackRequest(event_key="signup", user_id="big")
            yield pb.TrackStreamRequest(sequence=1, events=[event] * 11)
            yield pb.TrackStreamRequest(sequence=2, events=[event] * 10)

        acks = [ack async for ack in client.stub.TrackStream(requests())]
    assert acks[0].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert acks[0].accepted == 0
    assert "10" in acks[0].message
    assert (acks[1].code, acks[1].accepted) == (0, 10)


async def test_a_full_outbox_refuses_track_but_activate_still_decides(tmp_path: Path) -> None:
    async with Receiver(default=Reply(503)) as down:
        settings = settings_for(
            tmp_path, datafile=DATAFILE, outbox_max_events=3, event_endpoint=down.url
        )
        async with client_for(settings) as client:
            for n in range(3):
                await client.stub.Track(pb.TrackRequest(event_key="signup", user_id=f"f{n}"))
            with pytest.raises(grpc.aio.AioRpcError) as full:
                await client.stub.Track(pb.TrackRequest(event_key="signup", user_id="f3"))
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "outbox" in (full.value.details() or "")
            decided = await client.stub.Activate(
                pb.ActivateRequest(experiment_key="ab_running", user_id="f4")
            )
            assert decided.variation_key
            assert not decided.impression_recorded
            # Nothing was remembered without its impression: once the endpoint takes the
            # backlog, the next Activate records the impression instead of sticking.
            down.default = Reply(200)

            async def recorded() -> bool:
                again = await client.stub.Activate(
                    pb.ActivateRequest(experiment_key="ab_running", user_id="f4")
                )
                assert again.variation_key == decided.variation_key
                assert again.reason != pb.DECISION_REASON_STICKY
                return again.impression_recorded

            await eventually(recorded, within=30)


async def test_server_errors_are_retried_until_delivered(tmp_path: Path) -> None:
    async with Receiver() as flaky:
        flaky.script(500, Reply(429, {"Retry-After": "0"}), 502)
        settings = settings_for(tmp_path, datafile=DATAFILE, event_endpoint=flaky.url)
        async with client_for(settings) as client:
            reply = await client.stub.Track(pb.TrackRequest(event_key="signup", user_id="r1"))
            await flaky.wait_for_events(1, within=30)
    assert flaky.event_uuids == [reply.uuid]
    assert [r.status for r in flaky.requests[:4]] == [500, 429, 502, 200]


async def test_a_backlog_is_posted_over_several_connections_each_event_once(
    tmp_path: Path,
) -> None:
    # A slow endpoint (logx is a round trip away): the daemon keeps --event-max-connections
    # POSTs in flight instead of one, and every event arrives exactly once.
    async with Receiver(default=Reply(200, delay=0.2)) as slow:
        settings = settings_for(
            tmp_path,
            datafile=DATAFILE,
            event_endpoint=slow.url,
            event_batch_size=50,
            event_max_connections=3,
        )
        async with client_for(settings) as client:

            async def requests() -> AsyncIterator[pb.TrackStreamRequest]:
                yield pb.TrackStreamRequest(
                    sequence=1,
                    events=[
                        pb.TrackRequest(event_key="signup", user_id=f"p{n}") for n in range(400)
                    ],
                )

            [ack] = [ack async for ack in client.stub.TrackStream(requests())]
            assert (ack.accepted, list(ack.errors)) == (400, [])
            await slow.wait_for_events(400, within=30)
        assert sorted(v["visitor_id"] for v in slow.visitors) == sorted(f"p{n}" for n in range(400))
        assert len(slow.event_uuids) == len(set(slow.event_uuids)) == 400
        assert slow.max_in_flight == 3

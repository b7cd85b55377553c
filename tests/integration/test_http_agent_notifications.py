"""Agent's `GET /v1/notifications/event-stream` on a real daemon's HTTP port, read with httpx
as server-sent events while gRPC, Connect and Agent API calls decide and track: the Go SDK's
notification payloads, Agent's filter, the stream slot cap, token scopes and the shutdown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from tests.integration.test_metrics import scrape, value
from tests.support.daemon import Client, client_for, settings_for
from tests.support.http_port import EXAMPLE, SDK_KEY, agent_http
from tests.support.http_port import client as client  # the fixture
from tests.support.http_port import http as http  # the fixture
from tests.support.polling import eventually
from trackd.notifications import QUEUE_LIMIT
from trackd.v1 import tracking_service_pb2 as pb

STREAM = "/v1/notifications/event-stream"
DATAFILE = json.loads(EXAMPLE.read_text())
ATTRIBUTE_IDS = {attribute["key"]: attribute["id"] for attribute in DATAFILE["attributes"]}
EVENT_IDS = {event["key"]: event["id"] for event in DATAFILE["events"]}
# The example datafile's botFiltering (false), which every conversion's attributes carry.
BOT_FILTERING = {
    "value": False,
    "key": "$opt_bot_filtering",
    "type": "custom",
    "entity_id": "$opt_bot_filtering",
}


def rule_and_variation_ids(rule_key: str, variation_key: str) -> tuple[str, str]:
    rules = DATAFILE["experiments"] + [
        rule for rollout in DATAFILE["rollouts"] for rule in rollout["experiments"]
    ]
    [rule] = [rule for rule in rules if rule["key"] == rule_key]
    [variation] = [v for v in rule["variations"] if v["key"] == variation_key]
    return rule["id"], variation["id"]


class Events:
    """Reads a text/event-stream reply one event at a time: its `data` as JSON."""

    def __init__(self, reply: httpx.Response) -> None:
        self._lines = reply.aiter_lines()

    async def next(self) -> Any:
        data: Any = None
        while True:
            line = await anext(self._lines)
            if line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
            elif line == "" and data is not None:
                return data

    async def ended(self) -> bool:
        """Whether the reply ends here, cleanly (an ended chunked body, no broken one)."""
        try:
            await anext(self._lines)
        except StopAsyncIteration:
            return True
        return False


def user(user_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {"ID": user_id, "Attributes": attributes, "QualifiedSegments": None}


async def test_grpc_and_http_decisions_and_tracks_arrive_as_the_go_sdks_notifications(
    client: Client, http: httpx.AsyncClient
) -> None:
    async with http.stream("GET", STREAM) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream"
        assert reply.headers["cache-control"] == "no-cache"
        events = Events(reply)

        activate = json_format.ParseDict(
            {"experimentKey": "checkout_flow", "userId": "ann", "attributes": {"device": "iPhone"}},
            pb.ActivateRequest(),
        )
        activated = await client.stub.Activate(activate)
        assert await events.next() == {
            "Type": "ab-test",
            "UserContext": user("ann", {"device": "iPhone"}),
            "DecisionInfo": {
                "experimentKey": "checkout_flow",
                "variationKey": activated.variation_key,
            },
        }

        decided = await http.post("/v1/decide?keys=checkout_redesign", json={"userId": "bo"})
        flag = decided.json()
        experiment_id, variation_id = rule_and_variation_ids(flag["ruleKey"], flag["variationKey"])
        assert await events.next() == {
            "Type": "flag",
            "UserContext": user("bo", {}),
            "DecisionInfo": {
                "decisionEventDispatched": flag["ruleKey"] == "checkout_ab",
                "enabled": flag["enabled"],
                "experimentId": experiment_id,
                "flagKey": "checkout_redesign",
                "reasons": [],
                "ruleKey": flag["ruleKey"],
                "variables": flag["variables"],
                "variationId": variation_id,
                "variationKey": flag["variationKey"],
            },
        }

        track = json_format.ParseDict(
            {
                "eventKey": "add_to_cart",
                "userId": "ann",
                "attributes": {"device": "iPhone"},
                "tags": {"revenue": 4200, "category": "shoes"},
            },
            pb.TrackRequest(),
        )
        await client.stub.Track(track)
        assert await events.next() == {
            "EventKey": "add_to_cart",
            "UserContext": user("ann", {"device": "iPhone"}),
            "EventTags": {"category": "shoes", "revenue": 4200},
            "ConversionEvent": {
                "entity_id": EVENT_IDS["add_to_cart"],
                "key": "add_to_cart",
                "Attributes": [
                    {
                        "value": "iPhone",
                        "key": "device",
                        "type": "custom",
                        "entity_id": ATTRIBUTE_IDS["device"],
                    },
                    BOT_FILTERING,
                ],
                "tags": {"category": "shoes", "revenue": 4200},
                "revenue": 4200,
            },
        }

        tracked = await http.post("/v1/track?eventKey=purchase", json={"userId": "bo"})
        assert tracked.status_code == 200
        by_agent = await events.next()
        assert (by_agent["EventKey"], by_agent["UserContext"]) == ("purchase", user("bo", {}))
        assert by_agent["EventTags"] is None
        assert by_agent["ConversionEvent"]["Attributes"] == [BOT_FILTERING]


async def test_track_stream_batches_and_get_variation_are_notified_too(
    client: Client, http: httpx.AsyncClient
) -> None:
    """Every conversion a TrackStream batch commits is a track notification (not the events
    it refused); GetVariation is an experiment decision, as the Go SDK's GetVariation."""
    async with http.stream("GET", STREAM) as reply:
        events = Events(reply)
        batch = json_format.ParseDict(
            {
                "sequence": 1,
                "events": [
                    {"eventKey": "add_to_cart", "userId": "cy"},
                    {"eventKey": "no_such_event", "userId": "cy"},
                    {"eventKey": "purchase", "userId": "di"},
                ],
            },
            pb.TrackStreamRequest(),
        )
        stream = client.stub.TrackStream()
        await stream.write(batch)
        await stream.read()
        await stream.done_writing()
        first, second = await events.next(), await events.next()
        assert [(e["EventKey"], e["UserContext"]["ID"]) for e in (first, second)] == [
            ("add_to_cart", "cy"),
            ("purchase", "di"),
        ]

        got = await client.stub.GetVariation(
            pb.GetVariationRequest(experiment_key="checkout_ab", user_id="cy")
        )
        info = {"experimentKey": "checkout_ab"}
        if got.variation_key:
            info["variationKey"] = got.variation_key
        # checkout_ab is a flag's experiment: the SDK calls its decision a feature-test one.
        decision = await events.next()
        assert (decision["Type"], decision["DecisionInfo"]) == ("feature-test", info)


async def test_filter_keeps_the_types_it_names(client: Client, http: httpx.AsyncClient) -> None:
    """As Agent: `filter` names types (repeated or comma-separated); unknown names are
    ignored; `raw` sends each notification as a JSON line instead of an SSE event."""
    async with (
        http.stream("GET", STREAM, params={"filter": "track"}) as tracks,
        http.stream("GET", STREAM, params={"filter": ["nonsense,decision"], "raw": ""}) as raw,
    ):
        track_events, raw_lines = Events(tracks), raw.aiter_lines()
        for path, body in (
            ("/v1/decide?keys=free_shipping", {"userId": "eve"}),
            ("/v1/track?eventKey=add_to_cart", {"userId": "eve"}),
            ("/v1/activate?experimentKey=checkout_flow", {"userId": "eve"}),
        ):
            assert (await http.post(path, json=body)).status_code == 200
        assert (await track_events.next())["EventKey"] == "add_to_cart"
        first, second = json.loads(await anext(raw_lines)), json.loads(await anext(raw_lines))
        assert (first["Type"], second["Type"]) == ("flag", "ab-test")


async def test_a_stream_takes_a_stream_slot_and_gives_it_back(tmp_path: Path) -> None:
    """One of the --max-concurrent-streams slots, shared with gRPC's streams: the next stream
    is refused (429 here, RESOURCE_EXHAUSTED on gRPC) until the caller goes away."""
    settings = settings_for(tmp_path, http_listen="127.0.0.1:0", max_concurrent_streams=1)
    async with (
        client_for(settings) as client,
        agent_http(client) as http,
    ):
        interceptor = client.daemon.endpoint.interceptor
        async with http.stream("GET", STREAM) as reply:
            assert reply.status_code == 200
            assert interceptor.open_streams == 1
            refused = await http.get(STREAM)
            assert refused.status_code == 429
            assert "error" in refused.json()
            with pytest.raises(grpc.aio.AioRpcError) as full:
                await client.stub.WatchConfig(pb.WatchConfigRequest()).read()
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await eventually(lambda: interceptor.open_streams == 0)
        assert not client.daemon.tracker.notifier.listened
        async with http.stream("GET", STREAM) as again:
            assert again.status_code == 200


async def test_the_daemons_shutdown_ends_the_stream_cleanly(tmp_path: Path) -> None:
    """An open stream does not hold the drain: it ends, as a whole reply, when the daemon
    shuts down (uvicorn would cut it off at the grace period, a broken chunked body)."""
    daemon = client_for(settings_for(tmp_path, http_listen="127.0.0.1:0"))
    client = await daemon.__aenter__()
    stopped = False
    try:
        async with (
            agent_http(client) as http,
            http.stream("GET", STREAM) as reply,
        ):
            assert reply.status_code == 200
            events = Events(reply)
            ended = asyncio.create_task(events.ended())
            await daemon.__aexit__(None, None, None)
            stopped = True
            assert await ended
    finally:
        if not stopped:
            await daemon.__aexit__(None, None, None)


async def test_the_sdk_key_header_and_the_admin_scope_are_required(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('"decider-token" = ["decide"]\n"admin-token" = ["admin"]\n')
    settings = settings_for(tmp_path / "d", http_listen="127.0.0.1:0", auth_tokens=tokens)
    async with (
        client_for(settings) as client,
        httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
    ):
        admin = {"authorization": "Bearer admin-token"}
        no_key = await http.get(STREAM, headers=admin)
        assert (no_key.status_code, no_key.json()) == (
            400,
            {"error": "missing required X-Optimizely-SDK-Key header"},
        )
        decider = await http.get(
            STREAM, headers={**SDK_KEY, "authorization": "Bearer decider-token"}
        )
        assert decider.status_code == 403
        async with http.stream("GET", STREAM, headers={**SDK_KEY, **admin}) as reply:
            assert reply.status_code == 200


async def test_an_event_stream_inside_a_batch_ends_at_once(
    client: Client, http: httpx.AsyncClient
) -> None:
    """A /v1/batch operation cannot stream: it is answered at once with no events, and gives
    its stream slot back, instead of spinning the daemon's event loop."""
    operation = {
        "method": "GET",
        "url": STREAM,
        "operationID": "1",
        "headers": {**SDK_KEY, "Content-Type": "application/json"},
    }
    reply = await http.post("/v1/batch", json={"operations": [operation]})
    assert reply.status_code == 200
    [answer] = reply.json()["response"]
    assert (answer["status"], answer["body"]) == (200, None)
    assert client.daemon.endpoint.interceptor.open_streams == 0
    assert not client.daemon.tracker.notifier.listened


async def test_a_new_datafile_is_a_project_config_update(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_text(json.dumps(DATAFILE))
    settings = settings_for(tmp_path / "d", http_listen="127.0.0.1:0", datafile=path)
    async with (
        client_for(settings) as client,
        agent_http(client) as http,
        http.stream("GET", STREAM, params={"filter": "project_config_update"}) as reply,
    ):
        events = Events(reply)
        path.write_text(json.dumps({**DATAFILE, "revision": "next"}))
        assert await events.next() == {"Type": "project_config_update", "Revision": "next"}


async def test_a_reader_that_falls_behind_loses_notifications_counted_in_metrics(
    tmp_path: Path,
) -> None:
    """A stream whose reader does not keep up loses what its queue cannot hold, and the
    decisions go on: one TrackStream batch of more conversions than the queue holds is
    acknowledged in full while nobody reads, and the excess is counted."""
    settings = settings_for(tmp_path, http_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    extra = 7
    async with (
        client_for(settings) as client,
        agent_http(client) as http,
        http.stream("GET", STREAM, params={"filter": "track"}) as reply,
    ):
        assert reply.status_code == 200
        assert client.daemon.metrics_port is not None
        dropped = "trackd_notifications_dropped_total"
        assert value(await scrape(client.daemon.metrics_port), dropped) == 0
        # The listener's queue is full before the stream's task can take anything from it:
        # the batch's notifications are all offered in one go, without yielding.
        count = QUEUE_LIMIT + extra
        events = [{"eventKey": "add_to_cart", "userId": f"u{n}"} for n in range(count)]
        batch = json_format.ParseDict({"sequence": 1, "events": events}, pb.TrackStreamRequest())
        stream = client.stub.TrackStream()
        await stream.write(batch)
        ack = await stream.read()
        await stream.done_writing()
        assert ack.accepted == count
        samples = await scrape(client.daemon.metrics_port)
        assert value(samples, dropped) == extra
        first = await Events(reply).next()
        assert first["UserContext"]["ID"] == "u0"

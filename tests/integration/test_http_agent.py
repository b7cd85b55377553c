"""Optimizely Agent's REST API v1 on a real daemon's HTTP port, called with httpx as an Agent
client calls Agent: /v1/activate, /v1/track and /v1/decide, answered from the same decisions
and activation cache as gRPC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.parity.test_parity_optimizely_config import sdk_config
from tests.support.daemon import Client, client_for, settings_for
from tests.support.datafile_server import DatafileServer
from tests.support.http_port import EXAMPLE, SDK_KEY, agent_http
from tests.support.http_port import client as client  # the fixture
from tests.support.http_port import http as http  # the fixture
from tests.support.polling import eventually
from trackd.v1 import tracking_service_pb2 as pb


async def post(http: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    return await http.post(path, json=body)


async def test_activate_an_experiment_as_agent_answers(
    client: Client, http: httpx.AsyncClient
) -> None:
    reply = await post(
        http,
        "/v1/activate?experimentKey=checkout_flow",
        {"userId": "ann", "userAttributes": {"device": "iPhone"}},
    )
    assert reply.status_code == 200
    [decision] = reply.json()
    by_grpc = await client.stub.GetVariation(
        pb.GetVariationRequest(experiment_key="checkout_flow", user_id="ann")
    )
    assert decision == {
        "userId": "ann",
        "experimentKey": "checkout_flow",
        "featureKey": "",
        "variationKey": by_grpc.variation_key,
        "type": "experiment",
        "variables": {},
        "enabled": True,
    }
    # Activated: the impression was recorded and the activation remembered, for gRPC too.
    tracked = await client.stub.Track(pb.TrackRequest(event_key="add_to_cart", user_id="ann"))
    assert [a.variation_key for a in tracked.attributions] == [by_grpc.variation_key]


async def test_activate_with_disable_tracking_records_and_remembers_nothing(
    client: Client, http: httpx.AsyncClient
) -> None:
    reply = await post(
        http, "/v1/activate?experimentKey=checkout_flow&disableTracking=true", {"userId": "bo"}
    )
    assert reply.json()[0]["variationKey"]
    tracked = await client.stub.Track(pb.TrackRequest(event_key="add_to_cart", user_id="bo"))
    assert list(tracked.attributions) == []


async def test_activate_keys_types_filters_and_unknown_keys(
    client: Client, http: httpx.AsyncClient
) -> None:
    every = (await post(http, "/v1/activate?type=experiment", {"userId": "cy"})).json()
    experiments = client.daemon.live.config.experiments_by_key
    assert [d["experimentKey"] for d in every] == list(experiments)  # groups' too
    assert {"checkout_flow", "pricing_page"} <= set(experiments)
    assert all(d["type"] == "experiment" for d in every)

    unknown = await post(http, "/v1/activate?experimentKey=nope&featureKey=nada", {"userId": "cy"})
    assert unknown.status_code == 200
    assert [(d["experimentKey"], d["featureKey"], d["error"]) for d in unknown.json()] == [
        ("nope", "", "experimentKey not found"),
        ("", "nada", "featureKey not found"),
    ]

    feature = await post(http, "/v1/activate?featureKey=checkout_redesign", {"userId": "cy"})
    [flag] = feature.json()
    assert (flag["type"], flag["featureKey"], flag["enabled"]) == (
        "feature",
        "checkout_redesign",
        True,
    )
    assert flag["variationKey"] and flag["experimentKey"]

    mixed = "/v1/activate?type=experiment&type=feature"
    enabled_only = (await post(http, mixed + "&enabled=true", {"userId": "cy"})).json()
    disabled_only = (await post(http, mixed + "&enabled=false", {"userId": "cy"})).json()
    assert all(d["enabled"] for d in enabled_only)
    assert not any(d["enabled"] for d in disabled_only)
    assert len(enabled_only) + len(disabled_only) == len(
        (await post(http, mixed, {"userId": "cy"})).json()
    )

    bad_type = await post(http, "/v1/activate?type=everything", {"userId": "cy"})
    assert (bad_type.status_code, bad_type.json()) == (
        400,
        {"error": 'type "everything" not supported'},
    )


async def test_track_as_agent_answers_and_attributes_like_grpc(
    client: Client, http: httpx.AsyncClient
) -> None:
    activated = await post(http, "/v1/activate?experimentKey=checkout_flow", {"userId": "dee"})
    variation = activated.json()[0]["variationKey"]
    body = {"userId": "dee", "userAttributes": {"device": "iPhone"}, "eventTags": {"revenue": 4200}}
    reply = await post(http, "/v1/track?eventKey=add_to_cart", body)
    assert (reply.status_code, reply.json()) == (200, {"userId": "dee", "eventKey": "add_to_cart"})

    async def counted() -> bool:
        results = await client.stub.GetExperimentResults(
            pb.GetExperimentResultsRequest(experiment_key="checkout_flow")
        )
        return any(
            v.variation_key == variation and any(e.conversions == 1 for e in v.events)
            for v in results.variations
        )

    await eventually(counted)

    unknown = await post(http, "/v1/track?eventKey=nope", {"userId": "dee"})
    assert (unknown.status_code, unknown.json()) == (
        200,
        {"userId": "dee", "eventKey": "nope", "error": "Event with key nope not found"},
    )
    missing = await post(http, "/v1/track", {"userId": "dee"})
    assert (missing.status_code, missing.json()) == (
        400,
        {"error": "missing required path parameter: eventKey"},
    )


async def test_decide_one_key_is_an_object_several_a_list_none_every_flag(
    client: Client, http: httpx.AsyncClient
) -> None:
    body = {"userId": "eve", "decideOptions": ["DISABLE_DECISION_EVENT", "INCLUDE_REASONS"]}
    one = (await post(http, "/v1/decide?keys=checkout_redesign", body)).json()
    assert isinstance(one, dict)
    assert one["flagKey"] == "checkout_redesign"
    assert one["userContext"] == {"userId": "eve", "attributes": {}}
    assert one["reasons"]
    assert one["isEveryoneElseVariation"] is False
    by_grpc = await client.stub.Decide(
        pb.DecideRequest(
            user_id="eve",
            flag_keys=["checkout_redesign"],
            options=[pb.DECIDE_OPTION_DISABLE_DECISION_EVENT],
        )
    )
    [expected] = by_grpc.decisions
    assert (one["variationKey"], one["ruleKey"], one["enabled"]) == (
        expected.variation_key,
        expected.rule_key,
        expected.enabled,
    )

    several = await post(http, "/v1/decide?keys=free_shipping&keys=nope", {"userId": "eve"})
    assert [d["flagKey"] for d in several.json()] == ["free_shipping", "nope"]
    unknown = several.json()[1]
    assert (unknown["enabled"], unknown["variationKey"]) == (False, "")
    assert unknown["reasons"] == ['No flag was found for key "nope".']

    every = (await post(http, "/v1/decide", {"userId": "eve"})).json()
    assert [d["flagKey"] for d in every] == ["checkout_redesign", "free_shipping"]


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/v1/decide", {}, 400, 'missing "userId" in request payload'),
        ("/v1/activate?experimentKey=checkout_flow", {}, 400, 'missing "userId" in request'),
        ("/v1/decide", {"userId": "u", "decideOptions": ["SOMETIMES"]}, 400, "SOMETIMES"),
        ("/v1/decide", {"userId": "u", "fetchSegments": True}, 500, "qualified segments"),
        ("/v1/decide", {"userId": "u", "userAttributes": {"a": [1]}}, 400, "attribute 'a'"),
        ("/v1/decide", {"userId": 7}, 400, "userId"),
        ("/v1/nothing", {"userId": "u"}, 404, "not found"),
    ],
)
async def test_mistakes_get_agents_status_and_an_error(
    http: httpx.AsyncClient, path: str, body: Any, status: int, error: str
) -> None:
    reply = await post(http, path, body)
    assert reply.status_code == status, reply.text
    assert error in reply.json()["error"]
    assert "Traceback" not in reply.text


async def test_a_body_that_is_not_json_or_a_get_is_refused(http: httpx.AsyncClient) -> None:
    json_type = {"content-type": "application/json"}
    garbled = await http.post("/v1/decide", content=b"{nope", headers=json_type)
    assert (garbled.status_code, garbled.json()) == (400, {"error": "error parsing request body"})
    assert (await http.get("/v1/decide")).status_code == 405


async def test_the_sdk_key_header_is_required_and_must_match_sdk_key(tmp_path: Path) -> None:
    async with DatafileServer(EXAMPLE.read_bytes(), path="/datafiles/KEY1.json") as cdn:
        settings = settings_for(
            tmp_path,
            sdk_key="KEY1",
            datafile_url_template=cdn.base + "/datafiles/{sdk_key}.json",
            http_listen="127.0.0.1:0",
        )
        async with (
            client_for(settings) as client,
            httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
        ):

            async def loaded() -> bool:
                return client.daemon.live.loaded

            await eventually(loaded)
            body = {"userId": "u"}
            missing = await http.post("/v1/decide", json=body)
            assert (missing.status_code, missing.json()) == (
                400,
                {"error": "missing required X-Optimizely-SDK-Key header"},
            )
            other = await http.post(
                "/v1/decide", json=body, headers={"X-Optimizely-SDK-Key": "KEY2"}
            )
            assert other.status_code == 403
            served = await http.post(
                "/v1/decide", json=body, headers={"X-Optimizely-SDK-Key": "KEY1"}
            )
            assert served.status_code == 200


async def test_bearer_tokens_and_scopes_apply(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('"tracker-token" = ["track"]\n')
    settings = settings_for(tmp_path / "d", http_listen="127.0.0.1:0", auth_tokens=tokens)
    async with (
        client_for(settings) as client,
        agent_http(client) as http,
    ):
        body = {"userId": "u"}
        anonymous = await http.post("/v1/track?eventKey=add_to_cart", json=body)
        assert anonymous.status_code == 401
        token = {"authorization": "Bearer tracker-token"}
        tracked = await http.post("/v1/track?eventKey=add_to_cart", json=body, headers=token)
        assert tracked.status_code == 200
        decided = await http.post("/v1/decide", json=body, headers=token)
        assert decided.status_code == 403


async def test_a_post_body_must_be_json_as_agents_router_requires(http: httpx.AsyncClient) -> None:
    body = b'{"userId": "u"}'
    form = await http.post("/v1/decide", content=body, headers={"content-type": "text/plain"})
    assert form.status_code == 415
    assert "Unsupported Media Type" in form.json()["error"]
    charset = {"content-type": "application/json; charset=utf-8"}
    assert (await http.post("/v1/decide", content=body, headers=charset)).status_code == 200


async def test_override_sets_replaces_and_removes_a_forced_variation(
    client: Client, http: httpx.AsyncClient
) -> None:
    """The override decides Activate over gRPC too; Agent's messages say what it replaced."""
    body = {"userId": "fox", "experimentKey": "checkout_flow", "variationKey": "control"}
    first = (await post(http, "/v1/override", body)).json()
    assert first == {**body, "prevVariationKey": "", "messages": None}
    activated = await client.stub.Activate(
        pb.ActivateRequest(experiment_key="checkout_flow", user_id="fox")
    )
    assert activated.variation_key == "control"

    replaced = await post(http, "/v1/override", {**body, "variationKey": "one_page_checkout"})
    assert replaced.json()["prevVariationKey"] == "control"
    assert replaced.json()["messages"] == ["updating previous override"]

    removed = (await post(http, "/v1/override", {**body, "variationKey": ""})).json()
    assert (removed["prevVariationKey"], removed["messages"]) == (
        "one_page_checkout",
        ["removing previous override"],
    )
    again = (await post(http, "/v1/override", {**body, "variationKey": ""})).json()
    assert again["messages"] == ["no pre-existing override"]
    forced = await client.stub.GetForcedVariation(
        pb.GetForcedVariationRequest(experiment_key="checkout_flow", user_id="fox")
    )
    assert forced.variation_key == ""

    unknown = (await post(http, "/v1/override", {**body, "experimentKey": "nope"})).json()
    assert unknown["messages"] == ["experimentKey not found in configuration"]
    empty = await post(http, "/v1/override", {"userId": "fox"})
    assert (empty.status_code, empty.json()) == (400, {"error": "experimentKey cannot be empty"})


async def test_datafile_is_the_served_datafile(client: Client, http: httpx.AsyncClient) -> None:
    reply = await http.get("/v1/datafile")
    assert reply.status_code == 200
    assert reply.json() == json.loads(EXAMPLE.read_text())
    assert (await http.post("/v1/datafile", json={})).status_code == 405


def operation(number: int, url: str, body: Any = None, **params: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": url,
        "operationID": str(number),
        "body": body,
        "params": params,
        "headers": {**SDK_KEY, "Content-Type": "application/json"},
    }


async def test_batch_answers_each_operation_as_if_it_came_alone(
    client: Client, http: httpx.AsyncClient
) -> None:
    operations = [
        operation(1, "/v1/activate", {"userId": "gil"}, experimentKey="checkout_flow"),
        operation(2, "/v1/track?eventKey=add_to_cart", {"userId": "gil"}),
        operation(3, "/v1/decide?keys=checkout_redesign", {"userId": "gil"}),
        operation(4, "/v1/decide"),  # no userId: a 400 in its place
        {**operation(5, "/v1/decide", {"userId": "gil"}), "headers": {}},  # no SDK key
    ]
    reply = await http.post("/v1/batch", json={"operations": operations})
    assert reply.status_code == 200
    batch = reply.json()
    answers = batch["response"]
    assert [(a["operationID"], a["status"]) for a in answers] == [
        ("1", 200),
        ("2", 200),
        ("3", 200),
        ("4", 400),
        ("5", 400),
    ]
    assert batch["errorCount"] == 2
    assert batch["startedAt"].endswith("Z") and batch["endedAt"] >= batch["startedAt"]
    [activated] = answers[0]["body"]
    assert answers[0]["method"] == "POST" and answers[0]["url"] == "/v1/activate"
    assert answers[0]["requestID"]
    assert answers[1]["body"] == {"userId": "gil", "eventKey": "add_to_cart"}
    assert answers[2]["body"]["flagKey"] == "checkout_redesign"
    assert answers[3]["body"] == {"error": 'missing "userId" in request payload'}
    # The batch's activation is the daemon's: gRPC's Track is attributed to it.
    tracked = await client.stub.Track(pb.TrackRequest(event_key="add_to_cart", user_id="gil"))
    assert [a.variation_key for a in tracked.attributions] == [activated["variationKey"]]


async def test_batch_limits_and_undecodable_bodies(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, http_listen="127.0.0.1:0", http_batch_max_operations=2)
    async with (
        client_for(settings) as client,
        httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
    ):
        three = [operation(n, "/v1/decide", {"userId": "u"}) for n in range(3)]
        too_many = await http.post("/v1/batch", json={"operations": three})
        assert (too_many.status_code, too_many.json()) == (
            422,
            {"error": "too many operations, exceeding 2 operations"},
        )
        two = await http.post("/v1/batch", json={"operations": three[:2]})
        assert [a["status"] for a in two.json()["response"]] == [200, 200]
        for garbled in (b"{nope", b'{"operations": 3}', b"[]"):
            refused = await http.post("/v1/batch", content=garbled)
            assert (refused.status_code, refused.json()) == (
                400,
                {"error": "cannot decode the operation body"},
            )
        nested = await http.post("/v1/batch", json={"operations": [operation(1, "/v1/batch")]})
        assert nested.json()["response"][0]["status"] == 404


async def test_config_is_the_sdks_optimizely_config_of_the_served_datafile(
    http: httpx.AsyncClient,
) -> None:
    reply = await http.get("/v1/config")
    assert reply.status_code == 200
    config = reply.json()
    assert config == sdk_config(EXAMPLE.read_text())
    assert config["featuresMap"]["checkout_redesign"]["deliveryRules"]
    assert "checkout_flow" in config["experimentsMap"]


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/v1/lookup", {"userId": "u"}, 500, "no user profile service found"),
        ("/v1/save", {"userId": "u", "experimentBucketMap": {}}, 500, "no user profile service"),
        ("/v1/send-odp-event", {"identifiers": {"fs_user_id": "u"}}, 400, 'missing "action"'),
        ("/v1/send-odp-event", {"action": "a"}, 400, 'missing or empty "identifiers"'),
        (
            "/v1/send-odp-event",
            {"action": "a", "identifiers": {"fs_user_id": "u"}},
            500,
            "ODP is not enabled.",
        ),
    ],
)
async def test_what_needs_a_service_trackd_lacks_is_answered_as_agent_without_it(
    http: httpx.AsyncClient, path: str, body: Any, status: int, error: str
) -> None:
    reply = await post(http, path, body)
    assert (reply.status_code, error in reply.json()["error"]) == (status, True)


async def test_a_body_over_max_message_bytes_is_refused_on_v1_and_in_a_batch(
    tmp_path: Path,
) -> None:
    """The Agent API reads a body only up to --max-message-bytes: a /v1 call over it is
    refused with 429 (RESOURCE_EXHAUSTED, as every oversized message is), a /v1/batch over
    it as unreadable (400), as Agent refuses a batch it cannot decode; a body under the cap
    is answered."""
    settings = settings_for(tmp_path, http_listen="127.0.0.1:0", max_message_bytes=2048)
    async with (
        client_for(settings) as connected,
        agent_http(connected) as http,
    ):
        padded = {"userId": "ann", "userAttributes": {"note": "x" * 4096}}
        assert (await post(http, "/v1/track?eventKey=purchase", padded)).status_code == 429
        batch = {"operations": [{"method": "POST", "url": "/v1/track", "body": padded}]}
        assert (await post(http, "/v1/batch", batch)).status_code == 400
        small = {"userId": "ann"}
        assert (await post(http, "/v1/track?eventKey=purchase", small)).status_code == 200

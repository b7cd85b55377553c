"""decide, decide_for_keys, decide_all and forced decisions against an in-process
TrackingService that answers as trackd's Decide does and records what it was asked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Struct

from trackd_client import Client, DecideOption, Decision, InvalidArgumentError, VariableTypeError
from trackd_client._proto.v1 import tracking_service_pb2 as pb
from trackd_client._proto.v1 import tracking_service_pb2_grpc as pb_grpc
from trackd_client.aio import AsyncClient

VARIABLES = {
    "on": True,
    "count": 3,
    "ratio": 0.5,
    "whole_ratio": 2.0,
    "label": "blue",
    "config": {"size": 10, "tags": ["a", "b"], "nested": {"x": None}},
}


def struct(values: dict[str, Any]) -> Struct:
    return ParseDict(values, Struct())


class FlagTracking(pb_grpc.TrackingServiceServicer):
    """Knows flags "checkout" (A/B test) and "banner" (rollout); other keys are unknown."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.forced: dict[tuple[str, str, str], str] = {}

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        self.requests.append(request)
        if not request.user_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id must not be empty")
        known = {
            "checkout": pb.FlagDecision(
                flag_key="checkout",
                enabled=True,
                variation_key=self.forced.get((request.user_id, "checkout", ""), "treatment"),
                rule_key="checkout_test",
                rule_type=pb.RULE_TYPE_FEATURE_TEST,
                variables=struct(VARIABLES),
                reasons=["in the test"],
                impression_recorded=True,
            ),
            "banner": pb.FlagDecision(
                flag_key="banner",
                enabled=False,
                variation_key="off",
                rule_key="everyone_else",
                rule_type=pb.RULE_TYPE_ROLLOUT,
            ),
        }
        keys = list(request.flag_keys) or list(known)
        decisions = [
            known.get(key, pb.FlagDecision(flag_key=key, error=f"no flag {key!r}")) for key in keys
        ]
        if (
            pb.DECIDE_OPTION_ENABLED_FLAGS_ONLY in request.options
            or request.user_id == "enabled-only-by-default"
        ):
            decisions = [d for d in decisions if d.enabled]
        return pb.DecideResponse(decisions=decisions, revision="7")

    def SetForcedDecision(
        self, request: pb.SetForcedDecisionRequest, context: grpc.ServicerContext
    ) -> pb.SetForcedDecisionResponse:
        key = (request.user_id, request.flag_key, request.rule_key)
        self.forced[key] = request.variation_key
        return pb.SetForcedDecisionResponse()

    def GetForcedDecision(
        self, request: pb.GetForcedDecisionRequest, context: grpc.ServicerContext
    ) -> pb.GetForcedDecisionResponse:
        key = (request.user_id, request.flag_key, request.rule_key)
        return pb.GetForcedDecisionResponse(variation_key=self.forced.get(key, ""))

    def RemoveForcedDecision(
        self, request: pb.RemoveForcedDecisionRequest, context: grpc.ServicerContext
    ) -> pb.RemoveForcedDecisionResponse:
        key = (request.user_id, request.flag_key, request.rule_key)
        return pb.RemoveForcedDecisionResponse(removed=self.forced.pop(key, None) is not None)

    def RemoveAllForcedDecisions(
        self, request: pb.RemoveAllForcedDecisionsRequest, context: grpc.ServicerContext
    ) -> pb.RemoveAllForcedDecisionsResponse:
        mine = [key for key in self.forced if key[0] == request.user_id]
        for key in mine:
            del self.forced[key]
        return pb.RemoveAllForcedDecisionsResponse(removed=len(mine))


@pytest.fixture
def service() -> FlagTracking:
    return FlagTracking()


@pytest.fixture
def address(service: FlagTracking) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_TrackingServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_decide_returns_the_decision_with_native_variables(
    address: str, service: FlagTracking
) -> None:
    with Client(address) as client:
        decision = client.decide(
            "u1",
            "checkout",
            {"device": "iPhone", "age": 30},
            [DecideOption.INCLUDE_REASONS, DecideOption.DISABLE_DECISION_EVENT],
        )
    assert decision == Decision(
        flag_key="checkout",
        enabled=True,
        variation_key="treatment",
        rule_key="checkout_test",
        rule_type="feature-test",
        variables=VARIABLES,
        reasons=("in the test",),
        impression_recorded=True,
        error=None,
    )
    (request,) = service.requests
    assert list(request.flag_keys) == ["checkout"]
    assert list(request.options) == [
        pb.DECIDE_OPTION_INCLUDE_REASONS,
        pb.DECIDE_OPTION_DISABLE_DECISION_EVENT,
    ]
    # The attributes went through the client's one attribute conversion.
    assert request.attributes["age"].number_value == 30
    assert request.attributes["device"].string_value == "iPhone"


def test_typed_getters_return_native_types_and_refuse_other_types(address: str) -> None:
    with Client(address) as client:
        decision = client.decide("u1", "checkout")
    assert decision.get_boolean("on") is True
    assert decision.get_integer("count") == 3 and type(decision.get_integer("count")) is int
    assert decision.get_double("ratio") == 0.5
    assert decision.get_double("whole_ratio") == 2.0
    assert type(decision.get_double("whole_ratio")) is float
    assert decision.get_string("label") == "blue"
    assert decision.get_json("config") == {"size": 10, "tags": ["a", "b"], "nested": {"x": None}}
    with pytest.raises(VariableTypeError, match="'label' is str 'blue', not integer"):
        decision.get_integer("label")
    with pytest.raises(VariableTypeError, match="not boolean"):
        decision.get_boolean("count")
    with pytest.raises(VariableTypeError, match="not integer"):
        decision.get_integer("on")  # a bool is not an integer here, though Python says so
    with pytest.raises(VariableTypeError, match="not json"):
        decision.get_json("label")
    with pytest.raises(KeyError, match="no variable 'missing'"):
        decision.get_string("missing")


def test_decide_all_and_for_keys_keep_trackds_order_and_errors(
    address: str, service: FlagTracking
) -> None:
    with Client(address) as client:
        every = client.decide_all("u1")
        some = client.decide_for_keys("u1", ["banner", "nope", "checkout"])
        enabled = client.decide_all("u1", options=[DecideOption.ENABLED_FLAGS_ONLY])
        # As the SDK's decide: one flag always answers, ENABLED_FLAGS_ONLY is not sent.
        banner = client.decide("u1", "banner", options=[DecideOption.ENABLED_FLAGS_ONLY])
        # A daemon whose --default-decide-options drop disabled flags leaves out the answer.
        dropped = client.decide("enabled-only-by-default", "banner")
        assert client.decide_for_keys("u1", []) == {}
    assert list(every) == ["checkout", "banner"]
    assert every["banner"].rule_type == "rollout" and every["banner"].enabled is False
    assert list(some) == ["banner", "nope", "checkout"]
    assert some["nope"].error == "no flag 'nope'" and some["nope"].enabled is False
    assert some["nope"].variation_key is None and some["nope"].rule_type is None
    assert list(enabled) == ["checkout"]
    assert (banner.enabled, banner.variation_key, banner.rule_key) == (
        False,
        "off",
        "everyone_else",
    )
    assert dropped == Decision.dropped("banner")
    assert [(list(r.flag_keys), list(r.options)) for r in service.requests] == [
        ([], []),
        (["banner", "nope", "checkout"], []),
        ([], [pb.DECIDE_OPTION_ENABLED_FLAGS_ONLY]),
        (["banner"], []),
        (["banner"], []),
    ]


def test_decide_errors_raise_the_clients_errors(address: str) -> None:
    with Client(address) as client:
        with pytest.raises(InvalidArgumentError, match="user_id"):
            client.decide("", "checkout")
        with pytest.raises(TypeError, match="attributes"):
            client.decide("u1", "checkout", {"list": [1]})  # type: ignore[dict-item]
        with pytest.raises(TypeError, match="not one str"):
            client.decide_for_keys("u1", "checkout")


def test_forced_decisions_set_get_remove(address: str) -> None:
    with Client(address) as client:
        assert client.get_forced_decision("u1", "checkout") is None
        client.set_forced_decision("u1", "checkout", "control")
        client.set_forced_decision("u1", "checkout", "treatment", rule_key="checkout_test")
        client.set_forced_decision("u2", "checkout", "control")
        assert client.get_forced_decision("u1", "checkout") == "control"
        assert client.get_forced_decision("u1", "checkout", "checkout_test") == "treatment"
        assert client.decide("u1", "checkout").variation_key == "control"
        assert client.remove_forced_decision("u1", "checkout") is True
        assert client.remove_forced_decision("u1", "checkout") is False
        assert client.remove_all_forced_decisions("u1") == 1
        assert client.get_forced_decision("u2", "checkout") == "control"


def test_the_async_client_decides_too(address: str) -> None:
    async def calls() -> tuple[Decision, list[str], list[object]]:
        async with AsyncClient(address) as client:
            one = await client.decide("u1", "checkout", {"device": "iPhone"})
            every = await client.decide_all("u1")
            await client.set_forced_decision("u1", "checkout", "control")
            await client.set_forced_decision("u1", "checkout", "control", rule_key="checkout_test")
            forced: list[object] = [
                await client.get_forced_decision("u1", "checkout"),
                (await client.decide("u1", "checkout")).variation_key,
                await client.remove_forced_decision("u1", "checkout"),
                await client.remove_forced_decision("u1", "checkout"),
                await client.remove_all_forced_decisions("u1"),
            ]
            return one, list(every), forced

    one, keys, forced = asyncio.run(calls())
    assert one.get_json("config")["tags"] == ["a", "b"] and one.rule_type == "feature-test"
    assert keys == ["checkout", "banner"]
    assert forced == ["control", "control", True, False, 1]

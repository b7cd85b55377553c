"""Agent's `/v1/decide` with `forcedDecisions` in the body, on a real daemon's HTTP port, held
to optimizely-sdk 5.7's `set_forced_decision` on one user context for the same datafile:
the answers, the precedence of a flag's forced decision over a rule's, the decision events,
and that nothing of them is kept after the call.

The datafile is tests/data/flags_datafile.json (see tests/integration/test_decide_api.py):
checkout_redesign has the A/B test checkout_ab (control / treatment; u1 is in treatment, u2
in control) and an "Everyone Else" rule that is off; free_shipping is a rollout.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption
from optimizely.optimizely_user_context import OptimizelyUserContext

from tests.integration.test_decide_api import DATAFILE, DOCUMENT, _client
from tests.integration.test_decide_api import receiver as receiver  # the fixture
from tests.support.daemon import Client
from tests.support.http_port import SDK_KEY, agent_http
from tests.support.oracle import (
    CapturingDispatcher,
    delivered_payload,
    sdk_client,
    sdk_payload,
    without_uuids_and_timestamps,
)
from tests.support.receiver import Receiver
from trackd.v1 import tracking_service_pb2 as pb

CHECKOUT = "checkout_redesign"
Forced = dict[str, str]  # one entry of a body's forcedDecisions


@pytest.fixture
async def flags(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Client]:
    async with await _http_client(tmp_path, receiver) as connected:
        yield connected


@pytest.fixture
async def http(flags: Client) -> AsyncIterator[httpx.AsyncClient]:
    async with agent_http(flags) as c:
        yield c


def _http_client(tmp_path: Path, receiver: Receiver) -> Any:
    return _client(tmp_path, receiver, http_listen="127.0.0.1:0")


async def agent_decide(
    http: httpx.AsyncClient,
    user_id: str,
    keys: Sequence[str],
    forced: Sequence[Forced | None] | None,
    *options: str,
) -> Any:
    body: dict[str, Any] = {"userId": user_id, "decideOptions": list(options)}
    if forced is not None:
        body["forcedDecisions"] = list(forced)
    reply = await http.post("/v1/decide", params=[("keys", key) for key in keys], json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def sdk_user(sdk: Any, user_id: str, *forced: Forced) -> OptimizelyUserContext:
    """A user context with `forced` set on it in order, as Agent's handler sets a body's."""
    user = sdk.create_user_context(user_id, {})
    for entry in forced:
        context = OptimizelyUserContext.OptimizelyDecisionContext(
            entry["flagKey"], entry.get("ruleKey") or None
        )
        decision = OptimizelyUserContext.OptimizelyForcedDecision(entry["variationKey"])
        user.set_forced_decision(context, decision)
    return user


def forced(flag: str, variation: str, rule: str | None = None) -> Forced:
    entry = {"flagKey": flag, "variationKey": variation}
    return entry if rule is None else {**entry, "ruleKey": rule}


# Each: the user, the forced decisions of the body in order. Checked against the SDK, with
# the users' own variations (u1 treatment, u2 control) telling a forced answer from a bucketed.
PRECEDENCE_CASES: list[tuple[str, list[Forced]]] = [
    ("u2", [forced(CHECKOUT, "treatment", "checkout_ab")]),
    ("u1", [forced(CHECKOUT, "control")]),
    # A flag's forced decision beats its rule's, whichever the body names first.
    ("u2", [forced(CHECKOUT, "treatment", "checkout_ab"), forced(CHECKOUT, "off")]),
    ("u2", [forced(CHECKOUT, "off"), forced(CHECKOUT, "treatment", "checkout_ab")]),
    # The same flag and rule twice: the later one is the context's.
    (
        "u1",
        [forced(CHECKOUT, "treatment", "checkout_ab"), forced(CHECKOUT, "control", "checkout_ab")],
    ),
    # A variation the flag lacks is ignored, then the rule below is tried.
    ("u2", [forced(CHECKOUT, "nope"), forced(CHECKOUT, "treatment", "checkout_ab")]),
    ("u2", [forced(CHECKOUT, "nope", "checkout_ab")]),
    # The "Everyone Else" rule, reached only past the A/B test; any rule's variation counts.
    ("u2", [forced(CHECKOUT, "off", "default-rollout-7401")]),
    ("u2", [forced(CHECKOUT, "off", "checkout_ab")]),
    # A delivery rule of a rollout, and a rule the flag does not have.
    ("u3", [forced("free_shipping", "on_iphone", "free_shipping_iphone")]),
    ("u3", [forced("free_shipping", "on", "no_such_rule")]),
    # Another flag's forced decision changes nothing here.
    ("u2", [forced("free_shipping", "on")]),
]


@pytest.mark.parametrize(("user_id", "body"), PRECEDENCE_CASES)
async def test_forced_decisions_in_the_body_decide_as_the_sdks_set_forced_decision(
    http: httpx.AsyncClient, user_id: str, body: list[Forced]
) -> None:
    sdk = sdk_client(DATAFILE.read_text())
    theirs = sdk_user(sdk, user_id, *body).decide_all(
        [OptimizelyDecideOption.INCLUDE_REASONS, OptimizelyDecideOption.DISABLE_DECISION_EVENT]
    )
    sdk.close()
    ours = await agent_decide(http, user_id, [], body, "INCLUDE_REASONS", "DISABLE_DECISION_EVENT")
    assert [d["flagKey"] for d in ours] == list(theirs)
    for decision in ours:
        expected = theirs[decision["flagKey"]]
        assert decision["variationKey"] == (expected.variation_key or "")
        assert decision["ruleKey"] == (expected.rule_key or "")
        assert decision["enabled"] == expected.enabled
        assert decision.get("variables", {}) == expected.variables
        # The forced decisions' own reasons are worded alike by the Python and Go SDKs. The
        # Python SDK repeats an invalid one of a feature test's rule (it looks it up twice);
        # the Go SDK, which Agent runs, gives it once (feature_experiment_service.go), as here.
        assert [r for r in decision["reasons"] if "forced decision map" in r] == list(
            dict.fromkeys(r for r in expected.reasons if "forced decision map" in r)
        )


async def test_a_bodys_forced_decisions_lie_over_the_daemons_for_that_call_only(
    flags: Client, http: httpx.AsyncClient
) -> None:
    """As one user context holding both: the daemon's forced decision for the flag beats the
    body's for its rule; the body's for the same rule replaces the daemon's; and after the
    call neither the daemon's store nor the next decide remembers the body's."""
    await flags.stub.SetForcedDecision(
        pb.SetForcedDecisionRequest(
            user_id="u2", flag_key=CHECKOUT, rule_key="checkout_ab", variation_key="control"
        )
    )
    body = [forced(CHECKOUT, "treatment", "checkout_ab")]
    decided = await agent_decide(http, "u2", [CHECKOUT], body)
    assert (decided["variationKey"], decided["ruleKey"]) == ("treatment", "checkout_ab")
    held = await flags.stub.GetForcedDecision(
        pb.GetForcedDecisionRequest(user_id="u2", flag_key=CHECKOUT, rule_key="checkout_ab")
    )
    assert held.variation_key == "control"  # the daemon's, untouched
    assert (await agent_decide(http, "u2", [CHECKOUT], None))["variationKey"] == "control"

    await flags.stub.SetForcedDecision(
        pb.SetForcedDecisionRequest(user_id="u2", flag_key=CHECKOUT, variation_key="off")
    )
    decided = await agent_decide(http, "u2", [CHECKOUT], body)
    assert (decided["variationKey"], decided["ruleKey"]) == ("off", "")

    await flags.stub.RemoveAllForcedDecisions(pb.RemoveAllForcedDecisionsRequest(user_id="u2"))
    decided = await agent_decide(http, "u2", [CHECKOUT], None)
    assert (decided["variationKey"], decided["ruleKey"]) == ("control", "checkout_ab")
    for user_id in ("u1", "u2"):  # nobody kept anything of the bodies'
        held = await flags.stub.GetForcedDecision(
            pb.GetForcedDecisionRequest(user_id=user_id, flag_key=CHECKOUT)
        )
        assert held.variation_key == ""


async def test_a_bodys_forced_decision_is_attributed_but_never_sticks(
    flags: Client, http: httpx.AsyncClient
) -> None:
    """Remembered as a held forced decision is: for attribution, not sticky (the SDK saves
    no forced decision to its user profile), so the next decide is the user's own bucket."""
    body = [forced(CHECKOUT, "treatment", "checkout_ab")]
    assert (await agent_decide(http, "u2", [CHECKOUT], body))["variationKey"] == "treatment"
    tracked = await flags.stub.Track(pb.TrackRequest(event_key="purchase", user_id="u2"))
    assert [a.variation_key for a in tracked.attributions] == ["treatment"]
    assert (await agent_decide(http, "u2", [CHECKOUT], None))["variationKey"] == "control"
    tracked = await flags.stub.Track(pb.TrackRequest(event_key="purchase", user_id="u2"))
    assert [a.variation_key for a in tracked.attributions] == ["control"]


async def test_a_forced_decision_of_the_body_sends_the_sdks_decision_event(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The Event API payload trackd delivers for a decide forced by the body equals what
    optimizely-sdk sends for the same decide on a user context with set_forced_decision,
    for a rule's forced decision and for a whole flag's (uuid, timestamp, client aside)."""
    for name, body in (
        ("rule", [forced(CHECKOUT, "treatment", "checkout_ab")]),
        ("flag", [forced(CHECKOUT, "control")]),
    ):
        before = len(receiver.received)
        async with await _http_client(tmp_path / name, receiver) as client:
            async with agent_http(client) as http:
                await agent_decide(http, "u2" if name == "rule" else "u1", [CHECKOUT], body)
            await receiver.wait_until(lambda r, before=before: len(r.received) > before)
        (delivered,) = receiver.received[before:]
        dispatched = CapturingDispatcher()
        sdk = sdk_client(json.dumps(DOCUMENT), dispatched)
        sdk_user(sdk, "u2" if name == "rule" else "u1", *body).decide(CHECKOUT)
        sdk.close()
        (sent,) = dispatched.events
        ours = without_uuids_and_timestamps(delivered_payload(delivered))
        assert ours == without_uuids_and_timestamps(sdk_payload(sent.params)), name


@pytest.mark.parametrize(
    "given",
    [
        "treatment",
        {"flagKey": CHECKOUT, "variationKey": "treatment"},  # an object, not a list
        [1],
        [[CHECKOUT, "treatment"]],
        [{"flagKey": 5, "variationKey": "treatment"}],
        [{"flagKey": CHECKOUT, "ruleKey": False, "variationKey": "treatment"}],
        [{"flagKey": CHECKOUT, "variationKey": ["treatment"]}],
    ],
)
async def test_forced_decisions_of_another_shape_are_agents_400(
    http: httpx.AsyncClient, given: Any
) -> None:
    """Agent decodes the body into its struct with Go's decoder, which refuses a value of
    another type: the 400 of an undecodable body."""
    for body in ({"userId": "u1", "forcedDecisions": given}, {"forcedDecisions": given}):
        # Before the missing userId is noticed: Go's decoder refuses the whole body first.
        reply = await http.post("/v1/decide", json=body)
        assert (reply.status_code, reply.json()) == (400, {"error": "error parsing request body"})


async def test_null_or_empty_forced_decisions_are_none_as_go_decodes_them(
    http: httpx.AsyncClient,
) -> None:
    """Go decodes null as nothing and a missing key as ""; an entry with an empty variation
    is set and, matching no variation, ignored with the SDK's "Invalid variation" reason."""
    for given in (None, [], [None], [{}], [{"flagKey": CHECKOUT}]):
        decided = await agent_decide(http, "u2", [CHECKOUT], given, "INCLUDE_REASONS")
        assert (decided["variationKey"], decided["ruleKey"]) == ("control", "checkout_ab")
    decided = await agent_decide(http, "u2", [CHECKOUT], [{"flagKey": CHECKOUT}], "INCLUDE_REASONS")
    assert decided["reasons"][0] == (
        f"Invalid variation is mapped to flag ({CHECKOUT}) and user (u2) "
        "in the forced decision map."
    )


async def test_v1_reasons_are_the_go_sdks_while_grpc_keeps_trackds(
    flags: Client, http: httpx.AsyncClient
) -> None:
    """Agent's clients see the reasons of Agent's Go SDK (trackd.agent_reasons; strings from
    github.com/optimizely/go-sdk/v2 v2.3.1, pkg/ as cited); gRPC's Decide keeps trackd's."""
    keys = [CHECKOUT, "free_shipping", "nope"]
    ours = await agent_decide(http, "u2", keys, None, "INCLUDE_REASONS", "DISABLE_DECISION_EVENT")
    assert {d["flagKey"]: d["reasons"] for d in ours} == {
        # decision/evaluator/audience_evaluator.go:52
        CHECKOUT: ["Audiences for experiment checkout_ab collectively evaluated to true."],
        "free_shipping": [
            # decision/rollout_service.go:116 with logging/log_messages.go:47
            'User "u2" does not meet conditions for targeting rule 1.',
            'User "u2" does not meet conditions for targeting rule 2.',
            # audience_evaluator.go:52, then rollout_service.go:149 with log_messages.go:45
            "Audiences for experiment default-rollout-7402 collectively evaluated to true.",
            'User "u2" meets conditions for targeting rule "Everyone Else".',
        ],
        # decide/decide_errors.go:30
        "nope": ['No flag was found for key "nope".'],
    }
    by_grpc = await flags.stub.Decide(
        pb.DecideRequest(
            user_id="u2",
            flag_keys=[CHECKOUT],
            options=[pb.DECIDE_OPTION_INCLUDE_REASONS, pb.DECIDE_OPTION_DISABLE_DECISION_EVENT],
        )
    )
    assert list(by_grpc.decisions[0].reasons) == [
        'User "u2" is in variation "control" of experiment checkout_ab (bucketed).'
    ]


async def test_an_error_decisions_reasons_are_its_error_alone_as_the_go_sdks(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The Go SDK answers an error decision with its error as the only reason, with or
    without INCLUDE_REASONS (client.go handleDecisionServiceError); for a CMAB rule that is
    cmab/errors.go:32's, without trackd's note on why it never calls CMAB."""
    document = copy.deepcopy(DOCUMENT)
    [checkout_ab] = (e for e in document["experiments"] if e["key"] == "checkout_ab")
    checkout_ab["cmab"] = {"attributeIds": [], "trafficAllocation": 10000}
    async with (
        await _client(tmp_path, receiver, document, http_listen="127.0.0.1:0") as client,
        agent_http(client) as http,
    ):
        for options in ((), ("INCLUDE_REASONS",)):
            decided = await agent_decide(http, "u1", [CHECKOUT], None, *options)
            assert decided["reasons"] == ["Failed to fetch CMAB data for experiment checkout_ab."]


async def test_a_batched_decide_takes_its_own_forced_decisions(http: httpx.AsyncClient) -> None:
    """Each /v1/batch operation is its own request: its body's forced decisions are its own."""
    operations = [
        {
            "method": "POST",
            "url": "/v1/decide",
            "operationID": str(number),
            "body": {"userId": "u2", "forcedDecisions": body},
            "params": {"keys": CHECKOUT},
            "headers": {**SDK_KEY, "Content-Type": "application/json"},
        }
        for number, body in enumerate(([forced(CHECKOUT, "treatment", "checkout_ab")], None))
    ]
    reply = await http.post("/v1/batch", json={"operations": operations})
    answers = sorted(reply.json()["response"], key=lambda answer: answer["operationID"])
    assert [(a["status"], a["body"]["variationKey"]) for a in answers] == [
        (200, "treatment"),
        (200, "control"),
    ]

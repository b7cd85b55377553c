"""Agent's `/v1/decide` answer, printed from the servicer's serialized response with each
frame's text kept (`trackd.rpc.agent_decide`), is byte for byte what parsing the response
back into a DecideResponse and dumping each decision as a dict printed before it, for every
option, key set, forced decision and datafile, across reloads; and a kept text never
outlives the datafile it was made for.

In-process: the real servicer, tracker and memory stores behind AgentApi's ASGI app.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from bench.gen_datafile import build_flags
from tests.support.http_port import EXAMPLE
from tests.unit.test_tracker import MemoryEventLog
from trackd.activation.memory import MemoryActivationStore
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.live import LiveConfig
from trackd.notifications import Notifier
from trackd.overrides import MemoryOverrideStore
from trackd.rpc import values
from trackd.rpc.agent import DECIDE_OPTIONS, AgentApi
from trackd.rpc.agent_decide import AgentDecideJson, is_everyone_else, worded_reasons
from trackd.rpc.decide_json import response_parts
from trackd.rpc.interceptors import RpcInterceptor
from trackd.rpc.servicer import TrackingServicer
from trackd.tracking import Tracker
from trackd.v1 import tracking_service_pb2 as pb

FLAGS_DOCUMENT: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "flags_datafile.json").read_text()
)
FREE_SHIPPING_DEFAULT_RULE = "default-rollout-7402"


def everyone_else_by_agents_rule(document: dict[str, Any]) -> dict[str, Any]:
    """The flags datafile with free_shipping's last rule keyed by its id, as Agent requires
    of an "Everyone Else" rule: its decisions' frames are the same bytes as the original's
    (a rule's id is not in them), but their isEveryoneElseVariation is true."""
    changed = copy.deepcopy(document)
    for rollout in changed["rollouts"]:
        for rule in rollout["experiments"]:
            if rule["key"] == FREE_SHIPPING_DEFAULT_RULE:
                rule["id"] = rule["key"]
    return changed


DATAFILES = {
    "generated-50": build_flags(50),
    "example": EXAMPLE.read_text(),
    "flags": json.dumps(FLAGS_DOCUMENT),
    "flags-everyone-else": json.dumps(everyone_else_by_agents_rule(FLAGS_DOCUMENT)),
}
RELOADED = {"flags": "flags-everyone-else", "flags-everyone-else": "flags"}
OPTIONS = sorted(DECIDE_OPTIONS)  # every one Agent's decideOptions may name
ATTRIBUTES = [
    {},
    {"age": 30, "country": "US", "plan": "pro", "app_version": "2.2.0", "device": "iPhone"},
    {"age": 17.5, "country": "FR", "plan": "free", "app_version": "1.0", "score": 1e300},
    {"country": "US", "name": "ünïcode \u2028"},
]


class RecordingServicer(TrackingServicer):
    """The real servicer, keeping each serialized Decide response it answers."""

    replies: list[bytes]

    async def Decide(self, request: Any, context: Any, **extra: Any) -> bytes:
        reply = await super().Decide(request, context, **extra)
        self.replies.append(reply)
        return reply


class Agent:
    def __init__(self, datafile: str) -> None:
        self.live = LiveConfig(parse_datafile(datafile))
        store = MemoryActivationStore(ttl=600.0, max_entries=100_000)
        tracker = Tracker(self.live, store, MemoryOverrideStore(), MemoryEventLog(store))
        self.servicer = RecordingServicer(tracker, values.Limits(), 100)
        self.servicer.replies = []
        self.api = AgentApi(
            self.servicer,
            RpcInterceptor(live=self.live),
            self.live,
            sdk_key="",
            max_body_bytes=1 << 22,
            notifier=Notifier(),
        )

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """One request through the ASGI app: its status and body as sent."""
        scope = {
            "type": "http",
            "path": path.partition("?")[0],
            "method": "POST",
            "query_string": path.partition("?")[2].encode(),
            "headers": [(b"x-optimizely-sdk-key", b"k"), (b"content-type", b"application/json")],
        }
        pending = [{"type": "http.request", "body": json.dumps(body).encode()}]

        async def receive() -> dict[str, Any]:
            return pending.pop()

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.api(scope, receive, send)
        return sent[0]["status"], sent[1]["body"]


def printed_before(
    data: bytes, config: ProjectConfig, body: dict[str, Any], keys: list[str]
) -> Any:
    """The answer as AgentApi built it before (the oracle): the response parsed back, each
    decision a dict in Agent's field order, the one of a single key alone."""
    user_context = {"userId": body["userId"], "attributes": body.get("userAttributes") or {}}
    decided = []
    for flag in pb.DecideResponse.FromString(data).decisions:
        decision = {
            "variationKey": flag.variation_key,
            "enabled": flag.enabled,
            "ruleKey": flag.rule_key,
            "flagKey": flag.flag_key,
            "userContext": user_context,
            "reasons": worded_reasons(flag, config),
            "isEveryoneElseVariation": is_everyone_else(flag, config),
        }
        if flag.variables.fields:
            decision["variables"] = values.plain_struct(flag.variables)
        decided.append(decision)
    return decided[0] if len(keys) == 1 and decided else decided


def key_sets(config: ProjectConfig) -> list[list[str]]:
    first, second = list(config.flag_keys)[:2]
    return [[], [first], [second, first, "nope"], ["nope"], [first, first]]


def forced_sets(document: dict[str, Any]) -> list[list[dict[str, str]] | None]:
    """None, and a flag's forced decision, a rule's, and one of a variation no flag has."""
    experiments = {e["id"]: e for e in document["experiments"]}
    flag = document["featureFlags"][0]
    rule = experiments[flag["experimentIds"][0]]
    return [
        None,
        [
            {"flagKey": flag["key"], "ruleKey": rule["key"], "variationKey": "nope"},
            {"flagKey": flag["key"], "variationKey": rule["variations"][-1]["key"]},
            {
                "flagKey": document["featureFlags"][1]["key"],
                "ruleKey": rule["key"],
                "variationKey": rule["variations"][0]["key"],
            },
        ],
    ]


async def assert_printed_as_before(
    agent: Agent, body: dict[str, Any], keys: list[str]
) -> dict[str, Any] | list[Any]:
    query = "&".join(f"keys={key}" for key in keys)
    status, printed = await agent.post(f"/v1/decide?{query}", body)
    assert status == 200, printed
    expected = printed_before(agent.servicer.replies[-1], agent.live.config, body, keys)
    assert json.loads(printed) == expected
    assert printed == json.dumps(expected).encode()
    return expected


@pytest.mark.parametrize("name", DATAFILES)
async def test_every_answer_is_what_parsing_the_response_back_printed(name: str) -> None:
    """Every combination of options, with reasons and without, many users, key sets (none,
    one, unknown ones, a repeated one) and forced decisions; the datafile reloaded between
    rounds (an equal one, or for the flags datafiles the other, whose Everyone Else rule
    Agent tells apart though the frames are the same), so a text kept too long would show."""
    datafile = DATAFILES[name]
    agent = Agent(datafile)
    document = json.loads(datafile)
    combinations = [
        list(chosen)
        for n in range(len(OPTIONS) + 1)
        for chosen in itertools.combinations(OPTIONS, n)
    ]
    seen_everyone_else = set()
    calls = itertools.count()
    for _ in range(2):
        for options in combinations:
            for keys, forced in itertools.product(
                key_sets(agent.live.config), forced_sets(document)
            ):
                call = next(calls)
                body: dict[str, Any] = {
                    # 101 users, each seen again (sticky) with other attributes and options
                    "userId": f"user-{call % 101}-ü",
                    "userAttributes": ATTRIBUTES[call % len(ATTRIBUTES)],
                    "decideOptions": options,
                }
                if forced is not None:
                    body["forcedDecisions"] = forced
                answer = await assert_printed_as_before(agent, body, keys)
                for decision in answer if isinstance(answer, list) else [answer]:
                    seen_everyone_else.add(decision["isEveryoneElseVariation"])
        datafile = DATAFILES[RELOADED.get(name, name)]
        agent.live.swap(parse_datafile(datafile))
    assert seen_everyone_else == ({False, True} if name in RELOADED else {False})


async def test_a_kept_text_never_outlives_the_datafile_it_was_made_for() -> None:
    """The same decision (the same frame bytes) on datafiles that differ only in the id of
    free_shipping's last rule: Agent's isEveryoneElseVariation follows the datafile served,
    reload after reload."""
    agent = Agent(DATAFILES["flags"])
    body = {"userId": "eve", "decideOptions": ["DISABLE_DECISION_EVENT"]}
    answers = []
    for name in ("flags", "flags-everyone-else", "flags", "flags-everyone-else"):
        agent.live.swap(parse_datafile(DATAFILES[name]))
        for _ in range(2):  # the second from the kept text
            answer = await assert_printed_as_before(agent, body, ["free_shipping"])
            answers.append((answer["ruleKey"], answer["isEveryoneElseVariation"]))
    everyone = [False, False, True, True, False, False, True, True]
    assert answers == [(FREE_SHIPPING_DEFAULT_RULE, flag) for flag in everyone]
    assert (
        len(set(agent.servicer.replies)) == 1
    )  # the very same bytes each time: only the datafile told them apart


async def test_the_answers_json_keeps_agents_types_and_shapes() -> None:
    """Hand-checked on the flags datafile: a single key is an object, variables typed as the
    parsed Struct gives them (json ones objects, every number a float), an unknown key the
    error decision, and attributes as the caller sent them."""
    agent = Agent(DATAFILES["flags"])
    body = {"userId": "qa_whitelisted", "userAttributes": {"age": 31, "f": 0.5}}
    status, printed = await agent.post("/v1/decide?keys=checkout_redesign", body)
    assert status == 200
    assert json.loads(printed) == {
        "variationKey": "treatment",
        "enabled": True,
        "ruleKey": "checkout_ab",
        "flagKey": "checkout_redesign",
        "userContext": {"userId": "qa_whitelisted", "attributes": {"age": 31, "f": 0.5}},
        "reasons": [],
        "isEveryoneElseVariation": False,
        "variables": {
            "button_color": "green",
            "show_banner": True,
            "max_items": 5.0,
            "discount": 0.25,
            "layout": {"columns": 2.0},
        },
    }
    assert b'"max_items": 5.0' in printed and b'"attributes": {"age": 31, "f": 0.5}}' in printed
    status, printed = await agent.post("/v1/decide?keys=nope&keys=free_shipping", body)
    unknown, _ = json.loads(printed)
    assert unknown == {
        "variationKey": "",
        "enabled": False,
        "ruleKey": "",
        "flagKey": "nope",
        "userContext": {"userId": "qa_whitelisted", "attributes": {"age": 31, "f": 0.5}},
        "reasons": ['No flag was found for key "nope".'],
        "isEveryoneElseVariation": False,
    }
    body["decideOptions"] = ["ENABLED_FLAGS_ONLY"]
    status, printed = await agent.post("/v1/decide?keys=free_shipping", body)
    assert (status, printed) == (200, b"[]")  # one key, but nothing enabled: an empty list


def test_bytes_not_laid_out_by_the_encoder_print_as_the_parsed_response() -> None:
    """A field DecideEncoder never writes (a newer proto's) sends the printer to a parse."""
    config = parse_datafile(DATAFILES["flags"])
    decision = pb.FlagDecision(flag_key="free_shipping", enabled=True, variation_key="on")
    data = pb.DecideResponse(decisions=[decision], revision="1").SerializeToString()
    unknown_field = bytes([3 << 3 | 0, 1])  # field 3, a varint
    printer = AgentDecideJson()
    user_context = {"userId": "u", "attributes": {}}
    assert response_parts(data + unknown_field) is None
    assert printer.text(data + unknown_field, config, user_context, one=False) == printer.text(
        data, config, user_context, one=False
    )

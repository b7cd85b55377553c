"""Decide and forced decisions over real gRPC, SQLite and a local HTTP receiver.

tests/data/flags_datafile.json: flag "checkout_redesign" has the A/B test "checkout_ab"
(control / treatment, 50/50, "qa_whitelisted" whitelisted into treatment; variables of every
type) before an "Everyone Else" rule that is off; flag "free_shipping" is a rollout:
"free_shipping_us" (country US: on), "free_shipping_iphone" (device iPhone, traffic 0: falls
through), "Everyone Else" (off). Event "purchase" belongs to checkout_ab.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Value

from tests.integration.test_decisions_api import attrs
from tests.integration.test_metrics import scrape, value
from tests.support.daemon import Client, client_for, settings_for
from tests.support.oracle import (
    CapturingDispatcher,
    delivered_payload,
    sdk_client,
    sdk_payload,
    without_uuids_and_timestamps,
)
from tests.support.polling import eventually
from tests.support.receiver import Receiver
from trackd import __version__, tracking
from trackd.events import decisions
from trackd.v1 import tracking_service_pb2 as pb

DATAFILE = Path(__file__).parent.parent / "data" / "flags_datafile.json"
DOCUMENT: dict[str, Any] = json.loads(DATAFILE.read_text())

# Users whose bucketing the tests rely on (checked against the SDK in the first test).
TREATMENT_USER = "u1"  # checkout_ab: treatment
CONTROL_USER = "u2"  # checkout_ab: control


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running_receiver:
        yield running_receiver


async def _client(
    tmp_path: Path, receiver: Receiver, document: dict[str, Any] | None = None, **overrides: Any
) -> Any:
    path = tmp_path / "datafile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document or DOCUMENT))
    return client_for(
        settings_for(tmp_path / "data", datafile=path, event_endpoint=receiver.url, **overrides)
    )


@pytest.fixture
async def flags(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Client]:
    async with await _client(tmp_path, receiver) as connected:
        yield connected


def _sending_rollouts() -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    document["sendFlagDecisions"] = True
    return document


async def decide(
    client: Client,
    user_id: str,
    keys: tuple[str, ...] = (),
    options: tuple[int, ...] = (),
    **attributes: object,
) -> pb.DecideResponse:
    return await client.stub.Decide(
        pb.DecideRequest(
            user_id=user_id, attributes=attrs(**attributes), flag_keys=keys, options=options
        )
    )


async def variation_of(client: Client, user_id: str, flag_key: str) -> str:
    reply = await decide(client, user_id, (flag_key,))
    return reply.decisions[0].variation_key


CHECKOUT = "checkout_redesign"


def _variables(decision: pb.FlagDecision) -> dict[str, Any]:
    return json_format.MessageToDict(decision.variables)


def _decision_metadata(receiver: Receiver) -> list[dict[str, Any]]:
    return [
        decision["metadata"]
        for visitor in receiver.visitors
        for snapshot in visitor["snapshots"]
        for decision in snapshot.get("decisions", [])
    ]


async def test_decide_all_decides_every_flag_in_datafile_order_as_the_sdk(flags: Client) -> None:
    sdk = sdk_client(DATAFILE.read_text())
    cases = [("u1", {}), ("u2", {}), ("u3", {"country": "US"}), ("u4", {"device": "iPhone"})]
    cases += [("qa_whitelisted", {}), *((f"user-{n}", {"country": "US"}) for n in range(20))]
    for user_id, attributes in cases:
        reply = await decide(flags, user_id, **attributes)
        assert reply.revision == "11"
        assert [d.flag_key for d in reply.decisions] == ["checkout_redesign", "free_shipping"]
        theirs = sdk.create_user_context(user_id, dict(attributes)).decide_all()
        for ours in reply.decisions:
            expected = theirs[ours.flag_key]
            assert ours.enabled == expected.enabled, user_id
            assert ours.variation_key == (expected.variation_key or ""), user_id
            assert ours.rule_key == (expected.rule_key or ""), user_id
            assert _variables(ours) == expected.variables, user_id
            assert not ours.reasons and not ours.error
    sdk.close()
    first = (await decide(flags, TREATMENT_USER)).decisions
    assert first[0].variation_key == "treatment"
    assert first[0].rule_type == pb.RULE_TYPE_FEATURE_TEST
    assert _variables(first[0]) == {
        "button_color": "green",
        "show_banner": True,
        "max_items": 5,
        "discount": 0.25,
        "layout": {"columns": 2},
    }
    assert first[1].rule_type == pb.RULE_TYPE_ROLLOUT
    assert (await decide(flags, CONTROL_USER)).decisions[0].variation_key == "control"


async def test_decide_for_keys_keeps_request_order_and_answers_unknown_keys_with_an_error(
    flags: Client,
) -> None:
    reply = await decide(
        flags, "u3", ("free_shipping", "no_such_flag", "checkout_redesign"), country="US"
    )
    assert [d.flag_key for d in reply.decisions] == [
        "free_shipping",
        "no_such_flag",
        "checkout_redesign",
    ]
    shipping, unknown, checkout = reply.decisions
    assert (shipping.enabled, shipping.variation_key, shipping.rule_key) == (
        True,
        "on",
        "free_shipping_us",
    )
    assert _variables(shipping) == {"threshold": 0}
    assert unknown.error == 'No flag was found for key "no_such_flag".'
    assert not unknown.enabled and unknown.rule_type == pb.RULE_TYPE_UNSPECIFIED
    assert checkout.rule_key == "checkout_ab" and not checkout.error


async def test_options_each_change_the_answer_as_the_sdk_options_do(flags: Client) -> None:
    only = await decide(flags, "u1", options=(pb.DECIDE_OPTION_ENABLED_FLAGS_ONLY,))
    assert [d.flag_key for d in only.decisions] == ["checkout_redesign"]  # free_shipping off

    plain = await decide(flags, "u4", ("free_shipping",), device="iPhone")
    assert not plain.decisions[0].reasons
    reasons = await decide(
        flags, "u4", ("free_shipping",), (pb.DECIDE_OPTION_INCLUDE_REASONS,), device="iPhone"
    )
    assert reasons.decisions[0].reasons == [
        'User "u4" does not meet audience conditions for targeting rule 1.',
        'User "u4" not bucketed into a targeting rule 2. Checking "Everyone Else" rule now.',
        'User "u4" bucketed into a targeting rule Everyone Else.',
    ]

    bare = await decide(flags, "u1", options=(pb.DECIDE_OPTION_EXCLUDE_VARIABLES,))
    assert [_variables(d) for d in bare.decisions] == [{}, {}]
    assert bare.decisions[0].variation_key == "treatment"


async def test_disable_decision_event_records_and_remembers_nothing(
    flags: Client, receiver: Receiver
) -> None:
    quiet = await decide(flags, "u1", options=(pb.DECIDE_OPTION_DISABLE_DECISION_EVENT,))
    assert quiet.decisions[0].variation_key == "treatment"
    assert not any(d.impression_recorded for d in quiet.decisions)
    tracked = await flags.stub.Track(pb.TrackRequest(event_key="purchase", user_id="u1"))
    assert not tracked.attributions  # nothing remembered
    await receiver.wait_for_events(1)  # the conversion, committed after any impression
    assert _decision_metadata(receiver) == []  # only the conversion went out
    assert len(receiver.visitors) == 1


async def test_a_feature_test_decision_is_remembered_attributed_counted_and_not_repeated(
    flags: Client, receiver: Receiver
) -> None:
    first = await decide(flags, "u1", ("checkout_redesign",))
    assert first.decisions[0].impression_recorded
    again = await decide(flags, "u1", ("checkout_redesign",))
    assert again.decisions[0].variation_key == "treatment"
    assert not again.decisions[0].impression_recorded  # within the TTL: no second event

    tracked = await flags.stub.Track(pb.TrackRequest(event_key="purchase", user_id="u1"))
    assert [(a.experiment_key, a.variation_key) for a in tracked.attributions] == [
        ("checkout_ab", "treatment")
    ]
    results = await flags.stub.GetExperimentResults(
        pb.GetExperimentResultsRequest(experiment_key="checkout_ab")
    )
    counts = {
        v.variation_key: (v.visitors, [e.converters for e in v.events]) for v in results.variations
    }
    assert counts["treatment"] == (1, [1])

    await receiver.wait_for_events(2)
    assert _decision_metadata(receiver) == [
        {
            "flag_key": "checkout_redesign",
            "rule_key": "checkout_ab",
            "rule_type": "feature-test",
            "variation_key": "treatment",
            "enabled": True,
        }
    ]


async def test_a_sticky_decision_outlives_a_traffic_change_unless_the_profile_is_ignored(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with await _client(tmp_path, receiver) as client:
        assert (await decide(client, "u1")).decisions[0].variation_key == "treatment"
        changed = copy.deepcopy(DOCUMENT)
        changed["revision"] = "12"
        changed["experiments"][0]["trafficAllocation"][0]["endOfRange"] = 10000  # all control
        (tmp_path / "datafile.json").write_text(json.dumps(changed))

        async def reloaded() -> bool:
            return (await client.stub.GetConfig(pb.GetConfigRequest())).revision == "12"

        await eventually(reloaded)
        sticky = await decide(client, "u1", ("checkout_redesign",))
        assert sticky.decisions[0].variation_key == "treatment"
        assert not sticky.decisions[0].impression_recorded
        fresh = await decide(
            client,
            "u1",
            ("checkout_redesign",),
            (pb.DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE,),
        )
        assert fresh.decisions[0].variation_key == "control"
        assert fresh.decisions[0].impression_recorded
        # Nor does it save the profile: the user still sticks to treatment.
        assert await variation_of(client, "u1", CHECKOUT) == "treatment"


async def test_rollout_decisions_are_never_attributed_and_sent_only_with_send_flag_decisions(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with await _client(tmp_path / "quiet", receiver) as quiet:
        reply = await decide(quiet, "u3", ("free_shipping",), country="US")
        assert reply.decisions[0].enabled and not reply.decisions[0].impression_recorded
    async with await _client(tmp_path / "sends", receiver, _sending_rollouts()) as sends:
        reply = await decide(sends, "u3", ("free_shipping",), country="US")
        assert reply.decisions[0].impression_recorded
        again = await decide(sends, "u3", ("free_shipping",), country="US")
        assert again.decisions[0].impression_recorded  # the SDK sends one every time
        tracked = await sends.stub.Track(pb.TrackRequest(event_key="purchase", user_id="u3"))
        assert not tracked.attributions
        await receiver.wait_for_events(3)
    assert _decision_metadata(receiver) == 2 * [
        {
            "flag_key": "free_shipping",
            "rule_key": "free_shipping_us",
            "rule_type": "rollout",
            "variation_key": "on",
            "enabled": True,
        }
    ]


async def test_default_decide_options_apply_to_every_call(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with await _client(
        tmp_path, receiver, default_decide_options=("EXCLUDE_VARIABLES", "INCLUDE_REASONS")
    ) as client:
        reply = await decide(client, "u1")
        assert [_variables(d) for d in reply.decisions] == [{}, {}]
        assert all(d.reasons for d in reply.decisions)


async def test_forced_decisions_set_get_remove_and_decide_with_the_sdk_precedence(
    flags: Client,
) -> None:
    stub = flags.stub
    rule = pb.SetForcedDecisionRequest(
        user_id="u1", flag_key="checkout_redesign", rule_key="checkout_ab", variation_key="control"
    )
    await stub.SetForcedDecision(rule)
    got = await stub.GetForcedDecision(
        pb.GetForcedDecisionRequest(
            user_id="u1", flag_key="checkout_redesign", rule_key="checkout_ab"
        )
    )
    assert got.variation_key == "control"
    assert (await decide(flags, "u1", ("checkout_redesign",))).decisions[
        0
    ].variation_key == "control"

    # A forced decision for the whole flag beats one for a rule.
    await stub.SetForcedDecision(
        pb.SetForcedDecisionRequest(user_id="u1", flag_key="checkout_redesign", variation_key="off")
    )
    whole = (await decide(flags, "u1", ("checkout_redesign",))).decisions[0]
    assert (whole.variation_key, whole.rule_key, whole.enabled) == ("off", "", False)
    # A delivery rule's forced decision.
    await stub.SetForcedDecision(
        pb.SetForcedDecisionRequest(
            user_id="u1",
            flag_key="free_shipping",
            rule_key="free_shipping_iphone",
            variation_key="on_iphone",
        )
    )
    shipping = (await decide(flags, "u1", ("free_shipping",))).decisions[0]
    assert (shipping.variation_key, shipping.rule_key) == ("on_iphone", "free_shipping_iphone")

    removed = await stub.RemoveForcedDecision(
        pb.RemoveForcedDecisionRequest(user_id="u1", flag_key="checkout_redesign")
    )
    assert removed.removed
    assert not (
        await stub.RemoveForcedDecision(
            pb.RemoveForcedDecisionRequest(user_id="u1", flag_key="checkout_redesign")
        )
    ).removed
    assert (await decide(flags, "u1", ("checkout_redesign",))).decisions[
        0
    ].variation_key == "control"
    everything = await stub.RemoveAllForcedDecisions(
        pb.RemoveAllForcedDecisionsRequest(user_id="u1")
    )
    assert everything.removed == 2
    assert (await decide(flags, "u1", ("checkout_redesign",))).decisions[
        0
    ].variation_key == "treatment"
    assert not (
        await stub.GetForcedDecision(
            pb.GetForcedDecisionRequest(
                user_id="u1", flag_key="checkout_redesign", rule_key="checkout_ab"
            )
        )
    ).variation_key


async def test_an_empty_user_id_is_invalid_argument(flags: Client) -> None:
    calls = [
        flags.stub.Decide(pb.DecideRequest(user_id="")),
        flags.stub.SetForcedDecision(
            pb.SetForcedDecisionRequest(flag_key="checkout_redesign", variation_key="control")
        ),
        flags.stub.RemoveAllForcedDecisions(pb.RemoveAllForcedDecisionsRequest()),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "user_id" in (failed.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as listed:
        await flags.stub.Decide(pb.DecideRequest(user_id="u", attributes={"a": _list_value()}))
    assert listed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # Activate's rules


async def test_a_forced_variation_key_over_the_key_cap_is_invalid_argument(
    flags: Client,
) -> None:
    """Every key of a forced decision has the key cap, the variation's too (it is stored)."""
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await flags.stub.SetForcedDecision(
            pb.SetForcedDecisionRequest(
                user_id="u", flag_key="checkout_redesign", variation_key="v" * 100_000
            )
        )
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "variation_key" in (failed.value.details() or "")
    got = await flags.stub.GetForcedDecision(
        pb.GetForcedDecisionRequest(user_id="u", flag_key="checkout_redesign")
    )
    assert got.variation_key == ""


async def test_forced_decision_keys_holding_the_separator_round_trip_in_the_local_store(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The local (LMDB) store keeps a forced decision's flag and rule joined by US (\\x1f):
    a flag key holding it is answered as it was set, never as another (flag, rule)."""
    contexts = [("a\x1fb", "c"), ("a", "b\x1fc")]
    async with await _client(tmp_path, receiver, activation_store="local") as connected:
        for flag_key, rule_key in contexts:
            await connected.stub.SetForcedDecision(
                pb.SetForcedDecisionRequest(
                    user_id="u", flag_key=flag_key, rule_key=rule_key, variation_key=flag_key
                )
            )
        for flag_key, rule_key in contexts:
            got = await connected.stub.GetForcedDecision(
                pb.GetForcedDecisionRequest(user_id="u", flag_key=flag_key, rule_key=rule_key)
            )
            assert got.variation_key == flag_key


def _list_value() -> Value:
    value = Value()
    value.list_value.values.add().string_value = "x"
    return value


async def test_get_config_describes_flags_rules_in_decision_order_and_typed_defaults(
    flags: Client,
) -> None:
    config = await flags.stub.GetConfig(pb.GetConfigRequest())
    checkout, shipping = config.flags
    assert checkout.key == "checkout_redesign" and checkout.id == "7401"
    assert [(r.key, r.type) for r in checkout.rules] == [
        ("checkout_ab", pb.RULE_TYPE_FEATURE_TEST),
        ("default-rollout-7401", pb.RULE_TYPE_ROLLOUT),
    ]
    assert [v.key for v in checkout.rules[0].variations] == ["control", "treatment"]
    defaults = {
        v.key: (v.type, json_format.MessageToDict(v.default_value)) for v in checkout.variables
    }
    assert defaults == {
        "button_color": ("string", "blue"),
        "show_banner": ("boolean", False),
        "max_items": ("integer", 3),
        "discount": ("double", 0.1),
        "layout": ("json", {"columns": 1}),
    }
    assert [r.key for r in shipping.rules] == [
        "free_shipping_us",
        "free_shipping_iphone",
        "default-rollout-7402",
    ]


async def test_a_decides_delivered_event_is_the_sdks_field_for_field(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The Event API payload trackd delivers for one Decide equals what optimizely-sdk sends
    for the same decide, uuid, timestamp, client name and the attributes' order aside."""
    for document, flag_key, attributes in (
        (DOCUMENT, "checkout_redesign", {"device": "iPhone", "country": "FR"}),
        (_sending_rollouts(), "free_shipping", {"country": "US"}),
    ):
        before = len(receiver.received)
        async with await _client(tmp_path / flag_key, receiver, document) as client:
            await decide(client, "u1", (flag_key,), **attributes)
            await receiver.wait_until(lambda r, before=before: len(r.received) > before)
        (delivered,) = receiver.received[before:]
        dispatched = CapturingDispatcher()
        sdk = sdk_client(json.dumps(document), dispatched)
        sdk.create_user_context("u1", dict(attributes)).decide(flag_key)
        sdk.close()
        (sent,) = dispatched.events
        ours, theirs = delivered_payload(delivered), sdk_payload(sent.params)
        for payload in (ours, theirs):
            without_uuids_and_timestamps(payload)
            for visitor in payload["visitors"]:
                # A protobuf map keeps no order, so the attributes reach trackd in any order.
                visitor["attributes"].sort(key=lambda attribute: attribute["key"])
        assert ours == theirs


async def test_with_the_redis_store_unreachable_decide_goes_on_and_sends_at_least_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with await _client(
        tmp_path, receiver, activation_store="redis://127.0.0.1:9/0"
    ) as client:
        for _ in range(2):  # nothing can be remembered: each decide sends its event
            reply = await decide(client, "u1", (CHECKOUT,))
            assert reply.decisions[0].variation_key == "treatment"
            assert reply.decisions[0].impression_recorded
        tracked = await client.stub.Track(pb.TrackRequest(event_key="purchase", user_id="u1"))
        assert tracked.attribution_unknown and not tracked.attributions
        await receiver.wait_for_events(3)


# The body trackd delivered for the Decide of the test below before a call's decision events
# were stored as one record, each its own fourteen-field impression in the row (its client
# version written as VERSION).
_DELIVERED_BEFORE_ONE_RECORD = (
    b'{"account_id":"7001","project_id":"7002","revision":"11","client_name":"trackd","cli'
    b'ent_version":"VERSION","anonymize_ip":true,"enrich_decisions":true,"visitors":[{"sna'
    b'pshots":[{"events":[{"entity_id":"7309","uuid":"df192d6d-a3c3-4175-b627-82275040e6d4'
    b'","key":"campaign_activated","timestamp":1700000000123}],"decisions":[{"campaign_id"'
    b':"7309","experiment_id":"7301","variation_id":null,"metadata":{"flag_key":"checkout_'
    b'redesign","rule_key":"checkout_ab","rule_type":"feature-test","variation_key":"treat'
    b'ment","enabled":true}}]}],"attributes":[{"entity_id":"7102","key":"country","type":"'
    b'custom","value":"US"},{"entity_id":"$opt_bot_filtering","key":"$opt_bot_filtering","'
    b'type":"custom","value":false}],"visitor_id":"u1"},{"snapshots":[{"events":[{"entity_'
    b'id":"7529","uuid":"4937835c-ac9f-49dd-9b2b-dd060000afa9","key":"campaign_activated",'
    b'"timestamp":1700000000123}],"decisions":[{"campaign_id":"7529","experiment_id":"7521'
    b'","variation_id":null,"metadata":{"flag_key":"free_shipping","rule_key":"free_shippi'
    b'ng_us","rule_type":"rollout","variation_key":"on","enabled":true}}]}],"attributes":['
    b'{"entity_id":"7102","key":"country","type":"custom","value":"US"},{"entity_id":"$opt'
    b'_bot_filtering","key":"$opt_bot_filtering","type":"custom","value":false}],"visitor_'
    b'id":"u1"}]}'
)


async def test_a_decides_delivered_bytes_are_those_before_one_record_a_call(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Decide's decision events, stored as one record and expanded by the encoder process,
    are delivered byte for byte as when each was its own record: the same seed and clock
    give the same uuids, fields and JSON."""
    monkeypatch.setattr(decisions, "new_seed", lambda: 0x0123456789ABCDEF0123456789ABCDEF)
    monkeypatch.setattr(tracking.Tracker, "_now_ms", lambda self: 1_700_000_000_123)
    async with await _client(tmp_path, receiver, _sending_rollouts()) as client:
        await decide(client, "u1", country="US")
        await receiver.wait_for_events(2)
    (request,) = receiver.requests
    delivered = request.body.replace(f'"{__version__}"'.encode(), b'"VERSION"')
    assert delivered == _DELIVERED_BEFORE_ONE_RECORD


async def test_a_decides_undelivered_events_count_one_by_one_in_the_outbox_depth(
    tmp_path: Path,
) -> None:
    """Three Decides of two flags that both send: six events waiting in the outbox, as the
    depth metric says, though each call's are stored as one record."""
    path = tmp_path / "datafile.json"
    path.write_text(json.dumps(_sending_rollouts()))
    settings = settings_for(
        tmp_path / "data",
        datafile=path,
        metrics_listen="127.0.0.1:0",
        event_endpoint="http://127.0.0.1:9/unreachable",  # discard port: nothing listens
    )
    async with client_for(settings) as client:
        for user_id in ("u1", "u2", "u3"):
            await decide(client, user_id, country="US")
        assert client.daemon.metrics_port
        samples = await scrape(client.daemon.metrics_port)
        assert value(samples, "trackd_outbox_depth_events") == 6

"""Activate, GetVariation, forced variations and GetConfig over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.struct_pb2 import Value

from tests.support.daemon import Client, client_for, settings_for
from tests.support.oracle import sdk_client
from trackd.v1 import tracking_service_pb2 as pb

DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"


@pytest.fixture
async def test_client(tmp_path: Path) -> AsyncIterator[Client]:
    async with client_for(settings_for(tmp_path, datafile=DATAFILE)) as connected:
        yield connected


def attrs(**kwargs: object) -> dict[str, Value]:
    out = {}
    for key, value in kwargs.items():
        v = Value()
        if isinstance(value, bool):
            v.bool_value = value
        elif isinstance(value, (int, float)):
            v.number_value = value
        elif value is None:
            v.null_value = 0
        else:
            v.string_value = str(value)
        out[key] = v
    return out


async def test_activate_matches_the_optimizely_sdk_for_200_users(test_client: Client) -> None:
    sdk = sdk_client(DATAFILE.read_text())
    for experiment_key in ("ab_running", "ab_iphone", "grp_a", "grp_b", "paused_exp"):
        for n in range(200):
            user_id = f"user-{n}"
            device = "iPhone" if n % 3 else "Android"
            reply = await test_client.stub.Activate(
                pb.ActivateRequest(
                    experiment_key=experiment_key, user_id=user_id, attributes=attrs(device=device)
                )
            )
            expected = sdk.get_variation(experiment_key, user_id, {"device": device})
            assert reply.variation_key == (expected or ""), (experiment_key, user_id)


async def test_activate_records_one_impression_then_is_sticky(test_client: Client) -> None:
    request = pb.ActivateRequest(experiment_key="ab_running", user_id="alice")
    first = await test_client.stub.Activate(request)
    assert first.variation_key in ("variation_a", "variation_b")
    assert first.reason == pb.DECISION_REASON_BUCKETED
    assert first.impression_recorded
    assert first.experiment_id == "40001"
    assert first.revision == "7"
    second = await test_client.stub.Activate(request)
    assert second.variation_key == first.variation_key
    assert second.reason == pb.DECISION_REASON_STICKY
    assert not second.impression_recorded


async def test_get_variation_neither_records_nor_caches(test_client: Client) -> None:
    decided = await test_client.stub.GetVariation(
        pb.GetVariationRequest(experiment_key="ab_running", user_id="bob")
    )
    assert decided.reason == pb.DECISION_REASON_BUCKETED
    activated = await test_client.stub.Activate(
        pb.ActivateRequest(experiment_key="ab_running", user_id="bob")
    )
    # Had GetVariation written the cache, this Activate would be sticky with no impression.
    assert activated.reason == pb.DECISION_REASON_BUCKETED
    assert activated.impression_recorded
    assert activated.variation_key == decided.variation_key
    after = await test_client.stub.GetVariation(
        pb.GetVariationRequest(experiment_key="ab_running", user_id="bob")
    )
    assert after.reason == pb.DECISION_REASON_STICKY


async def test_reasons_for_users_not_in_a_variation(test_client: Client) -> None:
    paused = await test_client.stub.Activate(
        pb.ActivateRequest(experiment_key="paused_exp", user_id="carol")
    )
    assert (paused.variation_key, paused.reason) == ("", pb.DECISION_REASON_NOT_RUNNING)
    assert not paused.impression_recorded
    android = await test_client.stub.Activate(
        pb.ActivateRequest(
            experiment_key="ab_iphone", user_id="carol", attributes=attrs(device="Android")
        )
    )
    assert (android.variation_key, android.reason) == ("", pb.DECISION_REASON_AUDIENCE_MISMATCH)
    slots = set()
    for n in range(40):
        reply = await test_client.stub.GetVariation(
            pb.GetVariationRequest(experiment_key="grp_a", user_id=f"g-{n}")
        )
        slots.add(reply.reason)
    assert slots == {pb.DECISION_REASON_BUCKETED, pb.DECISION_REASON_NOT_IN_GROUP_SLOT}


async def test_whitelist_and_forced_variations(test_client: Client) -> None:
    stub = test_client.stub
    vip = await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="vip_user"))
    assert (vip.variation_key, vip.reason) == ("variation_b", pb.DECISION_REASON_WHITELISTED)

    natural = await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="dan"))
    other = "variation_a" if natural.variation_key == "variation_b" else "variation_b"
    forced = await stub.SetForcedVariation(
        pb.SetForcedVariationRequest(
            experiment_key="ab_running", user_id="dan", variation_key=other
        )
    )
    assert forced.variation_key == other
    got = await stub.GetForcedVariation(
        pb.GetForcedVariationRequest(experiment_key="ab_running", user_id="dan")
    )
    assert got.variation_key == other
    # A forced variation beats the sticky activation, and is a new impression.
    reply = await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="dan"))
    assert (reply.variation_key, reply.reason) == (other, pb.DECISION_REASON_FORCED)
    assert reply.impression_recorded
    tracked = await stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="dan"))
    assert [(a.experiment_key, a.variation_key) for a in tracked.attributions] == [
        ("ab_running", other)
    ]

    await stub.SetForcedVariation(
        pb.SetForcedVariationRequest(experiment_key="ab_running", user_id="dan")
    )
    cleared = await stub.GetForcedVariation(
        pb.GetForcedVariationRequest(experiment_key="ab_running", user_id="dan")
    )
    assert cleared.variation_key == ""
    # Conversions meanwhile were attributed to the forced variation; once the forcing ends the
    # user is decided afresh, as the Optimizely SDK (which never saves a forced decision to its
    # user profile) decides: not stuck in the forced variation.
    after = await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="dan"))
    assert (after.variation_key, after.reason) == (
        natural.variation_key,
        pb.DECISION_REASON_BUCKETED,
    )
    assert after.impression_recorded
    again = await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="dan"))
    assert (again.reason, again.impression_recorded) == (pb.DECISION_REASON_STICKY, False)
    # A whitelisted user repeats without a second impression, but is never sticky.
    vip_again = await stub.Activate(
        pb.ActivateRequest(experiment_key="ab_running", user_id="vip_user")
    )
    assert (vip_again.reason, vip_again.impression_recorded) == (
        pb.DECISION_REASON_WHITELISTED,
        False,
    )


async def test_unknown_and_empty_keys_get_clear_statuses(test_client: Client) -> None:
    stub = test_client.stub
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.Activate(pb.ActivateRequest(experiment_key="nope", user_id="u"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (unknown.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as empty_key:
        await stub.Activate(pb.ActivateRequest(experiment_key="", user_id="u"))
    assert empty_key.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(grpc.aio.AioRpcError) as empty_user:
        await stub.GetVariation(pb.GetVariationRequest(experiment_key="ab_running", user_id=""))
    assert empty_user.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(grpc.aio.AioRpcError) as bad_variation:
        await stub.SetForcedVariation(
            pb.SetForcedVariationRequest(
                experiment_key="ab_running", user_id="u", variation_key="missing"
            )
        )
    assert bad_variation.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_and_struct_attributes_are_invalid(test_client: Client) -> None:
    listed = Value()
    listed.list_value.values.add().string_value = "x"
    nested = Value()
    nested.struct_value.fields["a"].number_value = 1
    for value in (listed, nested):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await test_client.stub.Activate(
                pb.ActivateRequest(
                    experiment_key="ab_running", user_id="u", attributes={"device": value}
                )
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "device" in (error.value.details() or "")


async def test_oversized_input_is_refused(test_client: Client) -> None:
    stub = test_client.stub
    with pytest.raises(grpc.aio.AioRpcError) as long_user:
        await stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="u" * 5000))
    assert long_user.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    many = attrs(**{f"a{n}": n for n in range(101)})
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await stub.Activate(
            pb.ActivateRequest(experiment_key="ab_running", user_id="u", attributes=many)
        )
    assert too_many.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    with pytest.raises(grpc.aio.AioRpcError) as huge:
        await stub.Activate(
            pb.ActivateRequest(
                experiment_key="ab_running", user_id="u", attributes=attrs(blob="x" * 5_000_000)
            )
        )
    assert huge.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The daemon is still answering.
    ok = await stub.GetVariation(pb.GetVariationRequest(experiment_key="ab_running", user_id="u"))
    assert ok.variation_key


async def test_get_config_describes_the_live_datafile(test_client: Client) -> None:
    config = await test_client.stub.GetConfig(pb.GetConfigRequest())
    assert (config.revision, config.account_id, config.project_id) == ("7", "12001", "12002")
    assert config.datafile_version == "4"
    assert config.loaded_at.seconds > 0
    by_key = {e.key: e for e in config.experiments}
    assert set(by_key) == {"ab_running", "ab_iphone", "paused_exp", "grp_a", "grp_b"}
    assert not by_key["paused_exp"].running
    assert by_key["grp_a"].group_id == "50001"
    assert [v.key for v in by_key["ab_running"].variations] == ["variation_a", "variation_b"]
    assert {e.key for e in config.events} == {"my_conversion", "signup", "purchase"}
    assert {a.key: a.id for a in config.attributes} == {"device": "20001", "ad_source": "20002"}


async def test_watch_config_sends_the_current_config_first(test_client: Client) -> None:
    call = test_client.stub.WatchConfig(pb.WatchConfigRequest())
    first = await call.read()
    assert first.config.revision == "7"
    call.cancel()

"""Datafile sources against a live daemon: a watched file (edit, atomic rename, Kubernetes
symlink swap), a polled URL with ETags, an SDK key; bad datafiles never replace good ones."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from tests.support.daemon import Client, client_for, settings_for
from tests.support.datafile_server import DatafileServer
from tests.support.polling import eventually
from trackd.v1 import tracking_service_pb2 as pb

DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"
DEADLINE = 2.0  # the promise: a change is served within 2 s


def datafile(revision: str, *, drop_experiment: str | None = None) -> bytes:
    data: dict[str, Any] = json.loads(DATAFILE.read_text())
    data["revision"] = revision
    if drop_experiment:
        data["experiments"] = [e for e in data["experiments"] if e["key"] != drop_experiment]
    return json.dumps(data).encode()


def replace_atomically(path: Path, content: bytes) -> None:
    staged = path.with_name(path.name + ".tmp")
    staged.write_bytes(content)
    os.replace(staged, path)


async def revision(client: Client) -> str:
    return (await client.stub.GetConfig(pb.GetConfigRequest())).revision


async def health_status(client: Client) -> int:
    stub = health_pb2_grpc.HealthStub(client.channel)
    return (await stub.Check(health_pb2.HealthCheckRequest())).status


async def test_an_atomic_rename_is_served_within_2_s_and_streamed_to_watchers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "datafile.json"
    path.write_bytes(datafile("100"))
    async with client_for(settings_for(tmp_path, datafile=path)) as client:
        watch = client.stub.WatchConfig(pb.WatchConfigRequest())
        assert (await watch.read()).config.revision == "100"
        before = (await client.stub.GetConfig(pb.GetConfigRequest())).loaded_at.ToNanoseconds()

        replace_atomically(path, datafile("101"))
        async with asyncio.timeout(DEADLINE):
            pushed = await watch.read()
        assert pushed.config.revision == "101"
        config = await client.stub.GetConfig(pb.GetConfigRequest())
        assert config.revision == "101"
        assert config.loaded_at.ToNanoseconds() > before
        watch.cancel()


async def test_an_edit_in_place_is_served_within_2_s(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_bytes(datafile("200"))
    async with client_for(settings_for(tmp_path, datafile=path)) as client:
        path.write_bytes(datafile("201-with-a-longer-revision"))

        async def served() -> bool:
            return await revision(client) == "201-with-a-longer-revision"

        await eventually(served, within=DEADLINE)


async def test_a_kubernetes_configmap_symlink_swap_is_served_within_2_s(tmp_path: Path) -> None:
    # The layout the kubelet writes: file -> ..data/file, ..data -> ..<timestamp> directory,
    # and an update points ..data at a new directory with one rename.
    mount = tmp_path / "config"
    (mount / "..2024_01_01").mkdir(parents=True)
    (mount / "..2024_01_01" / "datafile.json").write_bytes(datafile("300"))
    (mount / "..data").symlink_to("..2024_01_01")
    (mount / "datafile.json").symlink_to("..data/datafile.json")
    async with client_for(settings_for(tmp_path, datafile=mount / "datafile.json")) as client:
        assert await revision(client) == "300"
        (mount / "..2024_01_02").mkdir()
        (mount / "..2024_01_02" / "datafile.json").write_bytes(datafile("301"))
        (mount / "..data_tmp").symlink_to("..2024_01_02")
        os.replace(mount / "..data_tmp", mount / "..data")

        async def served() -> bool:
            return await revision(client) == "301"

        await eventually(served, within=DEADLINE)


async def test_a_corrupt_replacement_is_kept_out_while_serving_continues(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_bytes(datafile("400"))
    async with client_for(settings_for(tmp_path, datafile=path)) as client:
        reloader = client.daemon.reloader
        with capture_logs() as logs:
            replace_atomically(path, b'{"version": "4", "revision": "broken"')

            async def rejected() -> bool:
                return reloader.failures["invalid"] == 1

            await eventually(rejected)
        failures = [line for line in logs if line["event"] == "datafile_reload_failed"]
        assert len(failures) == 1
        assert failures[0]["reason"] == "invalid"
        assert "JSON" in failures[0]["detail"]
        assert failures[0]["log_level"] == "warning"

        assert await revision(client) == "400"
        assert await health_status(client) == health_pb2.HealthCheckResponse.SERVING
        reply = await client.stub.Activate(
            pb.ActivateRequest(experiment_key="ab_running", user_id="u1")
        )
        assert reply.variation_key and reply.revision == "400"

        # A valid datafile after the bad one is taken as usual.
        replace_atomically(path, datafile("401"))

        async def recovered() -> bool:
            return await revision(client) == "401"

        await eventually(recovered)
        assert reloader.failures["invalid"] == 1


async def test_a_vanished_file_keeps_the_running_datafile(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_bytes(datafile("500"))
    async with client_for(settings_for(tmp_path, datafile=path)) as client:
        reloader = client.daemon.reloader
        path.unlink()

        async def noticed() -> bool:
            return reloader.failures["unreadable"] == 1

        await eventually(noticed)
        assert await revision(client) == "500"
        assert await health_status(client) == health_pb2.HealthCheckResponse.SERVING


async def test_a_reload_drops_activations_of_experiments_that_left(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_bytes(datafile("600"))
    async with client_for(settings_for(tmp_path, datafile=path)) as client:
        await client.stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="u1"))
        with capture_logs() as logs:
            replace_atomically(path, datafile("601", drop_experiment="ab_running"))

            async def loaded() -> bool:
                return await revision(client) == "601"

            await eventually(loaded)

            def dropped() -> list[dict[str, Any]]:  # logged once the drop, after serving, ends
                return [
                    x
                    for x in logs
                    if (x["event"], x.get("revision")) == ("activations_dropped", "601")
                ]

            await eventually(lambda: bool(dropped()))
        [line] = [line for line in logs if line["event"] == "datafile_loaded"]
        assert (line["revision"], line["previous_revision"]) == ("601", "600")
        assert [line["dropped"] for line in dropped()] == [1]
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await client.stub.Activate(
                pb.ActivateRequest(experiment_key="ab_running", user_id="u1")
            )
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_url_polling_uses_etags_and_serves_a_new_datafile(tmp_path: Path) -> None:
    async with DatafileServer(datafile("700"), etag='"v700"') as cdn:
        settings = settings_for(tmp_path, datafile_url=cdn.url, datafile_poll_interval=0.05)
        async with client_for(settings) as client:

            async def serving() -> bool:
                return await health_status(client) == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving)
            assert await revision(client) == "700"
            await cdn.wait_for_requests(3)
            first, second = cdn.requests[0], cdn.requests[1]
            assert (first.if_none_match, first.status) == (None, 200)
            assert (second.if_none_match, second.status) == ('"v700"', 304)

            cdn.publish(datafile("701"), '"v701"')

            async def served() -> bool:
                return await revision(client) == "701"

            await eventually(served, within=DEADLINE)
            reloader = client.daemon.reloader
            assert reloader.reloads == 2


async def test_from_a_url_health_is_not_serving_until_the_first_datafile(tmp_path: Path) -> None:
    async with DatafileServer(datafile("800"), etag='"v800"') as cdn:
        cdn.status = 503
        settings = settings_for(tmp_path, datafile_url=cdn.url, datafile_poll_interval=0.05)
        async with client_for(settings) as client:
            await cdn.wait_for_requests(1)
            assert await health_status(client) == health_pb2.HealthCheckResponse.NOT_SERVING
            for call in (
                client.stub.GetConfig(pb.GetConfigRequest()),
                client.stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="u")),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as waiting:
                    await call
                assert waiting.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "no datafile loaded yet" in (waiting.value.details() or "")
            reloader = client.daemon.reloader
            assert reloader.failures["fetch"] >= 1

            cdn.publish(datafile("800"), '"v800"')

            async def serving() -> bool:
                return await health_status(client) == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving)
            assert await revision(client) == "800"


async def test_a_corrupt_datafile_at_the_url_is_rejected_once(tmp_path: Path) -> None:
    async with DatafileServer(datafile("900"), etag='"v900"') as cdn:
        settings = settings_for(tmp_path, datafile_url=cdn.url, datafile_poll_interval=0.05)
        async with client_for(settings) as client:
            reloader = client.daemon.reloader

            async def loaded() -> bool:
                return reloader.reloads == 1

            await eventually(loaded)
            cdn.publish(b"<html>oops</html>", '"broken"')
            seen = len(cdn.requests)
            await cdn.wait_for_requests(seen + 5)  # several polls of the same bad datafile
            assert reloader.failures["invalid"] == 1  # the ETag turns repeats into 304s
            assert await revision(client) == "900"
            assert await health_status(client) == health_pb2.HealthCheckResponse.SERVING


async def test_an_sdk_key_polls_its_url_from_the_template(tmp_path: Path) -> None:
    async with DatafileServer(datafile("1000"), path="/datafiles/SDKKEY123.json") as cdn:
        settings = settings_for(
            tmp_path,
            sdk_key="SDKKEY123",
            datafile_url_template=cdn.base + "/datafiles/{sdk_key}.json",
            datafile_poll_interval=0.05,
        )
        async with client_for(settings) as client:

            async def serving() -> bool:
                return await health_status(client) == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving)
            assert await revision(client) == "1000"
            assert cdn.requests[0].path == "/datafiles/SDKKEY123.json"


async def test_rpcs_are_answered_while_a_new_datafile_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The parse is held until an Activate has been answered: were it on the event loop,
    # the Activate could never be answered and the timeout below would fail the test.
    import threading

    import trackd.sources.reloader

    release = threading.Event()
    real_parse = trackd.sources.reloader.parse_datafile

    def held_parse(data: bytes) -> Any:
        assert release.wait(timeout=10), "no RPC was answered while the datafile was parsed"
        return real_parse(data)

    async with client_for(settings_for(tmp_path, datafile=DATAFILE)) as client:
        monkeypatch.setattr(trackd.sources.reloader, "parse_datafile", held_parse)  # after start-up
        reloader = client.daemon.reloader
        reload = asyncio.create_task(reloader.offer(datafile("202"), "test"))
        async with asyncio.timeout(5):
            reply = await client.stub.GetConfig(pb.GetConfigRequest())
        assert reply.revision != "202"  # answered from the old datafile, mid-parse
        release.set()
        assert await asyncio.wait_for(reload, 10)
        assert await revision(client) == "202"

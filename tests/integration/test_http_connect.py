"""The HTTP port (--http-listen) of a real daemon: Connect calls to the TrackingService as
JSON and as binary protobuf, called with httpx, answered from the same decisions and
activation cache as gRPC; /healthz and /readyz for HTTP load balancers."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from tests.support.certs import make_certificates
from tests.support.daemon import Client, client_for, settings_for, spawn
from tests.support.datafile_server import DatafileServer
from tests.support.http_port import client as client  # the fixture
from tests.support.polling import eventually
from tests.support.redis_server import free_port, redis_server
from trackd.server import running
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

ROUTE = "/trackd.v1.TrackingService/"
README = Path(__file__).resolve().parents[2] / "README.md"
DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"


@pytest.fixture
async def http(client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """httpx on the daemon's HTTP port, without Agent's header: Connect needs none."""
    async with httpx.AsyncClient(base_url=client.http_url, timeout=10) as connected:
        yield connected


async def call_json(http: httpx.AsyncClient, rpc: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(ROUTE + rpc, json=body)


async def test_activate_as_json_answers_what_grpc_answers(
    client: Client, http: httpx.AsyncClient
) -> None:
    body = {"experimentKey": "checkout_flow", "userId": "ann", "attributes": {"device": "iPhone"}}
    reply = await call_json(http, "Activate", body)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    activated = reply.json()
    assert activated["experimentKey"] == "checkout_flow"
    assert activated["variationKey"]
    assert activated["reason"] == "DECISION_REASON_BUCKETED"
    assert activated["impressionRecorded"] is True
    by_grpc = await client.stub.GetVariation(
        pb.GetVariationRequest(experiment_key="checkout_flow", user_id="ann")
    )
    assert by_grpc.variation_key == activated["variationKey"]
    # Remembered: a second Activate records no second impression, on either transport.
    again = await client.stub.Activate(
        pb.ActivateRequest(experiment_key="checkout_flow", user_id="ann")
    )
    assert again.impression_recorded is False


async def test_activate_over_http_attributes_a_track_over_grpc_and_back(
    client: Client, http: httpx.AsyncClient
) -> None:
    """One activation cache: what HTTP activates, gRPC's Track attributes, and the reverse."""
    activated = (
        await call_json(http, "Activate", {"experimentKey": "checkout_flow", "userId": "bea"})
    ).json()
    tracked = await client.stub.Track(pb.TrackRequest(event_key="add_to_cart", user_id="bea"))
    assert [(a.experiment_key, a.variation_key) for a in tracked.attributions] == [
        ("checkout_flow", activated["variationKey"])
    ]

    by_grpc = await client.stub.Activate(
        pb.ActivateRequest(experiment_key="checkout_flow", user_id="cal")
    )
    reply = await call_json(
        http, "Track", {"eventKey": "add_to_cart", "userId": "cal", "tags": {"revenue": 4200}}
    )
    assert reply.status_code == 200
    attributions = reply.json()["attributions"]
    assert [(a["experimentKey"], a["variationKey"]) for a in attributions] == [
        ("checkout_flow", by_grpc.variation_key)
    ]
    assert reply.json()["uuid"]
    # Nothing activated for this user: the conversion is stored, attributed to nothing.
    unattributed = await call_json(http, "Track", {"eventKey": "add_to_cart", "userId": "dee"})
    assert unattributed.status_code == 200
    assert "attributions" not in unattributed.json()


async def test_decide_and_get_config_as_json(client: Client, http: httpx.AsyncClient) -> None:
    # Nothing recorded or remembered, so both transports' answers are the same decision.
    flags, options = ["checkout_redesign", "no_such_flag"], ["DECIDE_OPTION_DISABLE_DECISION_EVENT"]
    body = {"userId": "eve", "flagKeys": flags, "options": options}
    reply = await call_json(http, "Decide", body)
    assert reply.status_code == 200
    decided = reply.json()
    by_grpc = await client.stub.Decide(
        pb.DecideRequest(
            user_id="eve", flag_keys=flags, options=[pb.DecideOption.Value(options[0])]
        )
    )
    assert decided == json_format.MessageToDict(by_grpc)
    assert [d["flagKey"] for d in decided["decisions"]] == ["checkout_redesign", "no_such_flag"]
    assert decided["decisions"][1]["error"]

    config = await call_json(http, "GetConfig", {})
    assert config.status_code == 200
    assert config.json()["revision"] == client.daemon.live.config.revision
    assert "checkout_flow" in {e["key"] for e in config.json()["experiments"]}


async def test_binary_protobuf_calls(client: Client, http: httpx.AsyncClient) -> None:
    request = pb.ActivateRequest(experiment_key="checkout_flow", user_id="fay")
    reply = await http.post(
        ROUTE + "Activate",
        content=request.SerializeToString(),
        headers={"content-type": "application/proto"},
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/proto"
    activated = pb.ActivateResponse.FromString(reply.content)
    assert activated.experiment_key == "checkout_flow"
    assert activated.variation_key

    track = pb.TrackRequest(event_key="add_to_cart", user_id="fay")
    reply = await http.post(
        ROUTE + "Track",
        content=track.SerializeToString(),
        headers={"content-type": "application/proto"},
    )
    tracked = pb.TrackResponse.FromString(reply.content)
    assert [a.variation_key for a in tracked.attributions] == [activated.variation_key]


@pytest.mark.parametrize(
    ("rpc", "body", "status", "code", "words"),
    [
        ("Activate", {"experimentKey": "nope", "userId": "u"}, 404, "not_found", "'nope'"),
        ("Activate", {"experimentKey": "checkout_flow"}, 400, "invalid_argument", "user_id"),
        ("Track", {"eventKey": "no_event", "userId": "u"}, 404, "not_found", "'no_event'"),
        (
            "Activate",
            {"experimentKey": "checkout_flow", "userId": "u", "attributes": {"a": [1]}},
            400,
            "invalid_argument",
            "attribute",
        ),
    ],
)
async def test_domain_errors_get_their_connect_code_and_message(
    http: httpx.AsyncClient, rpc: str, body: dict[str, Any], status: int, code: str, words: str
) -> None:
    reply = await call_json(http, rpc, body)
    assert reply.status_code == status
    error = reply.json()
    assert error["code"] == code
    assert words in error["message"]
    assert "Traceback" not in reply.text


async def test_an_unexpected_error_is_internal_with_nothing_of_it_shown(
    client: Client, http: httpx.AsyncClient
) -> None:
    async def broken(*args: object) -> NoReturn:
        raise RuntimeError("secret detail")

    client.daemon.tracker.activate = broken  # type: ignore[method-assign,assignment]
    reply = await call_json(http, "Activate", {"experimentKey": "checkout_flow", "userId": "u"})
    assert reply.status_code == 500
    assert reply.json() == {"code": "internal", "message": "internal error; see the daemon's log"}


async def test_undecodable_input_is_invalid_argument(http: httpx.AsyncClient) -> None:
    for content, kind in (
        (b"{not json", "application/json"),
        (b"\xff\xfe", "application/json"),  # not UTF-8
        (b"\xff\xff", "application/proto"),
    ):
        reply = await http.post(ROUTE + "Activate", content=content, headers={"content-type": kind})
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_argument"
        assert "Traceback" not in reply.text


async def test_a_body_over_max_message_bytes_is_refused_before_it_is_all_sent(
    tmp_path: Path,
) -> None:
    """The answer comes once the limit is passed, while the caller still has megabytes to
    send: nothing reads a body of any size into memory first. Gzip bodies are capped as
    inflated too (tests/unit/test_connect_codecs.py)."""
    settings = settings_for(tmp_path, http_listen="127.0.0.1:0", max_message_bytes=64 * 1024)
    async with client_for(settings) as client:
        assert client.daemon.http_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", client.daemon.http_port)
        writer.write(
            f"POST {ROUTE}Activate HTTP/1.1\r\nhost: trackd\r\n"
            "content-type: application/proto\r\ncontent-length: 10000000\r\n\r\n".encode()
        )
        writer.write(bytes(70 * 1024))  # past the limit, and far from the announced length
        await writer.drain()
        async with asyncio.timeout(10):  # a hang guard: without the cap no answer comes
            head = await reader.readuntil(b"\r\n\r\n")
            chunked = await reader.readuntil(b"\r\n0\r\n\r\n")  # one chunk, then the end
        writer.close()
    assert head.startswith(b"HTTP/1.1 429 ")
    error = json.loads(chunked.split(b"\r\n")[1])
    assert error["code"] == "resource_exhausted"
    assert "limit of 65536 bytes" in error["message"]


async def test_unknown_json_fields_are_ignored_as_binary_protobuf_ignores_them(
    http: httpx.AsyncClient,
) -> None:
    """A newer caller's added field does not break this daemon (as connect-go reads JSON)."""
    body = {"experimentKey": "checkout_flow", "userId": "gus", "addedLater": 1}
    reply = await call_json(http, "Activate", body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["experimentKey"] == "checkout_flow"


def envelope(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


async def test_watch_config_streams_the_current_config(
    client: Client, http: httpx.AsyncClient
) -> None:
    """Connect server streaming: each message an envelope (flags, length, JSON)."""
    async with http.stream(
        "POST",
        ROUTE + "WatchConfig",
        content=envelope(b"{}"),
        headers={"content-type": "application/connect+json"},
    ) as reply:
        assert reply.status_code == 200
        flags, message = await Envelopes(reply).next()
    assert flags == 0
    first = json.loads(message)
    assert first["config"]["revision"] == client.daemon.live.config.revision


class Envelopes:
    """Reads a streamed Connect reply one envelope at a time: (flags, message)."""

    def __init__(self, reply: httpx.Response) -> None:
        self._chunks = reply.aiter_bytes()
        self._buffer = b""

    async def next(self) -> tuple[int, bytes]:
        while len(self._buffer) < 5 or len(self._buffer) < 5 + self._length():
            self._buffer += await anext(self._chunks)
        flags, length = struct.unpack(">BI", self._buffer[:5])
        message, self._buffer = self._buffer[5 : 5 + length], self._buffer[5 + length :]
        return flags, message

    def _length(self) -> int:
        length: int = struct.unpack(">I", self._buffer[1:5])[0]
        return length


async def test_http_and_grpc_watch_config_share_the_stream_cap_and_end_at_shutdown(
    tmp_path: Path,
) -> None:
    """One --max-concurrent-streams for both ports; the daemon's shutdown (the interceptor's
    close) ends an HTTP WatchConfig as it ends a gRPC one, instead of holding the drain."""
    settings = settings_for(tmp_path, http_listen="127.0.0.1:0", max_concurrent_streams=1)
    watch = {"content": envelope(b"{}"), "headers": {"content-type": "application/connect+json"}}
    async with (
        client_for(settings) as client,
        httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
        http.stream("POST", ROUTE + "WatchConfig", **watch) as watching,
    ):
        interceptor = client.daemon.endpoint.interceptor
        envelopes = Envelopes(watching)
        assert (await envelopes.next())[0] == 0
        assert interceptor.open_streams == 1

        refused = await http.post(ROUTE + "WatchConfig", **watch)
        assert b"resource_exhausted" in refused.content
        by_grpc = client.stub.WatchConfig(pb.WatchConfigRequest())
        with pytest.raises(grpc.aio.AioRpcError) as full:
            await by_grpc.read()
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        interceptor.close()
        flags, end = await envelopes.next()
        assert flags == 2  # Connect's end of stream, with no error in it
        assert "error" not in json.loads(end)
        await eventually(lambda: interceptor.open_streams == 0)


def envelopes_of(data: bytes) -> list[tuple[int, Any]]:
    """A whole streamed Connect JSON reply: (flags, message) for each envelope."""
    found = []
    while data:
        flags, length = struct.unpack(">BI", data[:5])
        found.append((flags, json.loads(data[5 : 5 + length])))
        data = data[5 + length :]
    return found


async def test_track_stream_over_http_acknowledges_each_batch_with_its_errors(
    client: Client, http: httpx.AsyncClient
) -> None:
    """Connect bidirectional streaming, half-duplex as HTTP/1.1 carries it: the batches in
    one body, their acknowledgements in the answer, in order, with per-event errors and
    exactly-once receipts as on gRPC."""
    await call_json(http, "Activate", {"experimentKey": "checkout_flow", "userId": "lee"})
    lee = {"eventKey": "add_to_cart", "userId": "lee"}
    unknown = {"eventKey": "no_such_event", "userId": "mo"}
    batches = [
        {"sequence": 1, "producerId": "p1", "events": [lee]},
        {"sequence": 2, "producerId": "p1", "events": [{**lee, "userId": "mo"}, unknown]},
        {"sequence": 1, "producerId": "p1", "events": [lee]},  # sent again
    ]
    reply = await http.post(
        ROUTE + "TrackStream",
        content=b"".join(envelope(json.dumps(batch).encode()) for batch in batches),
        headers={"content-type": "application/connect+json"},
    )
    assert reply.status_code == 200
    *acks, (end_flags, end) = envelopes_of(reply.content)
    assert (end_flags, end) == (2, {})  # the end of the stream, no error
    # uint64 sequences are JSON strings, as protobuf JSON writes 64-bit integers.
    assert [(m["sequence"], m.get("accepted", 0)) for _, m in acks] == [
        ("1", 1),
        ("2", 1),
        ("1", 1),
    ]
    first, second, again = (message for _, message in acks)
    assert first["attributed"] == 1
    assert [(e["index"], e["code"]) for e in second["errors"]] == [(1, 5)]  # NOT_FOUND
    assert again["duplicate"] is True  # the same producer and sequence: stored once
    assert client.daemon.endpoint.interceptor.open_streams == 0


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    live = await http.get("/healthz")
    ready = await http.get("/readyz")
    assert (live.status_code, ready.status_code) == (200, 200)


async def test_not_ready_and_unavailable_until_a_datafile_loads(tmp_path: Path) -> None:
    async with DatafileServer(DATAFILE.read_bytes(), etag='"v1"') as cdn:
        cdn.status = 503
        settings = settings_for(
            tmp_path,
            datafile_url=cdn.url,
            datafile_poll_interval=0.05,
            http_listen="127.0.0.1:0",
        )
        async with (
            client_for(settings) as client,
            httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
        ):
            await cdn.wait_for_requests(1)
            assert (await http.get("/healthz")).status_code == 200
            not_ready = await http.get("/readyz")
            assert not_ready.status_code == 503
            assert "no datafile" in not_ready.text
            for rpc, body in (
                ("GetConfig", {}),
                ("Activate", {"experimentKey": "ab_running", "userId": "u"}),
            ):
                reply = await call_json(http, rpc, body)
                assert reply.status_code == 503
                assert reply.json()["code"] == "unavailable"
                assert "no datafile loaded yet" in reply.json()["message"]

            cdn.publish(DATAFILE.read_bytes(), '"v1"')

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready)
            body = {"experimentKey": "ab_running", "userId": "u"}
            assert (await call_json(http, "Activate", body)).status_code == 200


async def test_readiness_turns_503_when_the_daemon_begins_to_drain(
    client: Client, http: httpx.AsyncClient
) -> None:
    assert client.daemon.http_server is not None
    client.daemon.http_server.begin_shutdown()
    draining = await http.get("/readyz")
    assert (draining.status_code, draining.text) == (503, "shutting down\n")
    assert (await http.get("/healthz")).status_code == 200


async def test_bearer_tokens_and_scopes_apply_to_connect_calls(tmp_path: Path) -> None:
    """The same tokens and scopes as on gRPC, from the `authorization` header."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('"decider-token" = ["decide"]\n"tracker-token" = ["track"]\n')
    settings = settings_for(tmp_path / "d", http_listen="127.0.0.1:0", auth_tokens=tokens)
    body = {"experimentKey": "checkout_flow", "userId": "u"}
    async with (
        client_for(settings) as client,
        httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
    ):
        for authorization, status, code in (
            (None, 401, "unauthenticated"),
            ("Bearer nope", 401, "unauthenticated"),
            ("Bearer tracker-token", 403, "permission_denied"),
            ("Bearer decider-token", 200, None),
        ):
            headers = {"authorization": authorization} if authorization else {}
            reply = await http.post(ROUTE + "Activate", json=body, headers=headers)
            assert reply.status_code == status, authorization
            if code is not None:
                assert reply.json()["code"] == code
        assert (await http.get("/readyz")).status_code == 200  # load balancers need no token


async def test_a_taken_http_port_stops_the_start_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(OSError, match=f"cannot listen on {address} for HTTP"):
            async with running(settings_for(tmp_path, http_listen=address)):
                pass


def test_sigterm_still_stops_the_daemon_with_the_http_port_on(tmp_path: Path) -> None:
    """uvicorn runs inside the daemon's event loop and leaves SIGTERM and SIGINT to it."""
    with spawn(tmp_path, "--http-listen", "127.0.0.1:0") as daemon:
        [started] = [line for line in daemon.log_lines() if line.get("event") == "started"]
        ready = httpx.get(f"http://127.0.0.1:{started['http_port']}/readyz", timeout=10)
        assert ready.status_code == 200
        assert daemon.stop(signal.SIGTERM) == 0
    assert any(line.get("event") == "stopped" for line in daemon.log_lines())


def readme_curl_commands() -> list[str]:
    text = README.read_text()
    block = re.search(r"<!-- curl-examples:start -->\s*```sh\n(.*?)```", text, flags=re.DOTALL)
    assert block, "README lost its curl examples block"
    return [line for line in block.group(1).splitlines() if line.startswith("curl ")]


def test_every_readme_curl_command_works(tmp_path: Path) -> None:
    """Connect and Agent API calls, run verbatim (but for the port) against `trackd serve`
    with the HTTP port on, as `make run` starts it."""
    with spawn(tmp_path, "--http-listen", "127.0.0.1:0") as daemon:
        [started] = [line for line in daemon.log_lines() if line.get("event") == "started"]
        outputs = {}
        for command in readme_curl_commands():
            line = command.replace("127.0.0.1:8080", f"127.0.0.1:{started['http_port']}")
            result = subprocess.run(
                ["bash", "-c", line + " --fail-with-body"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
            url = urlsplit(command.split()[-1].strip("'"))
            outputs[url.path.rpartition("/")[2]] = result.stdout
        assert daemon.stop() == 0
    assert json.loads(outputs["Activate"])["variationKey"] in ("control", "one_page_checkout")
    [attribution] = json.loads(outputs["Track"])["attributions"]
    assert attribution["experimentKey"] == "checkout_flow"
    [decision] = json.loads(outputs["Decide"])["decisions"]
    assert decision["flagKey"] == "checkout_redesign"
    assert json.loads(outputs["GetConfig"])["revision"]
    assert outputs["readyz"] == "ready\n"
    [activated] = json.loads(outputs["activate"])
    assert activated["variationKey"] in ("control", "one_page_checkout")
    assert json.loads(outputs["track"]) == {"userId": "user123", "eventKey": "add_to_cart"}
    assert json.loads(outputs["decide"])["flagKey"] == "checkout_redesign"


async def test_with_tls_the_http_port_is_https_with_grpcs_certificate_and_client_ca(
    tmp_path: Path,
) -> None:
    certs = make_certificates(tmp_path / "certs")
    settings = settings_for(
        tmp_path / "d",
        http_listen="127.0.0.1:0",
        tls_cert=certs.server.cert,
        tls_key=certs.server.key,
        tls_client_ca=certs.ca.cert_path,
    )
    body = {"experimentKey": "checkout_flow", "userId": "ivy"}
    async with client_for(settings) as client:
        https = f"https://localhost:{client.daemon.http_port}"
        trusting = ssl.create_default_context(cafile=certs.ca.cert_path)
        trusting.load_cert_chain(certs.client.cert, certs.client.key)
        async with httpx.AsyncClient(base_url=https, verify=trusting, timeout=10) as http:
            assert (await call_json(http, "Activate", body)).status_code == 200
        # No client certificate, an untrusted server, or plaintext: no answer at all.
        anonymous = ssl.create_default_context(cafile=certs.ca.cert_path)
        distrustful = ssl.create_default_context(cafile=certs.stranger_ca.cert_path)
        for base, verify in ((https, anonymous), (https, distrustful)):
            async with httpx.AsyncClient(base_url=base, verify=verify, timeout=10) as http:
                with pytest.raises(httpx.TransportError):
                    await call_json(http, "Activate", body)
        async with httpx.AsyncClient(base_url=client.http_url, timeout=10) as plaintext:
            with pytest.raises(httpx.TransportError):
                await call_json(plaintext, "Activate", body)


async def test_an_http_port_beyond_loopback_without_tls_and_tokens_is_warned_about(
    tmp_path: Path,
) -> None:
    """As the gRPC port is: the warning names the HTTP address and what it lacks."""
    with socket.socket() as probe:  # a free port on every interface, for 0.0.0.0
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    settings = settings_for(tmp_path, http_listen=f"0.0.0.0:{port}")
    with capture_logs() as logs:
        async with running(settings):
            pass
    warned = [line for line in logs if line["event"] == "listening_beyond_loopback"]
    assert [(w["listen"], w["missing"]) for w in warned] == [
        (f"0.0.0.0:{port}", ["TLS", "token auth"])
    ]


async def test_http_requests_are_counted_by_route_and_status_and_logged_at_debug(
    tmp_path: Path,
) -> None:
    settings = settings_for(
        tmp_path, http_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", log_level="debug"
    )
    agent = {"X-Optimizely-SDK-Key": "k"}
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with (
            client_for(settings) as client,
            httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
        ):
            ok = {"experimentKey": "checkout_flow", "userId": "jo"}
            assert (await call_json(http, "Activate", ok)).status_code == 200
            assert (await call_json(http, "Activate", {"experimentKey": "x"})).status_code == 400
            decided = await http.post("/v1/decide", json={"userId": "jo"}, headers=agent)
            assert decided.status_code == 200
            assert (await http.get("/healthz", headers={"x-request-id": "probe-7"})).is_success
            assert (await http.get("/no/such/path")).status_code == 404
            scraped = await http.get(f"http://127.0.0.1:{client.daemon.metrics_port}/metrics")
    samples = {
        (sample.labels["route"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name == "trackd_http_requests_total"
    }
    assert samples == {
        (ROUTE + "Activate", "200"): 1.0,
        (ROUTE + "Activate", "400"): 1.0,
        ("/v1/decide", "200"): 1.0,
        ("/healthz", "200"): 1.0,
        ("other", "404"): 1.0,
    }
    lines = [(line["route"], line["status"]) for line in logs if line["event"] == "http"]
    assert lines == [
        (ROUTE + "Activate", 200),
        (ROUTE + "Activate", 400),
        ("/v1/decide", 200),
        ("/healthz", 200),
        ("other", 404),
    ]
    ids = [line["request_id"] for line in logs if line["event"] == "http"]
    assert ids[3] == "probe-7"  # the caller's, as on gRPC
    assert all(ids) and len(set(ids)) == len(ids)


@pytest.mark.slow
async def test_an_idle_connection_is_kept_past_uvicorns_five_second_default(
    client: Client,
) -> None:
    """A load balancer keeps idle connections open for up to a minute and reuses them; a
    daemon that closed one first would make the balancer answer a request on it with 502."""
    assert client.daemon.http_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.daemon.http_port)
    request = b"GET /healthz HTTP/1.1\r\nhost: trackd\r\n\r\n"
    for wait in (6, 0):
        writer.write(request)
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"live\n")).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(wait)
    writer.close()


async def test_cors_answers_only_the_listed_origins(tmp_path: Path) -> None:
    """A browser page from an allowed origin may call Connect and /v1 (its preflight is
    answered, its answers carry Access-Control-Allow-Origin); any other origin gets no CORS
    header, so the browser withholds the answer from the page."""
    allowed, other = "https://app.example.com", "https://evil.example.com"
    settings = settings_for(
        tmp_path, http_listen="127.0.0.1:0", http_cors_origins=(allowed, "http://localhost:3000")
    )
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, connect-protocol-version",
    }
    body = {"experimentKey": "checkout_flow", "userId": "kim"}
    async with (
        client_for(settings) as client,
        httpx.AsyncClient(base_url=client.http_url, timeout=10) as http,
    ):
        asked = await http.options(ROUTE + "Activate", headers={"origin": allowed, **preflight})
        assert asked.status_code == 204
        assert asked.headers["access-control-allow-origin"] == allowed
        assert "POST" in asked.headers["access-control-allow-methods"]
        assert "connect-protocol-version" in asked.headers["access-control-allow-headers"].lower()
        called = await http.post(ROUTE + "Activate", json=body, headers={"origin": allowed})
        assert called.status_code == 200
        assert called.headers["access-control-allow-origin"] == allowed
        assert "Origin" in called.headers["vary"]
        agent = {"origin": allowed, "X-Optimizely-SDK-Key": "k"}
        decided = await http.post("/v1/decide", json={"userId": "kim"}, headers=agent)
        assert decided.headers["access-control-allow-origin"] == allowed

        refused = await http.options(ROUTE + "Activate", headers={"origin": other, **preflight})
        assert "access-control-allow-origin" not in refused.headers
        answered = await http.post(ROUTE + "Activate", json=body, headers={"origin": other})
        assert "access-control-allow-origin" not in answered.headers


async def test_no_cors_header_by_default(http: httpx.AsyncClient) -> None:
    origin = {"origin": "https://app.example.com"}
    reply = await http.post(ROUTE + "GetConfig", json={}, headers=origin)
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers


@pytest.mark.slow
def test_two_workers_share_the_http_port_and_the_activations(tmp_path: Path) -> None:
    """With --workers 2 both processes serve the HTTP port (SO_REUSEPORT, as gRPC's), and an
    Activate over HTTP on one attributes a Track over gRPC on either (a shared Redis)."""
    with redis_server(tmp_path / "redis") as redis:
        grpc_port, http_port = free_port(), free_port()
        data_dir = tmp_path / "trackd"
        args = (
            *("--listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}"),
            *("--workers", "2", "--datafile", str(DATAFILE), "--activation-store", redis.url),
        )
        with spawn(data_dir, *args) as process:
            started = process.started_workers(2)
            assert {line["http_port"] for line in started} == {http_port}
            body = {"experimentKey": "ab_running", "userId": ""}
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = pb_grpc.TrackingServiceStub(channel)
                for i in range(30):
                    body["userId"] = f"user-{i}"
                    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}") as http:
                        activated = http.post(ROUTE + "Activate", json=body).json()
                    tracked = stub.Track(
                        pb.TrackRequest(event_key="my_conversion", user_id=f"user-{i}")
                    )
                    assert [a.variation_key for a in tracked.attributions] == [
                        activated["variationKey"]
                    ]
            assert process.stop(signal.SIGTERM) == 0
        # The kernel spread the HTTP connections: both workers recorded impressions.
        for index in (0, 1):
            events = (data_dir / f"worker-{index}" / "events.jsonl").read_text()
            assert "campaign_activated" in events, index


def grpc_web_frames(data: bytes) -> tuple[list[bytes], dict[str, str]]:
    """A gRPC-Web answer: its messages, and the trailers its last frame (flag 0x80) holds."""
    messages, trailers = [], {}
    while data:
        flags, length = struct.unpack(">BI", data[:5])
        frame, data = data[5 : 5 + length], data[5 + length :]
        if flags & 0x80:
            for line in frame.decode().strip().split("\r\n"):
                name, _, value = line.partition(":")
                trailers[name.strip().lower()] = value.strip()
        else:
            messages.append(frame)
    return messages, trailers


async def test_grpc_web_is_served_and_grpc_proper_is_sent_to_the_grpc_port(
    http: httpx.AsyncClient,
) -> None:
    """connectrpc serves gRPC-Web (trailers in the body, so HTTP/1.1 carries it); gRPC
    itself needs HTTP/2 trailers: a 415 naming the right port, no 500 and traceback."""
    web = {"content-type": "application/grpc-web+proto"}
    request = pb.ActivateRequest(experiment_key="checkout_flow", user_id="nia")
    reply = await http.post(
        ROUTE + "Activate", content=envelope(request.SerializeToString()), headers=web
    )
    assert reply.status_code == 200
    [message], trailers = grpc_web_frames(reply.content)
    assert trailers["grpc-status"] == "0"
    assert pb.ActivateResponse.FromString(message).experiment_key == "checkout_flow"

    unknown = pb.ActivateRequest(experiment_key="nope", user_id="nia")
    reply = await http.post(
        ROUTE + "Activate", content=envelope(unknown.SerializeToString()), headers=web
    )
    _, trailers = grpc_web_frames(reply.content)
    assert trailers["grpc-status"] == "5"  # NOT_FOUND, from the same status table
    assert "'nope'" in trailers["grpc-message"].replace("%27", "'")

    for kind in ("application/grpc", "application/grpc+proto"):
        refused = await http.post(ROUTE + "Activate", content=b"", headers={"content-type": kind})
        assert refused.status_code == 415
        assert "--listen port" in refused.text

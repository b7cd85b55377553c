"""Sinks classify each attempt: delivered, retry later, or rejected for good."""

from __future__ import annotations

import json
import socket
import ssl
from importlib.resources import files
from pathlib import Path

import pytest

from tests.support.certs import make_certificates
from tests.support.receiver import Receiver, Reply
from trackd.config import Settings
from trackd.datafile import parse_datafile
from trackd.events.endpoints import event_api_url
from trackd.events.sinks import Delivery, Outcome, Sink, open_sink
from trackd.events.sinks.file import FileSink
from trackd.events.sinks.http import HttpSink, environment_proxy
from trackd.live import LiveConfig
from trackd.server import event_sink


async def sent_once(sink: Sink, body: bytes) -> Delivery:
    """`sink.send(body)`'s outcome, the sink closed after it whatever happened."""
    try:
        return await sink.send(body)
    finally:
        await sink.aclose()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (400, Outcome.REJECTED),
        (403, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (302, Outcome.RETRY),
    ],
)
async def test_http_status_decides_the_outcome(status: int, outcome: Outcome) -> None:
    async with Receiver(default=status) as receiver:
        delivery = await sent_once(open_sink(receiver.url), b'{"visitors":[]}')
    assert (delivery.outcome, delivery.status) == (outcome, status)


async def test_http_posts_the_body_as_json() -> None:
    async with Receiver() as receiver:
        await sent_once(HttpSink(receiver.url), b'{"a":1}')
    (request,) = receiver.requests
    assert (request.method, request.body) == ("POST", b'{"a":1}')
    assert request.headers["content-type"] == "application/json"
    assert receiver.received == [{"a": 1}]


async def test_retry_after_is_reported_with_a_429() -> None:
    async with Receiver(default=Reply(429, {"Retry-After": "7"})) as receiver:
        delivery = await sent_once(HttpSink(receiver.url), b"{}")
    assert delivery.retry_after == 7.0


async def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    delivery = await sent_once(HttpSink(f"http://127.0.0.1:{port}/v1/events", timeout=2), b"{}")
    assert delivery.outcome is Outcome.RETRY
    assert "Cannot connect" in delivery.detail


async def test_a_timeout_is_retried() -> None:
    async with Receiver(default=Reply(200, delay=1.0)) as receiver:
        delivery = await sent_once(HttpSink(receiver.url, timeout=0.1), b"{}")
    assert delivery.outcome is Outcome.RETRY


async def test_file_sink_appends_lines_and_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "events.jsonl"
    sink = open_sink(f"file://{path}")
    assert isinstance(sink, FileSink)
    for n in range(3):
        assert (await sink.send(json.dumps({"n": n}).encode())).outcome is Outcome.DELIVERED
    await sink.aclose()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


async def test_an_unwritable_file_is_retried(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)  # a directory
    delivery = await sink.send(b"{}")
    assert delivery.outcome is Outcome.RETRY


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        open_sink("ftp://example.com")


def test_the_event_api_host_follows_the_region_as_in_the_sdk() -> None:
    assert event_api_url("US") == "https://logx.optimizely.com/v1/events"
    assert event_api_url("EU") == "https://eu.logx.optimizely.com/v1/events"
    assert event_api_url("eu") == "https://eu.logx.optimizely.com/v1/events"
    assert event_api_url("APAC") == "https://logx.optimizely.com/v1/events"  # unknown: US


async def test_the_optimizely_endpoint_follows_the_live_datafile(tmp_path: Path) -> None:
    document = json.loads(files("trackd").joinpath("data/example_datafile.json").read_text())
    live = LiveConfig(None)
    sink = event_sink(Settings(data_dir=tmp_path, event_endpoint="optimizely"), live)
    assert isinstance(sink, HttpSink)
    try:
        # No datafile yet: the region, so the host, is unknown; the batch waits, unsent.
        assert sink.current_url() is None
        delivery = await sink.send(b"{}")
        assert (delivery.outcome, delivery.status) == (Outcome.RETRY, None)
        live.swap(parse_datafile(json.dumps({**document, "region": "EU"})))
        assert sink.current_url() == "https://eu.logx.optimizely.com/v1/events"
        live.swap(parse_datafile(json.dumps({**document, "region": None})))
        assert sink.current_url() == "https://logx.optimizely.com/v1/events"
    finally:
        await sink.aclose()


async def test_an_http_sink_posts_where_its_url_function_says() -> None:
    async with Receiver() as first, Receiver() as second:
        target = [first.url]
        sink = HttpSink(lambda: target[0])
        try:
            await sink.send(b'{"n":1}')
            target[0] = second.url
            await sink.send(b'{"n":2}')
        finally:
            await sink.aclose()
    assert (first.received, second.received) == ([{"n": 1}], [{"n": 2}])


async def test_a_redirect_is_retried_not_followed() -> None:
    """A 3xx is an answer the sink cannot act on: the batch is retried later, never POSTed
    where the Location header points (an endpoint moved by mistake must not swallow it)."""
    async with Receiver() as elsewhere:
        moved = Reply(307, {"Location": elsewhere.url})
        async with Receiver(default=moved) as receiver:
            delivery = await sent_once(HttpSink(receiver.url), b'{"n":1}')
    assert (delivery.outcome, delivery.status) == (Outcome.RETRY, 307)
    assert len(receiver.requests) == 1
    assert elsewhere.requests == []


@pytest.mark.parametrize("scheme", ["http://", ""], ids=["with_scheme", "without_scheme"])
async def test_the_proxy_of_the_environment_carries_the_batches(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """HTTP_PROXY is honoured, as it was with httpx: a daemon behind an egress proxy still
    delivers. The stand-in proxy records the request (absolute-form target) and answers it.
    Written without a scheme (`egress:3128`, as curl and httpx take it) it is an http:// one."""
    async with Receiver() as endpoint, Receiver(path=endpoint.url) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, scheme + proxy.url.removesuffix(proxy.path).split("://")[1])
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        delivery = await sent_once(HttpSink(endpoint.url), b'{"n":1}')
    assert delivery.outcome is Outcome.DELIVERED
    assert [(r.method, r.path, r.body) for r in proxy.requests] == [
        ("POST", endpoint.url, b'{"n":1}')
    ]
    assert endpoint.requests == []


async def test_the_connection_is_kept_for_the_next_batch() -> None:
    """Batches reuse the pool's connections (a new TCP and TLS handshake per batch would cost
    the loop more than the POST itself)."""
    async with Receiver() as receiver:
        sink = HttpSink(receiver.url, max_connections=1)
        try:
            for n in range(3):
                assert (await sink.send(b'{"n":%d}' % n)).outcome is Outcome.DELIVERED
        finally:
            await sink.aclose()
    assert receiver.connections == 1


def test_no_proxy_and_the_scheme_choose_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    assert environment_proxy("https://logx.optimizely.com/v1/events") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://egress:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp")
    assert environment_proxy("https://logx.optimizely.com/v1/events") == "http://egress:3128"
    assert environment_proxy("http://logx.optimizely.com/v1/events") is None  # no HTTP_PROXY
    assert environment_proxy("https://internal.example/v1/events") is None
    assert environment_proxy("https://events.corp/v1/events") is None
    monkeypatch.setenv("HTTPS_PROXY", "egress:3128")  # no scheme: http://, as httpx reads it
    assert environment_proxy("https://logx.optimizely.com/v1/events") == "http://egress:3128"


async def test_a_ca_named_by_ssl_cert_file_is_trusted_as_the_datafile_poller_trusts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE (or SSL_CERT_DIR) names the CAs to trust, as it does for the datafile
    poller (httpx), and as it did for the sink before aiohttp: behind a TLS-inspecting egress
    proxy, or toward an endpoint with a private CA, events must not stop while the datafile
    still loads. Without it, that CA is not trusted (certifi's bundle alone)."""
    certs = make_certificates(tmp_path / "certs")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certs.server.cert, certs.server.key)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    outcomes = []
    async with Receiver(tls=tls) as receiver:
        for ca_file in (None, certs.ca.cert_path):
            if ca_file is not None:
                monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
            outcomes.append((await sent_once(HttpSink(receiver.url), b'{"n":1}')).outcome)
    assert outcomes == [Outcome.RETRY, Outcome.DELIVERED]
    assert receiver.received == [{"n": 1}]


def test_a_ca_file_that_cannot_be_read_stops_the_sink_at_its_making(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with httpx: a wrong SSL_CERT_FILE shows when the daemon starts, not as every later
    batch failing in the background."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "absent.pem"))
    with pytest.raises(OSError, match="SSL_CERT_FILE"):
        HttpSink("https://logx.optimizely.com/v1/events")

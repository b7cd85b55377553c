"""The clients that call trackd's HTTP port with Connect's JSON (PHP, and C# on Mono) against one
real trackd: the protocol of docs/dev/clients-e2e.md, with the same users, the same decisions
as optimizely-sdk's and the same checks as the gRPC clients (no producer: TrackStream is not
served over HTTP). A missing toolchain skips loudly here and fails under CI=true.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.test_clients import (
    DATAFILE,
    check_decide,
    flag_reference,  # noqa: F401 (a fixture, shared with the gRPC clients)
    reference,  # noqa: F401 (a fixture, shared with the gRPC clients)
    run_step,
)
from tests.support.daemon import Process, spawn

# The client's folder under clients/ -> the language its report names.
HTTP_CLIENTS = {"php": "php", "csharp/http": "csharp"}
FLAGS = ["e2e_checkout", "e2e_banner"]  # DATAFILE's, in its order


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    data_dir = tmp_path_factory.mktemp("http-clients")
    args = ("--datafile", str(DATAFILE), "--http-listen", "127.0.0.1:0")
    with spawn(data_dir, *args, "--event-flush-interval", "0.2") as process:
        yield process


@pytest.fixture(scope="module")
def build() -> Callable[[str], None]:
    """Runs a client's build.sh the first time a test of this module needs the client."""
    built: set[str] = set()

    def build_once(client: str) -> None:
        if client not in built:
            run_step(client, "build", {}, timeout=900)
            built.add(client)

    return build_once


@pytest.mark.timeout(900 + 600 + 60)  # its two steps carry their own timeouts
@pytest.mark.parametrize("client", HTTP_CLIENTS)
def test_http_client_end_to_end(
    client: str,
    build: Callable[[str], None],
    daemon: Process,
    reference: dict[str, str | None],  # noqa: F811
    flag_reference: dict[str, list[Any]],  # noqa: F811
) -> None:
    env = {
        "TRACKD_HTTP_URL": f"http://127.0.0.1:{daemon.http_port}",
        "E2E_RUN_ID": uuid.uuid4().hex[:8],
    }
    build(client)
    output = run_step(client, "e2e", env, timeout=600)
    report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])

    assert report["language"] == HTTP_CLIENTS[client]
    assert report["variations"] == reference, "decisions differ from optimizely-sdk's"
    assert sum(v is not None for v in reference.values()) > 50  # a real mix, not all null
    assert report["attributed"] == ["ab_running"]
    assert report["not_found"] is True
    check_decide(report["decide"], flag_reference)
    assert report["producer"] is None
    # Beyond the gRPC clients' protocol: getConfig describes the daemon's live datafile.
    [started] = [line for line in daemon.log_lines() if line.get("event") == "started"]
    assert report["config"] == {"revision": started["revision"], "flags": FLAGS}


def probe(client: str, url: str, timeout: float, token: str | None = None) -> dict[str, Any]:
    """One activate through the client's timeout and token options (clients/<client>/probe.sh):
    {"variation": ..., "error": null}, or {"variation": null, "error": the Connect code}."""
    env = {"TRACKD_HTTP_URL": url, "PROBE_TIMEOUT": str(timeout), "PROBE_TOKEN": token or ""}
    output = run_step(client, "probe", env, timeout=120)
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("client", HTTP_CLIENTS)
def test_http_client_sends_its_bearer_token(
    client: str, build: Callable[[str], None], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('"decider-token" = ["decide"]\n"tracker-token" = ["track"]\n')
    build(client)
    args = ("--datafile", str(DATAFILE), "--http-listen", "127.0.0.1:0")
    with spawn(tmp_path / "d", *args, "--auth-tokens", str(tokens)) as authenticating:
        url = f"http://127.0.0.1:{authenticating.http_port}"
        assert probe(client, url, 10, "decider-token")["variation"] == "variation_a"
        assert probe(client, url, 10)["error"] == "unauthenticated"
        assert probe(client, url, 10, "tracker-token")["error"] == "permission_denied"


@pytest.mark.parametrize("client", HTTP_CLIENTS)
def test_http_client_gives_up_at_its_timeout(client: str, build: Callable[[str], None]) -> None:
    """A server that accepts the connection and never answers: the call ends with Connect's
    deadline_exceeded, not a hang (the step's own timeout would fail the test)."""
    build(client)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert probe(client, url, 0.5) == {"variation": None, "error": "deadline_exceeded"}

"""The browser client (clients/browser) live in headless Chromium: a page served from an origin
of its own loads the bundled connect-es client and calls Activate, Decide and Track on a real
trackd's HTTP port through CORS; a page from an origin --http-cors-origins does not list is
refused by the browser. The answers are read from the page and checked against optimizely-sdk.

Part of `make test-clients`: a missing toolchain (Node, Chromium) skips loudly here and fails
under CI=true, as for every client (tests/clients/test_clients.py).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients import test_clients as clients
from tests.support.daemon import Process, spawn
from tests.support.oracle import sdk_client

PAGES = clients.ROOT / "clients" / "browser" / "dist"  # build.sh bundles the page into it


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per file on stderr otherwise


@contextlib.contextmanager
def page_server(directory: Path) -> Iterator[str]:
    """Serves `directory` on a 127.0.0.1 port of its own: an origin other than trackd's."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    """The page's origin, which trackd allows, and another one, which it does not."""
    with page_server(PAGES) as allowed, page_server(PAGES) as refused:
        yield allowed, refused


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, origins: tuple[str, str]) -> Iterator[Process]:
    allowed, _ = origins
    with spawn(
        tmp_path_factory.mktemp("browser"),
        *("--datafile", str(clients.DATAFILE), "--event-flush-interval", "0.2"),
        *("--http-listen", "127.0.0.1:0", "--http-cors-origins", allowed),
    ) as process:
        yield process


def http_url(daemon: Process) -> str:
    assert daemon.http_port is not None, "trackd's started line names no HTTP port"
    return f"http://127.0.0.1:{daemon.http_port}"


def attributed_by_track(daemon: Process, user: str) -> list[str]:
    """The experiments a conversion of `user` is attributed to, asked outside any browser."""
    reply = httpx.post(
        f"{http_url(daemon)}/trackd.v1.TrackingService/Track",
        json={"eventKey": "my_conversion", "userId": user},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return [a["experimentKey"] for a in reply.json().get("attributions", [])]


CONTENT_TYPES = {"binary": "application/proto", "json": "application/json"}


def check_page(page: dict[str, Any], run_id: str) -> None:
    """One full page's report (e2e/page.ts) against optimizely-sdk on the same datafile."""
    reference = clients.sdk_variations()
    assert page["variations"] == reference, "decisions differ from optimizely-sdk's"
    assert sum(v is not None for v in reference.values()) > 50  # a real mix, not all null
    # Attribution as Track answers it: the variation optimizely-sdk puts that user in.
    user = f"e2e-browser-{run_id}"
    expected = sdk_client(clients.DATAFILE.read_text()).get_variation("ab_running", user, {})
    assert expected is not None
    assert [(a["experimentKey"], a["variationKey"]) for a in page["attributions"]] == [
        ("ab_running", expected)
    ]
    assert page["attributed"] == ["ab_running"]
    assert page["not_found"] is True

    decide = page["decide"]
    assert decide["decisions"] == clients.sdk_flag_decisions(), "differ from optimizely-sdk's"
    assert decide["all"] == ["e2e_checkout", "e2e_banner"]
    assert decide["unknown_flag_error"] is True
    assert decide["attributed"] == ["checkout_test"]
    # DISABLE_DECISION_EVENT recorded none; the plain decide into the A/B test recorded one.
    assert decide["impressions"] == [False, True]


@pytest.mark.timeout(1500 + 600 + 60)  # its two steps carry their own timeouts
def test_browser_client_calls_trackd_through_cors_from_its_page(
    daemon: Process, origins: tuple[str, str]
) -> None:
    allowed, refused = origins
    run_id = uuid.uuid4().hex[:8]
    env = {
        "TRACKD_HTTP_URL": http_url(daemon),
        "BROWSER_PAGE_URL": allowed,
        "BROWSER_REFUSED_PAGE_URL": refused,
        "E2E_RUN_ID": run_id,
    }
    clients.run_step("browser", "build", env, timeout=1500)
    output = clients.run_step("browser", "e2e", env, timeout=600)
    report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    assert report["language"] == "browser"
    print(f"\nbrowser: Chromium {report['browser']}")

    assert set(report["pages"]) == set(CONTENT_TYPES)
    for format, page in report["pages"].items():
        assert page["origin"] == allowed != http_url(daemon)  # a cross-origin page
        assert page["content_types"] == [CONTENT_TYPES[format]]  # as sent on the wire
        assert not [line for line in page["console"] if "CORS" in line], page["console"]
        check_page(page, f"{run_id}-{format}")

    # The other origin: Chromium refused the call (the preflight got no CORS answer), so the
    # page saw only a failed fetch, and the Activate never reached trackd.
    denied = report["refused"]
    assert denied["origin"] == refused
    assert denied["refused"] is True, denied
    assert denied["code"] == "Unknown"
    assert any(
        f"from origin '{refused}' has been blocked by CORS policy" in line
        for line in denied["console"]
    ), denied["console"]
    assert attributed_by_track(daemon, f"refused-browser-{run_id}") == []
    # whereas the allowed page's Activate was remembered
    assert attributed_by_track(daemon, f"e2e-browser-{run_id}-binary") == ["ab_running"]

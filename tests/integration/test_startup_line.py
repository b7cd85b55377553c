"""The `started` line says where events go: the resolved data dir, the outbox and the sink."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.support.daemon import client_for, settings_for


async def started_line(**overrides: object) -> dict[str, object]:
    with capture_logs() as logs:
        async with client_for(settings_for(Path("data"), **overrides)):
            pass
    [started] = [line for line in logs if line["event"] == "started"]
    return started


async def test_a_relative_data_dir_is_logged_resolved_with_the_outbox_and_events_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    started = await started_line()
    assert started["data_dir"] == str(tmp_path / "data")
    assert started["outbox"] == str(tmp_path / "data" / "outbox.sqlite3")
    assert started["event_endpoint"] == f"file://{tmp_path / 'data' / 'events.jsonl'}"


async def test_an_http_endpoint_and_optimizely_are_logged_as_the_url_posted_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    started = await started_line(event_endpoint="http://127.0.0.1:9/events")
    assert started["event_endpoint"] == "http://127.0.0.1:9/events"
    started = await started_line(event_endpoint="optimizely")
    assert started["event_endpoint"] == "https://logx.optimizely.com/v1/events"  # a US datafile

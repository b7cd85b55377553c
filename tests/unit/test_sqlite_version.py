"""An SQLite too old for the outbox is refused at start, in one line, not mid-traffic."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trackd import server
from trackd.config import Settings, SettingsError
from trackd.events import results


def test_the_linked_sqlite_is_new_enough() -> None:
    assert results.sqlite_problem() is None, sqlite3.sqlite_version


def test_an_old_sqlite_stops_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results.sqlite3, "sqlite_version_info", (3, 37, 2))
    monkeypatch.setattr(results.sqlite3, "sqlite_version", "3.37.2")
    with pytest.raises(SettingsError, match=r"SQLite 3\.37\.2 is too old: trackd needs 3\.38\.0"):
        server.prepare(Settings(data_dir=tmp_path))

"""A torn last line (a daemon killed mid-write) is moved aside, byte for byte, before the
file sink writes again, so every line of the file stays one whole JSON batch."""

from __future__ import annotations

import json
from pathlib import Path

from structlog.testing import capture_logs

from trackd.events.sinks import Outcome
from trackd.events.sinks.file import FileSink


def torn_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".torn-*"))


async def test_a_planted_torn_line_is_moved_aside_before_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    whole = b'{"n": 0}\n{"n": 1}\n'
    torn = b'{"n": 2, "visitors": [{"visitor_id": "u'
    path.write_bytes(whole + torn)

    sink = FileSink(path)
    with capture_logs() as logs:
        assert (await sink.send(b'{"n": 2}')).outcome is Outcome.DELIVERED
        assert (await sink.send(b'{"n": 3}')).outcome is Outcome.DELIVERED

    assert [json.loads(line) for line in path.read_bytes().splitlines()] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    (aside,) = torn_files(path)
    assert aside.read_bytes() == torn  # every byte kept
    (warning,) = [log for log in logs if log["event"] == "event_file_torn_line_moved"]
    assert warning["log_level"] == "warning"
    assert warning["moved_to"] == str(aside)
    assert warning["bytes"] == len(torn)


async def test_a_file_of_one_torn_line_is_emptied_into_the_side_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    torn = b'{"visitors": [' + b"x" * 200_000  # longer than one backwards read
    path.write_bytes(torn)

    assert (await FileSink(path).send(b'{"n": 0}')).outcome is Outcome.DELIVERED

    assert path.read_bytes() == b'{"n": 0}\n'
    (aside,) = torn_files(path)
    assert aside.read_bytes() == torn


async def test_a_whole_file_is_left_alone_and_nothing_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"n": 0}\n')
    with capture_logs() as logs:
        assert (await FileSink(path).send(b'{"n": 1}')).outcome is Outcome.DELIVERED
    assert path.read_bytes() == b'{"n": 0}\n{"n": 1}\n'
    assert torn_files(path) == []
    assert not [log for log in logs if log["log_level"] != "debug"]


async def test_two_torn_tails_in_the_same_second_get_two_side_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    for n, torn in enumerate((b'{"first', b'{"second')):
        path.write_bytes(path.read_bytes() + torn)
        assert (await FileSink(path).send(json.dumps({"n": n}).encode())).outcome is (
            Outcome.DELIVERED
        )
    assert path.read_bytes() == b'{"n": 0}\n{"n": 1}\n'
    assert sorted(aside.read_bytes() for aside in torn_files(path)) == [b'{"first', b'{"second']

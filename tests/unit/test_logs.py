"""Log lines reach their stream whole: one write each, newline included."""

from __future__ import annotations

import io

import structlog

from trackd import logs


class RecordingStream(io.StringIO):
    """A stream that keeps every write() it is given, as an unbuffered stderr passes each
    on to the file descriptor shared with other processes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_json_line_is_one_write_with_its_newline() -> None:
    stream = RecordingStream()
    logs.configure("info", "json", stream)
    try:
        log = structlog.get_logger("trackd.test")
        log.info("started", port=50051, worker=0)
        log.warning("second", detail="x" * 2000)
    finally:
        structlog.reset_defaults()
    assert len(stream.writes) == 2, stream.writes
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in stream.writes)
    assert '"event": "started"' in stream.writes[0]
    assert '"event": "second"' in stream.writes[1]

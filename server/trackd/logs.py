"""structlog set-up: JSON lines when not on a terminal, a readable console when on one."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from trackd.config import LogFormat

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write() a line, its newline included: PrintLogger's print() writes the line and
        # then the newline, two system calls when the stream is unbuffered
        # (PYTHONUNBUFFERED), and two workers sharing the supervisor's stderr then ran their
        # lines together ("}{").
        logger_factory=structlog.WriteLoggerFactory(out),
        # Caching freezes the configuration on first use: fast, and tests reconfigure
        # before any logger is used.
        cache_logger_on_first_use=True,
    )

"""Every setting in one place: its type, default and help, read from flags then `TRACKD_*` env.

`OPTIONS` is the single definition: the CLI builds its flags from it, the env lookup uses
its names, and `Settings` is validated once at start so a mistake is one clear line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


def default_data_dir() -> Path:
    """The XDG state dir, as a daemon run by a user expects; containers set --data-dir."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "trackd"


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: `name` is the flag (`--name`) and the env var (`TRACKD_NAME`)."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "TRACKD_" + self.field.upper()


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _optional_path(text: str) -> Path | None:
    return _path(text) if text else None


OPTIONS: tuple[Option, ...] = (
    Option(
        "datafile",
        _optional_path,
        None,
        "Optimizely datafile (JSON). Default: the bundled example datafile.",
        "PATH",
    ),
    Option(
        "listen",
        str,
        "127.0.0.1:50051",
        "gRPC listen address, HOST:PORT (port 0 picks one).",
        "HOST:PORT",
    ),
    Option(
        "data-dir",
        _path,
        None,
        "Directory for the event outbox and results (default: $XDG_STATE_HOME/trackd).",
        "DIR",
    ),
    Option("log-level", str, "info", "Log level: debug, info, warning, error."),
    Option(
        "log-format",
        str,
        "auto",
        "Log format: json, console, or auto (console on a terminal, JSON lines otherwise).",
    ),
    Option(
        "activation-ttl",
        float,
        86400.0,
        "Seconds an activation stays live after the user's last Activate; conversions are "
        "attributed only within it.",
        "SECONDS",
    ),
    Option(
        "activation-cache-size",
        int,
        1_000_000,
        "Most (user, experiment) activations kept; the least recently activated go first.",
        "N",
    ),
    Option(
        "event-endpoint",
        str,
        "",
        "Where events go: an http(s):// URL (POSTed Event API JSON) or file://PATH (JSON lines). "
        "Default: file://DATA_DIR/events.jsonl.",
        "URL",
    ),
    Option("event-batch-size", int, 100, "Most visitors in one delivered Event API batch.", "N"),
    Option(
        "event-flush-interval",
        float,
        1.0,
        "Seconds between deliveries when a batch is not full.",
        "SECONDS",
    ),
    Option(
        "outbox-max-events",
        int,
        1_000_000,
        "Most undelivered events kept on disk; beyond it Track answers RESOURCE_EXHAUSTED.",
        "N",
    ),
    Option(
        "max-message-bytes",
        int,
        4 * 1024 * 1024,
        "Largest gRPC message accepted, in bytes.",
        "BYTES",
    ),
    Option("max-attributes", int, 100, "Most attributes (or tags) in one request.", "N"),
    Option(
        "max-key-length",
        int,
        256,
        "Longest experiment key, event key, attribute or tag name, in characters.",
        "N",
    ),
    Option("max-user-id-length", int, 1024, "Longest user_id, in characters.", "N"),
    Option(
        "max-string-value-length",
        int,
        8192,
        "Longest string attribute or tag value, in characters.",
        "N",
    ),
    Option(
        "max-stream-batch",
        int,
        10_000,
        "Most events in one TrackStream batch; a larger batch is rejected.",
        "N",
    ),
    Option("max-concurrent-streams", int, 256, "Most TrackStream calls open at once.", "N"),
    Option(
        "grace-period",
        float,
        10.0,
        "Seconds SIGTERM waits for in-flight RPCs and a last delivery before exiting.",
        "SECONDS",
    ),
)

OPTIONS_BY_FIELD: Mapping[str, Option] = {option.field: option for option in OPTIONS}


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration; built once at start and never changed."""

    datafile: Path | None = None
    listen: str = "127.0.0.1:50051"
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    log_level: str = "info"
    log_format: LogFormat = "auto"
    activation_ttl: float = 86400.0
    activation_cache_size: int = 1_000_000
    event_endpoint: str = ""
    event_batch_size: int = 100
    event_flush_interval: float = 1.0
    outbox_max_events: int = 1_000_000
    max_message_bytes: int = 4 * 1024 * 1024
    max_attributes: int = 100
    max_key_length: int = 256
    max_user_id_length: int = 1024
    max_string_value_length: int = 8192
    max_stream_batch: int = 10_000
    max_concurrent_streams: int = 256
    grace_period: float = 10.0

    def __post_init__(self) -> None:
        problems = list(self.problems())
        if problems:
            raise SettingsError(problems)

    def problems(self) -> Sequence[str]:
        """One readable line per invalid setting."""
        found: list[str] = []
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            found.append(f"--listen {self.listen!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
        if self.log_level not in LOG_LEVELS:
            found.append(f"--log-level {self.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            found.append(
                f"--log-format {self.log_format!r}: expected one of {', '.join(LOG_FORMATS)}"
            )
        endpoint = self.event_endpoint
        if endpoint and not endpoint.startswith(("http://", "https://", "file://")):
            found.append(f"--event-endpoint {endpoint!r}: expected http(s)://... or file://PATH")
        found.extend(
            f"--{name.replace('_', '-')}: must be greater than 0"
            for name in ("activation_ttl", "event_flush_interval")
            if not getattr(self, name) > 0
        )
        if self.grace_period < 0:
            found.append("--grace-period: must not be negative")
        # Every integer setting is a count or a size: zero or less is always a mistake.
        found.extend(
            f"--{option.name}: must be at least 1"
            for option in OPTIONS
            if option.parse is int and getattr(self, option.field) < 1
        )
        return found

    @property
    def resolved_event_endpoint(self) -> str:
        return self.event_endpoint or f"file://{self.data_dir / 'events.jsonl'}"


class SettingsError(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per option; defaults stay None so env and defaults can fill in."""
    for option in OPTIONS:
        default = option.default if option.default is not None else "(see help)"
        parser.add_argument(
            f"--{option.name}",
            dest=option.field,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} [env {option.env}; default {default}]",
        )


def settings_from(
    flags: Mapping[str, str | None], environ: Mapping[str, str] = os.environ
) -> Settings:
    """Flags beat `TRACKD_*` env vars, which beat defaults; every bad value is reported at once."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for option in OPTIONS:
        text = flags.get(option.field)
        source = f"--{option.name}"
        if text is None:
            text = environ.get(option.env)
            source = option.env
        if text is None:
            continue
        try:
            parsed = option.parse(text)
        except ValueError:
            problems.append(f"{source} {text!r}: not a valid {option.parse.__name__.lstrip('_')}")
            continue
        if parsed is not None:
            values[option.field] = parsed
    if problems:
        raise SettingsError(problems)
    return Settings(**values)

"""Every setting in one place: its type, default and help, read from flags, `TRACKD_*` env vars
and a TOML file.

A setting is a `Settings` field, which holds its type and its default (the only place a
default is written: `default_of` reads it for everyone else), and an `Option` in `OPTIONS`,
which holds its flag name, parser and help. The CLI builds its flags from OPTIONS, the env
lookup uses its names, the config file accepts its names, the README's settings table is
generated from it, and `Settings` is validated once at start so a mistake is one clear line.
Precedence: flags > env > config file (`--config`) > defaults.

A new setting: a field in `Settings` with its default, an `Option` in OPTIONS (same order,
no default), a check in `Settings.problems` if it can be wrong, then the README table
(`python -m trackd.config`). Tests keep the two lists and the README equal.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trackd.decision.flags import DecideOption
from trackd.events.endpoints import OPTIMIZELY

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
OutboxSync = Literal["full", "normal"]
OUTBOX_SYNCS: tuple[OutboxSync, ...] = ("full", "normal")
EventLoop = Literal["auto", "uvloop", "asyncio"]
EVENT_LOOPS: tuple[EventLoop, ...] = ("auto", "uvloop", "asyncio")
SDK_KEY_PLACEHOLDER = "{sdk_key}"
DEFAULT_URL_TEMPLATE = "https://cdn.optimizely.com/datafiles/{sdk_key}.json"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
ACTIVATION_STORES = ("auto", "memory", "local")
DECIDE_OPTION_NAMES = tuple(option.value for option in DecideOption)


def default_data_dir() -> Path:
    """The XDG state dir, as a daemon run by a user expects; containers set --data-dir."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "trackd"


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _optional_path(text: str) -> Path | None:
    return _path(text) if text else None


class Unparsable(ValueError):
    """A value a parser refuses, with the message to show (after the flag and the value)."""


def cores() -> int:
    """CPU cores this process may run on: its affinity (a container's or taskset's cpuset),
    else every core of the host."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _workers(text: str) -> int:
    """`--workers`: a number of processes, or `auto` for one per core."""
    if text.strip() == "auto":
        return cores()
    try:
        return int(text)
    except ValueError:
        raise Unparsable("expected a number of processes or auto (one per core)") from None


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list, e.g. `INCLUDE_REASONS,EXCLUDE_VARIABLES`."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: `name` is the flag (`--name`), the env var (`TRACKD_NAME`) and the key in
    the config file. Its default is the `Settings` field's; `shown` is how the README and
    `--help` show a default that is computed."""

    name: str
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None
    shown: str | None = None

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "TRACKD_" + self.field.upper()

    @property
    def is_path(self) -> bool:
        return self.parse in (_path, _optional_path)

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        default = default_of(self.field)
        if default in (None, ""):
            return "(none)"
        return str(default)


OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        _optional_path,
        "TOML file of settings, keyed by these flag names; flags and env vars win over it.",
        "PATH",
    ),
    Option(
        "datafile",
        _optional_path,
        "Optimizely datafile (JSON), watched: a change, an atomic rename or a Kubernetes "
        "ConfigMap symlink swap is loaded within a second.",
        "PATH",
        "bundled example",
    ),
    Option(
        "datafile-url",
        str,
        "Fetch the datafile from this http(s) URL and poll it (ETag / If-None-Match); health "
        "is NOT_SERVING until the first one loads.",
        "URL",
    ),
    Option(
        "sdk-key",
        str,
        "Optimizely SDK key: shorthand for --datafile-url built from --datafile-url-template.",
        "KEY",
    ),
    Option(
        "datafile-url-template",
        str,
        "URL of an SDK key's datafile; {sdk_key} is replaced by the key.",
        "URL",
    ),
    Option(
        "datafile-poll-interval",
        float,
        "Seconds between polls of --datafile-url or --sdk-key.",
        "SECONDS",
    ),
    Option(
        "listen",
        str,
        "gRPC listen address, HOST:PORT (port 0 picks one).",
        "HOST:PORT",
    ),
    Option(
        "http-listen",
        str,
        "HTTP listen address, HOST:PORT, for callers without gRPC: Connect (JSON or binary"
        " protobuf) on the same TrackingService, Optimizely Agent's REST API (/v1/...), and"
        " /healthz and /readyz for load balancers; off when empty. With --tls-cert it is"
        " HTTPS, with the same certificates, client CA and tokens as gRPC.",
        "HOST:PORT",
        "(off)",
    ),
    Option(
        "http-cors-origins",
        _names,
        "Origins whose pages may call the HTTP port from a browser (CORS), comma-separated,"
        " e.g. https://app.example.com; * allows any. None by default.",
        "ORIGINS",
        "(none)",
    ),
    Option(
        "http-batch-max-operations",
        int,
        "Most operations in one POST /v1/batch of the Agent API (as Agent's"
        " batchRequests.operationsLimit); more is answered 422.",
        "N",
    ),
    Option(
        "data-dir",
        _path,
        "Directory for the event outbox and results (SQLite).",
        "DIR",
        "$XDG_STATE_HOME/trackd",
    ),
    Option("log-level", str, "Log level: debug, info, warning, error."),
    Option(
        "log-format",
        str,
        "Log format: json, console, or auto (console on a terminal, JSON lines otherwise).",
    ),
    Option(
        "log-sample-rate",
        float,
        "Fraction (0 to 1) of RPCs logged at info, one line each; at debug every RPC is.",
        "FRACTION",
    ),
    Option(
        "metrics-listen",
        str,
        "Serve Prometheus metrics at http://HOST:PORT/metrics; off when empty.",
        "HOST:PORT",
        "(off)",
    ),
    Option(
        "tls-cert",
        _optional_path,
        "PEM certificate chain: serve gRPC over TLS (needs --tls-key).",
        "PATH",
    ),
    Option("tls-key", _optional_path, "PEM private key of --tls-cert.", "PATH"),
    Option(
        "tls-client-ca",
        _optional_path,
        "PEM CA bundle: require client certificates signed by it (mutual TLS).",
        "PATH",
    ),
    Option(
        "auth-tokens",
        _optional_path,
        "TOML or JSON file mapping bearer tokens to scopes (decide, track, admin); when set, "
        "every TrackingService call needs `authorization: Bearer TOKEN`.",
        "PATH",
    ),
    Option(
        "activation-ttl",
        float,
        "Seconds an activation stays live after the user's last Activate; conversions are "
        "attributed only within it.",
        "SECONDS",
    ),
    Option(
        "override-ttl",
        float,
        "Seconds a forced variation or forced decision stays set after it was set; held "
        "where activations are, so every worker and replica honours it.",
        "SECONDS",
    ),
    Option(
        "activation-cache-size",
        int,
        "Most (user, experiment) activations kept; the least recently activated go first.",
        "N",
    ),
    Option(
        "activation-store",
        str,
        "Where activations live: memory (this process); local, an LMDB directory shared by"
        " every worker of this host (--activation-dir), bounded by --activation-cache-size;"
        " or redis://HOST:PORT/DB (also rediss://, unix://) shared by every replica and"
        " worker, bounded by Redis's maxmemory. auto: memory, or local with --workers > 1.",
        "STORE",
    ),
    Option(
        "activation-dir",
        _optional_path,
        "Directory of the local activation store (--activation-store local).",
        "DIR",
        "DATA_DIR/activations",
    ),
    Option(
        "redis-key-prefix",
        str,
        "Prefix of every Redis key trackd writes: deployments sharing one Redis database "
        "each need their own.",
        "PREFIX",
    ),
    Option(
        "redis-max-connections",
        int,
        "Most connections to the Redis activation store per process.",
        "N",
    ),
    Option(
        "workers",
        _workers,
        "Processes serving the same port (SO_REUSEPORT), each with its own outbox under"
        " DATA_DIR/worker-N, or auto: one per core. More than 1 share their activations in a"
        " local or redis:// --activation-store (local unless one is given).",
        "N",
    ),
    Option(
        "event-endpoint",
        str,
        "Where events go: an http(s):// URL (POSTed Event API JSON), `optimizely` (Optimizely's"
        " Event API: https://logx.optimizely.com/v1/events, or eu.logx.optimizely.com for a"
        " datafile whose region is EU, as the SDKs choose) or file://PATH (JSON lines).",
        "URL",
        "file://DATA_DIR/events.jsonl",
    ),
    Option(
        "event-batch-size",
        int,
        "Most visitors in one delivered Event API batch. A backlog goes in rounds of up to 16"
        " batches: one outbox read, one file write and fsync (or the round's POSTs in"
        " parallel), one acknowledgement per round.",
        "N",
    ),
    Option(
        "event-max-connections",
        int,
        "Most HTTP connections to the event endpoint: most batches POSTed at once. They may"
        " arrive in any order; a failed one is retried before later ones are acknowledged.",
        "N",
    ),
    Option(
        "event-flush-interval",
        float,
        "Seconds between deliveries when a batch is not full.",
        "SECONDS",
    ),
    Option(
        "outbox-max-events",
        int,
        "Most undelivered events kept on disk; beyond it Track answers RESOURCE_EXHAUSTED.",
        "N",
    ),
    Option(
        "outbox-sync",
        str,
        "How acknowledged events are made durable. full: every commit is fsynced before it"
        " is acknowledged; nothing acknowledged is lost to a crash of trackd or a power loss."
        " normal: SQLite synchronous=NORMAL and an fsync in the background at least once a"
        " second (as Redis' appendfsync everysec); nothing acknowledged is lost to a crash of"
        " trackd (SIGKILL), a power loss or OS crash can lose the last second.",
        "MODE",
    ),
    Option(
        "dedup-window",
        float,
        "Seconds a TrackStream batch's (producer_id, sequence) is remembered after its commit,"
        " in the outbox database: a resend within it is acknowledged again, marked duplicate,"
        " and stores nothing. 0 turns deduplication off.",
        "SECONDS",
    ),
    Option(
        "default-decide-options",
        _names,
        "Decide options added to every Decide call, comma-separated, as the SDKs' default decide"
        f" options: {', '.join(DECIDE_OPTION_NAMES)} (the DecideOption names without their"
        " DECIDE_OPTION_ prefix, which are the SDK's strings).",
        "OPTIONS",
        "(none)",
    ),
    Option(
        "max-message-bytes",
        int,
        "Largest gRPC message accepted, in bytes (RESOURCE_EXHAUSTED beyond).",
        "BYTES",
    ),
    Option(
        "max-attributes",
        int,
        "Most attributes (or tags) in one request (RESOURCE_EXHAUSTED beyond).",
        "N",
    ),
    Option(
        "max-key-length",
        int,
        "Longest experiment key, event key, attribute or tag name, in characters "
        "(INVALID_ARGUMENT beyond).",
        "N",
    ),
    Option(
        "max-user-id-length",
        int,
        "Longest user_id, in characters (INVALID_ARGUMENT beyond).",
        "N",
    ),
    Option(
        "max-string-value-length",
        int,
        "Longest string attribute or tag value, in characters (INVALID_ARGUMENT beyond).",
        "N",
    ),
    Option(
        "max-stream-batch",
        int,
        "Most events in one TrackStream batch; a larger batch is answered INVALID_ARGUMENT.",
        "N",
    ),
    Option(
        "max-concurrent-streams",
        int,
        "Most TrackStream and WatchConfig calls open at once across the daemon "
        "(RESOURCE_EXHAUSTED beyond).",
        "N",
    ),
    Option(
        "grace-period",
        float,
        "Seconds SIGTERM waits for in-flight RPCs and a last delivery before exiting.",
        "SECONDS",
    ),
    Option(
        "event-loop",
        str,
        "The event loop gRPC, HTTP and the outbox's wake-ups run on. uvloop costs 10-15%"
        " less CPU per call than asyncio's own loop (bench/results); auto: uvloop when it is"
        " installed, else asyncio.",
        "LOOP",
    ),
)

OPTIONS_BY_FIELD: Mapping[str, Option] = {option.field: option for option in OPTIONS}
OPTIONS_BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}


_ORIGIN = re.compile(r"https?://[^/:\s]+(:\d{1,5})?")


def _host_port_problem(flag: str, value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return f"{flag} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:50051"
    return None


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration; built once at start and never changed."""

    config: Path | None = None
    datafile: Path | None = None
    datafile_url: str = ""
    sdk_key: str = ""
    datafile_url_template: str = DEFAULT_URL_TEMPLATE
    datafile_poll_interval: float = 60.0
    listen: str = "127.0.0.1:50051"
    http_listen: str = ""
    http_cors_origins: tuple[str, ...] = ()
    http_batch_max_operations: int = 500
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    log_level: str = "info"
    log_format: LogFormat = "auto"
    log_sample_rate: float = 0.0
    metrics_listen: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_tokens: Path | None = None
    activation_ttl: float = 86400.0  # one day after the last Activate
    override_ttl: float = 86400.0  # a QA session's forced variations outlive it, not forever
    activation_cache_size: int = 1_000_000
    activation_store: str = "auto"
    activation_dir: Path | None = None
    redis_key_prefix: str = "trackd:"
    redis_max_connections: int = 32
    workers: int = 1
    event_endpoint: str = ""
    event_batch_size: int = 100
    event_max_connections: int = 4
    event_flush_interval: float = 1.0
    outbox_max_events: int = 1_000_000
    outbox_sync: OutboxSync = "full"
    dedup_window: float = 86400.0
    default_decide_options: tuple[str, ...] = ()
    max_message_bytes: int = 4 * 1024 * 1024
    max_attributes: int = 100
    max_key_length: int = 256
    max_user_id_length: int = 1024
    max_string_value_length: int = 8192
    max_stream_batch: int = 10_000
    max_concurrent_streams: int = 256
    grace_period: float = 10.0
    event_loop: EventLoop = "auto"

    def __post_init__(self) -> None:
        problems = list(self.problems())
        if problems:
            raise SettingsError(problems)

    def problems(self) -> Sequence[str]:
        """One readable line per invalid setting."""
        found: list[str] = []
        for flag, value in (
            ("--listen", self.listen),
            ("--http-listen", self.http_listen),
            ("--metrics-listen", self.metrics_listen),
        ):
            problem = _host_port_problem(flag, value)
            if problem and (value or flag == "--listen"):
                found.append(problem)
        if self.log_level not in LOG_LEVELS:
            found.append(f"--log-level {self.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            found.append(
                f"--log-format {self.log_format!r}: expected one of {', '.join(LOG_FORMATS)}"
            )
        if self.outbox_sync not in OUTBOX_SYNCS:
            found.append(
                f"--outbox-sync {self.outbox_sync!r}: expected one of {', '.join(OUTBOX_SYNCS)}"
            )
        if self.event_loop not in EVENT_LOOPS:
            found.append(
                f"--event-loop {self.event_loop!r}: expected one of {', '.join(EVENT_LOOPS)}"
            )
        elif self.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            found.append("--event-loop uvloop: uvloop is not installed (pip install uvloop)")
        if not 0.0 <= self.log_sample_rate <= 1.0:
            found.append(f"--log-sample-rate {self.log_sample_rate}: expected 0 to 1")
        endpoint = self.event_endpoint
        if endpoint and not (
            endpoint == OPTIMIZELY or endpoint.startswith(("http://", "https://", "file://"))
        ):
            found.append(
                f"--event-endpoint {endpoint!r}: expected http(s)://..., {OPTIMIZELY} or"
                " file://PATH"
            )
        found.extend(
            f"--default-decide-options {name!r}: expected any of {', '.join(DECIDE_OPTION_NAMES)}"
            for name in self.default_decide_options
            if name not in DECIDE_OPTION_NAMES
        )
        found.extend(
            f"--http-cors-origins {origin!r}: expected * or an origin, e.g."
            " https://app.example.com (a scheme, a host and perhaps a port; no path)"
            for origin in self.http_cors_origins
            if origin != "*" and not _ORIGIN.fullmatch(origin)
        )
        found.extend(self._datafile_problems())
        found.extend(self._tls_problems())
        found.extend(self._scale_out_problems())
        found.extend(
            f"--{name.replace('_', '-')}: must be greater than 0"
            for name in (
                "activation_ttl",
                "override_ttl",
                "event_flush_interval",
                "datafile_poll_interval",
            )
            if not getattr(self, name) > 0
        )
        found.extend(
            f"--{name.replace('_', '-')}: must not be negative"
            for name in ("grace_period", "dedup_window")
            if getattr(self, name) < 0
        )
        # Every integer setting is a count or a size: zero or less is always a mistake.
        found.extend(
            f"--{option.name}: must be at least 1"
            for option in OPTIONS
            if option.parse in (int, _workers) and getattr(self, option.field) < 1
        )
        return found

    def _datafile_problems(self) -> list[str]:
        found: list[str] = []
        given = [
            flag
            for flag, value in (
                ("--datafile", self.datafile),
                ("--datafile-url", self.datafile_url),
                ("--sdk-key", self.sdk_key),
            )
            if value
        ]
        if len(given) > 1:
            found.append(f"{' and '.join(given)}: give only one datafile source")
        url = self.datafile_url
        if url and not url.startswith(("http://", "https://")):
            found.append(f"--datafile-url {url!r}: expected an http:// or https:// URL")
        template = self.datafile_url_template
        if SDK_KEY_PLACEHOLDER not in template or not template.startswith(("http://", "https://")):
            found.append(
                f"--datafile-url-template {template!r}: expected an http(s) URL containing"
                f" {SDK_KEY_PLACEHOLDER}"
            )
        if self.sdk_key and any(c.isspace() or c in "/?#" for c in self.sdk_key):
            found.append("--sdk-key: must not contain whitespace, '/', '?' or '#'")
        return found

    def _tls_problems(self) -> list[str]:
        found: list[str] = []
        if bool(self.tls_cert) != bool(self.tls_key):
            found.append("--tls-cert and --tls-key: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            found.append("--tls-client-ca: needs --tls-cert and --tls-key (mutual TLS is TLS)")
        return found

    def _scale_out_problems(self) -> list[str]:
        found: list[str] = []
        store = self.activation_store
        if store not in ACTIVATION_STORES and not store.startswith(REDIS_SCHEMES):
            found.append(
                f"--activation-store {store!r}: expected {', '.join(ACTIVATION_STORES)} or"
                " redis://HOST:PORT/DB (rediss://, unix://)"
            )
        if not self.redis_key_prefix:
            found.append("--redis-key-prefix: must not be empty")
        if self.workers > 1:
            # Activate on one worker and Track on another must meet in the same store.
            if store == "memory":
                found.append(
                    f"--workers {self.workers}: needs a shared --activation-store (local, or"
                    " redis://HOST:PORT/DB), not memory"
                )
            for flag, value in (("--listen", self.listen), ("--http-listen", self.http_listen)):
                if value.rpartition(":")[2] == "0":
                    found.append(f"--workers {self.workers}: needs a fixed {flag} port, not 0")
        return found

    @property
    def resolved_activation_store(self) -> str:
        """memory, local or a Redis URL: `auto` resolved by the number of workers."""
        if self.activation_store == "auto":
            return "local" if self.workers > 1 else "memory"
        return self.activation_store

    @property
    def resolved_activation_dir(self) -> Path:
        """Where the local activation store lives: the supervisor's data dir, not a
        worker's (see `workers.worker_settings`)."""
        return self.activation_dir or self.data_dir / "activations"

    @property
    def decide_options(self) -> tuple[DecideOption, ...]:
        """--default-decide-options as the decision engine's options."""
        return tuple(DecideOption(name) for name in self.default_decide_options)

    @property
    def resolved_event_endpoint(self) -> str:
        return self.event_endpoint or f"file://{self.data_dir / 'events.jsonl'}"

    @property
    def resolved_datafile_url(self) -> str:
        """The URL to poll: --datafile-url, or the SDK key's CDN URL; empty for none."""
        if self.sdk_key:
            return self.datafile_url_template.replace(SDK_KEY_PLACEHOLDER, self.sdk_key)
        return self.datafile_url


def default_of(name: str) -> Any:
    """The default of the setting `name` (a `Settings` field), where other modules need it
    as their own default."""
    field = _SETTINGS_FIELDS[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


_SETTINGS_FIELDS: Mapping[str, dataclasses.Field[Any]] = {
    field.name: field for field in dataclasses.fields(Settings)
}


class SettingsError(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per option; defaults stay None so env, the file and defaults can fill in."""
    for option in OPTIONS:
        parser.add_argument(
            f"--{option.name}",
            dest=option.field,
            default=None,
            metavar=option.metavar,
            # argparse %-formats help: a literal % (as in "10-15%") must be doubled.
            help=f"{option.help} [env {option.env}; default {option.default_text}]".replace(
                "%", "%%"
            ),
        )


def read_config_file(path: Path) -> dict[str, str]:
    """The settings in a TOML file, as text keyed by field; relative paths are taken from the
    file's own directory, so a config and the files it names can move together."""
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except OSError as error:
        raise SettingsError([f"--config {path}: cannot read: {error.strerror}"]) from error
    except tomllib.TOMLDecodeError as error:
        raise SettingsError([f"--config {path}: not valid TOML: {error}"]) from error
    values: dict[str, str] = {}
    problems: list[str] = []
    for key, value in table.items():
        option = OPTIONS_BY_NAME.get(key.replace("_", "-"))
        if option is None or option.name == "config":
            problems.append(f"{path}: unknown setting {key!r} (see `trackd --help`)")
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            problems.append(f"{path}: {key}: expected a string or a number")
            continue
        text = str(value)
        if option.is_path and text and not Path(text).expanduser().is_absolute():
            text = str(path.parent / text)
        values[option.field] = text
    if problems:
        raise SettingsError(problems)
    return values


def settings_from(
    flags: Mapping[str, str | None], environ: Mapping[str, str] = os.environ
) -> Settings:
    """Flags beat `TRACKD_*` env vars, which beat the config file, which beats the defaults;
    every bad value is reported at once."""
    config_path = flags.get("config") or environ.get(OPTIONS_BY_FIELD["config"].env)
    from_file = read_config_file(_path(config_path)) if config_path else {}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for option in OPTIONS:
        text = flags.get(option.field)
        source = f"--{option.name}"
        if text is None:
            text = environ.get(option.env)
            source = option.env
        if text is None:
            text = from_file.get(option.field)
            source = f"{config_path}: {option.name}"
        if text is None:
            continue
        try:
            parsed = option.parse(text)
        except Unparsable as error:
            problems.append(f"{source} {text!r}: {error}")
            continue
        except ValueError:
            problems.append(f"{source} {text!r}: not a valid {option.parse.__name__.lstrip('_')}")
            continue
        if parsed is not None:
            values[option.field] = parsed
    if problems:
        raise SettingsError(problems)
    return Settings(**values)


def markdown_table() -> str:
    """The README's settings table, generated from OPTIONS (a test keeps them equal)."""
    lines = ["| flag | env | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        flag = f"--{option.name}" + (f" {option.metavar}" if option.metavar else "")
        meaning = option.help.replace("|", "\\|")
        lines.append(f"| `{flag}` | `{option.env}` | `{option.default_text}` | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m trackd.config` prints the README table
    print(markdown_table())

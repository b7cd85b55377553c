"""Settings: one OPTIONS table drives flags, env, the TOML file and the README; every mistake
is one line naming the setting."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
from pathlib import Path

import pytest

from trackd import config
from trackd.activation.redis import DEFAULT_PREFIX
from trackd.activation.store import DEFAULT_MAX_ENTRIES, DEFAULT_TTL_SECONDS
from trackd.config import OPTIONS, Settings, SettingsError, settings_from
from trackd.decision.flags import DecideOption
from trackd.events.fleet import FleetResults
from trackd.rpc import values
from trackd.workers import worker_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def problems_of(flags: dict[str, str | None], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as error:
        settings_from(flags, env or {})
    return list(error.value.problems)


def test_every_option_is_a_settings_field_in_the_same_order() -> None:
    assert [option.field for option in OPTIONS] == [f.name for f in dataclasses.fields(Settings)]


def test_every_default_shown_or_used_elsewhere_is_the_settings_default() -> None:
    """Defaults are written once, on the Settings fields: --help, the request limits, the
    activation stores and fleet results take theirs from there."""
    defaults = Settings()
    for option in OPTIONS:
        assert config.default_of(option.field) == getattr(defaults, option.field), option.name
    serve = argparse.ArgumentParser()
    config.add_arguments(serve)
    helps = {action.dest: action.help or "" for action in serve._actions}
    for option in OPTIONS:
        value = getattr(defaults, option.field)
        if option.shown is None and value not in (None, ""):
            assert f"; default {value}]" in helps[option.field], option.name
    assert values.Limits() == values.Limits(
        max_entries=defaults.max_attributes,
        max_key_length=defaults.max_key_length,
        max_user_id_length=defaults.max_user_id_length,
        max_string_value_length=defaults.max_string_value_length,
    )
    assert (
        defaults.activation_ttl,
        defaults.activation_cache_size,
    ) == (DEFAULT_TTL_SECONDS, DEFAULT_MAX_ENTRIES)
    fleet_prefix = inspect.signature(FleetResults).parameters["prefix"].default
    assert DEFAULT_PREFIX == fleet_prefix == defaults.redis_key_prefix


def test_flags_beat_env_which_beats_the_file_which_beats_defaults(tmp_path: Path) -> None:
    file = tmp_path / "trackd.toml"
    file.write_text(
        'listen = "127.0.0.1:7001"\nevent-batch-size = 7\nmax_attributes = 9\nlog-level = "debug"\n'
    )
    env = {
        "TRACKD_CONFIG": str(file),
        "TRACKD_LISTEN": "127.0.0.1:7002",
        "TRACKD_LOG_LEVEL": "warning",
    }
    settings = settings_from({"listen": "127.0.0.1:7003"}, env)
    assert settings.listen == "127.0.0.1:7003"  # flag over env over file
    assert settings.log_level == "warning"  # env over file
    assert (settings.event_batch_size, settings.max_attributes) == (7, 9)  # file over default
    assert settings.grace_period == 10.0  # default
    assert settings.config == file


def test_config_flag_beats_config_env(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("event-batch-size = 1\n")
    (tmp_path / "b.toml").write_text("event-batch-size = 2\n")
    settings = settings_from(
        {"config": str(tmp_path / "b.toml")}, {"TRACKD_CONFIG": str(tmp_path / "a.toml")}
    )
    assert settings.event_batch_size == 2


def test_relative_paths_in_the_file_are_taken_from_its_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "trackd.toml"
    file.write_text('datafile = "datafile.json"\ntls-cert = "/abs/cert.pem"\ntls-key = "k.pem"\n')
    settings = settings_from({"config": str(file)}, {})
    assert settings.datafile == tmp_path / "conf" / "datafile.json"
    assert settings.tls_cert == Path("/abs/cert.pem")
    assert settings.tls_key == tmp_path / "conf" / "k.pem"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("listen = ", "not valid TOML"),
        ("lisen = '127.0.0.1:1'", "unknown setting 'lisen'"),
        ("config = 'other.toml'", "unknown setting 'config'"),
        ("listen = ['a']", "listen: expected a string or a number"),
        ("event-batch-size = true", "event-batch-size: expected a string or a number"),
        ("event-batch-size = 'many'", "event-batch-size 'many': not a valid int"),
    ],
)
def test_file_mistakes_are_one_line_naming_the_file(
    tmp_path: Path, content: str, expected: str
) -> None:
    file = tmp_path / "trackd.toml"
    file.write_text(content + "\n")
    problems = problems_of({"config": str(file)})
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert str(file) in problems[0]


def test_a_missing_config_file_is_one_line() -> None:
    problems = problems_of({"config": "/nonexistent/trackd.toml"})
    assert problems == ["--config /nonexistent/trackd.toml: cannot read: No such file or directory"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"datafile": "d.json", "sdk_key": "abc"}, "--datafile and --sdk-key: give only one"),
        ({"datafile_url": "ftp://x/d.json"}, "--datafile-url 'ftp://x/d.json': expected an http"),
        ({"sdk_key": "a/b"}, "--sdk-key: must not contain"),
        ({"datafile_url_template": "https://cdn/x.json"}, "containing {sdk_key}"),
        ({"datafile_poll_interval": "0"}, "--datafile-poll-interval: must be greater than 0"),
        ({"override_ttl": "0"}, "--override-ttl: must be greater than 0"),
        ({"metrics_listen": "9090"}, "--metrics-listen '9090': expected HOST:PORT"),
        ({"http_listen": "8080"}, "--http-listen '8080': expected HOST:PORT"),
        ({"http_cors_origins": "https://a.example, a.example"}, "--http-cors-origins 'a.example'"),
        ({"http_cors_origins": "https://a.example/app"}, "(a scheme, a host and perhaps a port"),
        (
            {"workers": "2", "activation_store": "redis://r:6379/0", "http_listen": "[::1]:0"},
            "--workers 2: needs a fixed --http-listen port, not 0",
        ),
        ({"log_sample_rate": "1.5"}, "--log-sample-rate 1.5: expected 0 to 1"),
        ({"tls_cert": "c.pem"}, "--tls-cert and --tls-key: give both or neither"),
        ({"tls_client_ca": "ca.pem"}, "--tls-client-ca: needs --tls-cert"),
        ({"max_concurrent_streams": "0"}, "--max-concurrent-streams: must be at least 1"),
        ({"log_sample_rate": "often"}, "--log-sample-rate 'often': not a valid float"),
        ({"outbox_sync": "always"}, "--outbox-sync 'always': expected one of full, normal"),
        (
            {"workers": "2", "activation_store": "memory"},
            "--workers 2: needs a shared --activation-store (local, or redis://HOST:PORT/DB),"
            " not memory",
        ),
        (
            {"workers": "many"},
            "--workers 'many': expected a number of processes or auto (one per core)",
        ),
        ({"workers": "0"}, "--workers: must be at least 1"),
        (
            {"activation_store": "lmdb"},
            "--activation-store 'lmdb': expected auto, memory, local or redis://HOST:PORT/DB",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_the_setting(
    flags: dict[str, str | None], expected: str
) -> None:
    problems = problems_of(flags)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_several_mistakes_are_reported_together() -> None:
    problems = problems_of({"metrics_listen": "x", "tls_key": "k.pem", "log_level": "loud"})
    assert len(problems) == 3, problems


def test_outbox_sync_is_full_unless_normal_is_chosen() -> None:
    assert settings_from({}, {}).outbox_sync == "full"
    assert settings_from({"outbox_sync": "normal"}, {}).outbox_sync == "normal"
    assert settings_from({}, {"TRACKD_OUTBOX_SYNC": "normal"}).outbox_sync == "normal"


def test_env_mistakes_name_the_env_var() -> None:
    assert problems_of({}, {"TRACKD_ACTIVATION_TTL": "soon"}) == [
        "TRACKD_ACTIVATION_TTL 'soon': not a valid float"
    ]


def test_sdk_key_becomes_the_cdn_url_through_the_template() -> None:
    settings = settings_from({"sdk_key": "Abc123"}, {})
    assert settings.resolved_datafile_url == "https://cdn.optimizely.com/datafiles/Abc123.json"
    custom = settings_from(
        {"sdk_key": "K", "datafile_url_template": "http://127.0.0.1:8/df/{sdk_key}"}, {}
    )
    assert custom.resolved_datafile_url == "http://127.0.0.1:8/df/K"
    assert settings_from({}, {}).resolved_datafile_url == ""


def test_the_readme_settings_table_is_generated_from_options() -> None:
    text = README.read_text()
    block = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", text, re.DOTALL)
    assert block, "README lost its settings table markers"
    assert block.group(1).strip() == config.markdown_table(), (
        "README settings table is stale: regenerate it with `python -m trackd.config`"
    )


def test_the_event_endpoint_is_a_url_optimizely_or_a_file() -> None:
    for endpoint in ("http://127.0.0.1:9/v1/events", "optimizely", "file:///tmp/events.jsonl"):
        assert settings_from({"event_endpoint": endpoint}, {}).event_endpoint == endpoint
    (problem,) = problems_of({"event_endpoint": "logx.optimizely.com"})
    assert problem == (
        "--event-endpoint 'logx.optimizely.com': expected http(s)://..., optimizely or file://PATH"
    )


def test_default_decide_options_are_the_sdks_option_names_comma_separated() -> None:
    settings = settings_from({"default_decide_options": "INCLUDE_REASONS, EXCLUDE_VARIABLES"}, {})
    assert settings.decide_options == (DecideOption.INCLUDE_REASONS, DecideOption.EXCLUDE_VARIABLES)
    from_env = settings_from({}, {"TRACKD_DEFAULT_DECIDE_OPTIONS": "DISABLE_DECISION_EVENT"})
    assert from_env.decide_options == (DecideOption.DISABLE_DECISION_EVENT,)
    assert settings_from({}, {}).decide_options == ()
    with pytest.raises(SettingsError) as bad:
        settings_from(
            {"default_decide_options": "INCLUDE_REASONS,DECIDE_OPTION_EXCLUDE_VARIABLES"}, {}
        )
    assert bad.value.problems == (
        "--default-decide-options 'DECIDE_OPTION_EXCLUDE_VARIABLES': expected any of"
        " DISABLE_DECISION_EVENT, ENABLED_FLAGS_ONLY, IGNORE_USER_PROFILE_SERVICE,"
        " INCLUDE_REASONS, EXCLUDE_VARIABLES",
    )


def test_workers_auto_is_one_per_core_this_process_may_use() -> None:
    cores = len(os.sched_getaffinity(0))
    assert settings_from({"workers": "auto"}, {}).workers == cores
    assert settings_from({}, {"TRACKD_WORKERS": "auto"}).workers == cores
    assert settings_from({"workers": "3"}, {}).workers == 3


def test_several_workers_share_a_local_store_unless_redis_is_given(tmp_path: Path) -> None:
    """Out of the box: `--workers 2` alone is valid, and every worker opens the supervisor's
    DATA_DIR/activations (not its own worker-N data dir)."""
    one = Settings(data_dir=tmp_path)
    assert one.resolved_activation_store == "memory"
    two = Settings(data_dir=tmp_path, workers=2, listen="127.0.0.1:1")
    assert two.resolved_activation_store == "local"
    shared = {worker_settings(two, i).resolved_activation_dir for i in range(2)}
    assert shared == {tmp_path / "activations"}
    assert {worker_settings(two, i).resolved_activation_store for i in range(2)} == {"local"}
    elsewhere = Settings(
        data_dir=tmp_path, workers=2, listen="127.0.0.1:1", activation_dir=tmp_path / "x"
    )
    assert worker_settings(elsewhere, 1).resolved_activation_dir == tmp_path / "x"
    redis = Settings(workers=2, listen="127.0.0.1:1", activation_store="redis://r:6379/0")
    assert redis.resolved_activation_store == "redis://r:6379/0"

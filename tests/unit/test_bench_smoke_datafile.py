"""bench/gen_datafile.py makes datafiles that trackd and optimizely-sdk both accept and
decide alike, at least as large as asked."""

from __future__ import annotations

import logging

from optimizely import optimizely
from optimizely.logger import NoOpLogger

from bench import gen_datafile
from tests.support.oracle import CapturingDispatcher
from trackd.datafile import parse_datafile
from trackd.decision import decide


def test_generated_datafile_reaches_its_size_and_both_engines_agree_on_it() -> None:
    generator = gen_datafile
    text = generator.generate(60_000)
    assert 60_000 <= len(text) < 80_000
    assert generator.generate(60_000) == text  # deterministic

    config = parse_datafile(text)
    assert len(config.experiments_by_id) >= 30
    assert config.groups_by_id and config.audiences_by_id and config.events_by_key

    logging.getLogger("optimizely").setLevel(logging.CRITICAL + 1)
    sdk = optimizely.Optimizely(text, event_dispatcher=CapturingDispatcher(), logger=NoOpLogger())
    assert sdk.is_valid
    try:
        for n in range(40):
            unit = n % 5
            attributes = {f"device_{unit}": ("iPhone", "Android")[n % 2], f"score_{unit}": n * 3}
            for experiment in config.experiments_by_key.values():
                if not experiment.key.startswith(f"exp_{unit}_"):
                    continue
                ours = decide(config, experiment, f"user-{n}", attributes).variation
                theirs = sdk.get_variation(experiment.key, f"user-{n}", attributes)
                assert (ours.key if ours else None) == theirs, (experiment.key, n)
    finally:
        sdk.close()


def test_flags_datafile_has_the_decide_benchmarks_shape_and_the_sdk_accepts_it() -> None:
    text = gen_datafile.build_flags(50)
    assert gen_datafile.build_flags(50) == text  # deterministic
    config = parse_datafile(text)
    assert len(config.flags_by_key) == 50
    for flag in config.flags_by_key.values():
        assert [len(test.variations_by_key) for test in flag.experiments] == [2]
        assert flag.rollout is not None
        rules = flag.rollout.rules
        assert [bool(rule.audience_ids) for rule in rules] == [True, True, False]
        assert sorted(v.type for v in flag.variables) == [
            "boolean",
            "double",
            "integer",
            "json",
            "string",
        ]
    logging.getLogger("optimizely").setLevel(logging.CRITICAL + 1)
    sdk = optimizely.Optimizely(text, event_dispatcher=CapturingDispatcher(), logger=NoOpLogger())
    try:
        assert sdk.is_valid
        assert len(sdk.create_user_context("user-1", {}).decide_all()) == 50
    finally:
        sdk.close()


def test_parse_size_reads_units() -> None:
    generator = gen_datafile
    assert generator.parse_size("10MB") == 10 << 20
    assert generator.parse_size("200kb") == 200 << 10
    assert generator.parse_size("1234") == 1234

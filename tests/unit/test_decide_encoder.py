"""Decide's response built from each decision's cached bytes is exactly the message built
field by field, for every kind of decision and with impression_recorded either way."""

from __future__ import annotations

import pytest

from bench.gen_datafile import build_flags
from trackd.datafile import parse_datafile
from trackd.decision.flags import DecideOption, decide_all, decide_for_keys
from trackd.rpc.decisions import DecideEncoder, flag_decision
from trackd.v1 import tracking_service_pb2 as pb

CONFIG = parse_datafile(build_flags(12))
USERS = [(f"user-{n}", {"age": 20 + n % 40, "country": ("US", "FR")[n % 2]}) for n in range(60)]


def reference(pairs: list[tuple[object, bool]], revision: str) -> pb.DecideResponse:
    return pb.DecideResponse(
        decisions=[flag_decision(d, recorded) for d, recorded in pairs],  # type: ignore[arg-type]
        revision=revision,
    )


@pytest.mark.parametrize("options", [frozenset(), frozenset({DecideOption.INCLUDE_REASONS})])
def test_the_encoded_response_equals_the_message_built_field_by_field(
    options: frozenset[DecideOption],
) -> None:
    encoder = DecideEncoder()
    seen_types = set()
    for n, (user_id, attributes) in enumerate(USERS):
        decisions = decide_all(CONFIG, user_id, attributes, options=options)
        pairs = [(d, (n + i) % 3 == 0) for i, d in enumerate(decisions)]
        for _ in range(2):  # the second time from the cache
            got = pb.DecideResponse.FromString(encoder.response(pairs, CONFIG.revision))
            assert got == reference(pairs, CONFIG.revision)
        seen_types.update(d.rule_type for d in decisions)
    assert len(seen_types) >= 2  # feature tests and rollouts both went through


def test_errors_and_an_empty_answer_encode_as_messages_do() -> None:
    encoder = DecideEncoder()
    decisions = decide_for_keys(CONFIG, ["no_such_flag", next(iter(CONFIG.flag_keys))], "u1", {})
    pairs = [(d, False) for d in decisions]
    assert decisions[0].error
    assert pb.DecideResponse.FromString(encoder.response(pairs, "r1")) == reference(pairs, "r1")
    assert encoder.response([], "") == b""

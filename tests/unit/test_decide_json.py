"""Decide's Connect JSON, printed from the encoder's bytes by `trackd.rpc.decide_json`, is
byte for byte what `json_format.MessageToJson` prints of the same response, for every kind
of decision, from the cache and not, and the codecs pass a serialized reply through."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from bench.gen_datafile import build_flags
from tests.unit.test_plain_values import EDGES
from trackd.datafile import parse_datafile
from trackd.decision.flags import DecideOption, decide_all, decide_for_keys
from trackd.rpc.connect import JsonCodec, ProtoCodec, Serialized
from trackd.rpc.decide_json import DecideJson, member_printers
from trackd.rpc.decisions import DecideEncoder
from trackd.v1 import tracking_service_pb2 as pb

CONFIG = parse_datafile(build_flags(20))
USERS = [(f"user-{n}", {"age": 20 + n % 40, "country": ("US", "FR")[n % 2]}) for n in range(50)]


def assert_printed_as_json_format(printer: DecideJson, data: bytes) -> None:
    expected = json_format.MessageToJson(pb.DecideResponse.FromString(data), indent=None)
    got = printer.encode(data)
    assert json.loads(got) == json.loads(expected)
    assert got == expected.encode()


@pytest.mark.parametrize(
    "options",
    [
        frozenset(),
        frozenset({DecideOption.INCLUDE_REASONS}),
        frozenset({DecideOption.EXCLUDE_VARIABLES}),
        frozenset({DecideOption.EXCLUDE_VARIABLES, DecideOption.INCLUDE_REASONS}),
    ],
    ids=["plain", "reasons", "no-variables", "no-variables-reasons"],
)
def test_every_decision_prints_as_json_format_prints_it(options: frozenset[DecideOption]) -> None:
    encoder, printer = DecideEncoder(), DecideJson()
    rule_types, recorded_seen = set(), set()
    for n, (user_id, attributes) in enumerate(USERS):
        decisions = decide_all(CONFIG, user_id, attributes, options=options)
        pairs = [(d, (n + i) % 3 == 0) for i, d in enumerate(decisions)]
        data = encoder.response(pairs, CONFIG.revision)
        for _ in range(2):  # the second time from the kept fragments
            assert_printed_as_json_format(printer, data)
        rule_types.update(d.rule_type for d in decisions)
        recorded_seen.update(recorded for _, recorded in pairs)
    assert len(rule_types) >= 2 and recorded_seen == {True, False}


def test_errors_a_lone_revision_and_an_empty_answer_print_as_json_format_prints_them() -> None:
    encoder, printer = DecideEncoder(), DecideJson()
    flag_key = next(iter(CONFIG.flag_keys))
    decisions = decide_for_keys(CONFIG, ["no_such_flag", flag_key, "ünïcode"], "u1", {})
    assert decisions[0].error
    for recorded in (False, True):
        pairs = [(d, recorded) for d in decisions]
        assert_printed_as_json_format(printer, encoder.response(pairs, "r1"))
    assert_printed_as_json_format(printer, encoder.response([], "r1"))
    assert printer.encode(b"") == b"{}"


def test_value_edge_cases_in_variables_print_as_json_format_prints_them() -> None:
    variables = Struct()
    variables.update(EDGES)
    decision = pb.FlagDecision(flag_key="f", variables=variables, rule_type=3, reasons=["é"])
    response = pb.DecideResponse(decisions=[decision, decision], revision="7")
    assert_printed_as_json_format(DecideJson(), response.SerializeToString())


def test_bytes_not_written_by_the_encoder_still_print_as_json_format_prints_them() -> None:
    """Fields out of the encoder's order, a repeated revision (the last one wins), and an
    enum number the proto does not know (printed as the number, as json_format does)."""
    response = pb.DecideResponse(revision="old")
    late = pb.DecideResponse(decisions=[pb.FlagDecision(flag_key="f", rule_type=99)], revision="2")
    data = response.SerializeToString() + late.SerializeToString()
    assert_printed_as_json_format(DecideJson(), data)


def test_a_field_of_a_kind_it_cannot_print_is_refused_not_misprinted() -> None:
    with pytest.raises(TypeError, match="decisions"):
        member_printers(pb.DecideResponse.DESCRIPTOR)


def test_the_codecs_encode_a_serialized_reply_without_a_message() -> None:
    decisions = decide_all(CONFIG, "u1", {"age": 30})
    data = DecideEncoder().response([(d, True) for d in decisions], CONFIG.revision)
    message = pb.DecideResponse.FromString(data)
    reply = Serialized(data, pb.DecideResponse)
    assert ProtoCodec().encode(reply) == data
    assert JsonCodec().encode(reply) == JsonCodec().encode(message)
    assert JsonCodec().encode(reply) == json_format.MessageToJson(message, indent=None).encode()
    other = pb.ActivateResponse(variation_key="v")
    serialized_other = Serialized(other.SerializeToString(), pb.ActivateResponse)
    assert JsonCodec().encode(serialized_other) == JsonCodec().encode(other)

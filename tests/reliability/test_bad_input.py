"""Property-based bad input against one live daemon: every RPC answers OK or a documented
status (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED), never INTERNAL or UNKNOWN, and the
daemon is alive and SERVING afterwards."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import ListValue, Struct, Value
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.support import ROOT, record
from tests.support.daemon import Process, spawn
from tests.support.protowire import field as _field
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

# The reliability datafile and two flags (an A/B-tested one and a rollout), so Decide and the
# forced decisions reach real flags, rules and variations as well as unknown ones.
DATAFILE = ROOT / "tests" / "data" / "clients_datafile.json"
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
EXAMPLES = 150
OUTCOMES: collections.Counter[str] = collections.Counter()
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    # --outbox-max-events keeps the fuzzed Track calls on disk (nowhere to deliver) bounded.
    data_dir = tmp_path_factory.mktemp("fuzz")
    with spawn(data_dir, "--datafile", str(DATAFILE), "--outbox-max-events", "5000") as process:
        yield process
        assert process.popen.poll() is None, "the daemon died under fuzzing"
        internal = [x for x in process.log_lines() if x.get("event") == "rpc_failed"]
        assert not internal, internal[:3]
        assert process.stop() == 0
    record("bad_input", examples_per_property=EXAMPLES, **dict(sorted(OUTCOMES.items())))


@pytest.fixture(scope="module")
def stub(daemon: Process) -> Iterator[pb_grpc.TrackingServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        yield pb_grpc.TrackingServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


# -- strategies ------------------------------------------------------------------------------

# Any unicode a protobuf string can carry (no lone surrogates: not valid UTF-8 on the wire).
unicode = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
# Lengths at and just beyond each documented cap, and far beyond.
huge = st.sampled_from([256, 257, 1024, 1025, 8192, 8193, 100_000]).flatmap(
    lambda n: st.sampled_from(["a" * n, "é" * n, "\U0001f600" * n])
)
strings = st.one_of(unicode, huge, st.just(""))
experiment_keys = st.one_of(st.sampled_from(["ab_running", "ab_iphone", "paused_exp"]), strings)
event_keys = st.one_of(st.sampled_from(["signup", "my_conversion", "purchase"]), strings)
user_ids = st.one_of(st.sampled_from(["u1", "qa", "user123"]), strings)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 2.0**53, 2.0**53 + 2, -0.0, 1e308]),
)


def _value(kind: str, payload: Any) -> Value:
    if kind == "number":
        return Value(number_value=payload)
    if kind == "string":
        return Value(string_value=payload)
    if kind == "bool":
        return Value(bool_value=payload)
    if kind == "null":
        return Value(null_value=0)
    return Value()  # no kind set at all


scalars = st.one_of(
    st.builds(_value, st.just("number"), numbers),
    st.builds(_value, st.just("string"), strings),
    st.builds(_value, st.just("bool"), st.booleans()),
    st.builds(_value, st.just("null"), st.none()),
    st.builds(_value, st.just("unset"), st.none()),
)


def _nest(children: st.SearchStrategy[Value]) -> st.SearchStrategy[Value]:
    def as_list(items: list[Value]) -> Value:
        return Value(list_value=ListValue(values=items))

    def as_struct(fields: dict[str, Value]) -> Value:
        struct = Struct()
        for key, child in fields.items():
            struct.fields[key].CopyFrom(child)
        return Value(struct_value=struct)

    return st.one_of(
        st.builds(as_list, st.lists(children, max_size=3)),
        st.builds(as_struct, st.dictionaries(unicode, children, max_size=3)),
    )


# Wrong kinds (lists, structs), nested up to ~10 deep (deeper is test_undecodable_requests).
values = st.recursive(scalars, _nest, max_leaves=12)
attribute_names = st.one_of(st.sampled_from(["device", "ad_source", "age"]), unicode, huge)
# Wide maps straddle --max-attributes (100).
attribute_maps = st.one_of(
    st.dictionaries(attribute_names, values, max_size=6),
    st.integers(95, 140).map(lambda n: {f"k{i}": Value(number_value=i) for i in range(n)}),
)


def outcome(method: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        reply = call(*args, timeout=10, **kwargs)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code, reply = error.code(), None
    OUTCOMES[f"{method}:{code.name}"] += 1
    assert code in ALLOWED, (method, code, args)
    return reply


def maps(target: Any, values_: dict[str, Value]) -> None:
    for key, value in values_.items():
        target[key].CopyFrom(value)


# -- one property per RPC ---------------------------------------------------------------------


@FUZZ
@given(key=experiment_keys, user=user_ids, attributes=attribute_maps, activate=st.booleans())
def test_decisions(
    stub: pb_grpc.TrackingServiceStub,
    key: str,
    user: str,
    attributes: dict[str, Value],
    activate: bool,
) -> None:
    if activate:
        request = pb.ActivateRequest(experiment_key=key, user_id=user)
        maps(request.attributes, attributes)
        outcome("Activate", stub.Activate, request)
    else:
        request2 = pb.GetVariationRequest(experiment_key=key, user_id=user)
        maps(request2.attributes, attributes)
        outcome("GetVariation", stub.GetVariation, request2)


def track_requests() -> st.SearchStrategy[pb.TrackRequest]:
    def build(
        key: str, user: str, attributes: dict[str, Value], tags: dict[str, Value]
    ) -> pb.TrackRequest:
        request = pb.TrackRequest(event_key=key, user_id=user)
        maps(request.attributes, attributes)
        maps(request.tags, tags)
        return request

    tag_maps = st.one_of(
        attribute_maps,
        st.fixed_dictionaries({"revenue": st.builds(_value, st.just("number"), numbers)}),
        st.fixed_dictionaries({"value": st.builds(_value, st.just("string"), strings)}),
    )
    return st.builds(build, event_keys, user_ids, attribute_maps, tag_maps)


@FUZZ
@given(request=track_requests())
def test_track(stub: pb_grpc.TrackingServiceStub, request: pb.TrackRequest) -> None:
    reply = outcome("Track", stub.Track, request)
    if reply is not None:
        assert reply.uuid


@FUZZ
@given(
    batches=st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 2**64 - 1]) | st.integers(0, 2**64 - 1),
            st.lists(track_requests(), max_size=4),
        ),
        max_size=5,
    ),
    duplicate=st.booleans(),
)
def test_track_stream(
    stub: pb_grpc.TrackingServiceStub,
    batches: list[tuple[int, list[pb.TrackRequest]]],
    duplicate: bool,
) -> None:
    """Empty streams and batches, duplicate and extreme (0, 2**64-1) sequences: each batch gets
    one acknowledgement with its sequence, in order; per-event errors are documented codes."""
    if duplicate and batches:
        batches = [*batches, batches[0]]
    requests = [pb.TrackStreamRequest(sequence=s, events=events) for s, events in batches]
    try:
        acks = list(stub.TrackStream(iter(requests), timeout=20))
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code, acks = error.code(), []
    OUTCOMES[f"TrackStream:{code.name}"] += 1
    assert code in ALLOWED
    if code is grpc.StatusCode.OK:
        assert [a.sequence for a in acks] == [s for s, _ in batches]
        allowed_numbers = {c.value[0] for c in ALLOWED}
        for ack, (_, events) in zip(acks, batches, strict=True):
            assert ack.code in allowed_numbers
            assert ack.accepted + len(ack.errors) == (len(events) if ack.code == 0 else 0)
            assert {e.code for e in ack.errors} <= allowed_numbers


@FUZZ
@given(key=experiment_keys)
def test_experiment_results(stub: pb_grpc.TrackingServiceStub, key: str) -> None:
    request = pb.GetExperimentResultsRequest(experiment_key=key)
    outcome("GetExperimentResults", stub.GetExperimentResults, request)


@FUZZ
@given(
    key=experiment_keys,
    user=user_ids,
    variation=st.one_of(st.sampled_from(["variation_a", "variation_b", ""]), strings),
)
def test_forced_variations(
    stub: pb_grpc.TrackingServiceStub, key: str, user: str, variation: str
) -> None:
    set_request = pb.SetForcedVariationRequest(
        experiment_key=key, user_id=user, variation_key=variation
    )
    outcome("SetForcedVariation", stub.SetForcedVariation, set_request)
    get_request = pb.GetForcedVariationRequest(experiment_key=key, user_id=user)
    outcome("GetForcedVariation", stub.GetForcedVariation, get_request)


flag_keys = st.one_of(st.sampled_from(["e2e_checkout", "e2e_banner"]), strings)
rule_keys = st.one_of(
    st.sampled_from(["", "checkout_test", "banner_half", "checkout_everyone_else"]), strings
)
variation_keys = st.one_of(st.sampled_from(["control", "treatment", "on", "off"]), strings)
# Every DecideOption, repeated or not, and numbers the enum does not have (an open enum
# carries them on the wire).
decide_options = st.lists(
    st.one_of(st.integers(0, 5), st.sampled_from([6, 99, 2**31 - 1, -1])), max_size=6
)
ENABLED_FLAGS_ONLY = pb.DECIDE_OPTION_ENABLED_FLAGS_ONLY


@FUZZ
@given(
    user=user_ids,
    attributes=attribute_maps,
    keys=st.lists(flag_keys, max_size=4),
    options=decide_options,
)
def test_decide(
    stub: pb_grpc.TrackingServiceStub,
    user: str,
    attributes: dict[str, Value],
    keys: list[str],
    options: list[int],
) -> None:
    """Unknown and huge flag keys are per-flag errors in an OK answer (as decide_for_keys);
    an empty user id or an option the enum does not have is INVALID_ARGUMENT."""
    request = pb.DecideRequest(user_id=user, flag_keys=keys, options=options)
    maps(request.attributes, attributes)
    reply = outcome("Decide", stub.Decide, request)
    if not user or any(not 0 <= option <= 5 for option in options):
        assert reply is None
    if reply is None:
        return
    assert reply.revision
    answered = {d.flag_key: d for d in reply.decisions}
    if keys and ENABLED_FLAGS_ONLY not in options:
        assert set(answered) == set(keys)
    for key, decision in answered.items():
        known = key in ("e2e_checkout", "e2e_banner")
        assert bool(decision.error) is not known, decision
        assert not (decision.error and decision.enabled), decision


@FUZZ
@given(user=user_ids, flag=flag_keys, rule=rule_keys, variation=variation_keys)
def test_forced_decisions(
    stub: pb_grpc.TrackingServiceStub, user: str, flag: str, rule: str, variation: str
) -> None:
    """Set, get, decide with, remove one and remove all: an empty user, flag or variation key
    is INVALID_ARGUMENT; what was set is what is read back and removed."""
    context = {"user_id": user, "flag_key": flag, "rule_key": rule}
    stored = outcome(
        "SetForcedDecision",
        stub.SetForcedDecision,
        pb.SetForcedDecisionRequest(variation_key=variation, **context),
    )
    if not (user and flag and variation):
        assert stored is None
    got = outcome(
        "GetForcedDecision", stub.GetForcedDecision, pb.GetForcedDecisionRequest(**context)
    )
    if stored is not None:
        assert got.variation_key == variation
    decided = outcome("Decide", stub.Decide, pb.DecideRequest(user_id=user, flag_keys=[flag]))
    if decided is not None:
        assert [d.flag_key for d in decided.decisions] == [flag]
    removed = outcome(
        "RemoveForcedDecision",
        stub.RemoveForcedDecision,
        pb.RemoveForcedDecisionRequest(**context),
    )
    if stored is not None:
        assert removed.removed
    cleared = outcome(
        "RemoveAllForcedDecisions",
        stub.RemoveAllForcedDecisions,
        pb.RemoveAllForcedDecisionsRequest(user_id=user),
    )
    if not user:
        assert cleared is None
    elif stored is not None:
        assert cleared.removed == 0  # the one set was removed above


def test_config_rpcs_take_no_input_and_answer(stub: pb_grpc.TrackingServiceStub) -> None:
    assert outcome("GetConfig", stub.GetConfig, pb.GetConfigRequest()).revision
    watch = stub.WatchConfig(pb.WatchConfigRequest(), timeout=10)
    assert next(watch).config.revision
    watch.cancel()


# -- requests that do not parse -----------------------------------------------------------------


def _deep_attribute(depth: int) -> bytes:
    """ActivateRequest bytes with an attribute nested `depth` structs deep: more than the
    100 levels protobuf will parse (no protobuf library will build it, so it is hand-made)."""
    value = _field(3, b"x")
    for _ in range(depth):
        value = _field(5, _field(1, _field(1, b"k") + _field(2, value)))
    attribute = _field(3, _field(1, b"a") + _field(2, value))
    return _field(1, b"ab_running") + _field(2, b"u1") + attribute


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff", _field(1, b"\xc3\x28"), _deep_attribute(200)],
    ids=["corrupt", "bad-utf8", "nested-200"],
)
def test_undecodable_requests_are_invalid_argument(daemon: Process, body: bytes) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        activate = channel.unary_unary("/trackd.v1.TrackingService/Activate")
        with pytest.raises(grpc.RpcError) as error:
            activate(body, timeout=10)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING  # it survives either way
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()


def test_an_undecodable_stream_batch_is_invalid_argument(daemon: Process) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        stream = channel.stream_stream("/trackd.v1.TrackingService/TrackStream")
        with pytest.raises(grpc.RpcError) as error:
            list(stream(iter([b"\xff\xff\xff"]), timeout=10))
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()


def test_an_undecodable_event_in_a_stream_batch_is_reported_by_its_index(daemon: Process) -> None:
    """Map entries of streamed events are decoded one event at a time (trackd.rpc.wire), so an
    attribute the protobuf runtime cannot read rejects its event, not the batch or the stream."""
    good = _field(1, b"signup") + _field(2, b"u1") + _field(4, _field(1, b"plan"))
    bad_utf8 = _field(1, b"signup") + _field(2, b"u2") + _field(3, _field(1, b"\xc3\x28"))
    too_deep = _deep_attribute(200).replace(_field(1, b"ab_running"), _field(1, b"signup"), 1)
    events = [good, bad_utf8, too_deep, good]
    batch = b"\x08\x07" + b"".join(_field(2, event) for event in events)  # sequence 7
    again = b"\x08\x08" + _field(2, good)
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        stream = channel.stream_stream(
            "/trackd.v1.TrackingService/TrackStream",
            response_deserializer=pb.TrackStreamResponse.FromString,
        )
        acks = list(stream(iter([batch, again]), timeout=10))
    assert [(a.sequence, a.code, a.accepted) for a in acks] == [(7, 0, 2), (8, 0, 1)]
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [(e.index, e.code) for e in acks[0].errors] == [(1, invalid), (2, invalid)]
    assert all("not a valid protobuf message" in e.message for e in acks[0].errors)

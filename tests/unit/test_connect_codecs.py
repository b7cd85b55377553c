"""The HTTP port's Connect codecs and compression: a bad or oversized request is the
caller's mistake, with its Connect code, never an internal error or a full memory."""

from __future__ import annotations

import gzip

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from trackd.rpc.connect import BoundedGzip, JsonCodec, ProtoCodec
from trackd.v1 import tracking_service_pb2 as pb

LIMIT = 64 * 1024


def test_gzip_stops_inflating_past_the_limit() -> None:
    """A 64 MB bomb in a few tens of kilobytes is refused after LIMIT bytes are inflated."""
    bomb = gzip.compress(bytes(64 * 2**20))
    assert len(bomb) < LIMIT
    with pytest.raises(ConnectError) as refused:
        BoundedGzip(LIMIT).decompress(bomb)
    assert refused.value.code is Code.RESOURCE_EXHAUSTED
    assert "limit of 65536 bytes" in refused.value.message


def test_gzip_within_the_limit_round_trips_and_garbage_is_invalid() -> None:
    codec = BoundedGzip(LIMIT)
    assert codec.decompress(codec.compress(b"x" * LIMIT)) == b"x" * LIMIT
    with pytest.raises(ConnectError) as refused:
        codec.decompress(b"not gzip")
    assert refused.value.code is Code.INVALID_ARGUMENT


def test_json_is_compact_and_reads_unknown_fields_and_either_name() -> None:
    codec = JsonCodec()
    message = pb.ActivateRequest(experiment_key="e", user_id="u")
    assert codec.encode(message) == b'{"experimentKey": "e", "userId": "u"}'
    read = codec.decode(b'{"experiment_key": "e", "userId": "u", "later": 1}', pb.ActivateRequest())
    assert read == message


@pytest.mark.parametrize(
    ("codec", "data"),
    [(JsonCodec(), b"{nope"), (JsonCodec(), b"\xff\xfe"), (ProtoCodec(), b"\xff\xff")],
)
def test_an_unparsable_request_is_invalid_argument(
    codec: JsonCodec | ProtoCodec, data: bytes
) -> None:
    with pytest.raises(ConnectError) as refused:
        codec.decode(data, pb.ActivateRequest())
    assert refused.value.code is Code.INVALID_ARGUMENT
    assert "not a valid protobuf message" in refused.value.message

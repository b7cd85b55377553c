"""Decide over the HTTP port leaves the servicer serialized and is encoded without being
parsed into a message (`connect.Serialized`): in every encoding connectrpc serves (Connect
and gRPC-Web, JSON and binary) the answer is exactly gRPC's."""

from __future__ import annotations

import struct

import httpx
import pytest
from google.protobuf import json_format

from tests.support.daemon import Client
from tests.support.http_port import client as client  # the fixture
from trackd.v1 import tracking_service_pb2 as pb

ROUTE = "/trackd.v1.TrackingService/Decide"


def _grpc_web_message(data: bytes) -> bytes:
    """The one message of a gRPC-Web answer (its trailers frame, flag 0x80, skipped)."""
    flags, length = struct.unpack(">BI", data[:5])
    assert flags == 0
    trailers = data[5 + length :]
    assert b"grpc-status:0" in trailers.replace(b" ", b"")
    return data[5 : 5 + length]


@pytest.mark.parametrize(
    "options",
    [
        [pb.DECIDE_OPTION_DISABLE_DECISION_EVENT],
        [pb.DECIDE_OPTION_DISABLE_DECISION_EVENT, pb.DECIDE_OPTION_INCLUDE_REASONS],
    ],
    ids=["plain", "reasons"],
)
async def test_decide_in_every_http_encoding_is_grpcs_answer(
    client: Client, options: list[int]
) -> None:
    # Nothing recorded or remembered, so every call is the same decision; an unknown key too.
    request = pb.DecideRequest(user_id="eve", options=options)
    every_flag = await client.stub.Decide(request)
    request.flag_keys.extend([d.flag_key for d in every_flag.decisions] + ["no_such_flag"])
    by_grpc = await client.stub.Decide(request)
    assert len(by_grpc.decisions) >= 2 and by_grpc.decisions[-1].error
    as_json = json_format.MessageToJson(by_grpc, indent=None).encode()
    binary = request.SerializeToString()
    envelope = struct.pack(">BI", 0, len(binary)) + binary
    json_body = json_format.MessageToJson(request, indent=None).encode()
    json_envelope = struct.pack(">BI", 0, len(json_body)) + json_body
    async with httpx.AsyncClient(base_url=client.http_url, timeout=10) as http:
        connect_json = await http.post(
            ROUTE, content=json_body, headers={"content-type": "application/json"}
        )
        connect_proto = await http.post(
            ROUTE, content=binary, headers={"content-type": "application/proto"}
        )
        web_proto = await http.post(
            ROUTE, content=envelope, headers={"content-type": "application/grpc-web+proto"}
        )
        web_json = await http.post(
            ROUTE, content=json_envelope, headers={"content-type": "application/grpc-web+json"}
        )
    for reply in (connect_json, connect_proto, web_proto, web_json):
        assert reply.status_code == 200, reply.text
    assert connect_json.content == as_json
    assert pb.DecideResponse.FromString(connect_proto.content) == by_grpc
    assert pb.DecideResponse.FromString(_grpc_web_message(web_proto.content)) == by_grpc
    assert _grpc_web_message(web_json.content) == as_json

"""Protobuf wire bytes made by hand, for requests no protobuf library would build."""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes, a message or a map entry."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload

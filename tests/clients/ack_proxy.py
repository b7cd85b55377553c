"""A TCP proxy that loses a TrackStream's acknowledgements after the daemon stored their batches.

trackd acknowledges a batch only after committing it, so every HTTP/2 DATA frame the daemon
sends on a producer's connection is a stored batch's acknowledgement. On the FIRST connection
the proxy forwards `forward_acks` DATA frames, then swallows everything the daemon sends and,
once it has swallowed `drop_acks` DATA frames (batches stored whose acknowledgements the
producer will never see), closes both sides: the producer's stream fails with UNAVAILABLE,
exactly the case it must resend with the same (producer_id, sequence). Later connections are
forwarded untouched. Point only a producer at it (unary answers are DATA frames too).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

_FRAME_HEADER = 9
_DATA = 0x0


class AckDroppingProxy:
    def __init__(self, target_port: int, *, forward_acks: int = 2, drop_acks: int = 1) -> None:
        self.target_port = target_port
        self.forward_acks = forward_acks
        self.drop_acks = drop_acks
        self.forwarded = 0  # DATA frames forwarded on the first connection before the cut
        self.dropped = 0  # DATA frames swallowed: acknowledgements of stored batches, lost
        self.connections = 0
        self.cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> AckDroppingProxy:
        self._spawn(self._accept)
        return self

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            lossy = self.connections == 0
            self.connections += 1
            self._spawn(self._copy, client, server)
            if lossy:
                self._spawn(self._downstream_losing_acks, server, client)
            else:
                self._spawn(self._copy, server, client)

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _downstream_losing_acks(self, server: socket.socket, client: socket.socket) -> None:
        try:
            for header, payload in _frames(server):
                is_ack = header[3] == _DATA and len(payload) > 0
                if self.forwarded < self.forward_acks:
                    client.sendall(header + payload)
                    self.forwarded += is_ack
                    continue
                self.dropped += is_ack
                if self.dropped >= self.drop_acks:
                    break
        except OSError:
            pass
        self.cut.set()
        for sock in (server, client):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _frames(sock: socket.socket) -> Iterator[tuple[bytes, bytes]]:
    """The HTTP/2 frames a server sends (it sends no preface): (9-byte header, payload)."""
    buffer = b""
    while True:
        while len(buffer) >= _FRAME_HEADER:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < _FRAME_HEADER + length:
                break
            yield buffer[:_FRAME_HEADER], buffer[_FRAME_HEADER : _FRAME_HEADER + length]
            buffer = buffer[_FRAME_HEADER + length :]
        data = sock.recv(65536)
        if not data:
            return
        buffer += data

"""The in-memory test tier: a FeedProtocol on a StringTransport, time on a task.Clock.

No sockets and no real time: the test plays the client (handshake, masked
frames), reads every ``transport.write`` the server made, and moves the
clock. Every autobahn timer (open/close handshake, auto-ping) runs on the
same Clock through the factory's batched timer.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from dataclasses import replace
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from txaio._common import _BatchedTimer

from orderbook.book.books import Books
from orderbook.config import WebSocketSettings
from orderbook.feed.registry import Registry
from orderbook.metrics import Metrics
from orderbook.server.protocol import FeedFactory
from orderbook.server.site import protocol_options
from tests.server.harness import small_books


class WriteLog(StringTransport):
    """A StringTransport that also keeps each write as one item."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        super().write(data)

    def unregisterProducer(self) -> None:
        """Like TCP and TLS transports: nothing to do when no producer is registered."""
        if self.producer is not None:
            super().unregisterProducer()


class MemoryServer:
    """A FeedFactory with real Books and Registry, on a Clock."""

    def __init__(self, books: Books | None = None, **ws: Any) -> None:
        self.clock = Clock()
        self.books = books if books is not None else small_books()
        self.ws = replace(WebSocketSettings(auto_ping_interval_s=0), **ws)
        self.metrics = Metrics()
        self.registry = Registry(self.books, self.ws, self.metrics)
        self.registry.status_provider = lambda: {"state": "ready", "height": self.books.height}
        self.factory = self.make_factory()
        self.factory.setProtocolOptions(**protocol_options(self.ws))
        self.factory._batched_timer = _BatchedTimer(
            200.0,
            1000,
            seconds_provider=self.clock.seconds,
            delayed_call_creator=self.clock.callLater,
        )
        self.clients: list[MemoryClient] = []

    def make_factory(self) -> FeedFactory:
        """The factory under test (a subclass may build a WAMP one)."""
        return FeedFactory(self.registry, self.ws, self.clock)

    def connect(
        self,
        compression: bool = False,
        window_bits: int | None = None,
        subprotocol: str = "",
        path: str = "/ws",
    ) -> MemoryClient:
        client = MemoryClient(self, compression, window_bits, subprotocol, path)
        self.clients.append(client)
        return client

    def counter(self, name: str, *labels: str) -> float:
        return self.metrics.metrics[name].get(*labels)

    def close_all(self) -> None:
        for client in self.clients:
            client.lose()


class MemoryClient:
    """The client side of one in-memory connection."""

    def __init__(
        self,
        server: MemoryServer,
        compression: bool,
        window_bits: int | None,
        subprotocol: str = "",
        path: str = "/ws",
    ) -> None:
        self.server = server
        self.transport = WriteLog()
        self.protocol = server.factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self._read = 0
        self.frames: list[tuple[int, bytes]] = []  # (opcode, payload inflated)
        self.lost = False
        self._handshake(compression, window_bits, subprotocol, path)

    def _handshake(
        self, compression: bool, window_bits: int | None, subprotocol: str, path: str
    ) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        extension = ""
        if compression:
            extension = "Sec-WebSocket-Extensions: permessage-deflate"
            if window_bits is not None:
                extension += f"; server_max_window_bits={window_bits}"
            extension += "\r\n"
        if subprotocol:
            extension += f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
        self.protocol.dataReceived(
            (
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extension}\r\n"
            ).encode()
        )
        head = self.transport.value()
        end = head.index(b"\r\n\r\n") + 4
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        self._read = end
        self.transport.writes.clear()

    def send(self, request: Any) -> None:
        self.send_frame(0x1, json.dumps(request).encode())

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if len(payload) < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
        else:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
        self.protocol.dataReceived(head + mask + body)

    def read(self) -> list[tuple[int, bytes]]:
        """Parse every complete frame written since the last call; return them."""
        data = self.transport.value()
        new: list[tuple[int, bytes]] = []
        while True:
            frame = _parse(data, self._read)
            if frame is None:
                break
            opcode, rsv1, payload, self._read = frame
            if rsv1:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            new.append((opcode, payload))
        self.frames.extend(new)
        return new

    def messages(self) -> list[Any]:
        """The JSON messages among the frames read now."""
        return [json.loads(p) for op, p in self.read() if op == 0x1]

    def channels(self) -> list[str]:
        return [m.get("channel") for m in self.messages()]

    def close_frame(self) -> tuple[int, str] | None:
        """The close code and reason the server sent, if any (read so far)."""
        self.read()
        for opcode, payload in self.frames:
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
        return None

    def lose(self) -> None:
        """The TCP connection ends."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


def _parse(data: bytes, at: int) -> tuple[int, bool, bytes, int] | None:
    if len(data) - at < 2:
        return None
    first, second = data[at], data[at + 1]
    length, at = second & 0x7F, at + 2
    if length == 126:
        if len(data) - at < 2:
            return None
        (length,) = struct.unpack_from("!H", data, at)
        at += 2
    elif length == 127:
        if len(data) - at < 8:
            return None
        (length,) = struct.unpack_from("!Q", data, at)
        at += 8
    if len(data) - at < length:
        return None
    return first & 0x0F, bool(first & 0x40), data[at : at + length], at + length

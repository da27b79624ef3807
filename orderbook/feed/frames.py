"""WebSocket frames built once per message, and the per-connection send path.

autobahn compresses every message per connection (each client has its own
deflate context), which dominates fan-out cost. Here a message is framed at
most once per variant and the same bytes go to every client:

- plain: one unmasked FIN frame (text or binary);
- compressed: permessage-deflate (RFC 7692) of the message ALONE: fresh raw
  deflate, sync flush, trailing ``00 00 ff ff`` stripped, RSV1 set. With no
  back-references into earlier messages it decodes on any client, with or
  without context takeover. Its LZ77 window must not exceed the
  ``server_max_window_bits`` the client negotiated, so there is one
  compressed variant per distinct window size in use (almost always 15).

:class:`Outbox` writes those bytes straight to one connection's transport
(bypassing autobahn's ``sendMessage``: everything a connection sends goes
through its Outbox, so nothing interleaves) and is that connection's
IPushProducer: while the transport is paused, snapshot-type messages keep
only the latest per key and loss-intolerant ones queue up to a byte bound,
past which the client is closed as a slow consumer.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
DEFAULT_WINDOW_BITS = 15
# Below this size compression does not pay; RFC 7692 lets a compressing
# endpoint send any message uncompressed (RSV1 clear).
MIN_COMPRESS_BYTES = 64
_SYNC_TAIL = b"\x00\x00\xff\xff"


def frame_header(opcode: int, length: int, rsv1: bool = False) -> bytes:
    """The header of a single unmasked FIN frame carrying ``length`` bytes."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def compress(payload: bytes, window_bits: int = DEFAULT_WINDOW_BITS) -> bytes:
    """permessage-deflate body of ``payload`` compressed on its own."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    body = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    if body.endswith(_SYNC_TAIL):
        body = body[:-4]
    return body


class OutgoingMessage:
    """One message and its frames, each variant built on first use, then shared."""

    __slots__ = ("payload", "opcode", "_plain", "_compressed")

    def __init__(self, payload: bytes, binary: bool = False) -> None:
        self.payload = payload
        self.opcode = OPCODE_BINARY if binary else OPCODE_TEXT
        self._plain: bytes | None = None
        self._compressed: dict[int, bytes] = {}

    def frame(self, window_bits: int | None) -> bytes:
        """The frame for a client with this window (None: no compression)."""
        if window_bits is None or len(self.payload) < MIN_COMPRESS_BYTES:
            return self.plain()
        frame = self._compressed.get(window_bits)
        if frame is None:
            body = compress(self.payload, window_bits)
            frame = frame_header(self.opcode, len(body), rsv1=True) + body
            self._compressed[window_bits] = frame
        return frame

    def plain(self) -> bytes:
        """The uncompressed frame."""
        if self._plain is None:
            self._plain = frame_header(self.opcode, len(self.payload)) + self.payload
        return self._plain


@implementer(IPushProducer)
class Outbox:
    """The send path of one autobahn connection, and its push producer.

    ``send(message, key, lossless)``: ``key`` identifies what a replaceable
    message replaces while the client is paused (its subscription).
    ``on_overflow(queued_bytes)`` is called once when lossless messages
    queued past ``max_queued_bytes``; the Outbox then drops everything.
    """

    def __init__(
        self,
        protocol: Any,
        max_queued_bytes: int,
        on_overflow: Callable[[int], None],
        window_bits: int | None = None,
    ) -> None:
        self.protocol = protocol
        self.max_queued_bytes = max_queued_bytes
        self.on_overflow = on_overflow
        self.window_bits = window_bits
        self.paused = False
        self.closed = False
        self.queued_bytes = 0
        self.replaced = 0  # snapshot messages superseded while paused
        self.on_replaced: Callable[[], None] | None = None
        self._queue: deque[bytes] = deque()
        self._latest: dict[Hashable, bytes] = {}

    def attach(self) -> None:
        """Become the transport's producer (replacing the HTTP channel's)."""
        transport = self.protocol.transport
        with contextlib.suppress(RuntimeError):  # test transports refuse when none is registered
            transport.unregisterProducer()
        transport.registerProducer(self, True)

    def send(self, message: OutgoingMessage, key: Hashable = None, lossless: bool = True) -> int:
        """Write or hold ``message``; return the bytes written or held (0: discarded)."""
        if self.closed or self.protocol.state != WebSocketProtocol.STATE_OPEN:
            return 0
        frame = message.frame(self.window_bits)
        if self.paused or not self._writable():
            return self._hold(frame, key, lossless)
        self._write(frame)
        return len(frame)

    def _hold(self, frame: bytes, key: Hashable, lossless: bool) -> int:
        if not lossless:
            if self._latest.pop(key, None) is not None:
                self.replaced += 1
                if self.on_replaced is not None:
                    self.on_replaced()
            self._latest[key] = frame
            return len(frame)
        self._queue.append(frame)
        self.queued_bytes += len(frame)
        if self.queued_bytes > self.max_queued_bytes:
            queued = self.queued_bytes
            self.close()
            self.on_overflow(queued)
            return 0
        return len(frame)

    def _writable(self) -> bool:
        protocol = self.protocol
        return (
            protocol.state == WebSocketProtocol.STATE_OPEN
            and protocol.send_state == WebSocketProtocol.SEND_STATE_GROUND
        )

    def _write(self, frame: bytes) -> None:
        protocol = self.protocol
        if protocol.send_queue:
            protocol.sendData(frame)  # autobahn is trickling its own queue: stay behind it
        else:
            protocol.transport.write(frame)
        protocol.trafficStats.outgoingOctetsWireLevel += len(frame)

    @property
    def held(self) -> int:
        """Number of frames waiting for the client to read."""
        return len(self._queue) + len(self._latest)

    def close(self) -> None:
        """Forget everything held; send nothing more."""
        self.closed = True
        self._queue.clear()
        self._latest.clear()
        self.queued_bytes = 0

    # -- IPushProducer -----------------------------------------------------
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.flush()

    def stopProducing(self) -> None:
        self.close()

    def flush(self) -> None:
        """Write held frames (queue first, then latest snapshots) until paused."""
        if self.closed or not self._writable():
            return
        while self._queue and not self.paused:
            frame = self._queue.popleft()
            self.queued_bytes -= len(frame)
            self._write(frame)
        while self._latest and not self.paused:
            key = next(iter(self._latest))
            self._write(self._latest.pop(key))

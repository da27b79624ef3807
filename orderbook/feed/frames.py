"""WebSocket frames built once per message, and the publishing round that batches them.

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

A :class:`Round` is one publishing pass (a block's fan-out): connections
collect their frames while it lasts and write them once at its end. Writing
the bytes is the server's business (orderbook.server.outbox); nothing here
knows transports or autobahn.
"""

from __future__ import annotations

import struct
import zlib
from typing import Protocol

from twisted.logger import Logger

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


class RoundMember(Protocol):
    """A connection's send path that collects frames during a round."""

    def end_round(self) -> None:
        """Write what was collected (must not raise)."""


class Round:
    """One publishing pass; ``with round:`` nests, the outermost exit flushes.

    A send path that gets a frame while ``depth`` is non-zero appends itself
    to ``waiting`` (once per round) and keeps the frame; when the outermost
    ``with`` ends every waiting member's ``end_round`` writes its frames.
    """

    __slots__ = ("depth", "waiting")
    _log = Logger()

    def __init__(self) -> None:
        self.depth = 0
        self.waiting: list[RoundMember] = []

    def __enter__(self) -> Round:
        self.depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.flush()

    def flush(self) -> None:
        """End the round for every waiting member (one failure spares the others)."""
        waiting, self.waiting = self.waiting, []
        for member in waiting:
            try:
                member.end_round()
            except Exception:
                self._log.failure("writing a round's frames failed")

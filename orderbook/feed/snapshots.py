"""Shared L4 snapshots: built once, replayed with the Updates since.

An L4 snapshot of a big coin is MBs (BTC: ~16 MB, 51k orders) and costs
~100 ms to encode and compress. A new l4Book subscriber does not need one of
the current height: a snapshot of height H0 followed by the Updates of
H0+1 … H is the same stream. So a coin's snapshot is built once and kept for
``MAX_AGE_BLOCKS`` blocks together with the encoded Updates of every block
since; every subscriber in that time gets the same messages (encoded and
compressed once per envelope and window size). A subscribe/unsubscribe loop
costs at most one build per coin every ``MAX_AGE_BLOCKS`` blocks.

Memory: a snapshot is kept as the book's encoded pieces
(``Books.l4_snapshot_pieces``: no Python view, no dict per order) and its
JSON message is a :class:`SnapshotMessage` framed straight from them: the
compressed frame (once per window size) is deflated piece by piece and the
whole ``{"channel":…}`` payload is never joined in memory (only the plain
frame, for a client without compression, is). A stalled subscriber holds
the frame; everything is freed when the snapshot ages out and its last
reader is done or closed (see orderbook.gc_policy for giving it back to the OS).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from orderbook.feed.frames import MIN_COMPRESS_BYTES, OutgoingMessage, frame_header
from orderbook.feed.subscriptions import Subscription

MAX_AGE_BLOCKS = 30  # ~2 s at mainnet's 14.5 blocks/s
_SYNC_TAIL = b"\x00\x00\xff\xff"  # stripped from a permessage-deflate body (RFC 7692)
# Stands for the snapshot in a probe wrap: where an envelope puts the data.
_MARKER = b'"\x00l4Book snapshot goes here\x00"'


class Wrapper(Protocol):
    """An Envelope (see orderbook.feed.registry)."""

    def wrap(self, sub: Subscription, data: bytes, part: str | None) -> OutgoingMessage | None: ...


class SnapshotMessage(OutgoingMessage):
    """A message whose payload is ``prefix + b"".join(pieces) + suffix``, never joined
    to build its compressed frames (deflated piece by piece, once per window size)."""

    __slots__ = ("_parts",)

    def __init__(self, prefix: bytes, pieces: Sequence[bytes], suffix: bytes, opcode: int) -> None:
        self.opcode = opcode
        self._plain: bytes | None = None
        self._compressed: dict[int, bytes] = {}
        self._parts = (prefix, *pieces, suffix)

    @property  # type: ignore[override]
    def payload(self) -> bytes:
        """The whole payload (joined on every call: for tests and rare readers)."""
        return b"".join(self._parts)

    def frame(self, window_bits: int | None) -> bytes:
        if window_bits is None or sum(map(len, self._parts)) < MIN_COMPRESS_BYTES:
            return self.plain()
        frame = self._compressed.get(window_bits)
        if frame is None:
            frame = self._compressed[window_bits] = self._deflated(window_bits)
        return frame

    def _deflated(self, window_bits: int) -> bytes:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
        body = [compressor.compress(part) for part in self._parts]
        tail = compressor.flush(zlib.Z_SYNC_FLUSH)
        body.append(tail[: -len(_SYNC_TAIL)] if tail.endswith(_SYNC_TAIL) else tail)
        size = sum(map(len, body))
        return b"".join([frame_header(self.opcode, size, rsv1=True), *body])

    def plain(self) -> bytes:
        if self._plain is None:
            size = sum(map(len, self._parts))
            self._plain = b"".join([frame_header(self.opcode, size), *self._parts])
        return self._plain


class SharedSnapshot:
    """One coin's snapshot (inner ``data``, encoded in pieces) and the Updates data since."""

    __slots__ = ("sub", "height", "pieces", "updates", "_messages")

    def __init__(self, sub: Subscription, height: int, pieces: Sequence[bytes]) -> None:
        self.sub = sub
        self.height = height
        self.pieces = tuple(pieces)
        self.updates: list[bytes] = []
        self._messages: dict[Any, list[OutgoingMessage]] = {}

    @property
    def snapshot(self) -> bytes:
        """The inner ``data`` bytes, joined (for envelopes that need them whole)."""
        return b"".join(self.pieces)

    def messages(self, envelope: Wrapper) -> list[OutgoingMessage]:
        """Snapshot then every Updates since, wrapped by ``envelope`` (each once)."""
        built = self._messages.setdefault(envelope, [])
        if not built:
            first = self._wrap_snapshot(envelope)
            if first is None:
                return []
            built.append(first)
        for data in self.updates[len(built) - 1 :]:
            message = envelope.wrap(self.sub, data, "Updates")
            if message is not None:
                built.append(message)
        return built

    def _wrap_snapshot(self, envelope: Wrapper) -> OutgoingMessage | None:
        """The Snapshot wrapped by ``envelope``: a :class:`SnapshotMessage` when the
        envelope only puts bytes around the data (found by wrapping a marker)."""
        probe = envelope.wrap(self.sub, _MARKER, "Snapshot")
        if probe is None:
            return None
        if type(probe) is OutgoingMessage:
            prefix, marker, suffix = probe.payload.partition(_MARKER)
            if marker and _MARKER not in suffix:
                return SnapshotMessage(prefix, self.pieces, suffix, probe.opcode)
        return envelope.wrap(self.sub, self.snapshot, "Snapshot")


class Snapshots:
    """The shared snapshots of the coins l4Book subscribers asked for lately."""

    def __init__(self, build: Callable[[Subscription], Sequence[bytes]]) -> None:
        """``build(sub)``: the coin's current Snapshot data, encoded, in pieces."""
        self._build = build
        self._by_coin: dict[str, SharedSnapshot] = {}

    def get(self, sub: Subscription, height: int) -> SharedSnapshot:
        """The shared snapshot of ``sub.coin`` (built now when none is fresh)."""
        shared = self._by_coin.get(sub.coin or "")
        if shared is None or shared.height + len(shared.updates) != height:
            shared = SharedSnapshot(sub, height, self._build(sub))
            self._by_coin[sub.coin or ""] = shared
        return shared

    def coins(self) -> list[str]:
        return list(self._by_coin)

    def block_applied(self, height: int, update: Callable[[str], bytes]) -> None:
        """Record each kept coin's Updates data of block ``height`` (``update(coin)``)."""
        for coin, shared in list(self._by_coin.items()):
            if height - shared.height >= MAX_AGE_BLOCKS:
                del self._by_coin[coin]
            else:
                shared.updates.append(update(coin))

    def forget(self, coins: set[str] | None = None) -> None:
        """Drop the snapshots of ``coins`` (all when None): their books were replaced."""
        if coins is None:
            self._by_coin.clear()
        else:
            for coin in coins:
                self._by_coin.pop(coin, None)

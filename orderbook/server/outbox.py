"""One connection's send path: its push producer and the slow-consumer policy.

Everything a WebSocket connection sends goes through its :class:`Outbox`,
which writes pre-built frames (orderbook.feed.frames) straight to the
transport, never through autobahn's ``sendMessage``:

- during a publishing :class:`~orderbook.feed.frames.Round` (one block's
  fan-out) a connection's frames are collected and written in ONE
  ``transport.write`` when the round ends (one TLS record run, one syscall);
- outside a round (replies, a subscribe's current view) a frame is written
  at once;
- a frame over ``CHUNK_BYTES`` (an L4 snapshot of a big coin) is written in
  chunks while the transport accepts them: its unsent rest stays here,
  shared with every other client of that frame, and counts against
  ``max_queued_bytes``. autobahn's own frames (ping, pong, close) that arrive
  meanwhile wait for the chunked frame to end (:meth:`Outbox.control`);
- while the transport is paused (the client stopped reading), snapshot-type
  messages keep only the latest per key, loss-intolerant ones queue up to
  ``max_queued_bytes``; past it the client is closed as a slow consumer.

``last_sent`` is the time of the last data frame or pong written: the idle
rule (close a connection sent nothing for ``idle_timeout_s``) reads it.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from orderbook.feed.frames import OutgoingMessage, Round

CHUNK_BYTES = 64 * 1024
_PONG_FIRST_BYTE = b"\x8a"  # FIN + opcode 0xA


@implementer(IPushProducer)
class Outbox:
    """The send path of one connection, and its push producer.

    ``send(message, key, lossless)``: ``key`` identifies what a replaceable
    message replaces while the client is paused (its subscription).
    ``on_overflow(queued_bytes)`` is called once when held frames passed
    ``max_queued_bytes``; the Outbox then drops everything it held.
    """

    def __init__(
        self,
        transport: Any,
        publishing: Round,
        max_queued_bytes: int,
        on_overflow: Callable[[int], None] | None,
        window_bits: int | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.transport = transport
        self.round = publishing
        self.max_queued_bytes = max_queued_bytes
        self.on_overflow = on_overflow
        self.window_bits = window_bits
        self.now = now
        self.last_sent = now() if now is not None else 0.0
        self.paused = False
        self.closed = False  # no more data frames (closing, closed or overflowed)
        self.queued_bytes = 0  # unsent bytes of the queue and of the frame in progress
        self.replaced = 0  # snapshot messages superseded while paused
        self.on_replaced: Callable[[], None] | None = None
        self._batch: list[bytes] = []
        self._queue: deque[bytes] = deque()
        self._latest: dict[Hashable, bytes] = {}
        self._partial: bytes = b""  # a frame being written in chunks (shared, never copied)
        self._offset = 0  # how much of it is written
        self._control: list[bytes] = []  # autobahn frames waiting for _partial to end

    def attach(self) -> None:
        """Become the transport's producer (replacing the HTTP channel's)."""
        with contextlib.suppress(RuntimeError):  # test transports refuse when none is registered
            self.transport.unregisterProducer()
        self.transport.registerProducer(self, True)

    # -- sending -------------------------------------------------------------------
    def send(self, message: OutgoingMessage, key: Hashable = None, lossless: bool = True) -> int:
        """Write, batch or hold ``message``; return the bytes it costs (0: discarded)."""
        if self.closed:
            return 0
        frame = message.frame(self.window_bits)
        if self.paused or self._queue or self._partial:
            return self._hold(frame, key, lossless)
        if self.round.depth:
            if not self._batch:
                self.round.waiting.append(self)
            self._batch.append(frame)
        elif len(frame) > CHUNK_BYTES:
            self._hold(frame, key, True)
            self.flush()
        else:
            self._write(frame)
        return len(frame)

    def end_round(self) -> None:
        """Write this round's frames in one write (called by the round)."""
        frames, self._batch = self._batch, []
        if self.closed or not frames:
            return
        if sum(map(len, frames)) > CHUNK_BYTES:  # never copy a big shared frame
            for frame in frames:
                self._enqueue(frame)
            self.flush()
        else:
            self._write_now(frames[0] if len(frames) == 1 else b"".join(frames))

    def control(self, data: bytes) -> None:
        """Write one of autobahn's frames, after the chunked frame in progress.

        A pong (answering the client's ping) counts as sent for the idle
        rule; the server's own pings do not.
        """
        if data[:1] == _PONG_FIRST_BYTE and self.now is not None:
            self.last_sent = self.now()
        if self._partial:
            self._control.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        if self.now is not None:
            self.last_sent = self.now()

    def _write_now(self, data: bytes) -> None:
        """Write a round's frames past Twisted's TLS small-write aggregation.

        Twisted's TLS transport holds small writes for a ``callLater(0)``
        per connection and reactor turn, to make one TLS record of them;
        a round's write already is all of this connection's frames of the
        block, so it goes to TLS at once (after anything held, keeping the
        order): ~10% less server CPU per message at 1,000 TLS clients
        (bench_fanout). Other transports: a plain write.
        """
        aggregator = getattr(self.transport, "_aggregator", None)
        if aggregator is None:
            self._write(data)
            return
        aggregator.flush()
        TLSMemoryBIOProtocol.write(self.transport, data)
        if self.now is not None:
            self.last_sent = self.now()

    def _hold(self, frame: bytes, key: Hashable, lossless: bool) -> int:
        if not lossless:
            if self._latest.pop(key, None) is not None:
                self.replaced += 1
                if self.on_replaced is not None:
                    self.on_replaced()
            self._latest[key] = frame
            return len(frame)
        if self.queued_bytes and self.queued_bytes + len(frame) > self.max_queued_bytes:
            self._overflow(self.queued_bytes + len(frame))
            return 0
        self._enqueue(frame)
        return len(frame)

    def _enqueue(self, frame: bytes) -> None:
        self._queue.append(frame)
        self.queued_bytes += len(frame)

    def _overflow(self, queued: int) -> None:
        self.stop()
        callback, self.on_overflow = self.on_overflow, None
        if callback is not None:
            callback(queued)

    @property
    def held(self) -> int:
        """Number of frames waiting for the client to read."""
        return len(self._queue) + len(self._latest) + (1 if self._partial else 0)

    def stop(self) -> None:
        """Send no more data frames; the one in progress is finished (the stream stays valid)."""
        self.closed = True
        self._batch.clear()
        self._queue.clear()
        self._latest.clear()
        self.queued_bytes = len(self._partial) - self._offset

    def close(self) -> None:
        """The connection is gone: forget everything and every reference out."""
        self.stop()
        self._partial, self._offset = b"", 0
        self._control.clear()
        self.queued_bytes = 0
        self.on_overflow = self.on_replaced = self.now = None
        self.transport = None

    # -- IPushProducer -----------------------------------------------------------
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.flush()

    def stopProducing(self) -> None:
        self.close()

    def flush(self) -> None:
        """Write held frames (partial, queue, then latest snapshots) until paused."""
        while not self.paused and self.transport is not None:
            if self._partial:
                self._write_chunk()
            elif self._control:
                control, self._control = self._control, []
                self.transport.write(b"".join(control))
            elif self._queue:
                frame = self._queue.popleft()
                if len(frame) > CHUNK_BYTES:
                    self._partial = frame
                else:
                    self.queued_bytes -= len(frame)
                    self._write(frame)
            elif self._latest and not self.closed:
                key = next(iter(self._latest))
                self._write(self._latest.pop(key))
            else:
                return

    def _write_chunk(self) -> None:
        start = self._offset
        chunk = self._partial[start : start + CHUNK_BYTES]
        self._offset = start + len(chunk)
        if self._offset >= len(self._partial):
            self._partial, self._offset = b"", 0
        self.queued_bytes -= len(chunk)
        self._write(chunk)

"""Statuses lines decoded on the second core: a child process strips the rejections.

A by-block statuses line is the biggest thing the server reads (~240 KB a
block on mainnet, 500-1,500 statuses) and 80-93% of its statuses are
rejections the book never reads. Decoding it is about a third of what a
block costs the reactor's core. So, in by-block mode, each statuses line
goes to a child process (``python -m orderbook.node.decoder``) that decodes
it, drops the statuses whose name ends in ``Rejected`` and sends back the
same line, re-encoded compactly without them; the reactor then decodes a line
3-10x smaller with the usual decoder. (Opt-in: the reactor still copies the
whole line into the pipe, which takes back most of the saving; see README.)

Wire format both ways: a 4-byte big-endian length, then the line. Lines come
back in the order they were sent. A line the child cannot decode comes back
unchanged (the reactor's decoder then reports it with file and offset). If
the child dies, every line still in flight is handed back unchanged, the
reactor decodes them itself, and the child is restarted after a pause:
nothing is lost or reordered.
"""

from __future__ import annotations

import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

import msgspec
from twisted.internet import error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from orderbook.node.schema import StatusLine

_HEADER = struct.Struct(">I")
_decode_statuses = msgspec.json.Decoder(StatusLine).decode
_encode = msgspec.json.Encoder().encode
RESTART_DELAY_S = 1.0

Done = Callable[[bytes], None]


def strip_rejections(raw: bytes) -> bytes:
    """The statuses line without its rejected statuses (unchanged if unreadable)."""
    try:
        line = _decode_statuses(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return raw
    kept = [status for status in line.events if not status.status.endswith("Rejected")]
    if len(kept) == len(line.events):
        return raw
    line.events = kept
    return _encode(line)


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The child's loop: framed lines in, stripped lines out, until end of input."""
    while True:
        header = source.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        (size,) = _HEADER.unpack(header)
        raw = source.read(size)
        if len(raw) < size:
            return
        reply = strip_rejections(raw)
        sink.write(_HEADER.pack(len(reply)) + reply)
        sink.flush()


class StatusesDecoder(protocol.ProcessProtocol):
    """The reactor's side: submit lines, get the stripped lines back in order."""

    _log = Logger()

    def __init__(self, reactor: Any, command: list[str] | None = None) -> None:
        self.reactor = reactor
        self.command = command or [sys.executable, "-m", "orderbook.node.decoder"]
        self.pending: deque[tuple[bytes, Done]] = deque()
        self.alive = False
        self.stopping = False
        self.restarts = 0
        self._buffer = bytearray()
        self._restart_call: Any = None

    def start(self) -> None:
        """Spawn the child (the current interpreter, same environment)."""
        self.stopping = False
        self.reactor.spawnProcess(self, self.command[0], self.command, env=None)

    def stop(self) -> None:
        """Close the child's input (it exits); lines in flight are handed back."""
        self.stopping = True
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        if self.alive and self.transport is not None:
            self.transport.closeStdin()

    def submit(self, raw: bytes, done: Done) -> None:
        """Strip ``raw`` in the child; ``done(line)`` runs when it is back (in order)."""
        if not self.alive:
            done(raw)
            return
        self.pending.append((raw, done))
        self.transport.write(_HEADER.pack(len(raw)) + raw)

    # -- ProcessProtocol ----------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        self.alive = True

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            reply = bytes(buffer[_HEADER.size : _HEADER.size + size])
            del buffer[: _HEADER.size + size]
            self._deliver(reply)

    def errReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self._log.warn("statuses decoder: {text}", text=data.decode(errors="replace").strip())

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 (Twisted API)
        self.alive = False
        self._buffer.clear()
        while self.pending:  # hand back in order: the reactor decodes them itself
            raw, done = self.pending.popleft()
            done(raw)
        if self.stopping:
            return
        clean = reason.check(error.ProcessDone) is not None
        self._log.warn(
            "statuses decoder exited ({why}); decoding in-process, restarting in {delay} s",
            why="cleanly" if clean else reason.getErrorMessage(),
            delay=RESTART_DELAY_S,
        )
        self.restarts += 1
        self._restart_call = self.reactor.callLater(RESTART_DELAY_S, self.start)

    def _deliver(self, reply: bytes) -> None:
        if not self.pending:
            self._log.warn("statuses decoder: an answer nobody asked for, dropped")
            return
        _, done = self.pending.popleft()
        done(reply)


def main() -> None:
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()

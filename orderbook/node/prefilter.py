"""The statuses pre-filter: a child process strips the rejections, on the second core.

A by-block statuses line is the biggest thing the server reads (~240 KB a
block on mainnet, 500-1,500 statuses) and 80-93% of its statuses are
rejections the book never reads. Decoding it is about a third of what a
block costs the reactor's core. So, in by-block mode, each statuses line
goes to a child process (``python -m orderbook.node.prefilter``) that decodes
it, drops the statuses whose name ends in ``Rejected`` and sends back the
same line, re-encoded compactly without them; the reactor then decodes a line
3-10x smaller with the usual decoder.

The line itself does not cross the pipe when the reactor knows where it is:
copying ~500 KB into the pipe cost the reactor most of what the child saved
it. The reactor sends the file's path, the line's offset and length and the
line's first bytes (its envelope: local time and block number, unique to
the line); the child reads the line from the node's file (append-only, so
the same bytes) and answers "unread" if it cannot, or if those first bytes
differ: the reactor then decodes its own copy.

Wire format: every message is a kind byte and a 4-byte big-endian length,
then that many bytes. Requests: LINE (the line) or READ (``>QIH`` offset,
length, head size, then the head, then the path). Replies, in request order:
STRIPPED (the line, stripped or unchanged) or UNREAD (nothing). A line the
child cannot decode comes back unchanged (the reactor's decoder then reports
it with file and offset). If the child dies, every line still in flight is
handed back unchanged, the reactor decodes them itself, and the child is
restarted after a pause: nothing is lost or reordered. The same happens to a
child that is alive but stuck: when its oldest line has waited
``reply_deadline_s`` (default 2 s) or more than ``max_waiting`` lines (256)
wait for it, it is killed, its lines are decoded in process and a new child
starts after the pause.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from twisted.internet import error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from orderbook.node.schema import StatusLine

FRAME = struct.Struct(">BI")  # kind, payload size
_READ = struct.Struct(">QIH")  # offset, length, head size
LINE, READ = 1, 2  # requests
STRIPPED, UNREAD = 1, 2  # replies
HEAD_BYTES = 96  # '{"local_time":"…","block_time":"…","block_number":N'
_OPEN_FILES = 2  # this hour's file and the last: a deleted file's space is freed at close
_decode_statuses = msgspec.json.Decoder(StatusLine).decode
_encode = msgspec.json.Encoder().encode
RESTART_DELAY_S = 1.0
REPLY_DEADLINE_S = 2.0  # the oldest line waits at most this long for the child
MAX_WAITING = 256  # lines waiting for the child; beyond this it is restarted

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


def frame(kind: int, payload: bytes) -> bytes:
    """One message of the wire format: its kind, its size, then ``payload``."""
    return FRAME.pack(kind, len(payload)) + payload


def read_frame(source: BinaryIO) -> tuple[int, bytes] | None:
    """The next message from ``source`` as (kind, payload); None at end of input."""
    header = source.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    kind, size = FRAME.unpack(header)
    payload = source.read(size)
    return None if len(payload) < size else (kind, payload)


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The child's loop: requests in, replies out in the same order, until end of input."""
    files = _Files()
    try:
        while (request := read_frame(source)) is not None:
            kind, payload = request
            raw = payload if kind == LINE else files.read(payload)
            if raw is None:
                sink.write(frame(UNREAD, b""))
            else:
                sink.write(frame(STRIPPED, strip_rejections(raw)))
            sink.flush()
    finally:
        files.close()


def read_request(path: bytes, offset: int, raw: bytes) -> bytes:
    """The READ payload naming ``raw``, found at ``offset`` of the file ``path``."""
    head = raw[:HEAD_BYTES]
    return _READ.pack(offset, len(raw), len(head)) + head + path


class _Files:
    """The child's open node files: the two most recently used (this hour's and the last)."""

    def __init__(self) -> None:
        self._open: OrderedDict[bytes, int] = OrderedDict()

    def read(self, payload: bytes) -> bytes | None:
        """The line a READ payload names, or None if it cannot be read as the reactor saw it."""
        offset, length, head_size = _READ.unpack_from(payload)
        start = _READ.size
        head, path = payload[start : start + head_size], payload[start + head_size :]
        try:
            raw = os.pread(self._fd(path), length, offset)
        except OSError:
            return None
        if len(raw) != length or not raw.startswith(head):
            return None
        return raw

    def _fd(self, path: bytes) -> int:
        fd = self._open.get(path)
        if fd is None:
            fd = self._open[path] = os.open(path, os.O_RDONLY)
            if len(self._open) > _OPEN_FILES:
                os.close(self._open.popitem(last=False)[1])
        else:
            self._open.move_to_end(path)
        return fd

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()


class StatusesPrefilter(protocol.ProcessProtocol):
    """The reactor's side: submit lines, get the stripped lines back in order.

    A child that does not answer its oldest line within ``reply_deadline_s``,
    or has more than ``max_waiting`` lines waiting, is killed and restarted;
    its lines are handed back unchanged (decoded in process), in order.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        command: list[str] | None = None,
        reply_deadline_s: float = REPLY_DEADLINE_S,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.reactor = reactor
        self.command = command or [sys.executable, "-m", "orderbook.node.prefilter"]
        self.reply_deadline_s = reply_deadline_s
        self.max_waiting = max_waiting
        self.pending: deque[tuple[bytes, Done, float]] = deque()  # (line, done, submitted at)
        self.alive = False
        self.stopping = False
        self.restarts = 0
        self.stuck = 0  # children killed for missing the deadline or the bound
        self.stripped = 0  # lines the child answered
        self.unread = 0  # READ requests the child could not serve (decoded in-process)
        self._buffer = bytearray()
        self._restart_call: Any = None
        self._deadline_call: Any = None
        self._abandoned = False  # killed as stuck; its end schedules the restart

    def start(self) -> None:
        """Spawn the child (the current interpreter, same environment)."""
        self.stopping = False
        self._restart_call = None
        self.reactor.spawnProcess(self, self.command[0], self.command, env=None)

    def stop(self) -> None:
        """Close the child's input (it exits); lines in flight are handed back."""
        self.stopping = True
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        self._cancel_deadline()
        if self.alive and self.transport is not None:
            self.transport.closeStdin()

    def submit(
        self, raw: bytes, done: Done, path: Path | None = None, offset: int | None = None
    ) -> None:
        """Strip ``raw`` in the child; ``done(line)`` runs when it is back (in order).

        With ``path`` and ``offset`` (where ``raw`` starts in that node file) the
        child reads the line itself and only a few bytes cross the pipe.
        """
        if self.alive and len(self.pending) >= self.max_waiting:
            self._abandon(f"more than {self.max_waiting} lines waiting")
        if not self.alive:
            done(raw)
            return
        self.pending.append((raw, done, self.reactor.seconds()))
        if self._deadline_call is None:
            self._arm_deadline()
        if path is None or offset is None:
            self.transport.write(frame(LINE, raw))
            return
        self.transport.write(
            frame(READ, read_request(os.fsencode(os.path.abspath(path)), offset, raw))
        )

    # -- ProcessProtocol ----------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        self.alive = True

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        if not self.alive:
            return  # a child given up on: its late answers were decoded in process
        buffer = self._buffer
        buffer += data
        while len(buffer) >= FRAME.size:
            kind, size = FRAME.unpack_from(buffer)
            if len(buffer) < FRAME.size + size:
                break
            reply = bytes(buffer[FRAME.size : FRAME.size + size])
            del buffer[: FRAME.size + size]
            self._deliver(kind, reply)

    def errReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self._log.warn("statuses prefilter: {text}", text=data.decode(errors="replace").strip())

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 (Twisted API)
        abandoned, self._abandoned = self._abandoned, False
        self._hand_back()
        if self.stopping:
            return
        if abandoned:  # killed as stuck (already logged): the restart follows its end
            self._schedule_restart()
            return
        clean = reason.check(error.ProcessDone) is not None
        self._log.warn(
            "statuses prefilter exited ({why}); decoding in-process, restarting in {delay} s",
            why="cleanly" if clean else reason.getErrorMessage(),
            delay=RESTART_DELAY_S,
        )
        self._schedule_restart()

    # -- internals ------------------------------------------------------------
    def _hand_back(self) -> None:
        """Every line in flight back to the reactor, in order (decoded in process)."""
        self.alive = False
        self._buffer.clear()
        self._cancel_deadline()
        while self.pending:
            raw, done, _ = self.pending.popleft()
            done(raw)

    def _schedule_restart(self) -> None:
        self.restarts += 1
        self._restart_call = self.reactor.callLater(RESTART_DELAY_S, self.start)

    def _abandon(self, why: str) -> None:
        """The child is stuck: kill it, decode its lines in process, restart it later."""
        self.stuck += 1
        self._log.warn(
            "statuses prefilter stuck ({why}); {count} lines decoded in-process, "
            "restarting it {delay} s after it ends",
            why=why,
            count=len(self.pending),
            delay=RESTART_DELAY_S,
        )
        self._abandoned = True
        self._hand_back()
        if self.transport is not None:
            with contextlib.suppress(error.ProcessExitedAlready, OSError):
                self.transport.signalProcess("KILL")

    def _arm_deadline(self) -> None:
        submitted = self.pending[0][2]
        delay = max(submitted + self.reply_deadline_s - self.reactor.seconds(), 0.0)
        self._deadline_call = self.reactor.callLater(delay, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        call, self._deadline_call = self._deadline_call, None
        if call is not None and call.active():
            call.cancel()

    def _deadline_passed(self) -> None:
        self._deadline_call = None
        if self.alive and self.pending:
            self._abandon(f"no answer within {self.reply_deadline_s:g} s")

    def _deliver(self, kind: int, reply: bytes) -> None:
        if not self.pending:
            self._log.warn("statuses prefilter: an answer nobody asked for, dropped")
            return
        raw, done, _ = self.pending.popleft()
        self._cancel_deadline()
        if self.pending:
            self._arm_deadline()
        if kind == STRIPPED:
            self.stripped += 1
        else:  # UNREAD: the reactor decodes its own copy
            if not self.unread:
                self._log.warn(
                    "statuses prefilter: the child could not read a line from the node's file; "
                    "such lines are decoded in-process"
                )
            self.unread += 1
            reply = raw
        done(reply)


def main() -> None:
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()

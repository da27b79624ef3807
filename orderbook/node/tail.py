"""Follow the node's hourly files: directory watching, rotation, offsets.

Each stream lives in ``<data_dir>/<stream>/hourly/YYYYMMDD/H`` (hour without
leading zero, so hours sort numerically). A :class:`StreamTail` keeps the open
descriptor, inode and offset of its current file and reads only forward:
no byte is read twice, a pruned (deleted) file is still read to its end
through the open descriptor, and a finished file is read to EOF before the
next one is opened. :class:`NodeTailer` drives the three streams from
inotify hints on the DIRECTORIES (never on files: deleting a watched file or
directory closes Twisted's inotify descriptor) plus a periodic re-check, since
inotify drops events on queue overflow.

Work per reactor turn is bounded: a burst of many MB (the node's buffered
output, or a reader that fell behind) is read in chunks and its lines are
delivered one at a time until ``turn_budget_s`` is used up; the rest waits,
in order, for the next turn. Every stream gets a turn in rotation, so one
busy stream cannot starve the others.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from twisted.internet import inotify
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from orderbook.node.lines import DEFAULT_MAX_LINE_BYTES, LineSplitter

FileKey = tuple[str, int]  # (YYYYMMDD, hour)
LineBatch = list[tuple[int, bytes | None]]
Deliver = Callable[[str, Path, LineBatch], None]  # (stream, file, [(offset, line|None)])
Report = Callable[[str, Path, int, str], None]  # (stream, file, offset, problem)

READ_CHUNK = 256 * 1024
LAST_LINE_MAX = 1024 * 1024  # the line before the start is looked for this far back
DEFAULT_TURN_BUDGET_S = 0.02
Timer = Callable[[], float]
WATCH_MASK = inotify.IN_MODIFY | inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE


def hourly_files(root: Path) -> Iterator[tuple[FileKey, Path]]:
    """Every ``YYYYMMDD/H`` file under ``root``, in (date, hour) order."""
    try:
        days = sorted(p for p in os.listdir(root) if len(p) == 8 and p.isdigit())
    except OSError:
        return
    for day in days:
        try:
            names = [n for n in os.listdir(root / day) if n.isdigit() and len(n) <= 2]
        except OSError:
            continue
        for hour in sorted(int(n) for n in names):
            yield (day, hour), root / day / str(hour)


class StreamTail:
    """The reading position in one stream's sequence of hourly files."""

    def __init__(
        self,
        name: str,
        root: Path,
        deliver: Deliver,
        report: Report,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.name = name
        self.root = root  # the stream's hourly/ directory
        self.deliver = deliver
        self.report = report
        self.max_line_bytes = max_line_bytes
        self.key: FileKey | None = None
        self.path: Path | None = None
        self.inode: int | None = None
        self._fd: int | None = None
        self._splitter = LineSplitter(max_line_bytes=max_line_bytes)
        self._ready: deque[tuple[int, bytes | None]] = deque()  # read, not yet delivered
        self._started = False
        self.line_before_start: bytes | None = None  # the file's last line when we began

    @property
    def offset(self) -> int | None:
        """Offset of the next byte to read in the current file."""
        return self._splitter.offset if self._fd is not None else None

    def watch_dirs(self) -> list[Path]:
        """The directories whose events concern this stream."""
        dirs = [self.root]
        if self.path is not None:
            dirs.append(self.path.parent)
        return dirs

    def start_at_end(self) -> None:
        """Begin at the end of the newest file (the snapshot covers the past)."""
        self._started = True
        files = list(hourly_files(self.root))
        if files:
            self._open(*files[-1], at_end=True)
            self.line_before_start = self._last_line()

    def _last_line(self) -> bytes | None:
        """The last whole line before the reading position (None: none, or too long)."""
        end = self._splitter.offset
        if self._fd is None or end == 0:
            return None
        data = os.pread(self._fd, min(end, LAST_LINE_MAX), end - min(end, LAST_LINE_MAX))
        if not data.endswith(b"\n"):
            return None  # the writer is inside a line: that line is not whole yet
        start = data.rfind(b"\n", 0, len(data) - 1)
        if start < 0 and len(data) < end:
            return None
        return data[start + 1 : -1]

    def start_at(self, path: Path, offset: int) -> None:
        """Resume in ``path`` at ``offset`` (skipping a partial line there)."""
        self._started = True
        self._open((path.parent.name, int(path.name)), path, at_end=False, offset=offset)

    def poll(self, deadline: float, timer: Timer = time.perf_counter) -> bool:
        """Deliver new lines, in order, until ``timer()`` passes ``deadline``.

        At least one line is delivered when one is ready. Returns True when
        more may be waiting (call again on a later reactor turn).
        """
        if not self._started:
            self.start_at_end()
        while True:
            if self._ready and not self._deliver_ready(deadline, timer):
                return True
            if timer() >= deadline:
                return True
            if self._fd is None and not self._open_next():
                return False
            if not self._read_chunk() and not self._switch_if_finished():
                return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- internals -------------------------------------------------------------
    def _deliver_ready(self, deadline: float, timer: Timer) -> bool:
        """Hand out ready lines one by one; False when the deadline stopped it."""
        ready, deliver, name, path = self._ready, self.deliver, self.name, self.path
        while ready:
            deliver(name, path, [ready.popleft()])
            if ready and timer() >= deadline:
                return False
        return True

    def _read_chunk(self) -> bool:
        """Read up to READ_CHUNK bytes into ready lines; False at end of file."""
        data = os.read(self._fd, READ_CHUNK)
        if not data:
            return False
        self._ready.extend(self._splitter.feed(data))
        return True

    def _switch_if_finished(self) -> bool:
        """At EOF: move to the next file if one exists; True when there is more to do.

        The writer finished this file before starting the next, but its last
        bytes may have landed after our EOF: read them (and deliver them)
        before switching.
        """
        following = self._next_file()
        if following is None:
            return False
        if self._read_chunk():
            return True
        self._finish_file()
        self._open(*following, at_end=False)
        return True

    def _next_file(self) -> tuple[FileKey, Path] | None:
        try:
            if os.stat(self.path).st_ino != self.inode:
                return self.key, self.path  # replaced under the same name
        except OSError:
            pass  # pruned: finish it through our descriptor
        for key, path in hourly_files(self.root):
            if key > self.key:
                return key, path
        return None

    def _open_next(self) -> bool:
        for key, path in hourly_files(self.root):
            if self.key is None or key > self.key:
                return self._open(key, path, at_end=False)
        return False

    def _finish_file(self) -> None:
        if self._splitter.pending:
            offset = self._splitter.line_start
            dropped = self._splitter.drop_partial()
            self.report(self.name, self.path, offset, f"file ended inside a line ({dropped} bytes)")
        self.close()

    def _open(self, key: FileKey, path: Path, at_end: bool, offset: int = 0) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self.report(self.name, path, 0, f"cannot open: {exc.strerror}")
            return False
        if at_end:
            offset = os.fstat(fd).st_size
        skip = offset > 0 and os.pread(fd, 1, offset - 1) != b"\n"
        os.lseek(fd, offset, os.SEEK_SET)
        self.close()
        self._ready.clear()  # only reached with nothing left to deliver, or at start
        self._fd = fd
        self.key, self.path, self.inode = key, path, os.fstat(fd).st_ino
        self._splitter = LineSplitter(offset, skip_first=skip, max_line_bytes=self.max_line_bytes)
        return True


class _Notifier(inotify.INotify):
    """INotify that tells its owner when it loses its descriptor."""

    def __init__(self, on_lost: Callable[[], None], reactor=None) -> None:
        super().__init__(reactor)
        self.on_lost = on_lost

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 (Twisted API)
        super().connectionLost(reason)
        self.on_lost()


class NodeTailer:
    """The streams of one node data directory, read as data arrives.

    ``streams`` maps a stream name (e.g. "statuses") to its hourly/ directory.
    Lines go to ``deliver``; unreadable bytes to ``report``. Every callback is
    an error boundary: a failure is logged and tailing goes on. One reactor
    turn delivers lines for at most about ``turn_budget_s`` (plus one line).
    """

    _log = Logger()

    def __init__(
        self,
        streams: dict[str, Path],
        deliver: Deliver,
        report: Report,
        reactor,
        recheck_interval_s: float = 1.0,
        turn_budget_s: float = DEFAULT_TURN_BUDGET_S,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        timer: Timer = time.perf_counter,
    ) -> None:
        self.reactor = reactor
        self.turn_budget_s = turn_budget_s
        self.timer = timer
        self.recheck_interval_s = recheck_interval_s
        self.turns = 0  # reactor turns that delivered lines (for tests and benchmarks)
        self.tails = {
            name: StreamTail(name, root, deliver, report, max_line_bytes)
            for name, root in streams.items()
        }
        self.notifier_restarts = 0
        self._notifier: _Notifier | None = None
        self._watched: dict[Path, str] = {}
        self._wanted: dict[str, None] = {}  # streams with work, in turn order
        self._polling: str | None = None  # the stream being read right now
        self._rotation = list(self.tails)
        self._turn_call = None
        self._recheck = LoopingCall(self._guarded, self.poll_all)
        self._recheck.clock = reactor
        self._running = False

    def start(self, at_end: bool = True) -> None:
        """Position every stream (at the end of its newest file) and follow them."""
        self._running = True
        for tail in self.tails.values():
            if at_end:
                tail.start_at_end()
        self._start_notifier()
        self._recheck.start(self.recheck_interval_s, now=True)

    def lines_before_start(self) -> dict[str, bytes | None]:
        """Each stream's last whole line when following began (None: empty or none)."""
        return {name: tail.line_before_start for name, tail in self.tails.items()}

    def stop(self) -> None:
        self._running = False
        if self._recheck.running:
            self._recheck.stop()
        if self._turn_call is not None and self._turn_call.active():
            self._turn_call.cancel()
        self._turn_call = None
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.on_lost = lambda: None
            notifier.loseConnection()
        for tail in self.tails.values():
            tail.close()

    def poll_all(self) -> None:
        """Re-check every stream by stat/read (the inotify-independent path)."""
        if self._notifier is None or not self._notifier.connected:
            self._start_notifier()
        for name in self.tails:
            self._schedule(name)

    def behind(self) -> set[str]:
        """Streams with data known to wait: being read, or scheduled for a turn (an
        inotify hint, or a burst cut by the turn budget). A stream not in it has
        been read to its end, as far as this reader knows."""
        behind = set(self._wanted)
        if self._polling is not None:
            behind.add(self._polling)
        return behind

    # -- internals -------------------------------------------------------------
    def _guarded(self, call: Callable, *args) -> None:
        try:
            call(*args)
        except Exception:
            self._log.failure("node tailer: {call} failed; tailing goes on", call=call.__name__)

    def _schedule(self, name: str) -> None:
        self._wanted[name] = None
        if self._turn_call is None and self._running:
            self._turn_call = self.reactor.callLater(0, self._guarded, self._turn)

    def _turn(self) -> None:
        """One reactor turn of reading: each waiting stream in rotation, shared budget."""
        self._turn_call = None
        if not self._running:
            return
        deadline = self.timer() + self.turn_budget_s
        self._rotation.append(self._rotation.pop(0))  # a different stream goes first
        for name in [n for n in self._rotation if n in self._wanted]:
            del self._wanted[name]  # the streams after it stay wanted (behind) meanwhile
            self._polling = name
            try:
                more = self.tails[name].poll(deadline, self.timer)
            except Exception:
                more = False  # the periodic re-check tries again
                self._log.failure("node tailer: reading {stream} failed", stream=name)
            finally:
                self._polling = None
            if more:
                self._wanted[name] = None
        self.turns += 1
        self._sync_watches()
        if self._wanted:
            self._turn_call = self.reactor.callLater(0, self._guarded, self._turn)

    def _on_event(self, watch, filepath: FilePath, mask: int) -> None:
        path = (
            filepath.path.decode(errors="replace")
            if isinstance(filepath.path, bytes)
            else filepath.path
        )
        for name, tail in self.tails.items():
            if path.startswith(str(tail.root)):
                self._schedule(name)

    def _start_notifier(self) -> None:
        if not self._running:
            return
        old, self._notifier = self._notifier, None
        if old is not None:
            self.notifier_restarts += 1
            self._log.warn("node tailer: inotify lost its descriptor; restarting it")
        self._watched = {}
        try:
            notifier = _Notifier(self._notifier_lost, self.reactor)
            notifier.startReading()
        except Exception:
            self._log.failure("node tailer: cannot start inotify; relying on re-checks")
            return
        self._notifier = notifier
        self._sync_watches()

    def _notifier_lost(self) -> None:
        if self._running:
            self.reactor.callLater(0, self._guarded, self._start_notifier)

    def _sync_watches(self) -> None:
        notifier = self._notifier
        if notifier is None:
            return
        wanted = {d: n for n, t in self.tails.items() for d in t.watch_dirs()}
        for directory in set(self._watched) - set(wanted):
            del self._watched[directory]
            with contextlib.suppress(Exception):  # already gone with its directory
                notifier.ignore(FilePath(str(directory)))
        for directory in set(wanted) - set(self._watched):
            try:
                notifier.watch(
                    FilePath(str(directory)), mask=WATCH_MASK, callbacks=[self._event_boundary]
                )
            except Exception:
                continue  # not there yet: the re-check will try again
            self._watched[directory] = wanted[directory]

    def _event_boundary(self, watch, filepath: FilePath, mask: int) -> None:
        self._guarded(self._on_event, watch, filepath, mask)

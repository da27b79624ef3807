"""The simulator as a Twisted service: blocks on a timer, files, info server, faults.

Streaming mode: each block's write calls are spread over ``streaming_spread_s``
(default 25 ms, at most half a block interval) in a few reactor turns, so a
reader meets blocks whose rows are still arriving; a snapshot can name such a
block. Each stream waits only for its own earlier writes, so when blocks come
back to back a block's statuses trail the next block's diffs.
:meth:`SimulatorService.make_block` called directly writes at once.

Fault switches (:meth:`SimulatorService.fault`, also ``POST /control``)::

    {"fault": "stall", "seconds": 3}          no blocks for 3 s (the node hangs)
    {"fault": "gap"}                          block N+1 is made but never written
    {"fault": "garbage", "stream": "diffs"}   a non-JSON line before the next line
    {"fault": "truncated", "stream": "statuses"}  the next line is cut short
    {"fault": "absurd_height", "stream": "diffs", "ahead": 1000000}
                                              the next line's block number is far off
    {"fault": "delete_old"}                   delete all hourly files but the current ones
    {"fault": "restart", "seconds": 0}        the node dies mid-line while writing the
                                              next block, pauses, then appends after
                                              the partial line; book and heights go on
    {"fault": "snapshot_error", "status": 500, "count": 1}
    {"fault": "snapshot_timeout", "count": 1} the next snapshot request never gets an answer
    {"fault": "snapshot_truncated", "count": 1}  the snapshot file is cut short, answer 200
    {"fault": "clear"}                        drop pending faults, end a stall

``stream`` is one of statuses, diffs, fills (default diffs).
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.logger import Logger

from orderbook.sim.exchange import Exchange
from orderbook.sim.info import SnapshotFaults, make_site
from orderbook.sim.writer import ABSURD_AHEAD, STREAMS, Clock, NodeWriter, ScaledClock, Write

FAULTS = (
    "stall",
    "gap",
    "garbage",
    "truncated",
    "absurd_height",
    "delete_old",
    "restart",
    "snapshot_error",
    "snapshot_timeout",
    "snapshot_truncated",
    "clear",
)

BLOCK_LATENCY_NS = 250_000_000
"""How long after ``block_time`` the simulated node writes a block."""

STREAMING_SPREAD_S = 0.025
"""Streaming: a block's rows reach the files over this long (node-data.md §1: ~20-30 ms)."""

WRITE_TURNS = 6
"""Streaming: the steps (reactor turns) a block's write calls are spread over."""


class InfoPortError(CannotListenError):
    """The simulator's info server cannot listen: one line naming address and port."""

    def __str__(self) -> str:
        reason = getattr(self.socketError, "strerror", None) or str(self.socketError)
        return (
            f"simulator info server: cannot listen on {self.interface}:{self.port}: {reason} "
            "(is a node with --serve-info running? change [simulator] info_port)"
        )


def _number(spec: dict[str, Any], key: str, default: float, low: float = 0) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ValueError(
            f"fault {spec.get('fault')!r}: {key} must be a number >= {low}, got {value!r}"
        )
    return value


class SimulatorService(Service):
    """A simulated node: writes blocks under ``data_dir`` and serves ``/info``."""

    _log = Logger()

    def __init__(
        self,
        data_dir: Path,
        info_port: int = 0,
        seed: int = 0,
        blocks_per_second: float = 14.5,
        mode: str = "by_block",
        scale: float = 1.0,
        *,
        max_speed: bool = False,
        blocks: int | None = None,
        extra_perps: int = 0,
        hour_seconds: float = 3600.0,
        start_time_ns: int | None = None,
        split_probability: float = 0.05,
        interface: str = "127.0.0.1",
        clock: Clock | None = None,
        reactor: Any = None,
        trade_share: float = 1.0,
        deep: Mapping[str, int] | None = None,
        streaming_spread_s: float = STREAMING_SPREAD_S,
    ) -> None:
        if blocks_per_second <= 0:
            raise ValueError(f"blocks_per_second must be positive, got {blocks_per_second}")
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        if clock is None:
            clock = (
                ScaledClock(hour_seconds, start_time_ns)
                if (hour_seconds != 3600.0 or start_time_ns)
                else time.time_ns
            )
        self.clock = clock
        self.data_dir = Path(data_dir)
        self.interval = 1.0 / blocks_per_second
        self.max_speed = max_speed
        self.blocks = blocks
        self.exchange = Exchange(
            seed=seed,
            scale=scale,
            extra_perps=extra_perps,
            start_time_ns=clock(),
            trade_share=trade_share,
            deep=deep,
        )
        self.writer = NodeWriter(
            self.data_dir, mode, clock=clock, seed=seed, split_probability=split_probability
        )
        self.snapshot_faults = SnapshotFaults()
        self.blocks_produced = 0
        self.done: Deferred[int] = Deferred()
        self._rng = random.Random(f"service-{seed}")
        self._requested_port = info_port
        self._interface = interface
        self._port: IListeningPort | None = None
        self._call: IDelayedCall | None = None
        self._next_due = 0.0
        self._stall_until = 0.0
        self._last_block_ns = 0
        self.spread = min(streaming_spread_s, self.interval / 2) if mode == "streaming" else 0.0
        self.spread = 0.0 if max_speed else self.spread
        self._pending: list[tuple[float, int, Write]] = []  # a heap: (due, order, write)
        self._order = itertools.count()
        self._last_due: dict[str, float] = {}
        self._pending_call: IDelayedCall | None = None

    @property
    def height(self) -> int:
        """The last block made (written, unless a gap fault skipped it)."""
        return self.exchange.height

    @property
    def info_port(self) -> int:
        """The info server's port (the actual one when 0 was asked for)."""
        if self._port is None:
            return self._requested_port
        return self._port.getHost().port

    @property
    def info_url(self) -> str:
        """``http://127.0.0.1:PORT/info``."""
        return f"http://{self._interface}:{self.info_port}/info"

    def privilegedStartService(self) -> None:
        """Listen on the info port now, so a taken port fails before the reactor runs.

        Raises :class:`InfoPortError` (a ``CannotListenError`` naming the port).
        """
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        self._listen()
        super().startService()
        self._next_due = self._reactor.seconds()
        self._schedule(0)

    def _listen(self) -> None:
        if self._port is not None:
            return
        site = make_site(self.exchange.snapshot, self.snapshot_faults, self.fault)
        try:
            self._port = self._reactor.listenTCP(
                self._requested_port, site, interface=self._interface
            )
        except CannotListenError as e:
            raise InfoPortError(e.interface, e.port, e.socketError) from None

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.flush()
        self.writer.close()
        self.snapshot_faults.release()
        port, self._port = self._port, None
        if port is None:
            return maybeDeferred(lambda: None)
        return maybeDeferred(port.stopListening)

    # -- the block loop ---------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._call = self._reactor.callLater(max(0.0, delay), self._tick)

    def _tick(self) -> None:
        self._call = None
        now = self._reactor.seconds()
        if now < self._stall_until:
            self._next_due = self._stall_until
            return self._schedule(self._stall_until - now)
        try:
            self.make_block(spread=True)
        except Exception:
            self._log.failure("block {height} failed", height=self.exchange.height)
        if self.blocks is not None and self.blocks_produced >= self.blocks:
            if not self.done.called:
                self.done.callback(self.height)
            return
        if self.max_speed:
            return self._schedule(0)
        self._next_due = max(self._next_due + self.interval, now - 1.0)
        self._schedule(self._next_due - now)

    def make_block(self, spread: bool = False) -> None:
        """Make the next block and write it (also usable without the timer).

        Without ``spread`` everything pending goes out first, then the whole
        block. With ``spread`` (the timer's blocks, streaming mode) the block's
        write calls go out over ``self.spread`` seconds, each stream behind
        its own pending writes: when blocks come faster than that (catching
        up after the reactor was busy), a block's statuses still arrive after
        the next block's fills and diffs, as on a node writing each stream on
        its own.
        """
        if not (spread and self.spread > 0):
            self.flush()
        writes = self.writer.begin_block(self._next_block())
        self.blocks_produced += 1
        if not (spread and self.spread > 0):
            for write in writes:
                self.writer.write(write)
            return
        self._queue(writes)
        self._drain()

    def _next_block(self) -> Any:
        now = self.clock()
        jitter = self._rng.randint(0, 80_000_000)
        block_ns = max(self._last_block_ns + 1_000_000, now - BLOCK_LATENCY_NS - jitter)
        self._last_block_ns = block_ns
        return self.exchange.step(block_ns)

    def _queue(self, writes: list[Write]) -> None:
        """Give each write a due time on ``WRITE_TURNS`` steps over the spread, never
        before its stream's previous write."""
        now = self._reactor.seconds()
        for index, write in enumerate(writes):
            turn = index * WRITE_TURNS // len(writes)
            due = max(
                now + self.spread * turn / (WRITE_TURNS - 1), self._last_due.get(write.stream, 0)
            )
            self._last_due[write.stream] = due
            heapq.heappush(self._pending, (due, next(self._order), write))

    def _drain(self) -> None:
        """Write whatever is due, then wait for the next due write."""
        self._pending_call = None
        now = self._reactor.seconds()
        while self._pending and self._pending[0][0] <= now:
            self.writer.write(heapq.heappop(self._pending)[2])
        if self._pending:
            delay = self._pending[0][0] - now
            self._pending_call = self._reactor.callLater(delay, self._drain)

    def flush(self) -> None:
        """Write every pending write now, in order (streaming spread)."""
        if self._pending_call is not None and self._pending_call.active():
            self._pending_call.cancel()
        self._pending_call = None
        while self._pending:
            self.writer.write(heapq.heappop(self._pending)[2])

    # -- faults -----------------------------------------------------------

    def fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Switch on one fault (see the module docstring); raises ValueError if bad."""
        name = spec.get("fault")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (expected one of {', '.join(FAULTS)})")
        result: dict[str, Any] = {"ok": True, "fault": name, "height": self.height}
        getattr(self, f"_fault_{name}")(spec, result)
        self._log.info("fault {fault} at height {height}", fault=name, height=self.height)
        return result

    def _fault_stall(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        seconds = _number(spec, "seconds", 3.0)
        self._stall_until = self._reactor.seconds() + seconds

    def _fault_gap(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.writer.gap()
        result["skipped"] = self.height + 1

    def _stream(self, spec: dict[str, Any]) -> str:
        stream = spec.get("stream", "diffs")
        if stream not in STREAMS:
            raise ValueError(
                f"fault {spec['fault']!r}: stream must be statuses, diffs or fills, got {stream!r}"
            )
        return stream

    def _fault_garbage(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.writer.garbage(self._stream(spec))

    def _fault_truncated(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.writer.truncate(self._stream(spec))

    def _fault_delete_old(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        result["deleted"] = [str(p) for p in self.writer.delete_old()]

    def _fault_absurd_height(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        ahead = spec.get("ahead", ABSURD_AHEAD)
        if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead == 0:
            raise ValueError(
                f"fault 'absurd_height': ahead must be a non-zero integer, got {ahead!r}"
            )
        self.writer.absurd_height(self._stream(spec), ahead)

    def _fault_restart(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        """Die mid-line while writing the next block, pause ``seconds``, then append again."""
        seconds = _number(spec, "seconds", 0.0)
        self.flush()
        block = self._next_block()
        cut = self.writer.crash(block)
        self.blocks_produced += 1
        result["cut_height"] = block.height
        result["cut_stream"] = cut[0] if cut else None
        result["height"] = self.height
        if seconds:
            self._stall_until = self._reactor.seconds() + seconds

    def _fault_snapshot_error(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        status = int(_number(spec, "status", 500, low=400))
        self.snapshot_faults.error_status = status
        self.snapshot_faults.errors = int(_number(spec, "count", 1, low=1))

    def _fault_snapshot_timeout(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.snapshot_faults.timeouts = int(_number(spec, "count", 1, low=1))

    def _fault_snapshot_truncated(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.snapshot_faults.truncated = int(_number(spec, "count", 1, low=1))

    def _fault_clear(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self._stall_until = 0.0
        if self._call is not None and self._call.active():
            self._call.reset(0)
        self.snapshot_faults.errors = 0
        self.snapshot_faults.timeouts = 0
        self.snapshot_faults.truncated = 0
        self.snapshot_faults.release()
        self.writer.clear_faults()

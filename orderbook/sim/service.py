"""The simulator as a Twisted service: blocks on a timer, files, info server, faults.

Streaming mode: each block's write calls are spread over ``streaming_spread_s``
(default 25 ms, at most half a block interval) in a few reactor turns, so a
reader meets blocks whose rows are still arriving; a snapshot can name such a
block. Each stream waits only for its own earlier writes, so when blocks come
back to back a block's statuses trail the next block's diffs.
:meth:`SimulatorService.make_block` called directly writes at once.

Fault switches: :meth:`SimulatorService.fault` (also ``POST /control``), see
:mod:`orderbook.sim.faults`.
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
from orderbook.sim.faults import FAULTS, FaultSwitchboard
from orderbook.sim.info import SnapshotFaults, make_site
from orderbook.sim.writer import Clock, NodeWriter, ScaledClock, Write

__all__ = ["FAULTS", "InfoPortError", "SimulatorService"]

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
        self.faults = FaultSwitchboard(self)
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

    # -- faults (orderbook.sim.faults) -------------------------------------

    def fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Switch on one fault (see orderbook.sim.faults); raises ValueError if bad."""
        return self.faults.switch(spec)

    def stall(self, seconds: float) -> None:
        """Make no block for ``seconds`` (the node hangs)."""
        self._stall_until = self._reactor.seconds() + seconds

    def resume(self) -> None:
        """End a stall: the next block is due now."""
        self._stall_until = 0.0
        if self._call is not None and self._call.active():
            self._call.reset(0)

    def crash_next_block(self) -> tuple[Any, tuple[str, Path]]:
        """Write the next block as a node dying mid-line would: (block, the cut)."""
        self.flush()
        block = self._next_block()
        cut = self.writer.crash(block)
        self.blocks_produced += 1
        return block, cut

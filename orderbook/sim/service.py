"""The simulator as a Twisted service: blocks on a timer, files, info server, faults.

Fault switches (:meth:`SimulatorService.fault`, also ``POST /control``)::

    {"fault": "stall", "seconds": 3}          no blocks for 3 s (the node hangs)
    {"fault": "gap"}                          block N+1 is made but never written
    {"fault": "garbage", "stream": "diffs"}   a non-JSON line before the next line
    {"fault": "truncated", "stream": "statuses"}  the next line is cut short
    {"fault": "delete_old"}                   delete all hourly files but the current ones
    {"fault": "restart", "seconds": 0}        close every file, pause, reopen; the
                                              book and heights continue
    {"fault": "snapshot_error", "status": 500, "count": 1}
    {"fault": "snapshot_timeout", "count": 1} the next snapshot request never gets an answer
    {"fault": "clear"}                        drop pending faults, end a stall

``stream`` is one of statuses, diffs, fills (default diffs).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.logger import Logger

from orderbook.sim.exchange import Exchange
from orderbook.sim.info import SnapshotFaults, make_site
from orderbook.sim.writer import Clock, NodeWriter, ScaledClock

FAULTS = (
    "stall",
    "gap",
    "garbage",
    "truncated",
    "delete_old",
    "restart",
    "snapshot_error",
    "snapshot_timeout",
    "clear",
)

BLOCK_LATENCY_NS = 250_000_000
"""How long after ``block_time`` the simulated node writes a block."""


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
            seed=seed, scale=scale, extra_perps=extra_perps, start_time_ns=clock()
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

    def startService(self) -> None:
        super().startService()
        site = make_site(self.exchange.snapshot, self.snapshot_faults, self.fault)
        self._port = self._reactor.listenTCP(self._requested_port, site, interface=self._interface)
        self._next_due = self._reactor.seconds()
        self._schedule(0)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
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
            self.make_block()
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

    def make_block(self) -> None:
        """Make the next block and write it (also usable without the timer)."""
        now = self.clock()
        jitter = self._rng.randint(0, 80_000_000)
        block_ns = max(self._last_block_ns + 1_000_000, now - BLOCK_LATENCY_NS - jitter)
        self._last_block_ns = block_ns
        self.writer.write_block(self.exchange.step(block_ns))
        self.blocks_produced += 1

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
        if stream not in ("statuses", "diffs", "fills"):
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

    def _fault_restart(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        seconds = _number(spec, "seconds", 0.0)
        self.writer.restart()
        if seconds:
            self._stall_until = self._reactor.seconds() + seconds

    def _fault_snapshot_error(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        status = int(_number(spec, "status", 500, low=400))
        self.snapshot_faults.error_status = status
        self.snapshot_faults.errors = int(_number(spec, "count", 1, low=1))

    def _fault_snapshot_timeout(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.snapshot_faults.timeouts = int(_number(spec, "count", 1, low=1))

    def _fault_clear(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self._stall_until = 0.0
        if self._call is not None and self._call.active():
            self._call.reset(0)
        self.snapshot_faults.errors = 0
        self.snapshot_faults.timeouts = 0
        self.snapshot_faults.release()
        self.writer.clear_faults()

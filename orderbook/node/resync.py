"""Snapshot catch-up: fetch the node's snapshot, apply the blocks buffered meanwhile, go live.

One attempt at a time (a *generation*; a newer attempt or a stop makes an
older one abandon itself). Blocks that complete while the snapshot is being
requested and loaded are buffered (at most ``max_buffered_blocks``); then
they are applied on a staging Books, a slice per reactor turn, and the
staging Books is handed to ``on_live``. A failed attempt is reported to
``on_failed`` and retried after a delay that doubles from ``retry_base_s``
up to ``retry_max_s``. The only clock is the reactor's (``callLater``); the
work per turn is measured with ``work_timer`` (CPU slicing, not time of day).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from time import perf_counter
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from orderbook.book.books import Books
from orderbook.book.coin_book import dismantle
from orderbook.book.events import Block
from orderbook.config import NodeSettings
from orderbook.node.snapshot import (
    SnapshotError,
    load_snapshot,
    remove_old,
    request_snapshot,
    wait_until_written,
)

_log = Logger(namespace="orderbook.node.resync")


class Abandoned(Exception):
    """A snapshot attempt was overtaken (buffer overflow, newer attempt, stop)."""


async def fetch_snapshot(
    reactor: Any,
    settings: NodeSettings,
    path: Path,
    new_books: Callable[[], Books],
    settle_s: float,
    not_before: int | None = None,
) -> Books:
    """Ask the node for a snapshot file at ``path`` (fresh, or at least at height
    ``not_before``), wait until it is written, load it."""
    start = reactor.seconds()
    remove_old(path)
    await request_snapshot(
        reactor, settings.info_url, path, settings.snapshot_timeout_s, not_before
    )
    remaining = settings.snapshot_timeout_s - (reactor.seconds() - start)
    await wait_until_written(reactor, path, max(remaining, 0.0), settle_s)
    return await load_snapshot(path, new_books)


def dispose(books: list) -> None:
    """Dismantle books nobody uses any more, a slice per reactor turn (see dismantle)."""
    if books:
        task.cooperate(dismantle(books)).whenDone().addErrback(
            lambda failure: _log.failure("ingest: dismantling books failed", failure)
        )


class SnapshotSync:
    """Bring a fresh snapshot up to the blocks that arrived meanwhile; retry with backoff."""

    retry_base_s = 1.0  # first retry delay after a failed snapshot; doubles
    retry_max_s = 60.0
    turn_budget_s = 0.02  # work per reactor turn when catching up
    snapshot_settle_s = 1.0  # a snapshot file unchanged this long while incomplete: failed

    def __init__(
        self,
        settings: NodeSettings,
        reactor: Any,
        fetch: Callable[[Path], Awaitable[Books]],
        on_live: Callable[[Books], None],
        on_failed: Callable[[str, float], None],
        on_retry: Callable[[], None],
        work_timer: Callable[[], float] = perf_counter,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.fetch = fetch  # (path) -> the node's snapshot written there, loaded
        self.on_live = on_live
        self.on_failed = on_failed  # (reason, retry delay)
        self.on_retry = on_retry  # the retry delay is over (the caller decides to start)
        self.work_timer = work_timer
        self.syncing = False
        self.wanted = False  # a resync is due (started as soon as allowed)
        self.buffer: list[Block] = []
        self.generation = 0  # bumped per attempt; older attempts see a change
        self.retry_delay = self.retry_base_s
        self.retry_call: Any = None
        self._dirty: list[tuple[int | None, str]] = []  # trouble seen while syncing
        self._call: Deferred | None = None
        self._last_failure = ("", 0)  # (reason, failures in a row with it)

    def start(self) -> None:
        """Ask for a snapshot now (the caller checked it is allowed)."""
        self.retry_call = None
        self.generation += 1
        self.syncing = True
        self.buffer = []
        self._dirty = []
        self._call = Deferred.fromCoroutine(self._sync(self.generation))
        self._call.addErrback(self._crashed)

    def may_start(self) -> bool:
        """A resync is wanted and none is running or waiting for its retry."""
        return self.wanted and not self.syncing and self.retry_call is None

    def stop(self) -> None:
        self.generation += 1
        if self.retry_call is not None and self.retry_call.active():
            self.retry_call.cancel()
        self.retry_call = None
        if self._call is not None:
            call, self._call = self._call, None
            call.cancel()

    def add_block(self, block: Block) -> None:
        """A block that completed while the snapshot is on its way."""
        self.buffer.append(block)
        if len(self.buffer) > self.settings.max_buffered_blocks:
            self._failed(
                self.generation,
                f"more than {self.settings.max_buffered_blocks} blocks arrived while "
                "waiting for the snapshot (max_buffered_blocks)",
            )

    def trouble(self, height: int | None, why: str) -> None:
        """Bad data seen while syncing: fatal to the attempt if above its snapshot."""
        self._dirty.append((height, why))

    # -- the attempt ---------------------------------------------------------
    def _crashed(self, failure: Any) -> None:
        if failure.check(defer.CancelledError):
            return
        _log.failure("ingest: snapshot sync crashed", failure)
        self._failed(self.generation, f"internal error: {failure.getErrorMessage()}")

    async def _sync(self, generation: int) -> None:
        staging: Books | None = None
        try:
            staging = await self.fetch(self.settings.snapshot_path)
            self._check_current(generation)
            await self._catch_up(staging, generation)
        except SnapshotError as exc:
            if generation == self.generation:
                self._call = None  # we are that call: nothing to cancel
            self._failed(generation, str(exc))
            self._dispose_staging(staging)
            return
        except Abandoned:
            self._dispose_staging(staging)
            return
        self.syncing = False
        self.wanted = False
        self._call = None
        self.retry_delay = self.retry_base_s
        self._last_failure = ("", 0)
        self.on_live(staging)

    @staticmethod
    def _dispose_staging(staging: Books | None) -> None:
        if staging is not None:
            dispose(staging.abandon())

    def _check_current(self, generation: int) -> None:
        if generation != self.generation or not self.syncing:
            raise Abandoned()

    async def _catch_up(self, staging: Books, generation: int) -> None:
        """Apply the buffered blocks above the snapshot's height, a slice per turn."""
        snapshot_height = staging.height
        while True:
            self._check_current(generation)
            trouble = [why for h, why in self._dirty if h is None or h > snapshot_height]
            if trouble:
                raise SnapshotError(f"bad data above the snapshot: {trouble[0]}")
            if not self.buffer:
                return
            deadline = self.work_timer() + self.turn_budget_s
            applied = 0
            while applied < len(self.buffer) and self.work_timer() < deadline:
                apply_on_staging(staging, self.buffer[applied])
                applied += 1
            del self.buffer[:applied]
            await task.deferLater(self.reactor, 0, lambda: None)

    def _failed(self, generation: int, reason: str) -> None:
        if generation != self.generation or not self.syncing:
            return
        self.generation += 1
        self.syncing = False
        self.buffer = []
        if self._call is not None:
            call, self._call = self._call, None
            call.cancel()
        delay = self.retry_delay
        self.retry_delay = min(self.retry_delay * 2, self.retry_max_s)
        self.wanted = True
        self._log_failure(reason, delay)
        self.on_failed(reason, delay)
        self.retry_call = self.reactor.callLater(delay, self._retry)

    def _log_failure(self, reason: str, delay: float) -> None:
        """The whole reason once (a refused connection says what is likely wrong);
        the same reason again only as a count, not the same line forever."""
        again = reason == self._last_failure[0]
        self._last_failure = (reason, self._last_failure[1] + 1 if again else 1)
        if again:
            _log.error(
                "ingest: snapshot failed again ({count} in a row, same reason); "
                "retrying in {delay:g} s",
                count=self._last_failure[1],
                delay=delay,
            )
        else:
            _log.error(
                "ingest: snapshot failed: {reason}; retrying in {delay:g} s",
                reason=reason,
                delay=delay,
            )

    def _retry(self) -> None:
        self.retry_call = None
        self.on_retry()


def apply_on_staging(staging: Books, block: Block) -> None:
    """Apply ``block`` on a snapshot's Books; raise SnapshotError when it cannot be."""
    if block.height <= staging.height:
        if block.height == staging.height and staging.time_ms is None:
            staging.set_height(block.height, block.time_ms)  # the snapshot has no time
        return
    if block.height != staging.height + 1:
        raise SnapshotError(
            f"blocks {staging.height + 1}..{block.height - 1} missing above the snapshot"
        )
    result = staging.apply_block(block)
    if result.errors:
        first = result.errors[0]
        raise SnapshotError(
            f"block {block.height} does not apply on the snapshot: {first.coin} "
            f"oid {first.oid}: {first.message}"
        )

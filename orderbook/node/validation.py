"""Periodic validation: the live book compared with a fresh node snapshot, coin by coin.

Every ``validate_interval_s`` (and on demand: :meth:`Validator.validate`,
:meth:`Validator.resync_coins`) a snapshot is fetched into a staging Books.
An older snapshot is brought to the live height with blocks rebuilt from the
retained line positions (:mod:`orderbook.node.retained`); a newer one waits
until the live book reaches its height. Then coins are compared a slice per
reactor turn; a differing coin is logged, adopted from the snapshot and
announced with ``books_reset``. ``resync_coins`` does the same for a few
named coins (late streaming rows touched them) and adopts them whatever the
comparison says is different. One clock: the reactor's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from orderbook.book.books import Books
from orderbook.book.events import Block
from orderbook.config import NodeSettings
from orderbook.metrics import Metrics
from orderbook.node.resync import dispose
from orderbook.node.retained import RetainedLines
from orderbook.node.snapshot import SnapshotError

Fetch = Callable[..., Any]  # (path, not_before) -> awaitable Books


class Validator:
    """Compare (and repair) the live book against node snapshots, on the reactor's clock."""

    _log = Logger(namespace="orderbook.node.validation")

    turn_budget_s = 0.02  # work per reactor turn when catching up or comparing
    compare_slice = 20  # at most this many coins compared per reactor turn
    max_logged_differences = 10
    coin_retry_s = 5.0  # coins to resync wait this long after a failed snapshot
    rebuild_blocks = 5  # retained blocks decoded at a time (~10 ms at mainnet), catching up
    reuse_blocks = 300  # a snapshot up to this many blocks old will do (~20 s at mainnet)

    def __init__(
        self,
        settings: NodeSettings,
        books: Books,
        retained: RetainedLines,
        fetch: Fetch,
        reset: Callable[[set[str]], None],
        live: Callable[[], int | None],
        metrics: Metrics,
        reactor: Any,
        work_timer: Callable[[], float] = perf_counter,
    ) -> None:
        self.settings = settings
        self.books = books
        self.retained = retained
        self.fetch = fetch
        self.reset = reset  # tell listeners these coins are fresh
        self.live = live  # a token that changes on every resync; None when not live
        self.reactor = reactor
        self.work_timer = work_timer
        self.running = False
        self._call: Any = None
        self._coins: set[str] = set()  # coins to resync at the next run
        self._height_waiters: list[tuple[int, Deferred]] = []
        self._register_metrics(metrics)

    def _register_metrics(self, metrics: Metrics) -> None:
        prefix = "orderbook_node_"
        self.m_validations = metrics.counter(prefix + "validation_runs_total", "Validations run")
        self.m_validation_failures = metrics.counter(
            prefix + "validation_failures_total", "Validations that found differing coins"
        )
        self.m_mismatched = metrics.counter(
            prefix + "validation_mismatched_coins_total", "Coins adopted from a snapshot"
        )

    def start(self) -> None:
        self._schedule(self._until_next_period())

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def validate(self) -> Deferred:
        """Compare the live book with a fresh snapshot now; fires when it is over."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        return self._run()

    def resync_coins(self, coins: set[str]) -> None:
        """Replace ``coins`` with the node's state soon (a fresh snapshot at the live height)."""
        self._coins |= coins
        if not self.running:
            self._schedule(0)

    def height_reached(self) -> None:
        """The live book moved: wake whoever waits for a height."""
        current = self.books.height
        if not self._height_waiters or current is None:
            return
        waiting = []
        for height, waiter in self._height_waiters:
            if waiter.called:
                continue
            if current >= height:
                waiter.callback(None)
            else:
                waiting.append((height, waiter))
        self._height_waiters = waiting

    # -- one run ---------------------------------------------------------------
    def _schedule(self, delay: float) -> None:
        if self._call is not None and self._call.active():
            if delay > 0 or self._call.getTime() <= self.reactor.seconds():
                return
            self._call.cancel()
        if delay > 0 or self._coins:
            self._call = self.reactor.callLater(delay, self._run)

    def _next(self, retry: bool = False) -> None:
        """Schedule the next run: coins waiting go first (after a pause when the
        snapshot just failed), else the periodic one."""
        self._call = None
        interval = self.settings.validate_interval_s
        if self._coins:
            self._schedule(self.coin_retry_s if retry else 0)
        elif interval > 0:
            self._schedule(self._until_next_period())

    def _not_before(self) -> int | None:
        """The oldest snapshot height worth catching up from: retained, and at most
        ``reuse_blocks`` behind (beyond that a fresh snapshot is cheaper)."""
        oldest = self.retained.oldest_usable_snapshot
        if oldest is None or self.books.height is None:
            return None
        return max(oldest, self.books.height - self.reuse_blocks)

    def _until_next_period(self) -> float:
        """Seconds to the next multiple of the interval on the reactor's clock.

        Runs on the clock's multiples, not every interval after a start: the
        workers of one server validate together, so one node snapshot serves
        them all (the parent gathers their requests).
        """
        interval = self.settings.validate_interval_s
        if interval <= 0:
            return 0.0
        delay = interval - self.reactor.seconds() % interval
        return delay + interval if delay < min(1.0, interval / 2) else delay

    def _run(self) -> Deferred:
        self._call = None
        if self.running:
            return defer.succeed(None)  # its end schedules the next run
        token = self.live()
        if token is None:
            self._coins.clear()  # not live: the coming resync replaces every coin
            self._next()
            return defer.succeed(None)
        self.running = True
        only, self._coins = self._coins, set()
        done = Deferred.fromCoroutine(self._validate(token, only))

        def over(failed: object) -> None:
            self.running = False
            self._next(retry=bool(failed))

        done.addErrback(lambda f: self._log.failure("ingest: validation crashed", f))
        return done.addBoth(over)

    async def _validate(self, token: int, only: set[str]) -> bool | None:
        """One run; True when the snapshot could not be had (retry after a pause)."""
        self.m_validations.inc()
        try:
            path = self.settings.snapshot_path
            staging = await self.fetch(path.with_name(path.name + ".validate"), self._not_before())
        except SnapshotError as exc:
            self._log.warn("ingest: validation skipped: {problem}", problem=str(exc))
            self._coins |= only
            return True
        try:
            if not await self._compare_all(token, staging, only) and self.live() == token:
                self._coins |= only  # skipped: named coins are tried again
                return True
        finally:
            dispose(self.books.take_discarded())
            dispose(staging.abandon())

    async def _compare_all(self, token: int, staging: Books, only: set[str]) -> bool:
        """Bring the staging copy to the live height, then compare coin by coin (True: done)."""
        try:
            await self._reach_height(staging.height)
        except defer.TimeoutError:
            self._log.warn("ingest: validation skipped: timeout")
            return False
        if self.live() != token or not await self._catch_staging_up(token, staging):
            return False
        coins = sorted(only or set(self.books.coins()) | set(staging.coins()))
        mismatched: list[str] = []
        index = 0
        while index < len(coins):
            if self.live() != token:
                return False  # a resync replaces everything anyway
            if self.books.height != staging.height and not await self._catch_staging_up(
                token, staging
            ):
                return False
            deadline = self.work_timer() + self.turn_budget_s
            adopted = []
            for coin in coins[index : index + self.compare_slice]:
                index += 1
                if self._compare_coin(staging, coin):
                    adopted.append(coin)
                if self.work_timer() >= deadline:
                    break
            if adopted:
                mismatched.extend(adopted)
                self.reset(set(adopted))
            await task.deferLater(self.reactor, 0, lambda: None)
        self._report(staging.height, len(coins), mismatched, only)
        return True

    async def _catch_staging_up(self, token: int, staging: Books) -> bool:
        """Apply retained blocks to ``staging`` up to the live height, a slice per turn.

        False when impossible (the retained lines do not reach back that far).
        """
        ready: deque[Block] = deque()  # rebuilt, not applied yet (read once each)
        while staging.height < (self.books.height or 0):
            built = ready[-1].height if ready else staging.height
            if built < self.books.height:  # rebuilt a few at a time: memory stays small
                blocks = self.retained.blocks(
                    built, min(self.books.height, built + self.rebuild_blocks)
                )
                if blocks is None:
                    self._log.warn("ingest: validation skipped: retained lines do not reach back")
                    return False
                ready.extend(blocks)
            deadline = self.work_timer() + self.turn_budget_s
            while ready:
                staging.apply_block(ready.popleft())
                if self.work_timer() >= deadline:
                    break
            await task.deferLater(self.reactor, 0, lambda: None)
            if self.live() != token:
                return False
        if staging.height != self.books.height:
            self._log.warn("ingest: validation skipped: the snapshot is ahead of the live book")
            return False
        return True

    def _compare_coin(self, staging: Books, coin: str) -> bool:
        """Compare one coin; on a difference log it and adopt the node's book (True)."""
        differences = self.books.compare_coin(staging, coin)
        if not differences:
            return False
        shown = "; ".join(differences[: self.max_logged_differences])
        self._log.error(
            "ingest: validation: {coin} differs from the node at block {height} "
            "({count} differences): {differences}; adopting the node's book",
            coin=coin,
            height=self.books.height,
            count=len(differences),
            differences=shown,
        )
        self.books.adopt_coin(staging, coin)
        return True

    def _report(self, height: int, coins: int, mismatched: list[str], only: set[str]) -> None:
        if mismatched:
            self.m_validation_failures.inc()
            self.m_mismatched.inc(len(mismatched))
        self._log.info(
            "ingest: validation at block {height}: {coins} coins{which}, {bad} differed",
            height=height,
            coins=coins,
            which=f" (resync of {', '.join(sorted(only))})" if only else "",
            bad=len(mismatched),
        )

    def _reach_height(self, height: int) -> Deferred:
        """Fires once the live book is at ``height`` or above."""
        if self.books.height is not None and self.books.height >= height:
            return defer.succeed(None)
        waiter: Deferred = Deferred()
        self._height_waiters.append((height, waiter))
        return waiter.addTimeout(max(self.settings.stall_timeout_s, 1.0) * 2, self.reactor)

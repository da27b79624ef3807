"""The ingest state machine: node files + snapshots -> the live Books.

States (``status()["state"]``):

- ``initializing``: started, nothing loaded yet;
- ``bootstrapping``: the first snapshot is being requested/loaded (blocks
  that arrive meanwhile are buffered, at most ``max_buffered_blocks``);
- ``ready``: the live Books follows the node block by block;
- ``stale``: ready, but one stream stopped while the others go on, or no
  block at all, for ``stall_timeout_s``; back to ready with the next block;
- ``resyncing``: a gap, a bad statuses/diffs line, a block dropped because
  one stream lagged too far behind, or a BookError was seen;
  the last good state is still served while a fresh snapshot is loaded into a
  staging Books, the buffered blocks are applied on top, and
  ``Books.replace_all`` swaps it in.

Nothing here ever stops the process: every callback is an error boundary,
snapshot failures are retried with a doubling delay. Every
``validate_interval_s`` a fresh snapshot is compared coin by coin with the
live book (brought to the same height from retained blocks); differing coins
are logged, adopted from the snapshot and announced via ``books_reset``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from orderbook.book.books import BlockResult, Books
from orderbook.book.coin_book import dismantle
from orderbook.book.events import Block
from orderbook.config import NodeSettings
from orderbook.metrics import Metrics
from orderbook.node.blocks import BlockAssembler
from orderbook.node.decoder import StatusesDecoder
from orderbook.node.schema import (
    DIRECTORIES,
    FILLS,
    STATUSES,
    STREAM_KINDS,
    LineError,
    coin_filter,
    decode_line,
)
from orderbook.node.snapshot import (
    SnapshotError,
    load_snapshot,
    remove_old,
    request_snapshot,
    wait_until_written,
)
from orderbook.node.tail import LineBatch, NodeTailer

INITIALIZING = "initializing"
BOOTSTRAPPING = "bootstrapping"
READY = "ready"
STALE = "stale"
RESYNCING = "resyncing"


class BookListener(Protocol):
    """Who hears about the live book (the feed)."""

    def block_applied(self, result: BlockResult) -> None: ...

    def books_reset(self, coins: set[str]) -> None: ...  # fresh state for these coins

    def state_changed(self, status: dict) -> None: ...  # the status() document


class _Abandoned(Exception):
    """A snapshot attempt was overtaken (buffer overflow, newer resync)."""


class IngestService(Service):
    """Tail the node, keep ``books`` in step, resync and validate it."""

    _log = Logger()

    retry_base_s = 1.0  # first retry delay after a failed snapshot; doubles
    retry_max_s = 60.0
    turn_budget_s = 0.02  # work per reactor turn when catching up or comparing
    compare_slice = 20  # at most this many coins compared per reactor turn
    max_pending_blocks = 1000  # incomplete blocks held while one stream lags
    snapshot_settle_s = 1.0  # a snapshot file unchanged this long while incomplete: failed
    max_logged_differences = 10

    def __init__(
        self,
        settings: NodeSettings,
        books: Books,
        listener: BookListener,
        metrics: Metrics,
        reactor=None,
        clock_now: Callable[[], float] = time.time,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.books = books
        self.listener = listener
        self.reactor = reactor
        self.clock_now = clock_now
        self.streaming = settings.mode == "streaming"
        self.accept_coin = coin_filter(settings.markets)
        self.assembler = BlockAssembler(
            settings.mode,
            on_gap=self._stream_gap,
            accept_coin=self.accept_coin,
            max_pending=self.max_pending_blocks,
            on_drop=self._block_dropped,
        )
        self.decoder = (
            StatusesDecoder(reactor) if settings.decode_worker and not self.streaming else None
        )
        directories = DIRECTORIES[settings.mode]
        self.tailer = NodeTailer(
            {kind: Path(settings.data_dir) / directories[kind] / "hourly" for kind in STREAM_KINDS},
            self._lines,
            self._unreadable,
            reactor,
            recheck_interval_s=settings.recheck_interval_s,
        )
        self._state = INITIALIZING
        self._reason: str | None = None
        self._resyncs = 0
        self._generation = 0  # bumped per snapshot attempt; stale attempts see a change
        self._syncing = False
        self._sync_call: Deferred | None = None
        self._buffer: list[Block] = []
        self._dirty: list[tuple[int | None, str]] = []  # trouble seen while syncing
        self._resync_wanted = False
        self._retry_delay = self.retry_base_s
        self._retry_call = None
        self._recent: deque[Block] = deque(maxlen=settings.max_buffered_blocks)
        self._last_block_wall: float | None = None
        self._stream_wall: dict[str, float] = {}
        self._height_waiters: list[tuple[int, Deferred]] = []
        self._validating = False
        self._validation_call = None
        self._watchdog = task.LoopingCall(self._guard, self._check_stall)
        self._watchdog.clock = reactor
        self._register_metrics(metrics)

    # -- public ------------------------------------------------------------------
    def startService(self) -> None:  # noqa: N802 (Twisted API)
        super().startService()
        self._last_block_wall = self.clock_now()
        self._stream_wall = dict.fromkeys(STREAM_KINDS, self._last_block_wall)
        if self.decoder is not None:
            self.decoder.start()
        self.tailer.start(at_end=True)
        self._watchdog.start(min(1.0, self.settings.stall_timeout_s / 4), now=False)
        self._schedule_validation()
        self._start_sync()

    def stopService(self) -> Deferred | None:  # noqa: N802 (Twisted API)
        super().stopService()
        self._generation += 1
        self.tailer.stop()
        if self.decoder is not None:
            self.decoder.stop()
        if self._watchdog.running:
            self._watchdog.stop()
        for call in (self._retry_call, self._validation_call):
            if call is not None and call.active():
                call.cancel()
        if self._sync_call is not None:
            self._sync_call.cancel()
        return None

    def status(self) -> dict[str, Any]:
        """The health document (also sent to ``listener.state_changed``)."""
        now = self.clock_now()
        time_ms = self.books.time_ms if self._synced() else None
        last = self._last_block_wall
        return {
            "state": self._state,
            "height": self.books.height if self._synced() else None,
            "block_time": time_ms,
            "lag_ms": None if time_ms is None else int(now * 1000) - time_ms,
            "last_block_age_ms": None if last is None else int((now - last) * 1000),
            "reason": self._reason,
            "resyncs": self._resyncs,
            "mode": self.settings.mode,
            "buffered_blocks": len(self._buffer),
            "stream_heights": self.assembler.stream_heights(),
        }

    # -- metrics -----------------------------------------------------------------
    def _register_metrics(self, metrics: Metrics) -> None:
        prefix = "orderbook_node_"
        self.m_blocks = metrics.counter(prefix + "blocks_applied_total", "Blocks applied live")
        self.m_old = metrics.counter(prefix + "old_blocks_total", "Blocks at or below our height")
        self.m_bad = metrics.counter(
            prefix + "bad_lines_total", "Unusable node lines", labels=("stream",)
        )
        self.m_resyncs = metrics.counter(prefix + "resyncs_total", "Resyncs started")
        self.m_gaps = metrics.counter(prefix + "gaps_total", "Missing blocks detected")
        self.m_stalls = metrics.counter(prefix + "stalls_total", "Times the feed went stale")
        self.m_snapshot_failures = metrics.counter(
            prefix + "snapshot_failures_total", "Failed snapshot requests or loads"
        )
        self.m_validations = metrics.counter(prefix + "validation_runs_total", "Validations run")
        self.m_validation_failures = metrics.counter(
            prefix + "validation_failures_total", "Validations that found differing coins"
        )
        self.m_mismatched = metrics.counter(
            prefix + "validation_mismatched_coins_total", "Coins adopted from a snapshot"
        )
        metrics.gauge(prefix + "height", "Height of the live book", read=self._height_or_zero)
        metrics.gauge(prefix + "lag_ms", "Wall clock minus block time", read=self._lag_or_zero)
        metrics.gauge(prefix + "ready", "1 when the live book is ready", read=self._ready_gauge)

    def _height_or_zero(self) -> float:
        return self.books.height or 0 if self._synced() else 0

    def _lag_or_zero(self) -> float:
        return self.status()["lag_ms"] or 0

    def _ready_gauge(self) -> float:
        return 1 if self._state == READY else 0

    # -- error boundary ----------------------------------------------------------
    def _guard(self, call: Callable, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception:
            self._log.failure("ingest: {call} failed; ingestion goes on", call=call.__name__)
            return None

    def _tell(self, method: str, argument: Any) -> None:
        try:
            getattr(self.listener, method)(argument)
        except Exception:
            self._log.failure("ingest: listener.{method} failed", method=method)

    def _set_state(self, state: str, reason: str | None) -> None:
        if state == self._state and reason == self._reason:
            return
        changed = state != self._state
        self._state, self._reason = state, reason
        if changed:
            if reason:
                self._log.info("ingest: state {state} ({reason})", state=state, reason=reason)
            else:
                self._log.info("ingest: state {state}", state=state)
            self._tell("state_changed", self.status())

    def _synced(self) -> bool:
        return self.books.height is not None and self._state != INITIALIZING

    # -- lines -------------------------------------------------------------------
    def _lines(self, kind: str, path: Path, batch: LineBatch) -> None:
        self._stream_wall[kind] = self.clock_now()
        for offset, raw in batch:
            self._line(kind, path, offset, raw)
        self._sync_if_wanted()

    def _line(self, kind: str, path: Path, offset: int, raw: bytes | None) -> None:
        if raw is None:
            self._bad_line(kind, path, offset, None, "line exceeds the size cap")
            return
        if not raw.strip():
            return
        if kind == STATUSES and self.decoder is not None:
            self.decoder.submit(
                raw, lambda line: self._decoded_later(path, offset, line), path, offset
            )
            return
        self._decoded(kind, path, offset, raw)

    def _decoded_later(self, path: Path, offset: int, raw: bytes) -> None:
        """A statuses line back from the decoder process (in file order)."""
        self._decoded(STATUSES, path, offset, raw)
        self._sync_if_wanted()

    def _decoded(self, kind: str, path: Path, offset: int, raw: bytes) -> None:
        """Decode, assemble and apply one line: the error boundary of a line."""
        try:
            try:
                line = decode_line(kind, raw)
            except LineError as exc:
                self._bad_line(kind, path, offset, exc.height, str(exc))
                blocks = self.assembler.add_bad(kind, exc.height, exc.block_time)
            else:
                blocks = self.assembler.add(kind, line, at_file_start=offset == 0)
            for block in blocks:
                self._block(block)
        except Exception:
            self._log.failure(
                "ingest: {stream} line at {path}:{offset} crashed",
                stream=kind,
                path=path,
                offset=offset,
            )
            self._need_resync(f"internal error on a {kind} line", None)

    def _sync_if_wanted(self) -> None:
        if self._resync_wanted and not self._syncing and self._retry_call is None:
            self._start_sync()

    def _unreadable(self, kind: str, path: Path, offset: int, problem: str) -> None:
        self._bad_line(kind, path, offset, None, problem)

    def _bad_line(
        self, kind: str, path: Path, offset: int, height: int | None, problem: str
    ) -> None:
        self.m_bad.inc(1, kind)
        self._log.warn(
            "ingest: bad {stream} line in {path} at byte {offset} (block {height}): {problem}",
            stream=kind,
            path=str(path),
            offset=offset,
            height=height,
            problem=problem[:300],
        )
        if kind != FILLS:
            self._need_resync(f"bad {kind} line in {path} at byte {offset}", height)

    def _stream_gap(self, kind: str, expected: int, got: int) -> None:
        self.m_gaps.inc()
        self._need_resync(f"{kind} stream skipped from block {expected} to {got}", expected)

    def _block_dropped(self, height: int, waiting_for: list[str]) -> None:
        if not self._syncing and self.books.height is not None and height <= self.books.height:
            return  # the state we serve already covers it
        self.m_gaps.inc()
        self._need_resync(
            f"block {height} dropped: stream {', '.join(waiting_for)} more than "
            f"{self.assembler.max_pending} blocks behind",
            height,
        )

    # -- blocks ------------------------------------------------------------------
    def _block(self, block: Block) -> None:
        self._last_block_wall = self.clock_now()
        if self._syncing:
            self._buffer.append(block)
            if len(self._buffer) > self.settings.max_buffered_blocks:
                self._sync_failed(
                    self._generation,
                    f"more than {self.settings.max_buffered_blocks} blocks arrived while "
                    "waiting for the snapshot (max_buffered_blocks)",
                )
            return
        if self._resync_wanted or self.books.height is None or self._state == INITIALIZING:
            return  # no good state to apply it to; the coming snapshot covers it
        height = self.books.height
        if block.height <= height:
            self.m_old.inc()
        elif not self._hole(height, block.height):
            self._apply_live(block)
        else:
            self.m_gaps.inc()
            self._need_resync(f"gap: block {block.height} after {height}", height + 1)

    def _apply_live(self, block: Block) -> None:
        try:
            result = self.books.apply_block(block)
        except Exception as exc:
            self._log.failure("ingest: apply_block {height} raised", height=block.height)
            self._need_resync(f"apply_block {block.height} raised {exc!r}", block.height)
            return
        self._recent.append(block)
        self.m_blocks.inc()
        self._tell("block_applied", result)
        if result.errors:
            first = result.errors[0]
            self._need_resync(
                f"block {block.height}: {len(result.errors)} book errors, first {first.coin} "
                f"oid {first.oid}: {first.message}",
                block.height,
            )
            return
        if self._state == STALE and self._stall_reason() is None:
            self._set_state(READY, None)
        self._wake_height_waiters()

    # -- resync ------------------------------------------------------------------
    def _need_resync(self, reason: str, height: int | None) -> None:
        if self._syncing:
            self._dirty.append((height, reason))
            self._log.warn("ingest: {reason} (while loading a snapshot)", reason=reason)
            return
        if self._resync_wanted:
            return  # already logged once
        self._log.error("ingest: {reason}; serving the last good state, resyncing", reason=reason)
        self._resync_wanted = True
        self._resyncs += 1
        self.m_resyncs.inc()
        self._set_state(RESYNCING, reason)

    def _start_sync(self) -> None:
        """Ask for a snapshot now, unless one stream stopped while the others go on.

        Then the snapshot waits until that stream flows again: blocks cannot
        complete without it, so a snapshot now would only be dropped again.
        """
        self._retry_call = None
        if not self.running or self._stopped_alone():
            return
        self._generation += 1
        self._syncing = True
        self._buffer = []
        self._dirty = []
        if self._state in (INITIALIZING, BOOTSTRAPPING):
            self._set_state(BOOTSTRAPPING, "loading the node's snapshot")
        else:
            self._set_state(RESYNCING, self._reason)
        self._sync_call = Deferred.fromCoroutine(self._sync(self._generation))
        self._sync_call.addErrback(self._sync_crashed)

    def _sync_crashed(self, failure) -> None:
        if failure.check(defer.CancelledError):
            return
        self._log.failure("ingest: snapshot sync crashed", failure)
        self._sync_failed(self._generation, f"internal error: {failure.getErrorMessage()}")

    async def _fetch_snapshot(self, path: Path) -> Books:
        """Ask the node for a fresh snapshot file, wait until it is written, load it."""
        settings = self.settings
        start = self.reactor.seconds()
        remove_old(path)
        await request_snapshot(self.reactor, settings.info_url, path, settings.snapshot_timeout_s)
        remaining = settings.snapshot_timeout_s - (self.reactor.seconds() - start)
        await wait_until_written(self.reactor, path, max(remaining, 0.0), self.snapshot_settle_s)
        return await load_snapshot(path, self._new_books)

    async def _sync(self, generation: int) -> None:
        staging: Books | None = None
        try:
            staging = await self._fetch_snapshot(self.settings.snapshot_path)
            self._check_current(generation)
            await self._catch_up(staging, generation)
        except SnapshotError as exc:
            if generation == self._generation:
                self._sync_call = None  # we are that call: nothing to cancel
            self._sync_failed(generation, str(exc))
            self._dispose_staging(staging)
            return
        except _Abandoned:
            self._dispose_staging(staging)
            return
        self._go_live(staging)

    def _dispose_staging(self, staging: Books | None) -> None:
        if staging is not None:
            self._dispose(staging.abandon())

    def _dispose(self, books: list) -> None:
        """Dismantle books nobody uses any more, a slice per reactor turn (see dismantle)."""
        if books:
            task.cooperate(dismantle(books)).whenDone().addErrback(
                lambda failure: self._log.failure("ingest: dismantling books failed", failure)
            )

    def _check_current(self, generation: int) -> None:
        if generation != self._generation or not self._syncing:
            raise _Abandoned()

    def _new_books(self) -> Books:
        return Books(accept_coin=self.accept_coin)

    async def _catch_up(self, staging: Books, generation: int) -> None:
        """Apply the buffered blocks above the snapshot's height, a slice per turn."""
        snapshot_height = staging.height
        while True:
            self._check_current(generation)
            trouble = [why for h, why in self._dirty if h is None or h > snapshot_height]
            if trouble:
                raise SnapshotError(f"bad data above the snapshot: {trouble[0]}")
            if not self._buffer:
                return
            deadline = perf_counter() + self.turn_budget_s
            applied = 0
            while applied < len(self._buffer) and perf_counter() < deadline:
                self._apply_staging(staging, self._buffer[applied])
                applied += 1
            del self._buffer[:applied]
            await task.deferLater(self.reactor, 0, lambda: None)

    def _apply_staging(self, staging: Books, block: Block) -> None:
        if block.height <= staging.height:
            if block.height == staging.height and staging.time_ms is None:
                staging.set_height(block.height, block.time_ms)  # the snapshot has no time
            return
        if self._hole(staging.height, block.height):
            raise SnapshotError(
                f"blocks {staging.height + 1}..{block.height - 1} missing above the snapshot"
            )
        result = staging.apply_block(block)
        self._recent.append(block)
        if result.errors:
            first = result.errors[0]
            raise SnapshotError(
                f"block {block.height} does not apply on the snapshot: {first.coin} "
                f"oid {first.oid}: {first.message}"
            )

    @staticmethod
    def _hole(height: int, following: int) -> bool:
        """Would applying block ``following`` on state ``height`` skip data?

        Every block has lines in every stream, in both modes.
        """
        return following != height + 1

    def _go_live(self, staging: Books) -> None:
        if staging.time_ms is None:  # its block was never seen: wall clock is the best guess
            staging.set_height(staging.height, int(self.clock_now() * 1000))
        coins = self.books.replace_all(staging)
        self._dispose(self.books.take_discarded())
        self.assembler.skip_through(self.books.height)
        self._syncing = False
        self._sync_call = None
        self._resync_wanted = False
        self._retry_delay = self.retry_base_s
        self._log.info(
            "ingest: live at block {height} ({coins} coins)",
            height=self.books.height,
            coins=len(coins),
        )
        self._tell("books_reset", coins)
        self._set_state(READY, None)
        self._wake_height_waiters()

    def _sync_failed(self, generation: int, reason: str) -> None:
        if generation != self._generation or not self._syncing:
            return
        self._generation += 1
        self._syncing = False
        self._buffer = []
        if self._sync_call is not None:
            call, self._sync_call = self._sync_call, None
            call.cancel()
        self.m_snapshot_failures.inc()
        delay = self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.retry_max_s)
        self._resync_wanted = True
        self._log.error(
            "ingest: snapshot failed: {reason}; retrying in {delay:g} s",
            reason=reason,
            delay=delay,
        )
        state = BOOTSTRAPPING if self._state in (INITIALIZING, BOOTSTRAPPING) else RESYNCING
        self._set_state(state, f"snapshot failed: {reason}")
        self._retry_call = self.reactor.callLater(delay, self._guard, self._start_sync)

    # -- staleness ---------------------------------------------------------------
    def _check_stall(self) -> None:
        if self._state not in (READY, STALE):
            return
        reason = self._stall_reason()
        if reason is not None and self._state == READY:
            self.m_stalls.inc()
            self._log.warn("ingest: stale: {reason}", reason=reason)
            self._set_state(STALE, reason)
        elif reason is None and self._state == STALE:
            self._set_state(READY, None)

    def _stopped_streams(self) -> list[str]:
        """Streams that delivered nothing for ``stall_timeout_s``."""
        now = self.clock_now()
        limit = self.settings.stall_timeout_s
        return sorted(k for k, t in self._stream_wall.items() if now - t > limit)

    def _stopped_alone(self) -> list[str]:
        """The silent streams, when the others still deliver (else empty)."""
        stopped = self._stopped_streams()
        return stopped if len(stopped) < len(STREAM_KINDS) else []

    def _stall_reason(self) -> str | None:
        """Why the feed is stale (a stream that stopped is named), or None."""
        now = self.clock_now()
        limit = self.settings.stall_timeout_s
        stopped = self._stopped_alone()
        if stopped:
            quiet = max(now - self._stream_wall[k] for k in stopped)
            return (
                f"stream {', '.join(stopped)} stopped while the others go on "
                f"(nothing for {quiet:.1f} s)"
            )
        if self._last_block_wall is not None and now - self._last_block_wall > limit:
            return f"no new block for {now - self._last_block_wall:.1f} s"
        return None

    # -- validation --------------------------------------------------------------
    def _schedule_validation(self) -> None:
        interval = self.settings.validate_interval_s
        if interval > 0 and self.running:
            self._validation_call = self.reactor.callLater(interval, self._validate_now)

    def _validate_now(self) -> Deferred:
        """Run one validation (also usable directly); fires when it is over."""
        self._validation_call = None
        if self._validating or self._state not in (READY, STALE):
            self._schedule_validation()
            return defer.succeed(None)
        self._validating = True
        done = Deferred.fromCoroutine(self._validate(self._generation))

        def over(result: object) -> None:
            self._validating = False
            self._schedule_validation()

        done.addErrback(lambda f: self._log.failure("ingest: validation crashed", f))
        return done.addBoth(over)

    def validate(self) -> Deferred:
        """Compare the live book with a fresh snapshot now (for tests and operators)."""
        return self._validate_now()

    async def _validate(self, generation: int) -> None:
        self.m_validations.inc()
        try:
            path = self.settings.snapshot_path
            staging = await self._fetch_snapshot(path.with_name(path.name + ".validate"))
        except SnapshotError as exc:
            self._log.warn("ingest: validation skipped: {problem}", problem=str(exc))
            return
        try:
            await self._compare_all(generation, staging)
        finally:
            self._dispose(self.books.take_discarded())
            self._dispose_staging(staging)

    async def _compare_all(self, generation: int, staging: Books) -> None:
        """Bring the staging copy to the live height, then compare coin by coin."""
        try:
            await self._reach_height(staging.height)
        except defer.TimeoutError:
            self._log.warn("ingest: validation skipped: timeout")
            return
        mismatched: list[str] = []
        coins = sorted(set(self.books.coins()) | set(staging.coins()))
        index = 0
        while index < len(coins):
            if generation != self._generation or self._state not in (READY, STALE):
                return  # a resync replaces everything anyway
            deadline = perf_counter() + self.turn_budget_s
            reached = self._catch_staging_up(staging, deadline)
            if reached is None:
                self._log.warn("ingest: validation skipped: retained blocks do not reach back")
                return
            if reached:  # same height now: compare, in this same turn
                adopted = []
                for coin in coins[index : index + self.compare_slice]:
                    index += 1
                    if self._compare_coin(staging, coin):
                        adopted.append(coin)
                    if perf_counter() >= deadline:
                        break
                if adopted:
                    mismatched.extend(adopted)
                    self._tell("books_reset", set(adopted))
            await task.deferLater(self.reactor, 0, lambda: None)
        self._report_validation(staging.height, len(coins), mismatched)

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

    def _report_validation(self, height: int, coins: int, mismatched: list[str]) -> None:
        if mismatched:
            self.m_validation_failures.inc()
            self.m_mismatched.inc(len(mismatched))
        self._log.info(
            "ingest: validation at block {height}: {coins} coins, {bad} differed",
            height=height,
            coins=coins,
            bad=len(mismatched),
        )

    def _catch_staging_up(self, staging: Books, deadline: float) -> bool | None:
        """Apply retained blocks to ``staging`` towards the live height until ``deadline``.

        True: at the live height. False: not yet (call again next turn).
        None: impossible (the retained blocks do not reach back that far).
        """
        target = self.books.height
        if staging.height >= target:
            return True if staging.height == target else None
        needed = []
        for block in reversed(self._recent):
            if block.height <= staging.height:
                break
            if block.height <= target:
                needed.append(block)
        needed.reverse()
        expected = staging.height + 1
        for block in needed:
            if block.height != expected:
                return None
            staging.apply_block(block)
            expected = block.height + 1
            if perf_counter() >= deadline:
                break
        return staging.height == target

    def _reach_height(self, height: int) -> Deferred:
        """Fires once the live book is at ``height`` or above."""
        if self.books.height is not None and self.books.height >= height:
            return defer.succeed(None)
        waiter: Deferred = Deferred()
        self._height_waiters.append((height, waiter))
        return waiter.addTimeout(max(self.settings.stall_timeout_s, 1.0) * 2, self.reactor)

    def _wake_height_waiters(self) -> None:
        current = self.books.height
        if not self._height_waiters or current is None:
            return
        waiting = []
        for height, waiter in self._height_waiters:
            if current >= height:
                if not waiter.called:
                    waiter.callback(None)
            elif not waiter.called:
                waiting.append((height, waiter))
        self._height_waiters = waiting

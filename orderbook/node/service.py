"""The ingest state machine: node files + snapshots -> the live Books.

States (``status()["state"]``):

- ``initializing``: started, nothing loaded yet;
- ``bootstrapping``: the first snapshot is being requested/loaded (blocks
  that arrive meanwhile are buffered, at most ``max_buffered_blocks``);
- ``ready``: the live Books follows the node block by block;
- ``stale``: ready, but the node stopped: no block for ``stall_timeout_s``
  (by-block mode also names a stream that stopped while the others go on:
  there every stream has a line for every block); back to ready with the next block;
- ``resyncing``: a gap, a bad statuses/diffs line, an impossible height, a
  block dropped because one stream lagged too far behind, or a BookError was
  seen; the last good state is still served while a fresh snapshot is loaded
  (:mod:`orderbook.node.resync`).

The work is delegated: lines come from :mod:`~orderbook.node.tail` through
:mod:`~orderbook.node.intake` (statuses through the
:mod:`~orderbook.node.prefilter` child when enabled), become blocks in
:mod:`~orderbook.node.blocks` (by-block) or :mod:`~orderbook.node.streaming`
(with its grace timer); snapshots and catch-up live in
:mod:`~orderbook.node.resync`, periodic validation and per-coin resyncs in
:mod:`~orderbook.node.validation`, stale detection in
:mod:`~orderbook.node.stall`; trades are paired from the fills lines by
:mod:`~orderbook.node.tape`, apart from the book (published with their block
while the book is live, as they are read otherwise: a resync never holds
them back); listeners hear results through
:mod:`~orderbook.node.listeners`. Every callback is an error boundary: nothing
here stops the process. The only clock is the reactor's (injectable).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from orderbook.book.books import Books
from orderbook.book.events import Block
from orderbook.config import NodeSettings
from orderbook.metrics import Metrics
from orderbook.node.blocks import BlockAssembler
from orderbook.node.intake import LineIntake
from orderbook.node.listeners import BookListener, BookListeners
from orderbook.node.prefilter import StatusesPrefilter
from orderbook.node.resync import SnapshotSync, dispose, fetch_snapshot
from orderbook.node.retained import RetainedLines
from orderbook.node.schema import DIRECTORIES, STREAM_KINDS, coin_filter
from orderbook.node.stall import StallWatch
from orderbook.node.streaming import GraceTimer, StreamAssembler
from orderbook.node.tail import NodeTailer
from orderbook.node.tape import TradeTape
from orderbook.node.validation import Validator

INITIALIZING = "initializing"
BOOTSTRAPPING = "bootstrapping"
READY = "ready"
STALE = "stale"
RESYNCING = "resyncing"

__all__ = ["BookListener", "IngestService"]


class IngestService(Service):
    """Tail the node, keep ``books`` in step, resync and validate it."""

    _log = Logger()

    max_pending_blocks = 1000  # incomplete blocks held while one stream lags
    retain_blocks = 2000  # line positions kept per stream for validation catch-up

    def __init__(
        self,
        settings: NodeSettings,
        books: Books,
        listeners: list[BookListener],
        metrics: Metrics,
        reactor: Any = None,
        snapshots: Callable[..., Awaitable[Books]] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.snapshots = snapshots or node_snapshots(self)  # (path) -> the snapshot, loaded
        self.settings = settings
        self.books = books
        self.listener = BookListeners(listeners)
        self.reactor = reactor
        self.streaming = settings.mode == "streaming"
        self.accept_coin = coin_filter(settings.markets)
        self.retained = RetainedLines(self.retain_blocks, self.accept_coin, self.streaming)
        self.sync = SnapshotSync(
            settings, reactor, self.snapshots, self._go_live, self._sync_failed, self._retry
        )
        self.validator = Validator(
            settings, books, self.retained, self.snapshots, self.listener.books_reset,
            self._live_token,
            metrics, reactor,
        )  # fmt: skip
        self.lines = LineIntake(self, metrics)
        self.tape = TradeTape(self.accept_coin, self.streaming, self.listener.trades_paired)
        self.assembler = make_assembler(self)
        self.grace = (
            GraceTimer(reactor, self._assembly, lambda out: self._guard(self.blocks_out, out))
            if self.streaming
            else None
        )
        self.prefilter = (
            StatusesPrefilter(reactor) if settings.decode_worker and not self.streaming else None
        )
        self.tailer = make_tailer(settings, self.lines, reactor)
        self.state = INITIALIZING
        self.reason: str | None = None
        self.resyncs = 0
        self._live = 0  # bumped at every go-live and resync: validation's token
        self._last_block_at: float | None = None
        self.m_blocks, self.m_old, self.m_resyncs, self.m_gaps, self.m_snapshot_failures = (
            register_metrics(self, metrics)
        )
        self.stall = StallWatch(
            reactor, settings.stall_timeout_s, lambda: self._last_block_at,
            self.lines.stopped_alone, self.lines.quiet_for, lambda: self.state, self._set_state,
            metrics,
        )  # fmt: skip

    # -- public ------------------------------------------------------------------
    def startService(self) -> None:  # noqa: N802 (Twisted API)
        super().startService()
        self._last_block_at = self.reactor.seconds()
        self.lines.start()
        if self.prefilter is not None:
            self.prefilter.start()
        self.tailer.start(at_end=True)
        self.lines.trust_start(self.tailer.lines_before_start())
        self.stall.start()
        self.validator.start()
        self._start_sync()

    def stopService(self) -> None:  # noqa: N802 (Twisted API)
        super().stopService()
        self.sync.stop()
        self.tailer.stop()
        if self.prefilter is not None:
            self.prefilter.stop()
        self.stall.stop()
        self.validator.stop()
        if self.grace is not None:
            self.grace.cancel()

    def validate(self) -> Any:
        """Compare the live book with a fresh snapshot now (for tests and operators)."""
        return self.validator.validate()

    def status(self) -> dict[str, Any]:
        """The health document (also sent to the listeners' ``state_changed``)."""
        return health_document(self)

    # -- helpers -----------------------------------------------------------------
    def _guard(self, call: Callable, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception:
            self._log.failure("ingest: {call} failed; ingestion goes on", call=call.__name__)
            return None

    def _set_state(self, state: str, reason: str | None) -> None:
        if state == self.state and reason == self.reason:
            return
        changed = state != self.state
        self.state, self.reason = state, reason
        if changed:
            if reason:
                self._log.info("ingest: state {state} ({reason})", state=state, reason=reason)
            else:
                self._log.info("ingest: state {state}", state=state)
            self.listener.state_changed(self.status())

    @property
    def last_moved_at(self) -> float | None:
        """When the last block completed (reactor time)."""
        return self._last_block_at

    def synced(self) -> bool:
        return self.books.height is not None and self.state != INITIALIZING

    def release_trades(self) -> None:
        """After a read of fills: publish the trades the book has reached (live), or all."""
        live = self.state in (READY, STALE) and not self.sync.wanted and not self.sync.syncing
        self.tape.release(self.books.height if live else None)

    def _live_token(self) -> int | None:
        """Changes at every resync; None while the live book is not being followed."""
        return self._live if self.state in (READY, STALE) else None

    def _assembly(self) -> StreamAssembler:
        return self.assembler  # type: ignore[return-value]  (streaming mode only)

    # -- blocks ------------------------------------------------------------------
    def blocks_out(self, blocks: list[Block]) -> None:
        """Blocks the assembler completed (in height order); re-arm the streaming grace."""
        for block in blocks:
            self._block(block)
        if self.grace is not None:
            self.grace.arm()

    def _block(self, block: Block) -> None:
        self._last_block_at = self.reactor.seconds()
        if self.sync.syncing:
            self.sync.add_block(block)
            return
        if self.sync.wanted or self.books.height is None or self.state == INITIALIZING:
            return  # no good state to apply it to; the coming snapshot covers it
        height = self.books.height
        if block.height <= height:
            self.m_old.inc()
        elif block.height == height + 1:
            self._apply_live(block)
        else:
            self.m_gaps.inc()
            self.need_resync(f"gap: block {block.height} after {height}", height + 1)

    def _apply_live(self, block: Block) -> None:
        try:
            result = self.books.apply_block(block)
        except Exception as exc:
            self._log.failure("ingest: apply_block {height} raised", height=block.height)
            self.need_resync(f"apply_block {block.height} raised {exc!r}", block.height)
            return
        if result.errors:  # not published: clients would get diffs that do not fit
            first = result.errors[0]  # their book; the resync's snapshots come next
            self.need_resync(
                f"block {block.height}: {len(result.errors)} book errors, first {first.coin} "
                f"oid {first.oid}: {first.message}",
                block.height,
            )
            return
        self.m_blocks.inc()
        self.listener.block_applied(result)
        self.tape.release(block.height)
        if self.state == STALE:
            self.stall.check()
        self.validator.height_reached()

    # -- trouble -----------------------------------------------------------------
    def need_resync(self, reason: str, height: int | None) -> None:
        """Something is wrong with the live state: serve the last good one, resync."""
        if self.sync.syncing:
            self.sync.trouble(height, reason)
            self._log.warn("ingest: {reason} (while loading a snapshot)", reason=reason)
            return
        if self.sync.wanted:
            return  # already logged once
        self._log.error("ingest: {reason}; serving the last good state, resyncing", reason=reason)
        self.sync.wanted = True
        self.tape.release(None)  # no live book to keep them in step with any more
        self._live += 1
        self.resyncs += 1
        self.m_resyncs.inc()
        self._set_state(RESYNCING, reason)

    def sync_if_wanted(self) -> None:
        if self.sync.may_start():
            self._start_sync()

    # -- resync ------------------------------------------------------------------
    def _start_sync(self) -> None:
        """Ask for a snapshot now, unless a by-block stream stopped while the others go on.

        Then the snapshot waits until that stream flows again: blocks cannot
        complete without it, so a snapshot now would only be dropped again.
        """
        if not self.running or self.lines.stopped_alone():
            return
        if self.state in (INITIALIZING, BOOTSTRAPPING):
            self._set_state(BOOTSTRAPPING, "loading the node's snapshot")
        else:
            self._set_state(RESYNCING, self.reason)
        self.sync.start()

    def _retry(self) -> None:
        self._guard(self._start_sync)

    def _go_live(self, staging: Books) -> None:
        if staging.time_ms is None:  # its block was never seen: wall clock is the best guess
            staging.set_height(staging.height, int(self.reactor.seconds() * 1000))
        coins = self.books.replace_all(staging)
        dispose(self.books.take_discarded())
        self.assembler.skip_through(self.books.height)
        self.assembler.forget_above(self.books.height + self.lines.max_height_jump)
        self._live += 1
        self._log.info(
            "ingest: live at block {height} ({coins} coins)",
            height=self.books.height,
            coins=len(coins),
        )
        self.listener.books_reset(coins)
        self.tape.release(self.books.height)
        self._set_state(READY, None)
        self.validator.height_reached()

    def _sync_failed(self, reason: str, delay: float) -> None:
        self.m_snapshot_failures.inc()
        if self.books.height is None:  # no reference height yet: assemble afresh
            self.assembler = make_assembler(self)
        state = BOOTSTRAPPING if self.state in (INITIALIZING, BOOTSTRAPPING) else RESYNCING
        self._set_state(state, f"snapshot failed: {reason}")


def health_document(service: IngestService) -> dict[str, Any]:
    """The service's state, heights, lag and counts, as /health shows them."""
    now = service.reactor.seconds()
    synced = service.synced()
    time_ms = service.books.time_ms if synced else None
    last = service.last_moved_at
    return {
        "state": service.state,
        "height": service.books.height if synced else None,
        "block_time": time_ms,
        "lag_ms": None if time_ms is None else int(now * 1000) - time_ms,
        "last_block_age_ms": None if last is None else int((now - last) * 1000),
        "reason": service.reason,
        "resyncs": service.resyncs,
        "mode": service.settings.mode,
        "buffered_blocks": len(service.sync.buffer),
        "stream_heights": service.assembler.stream_heights(),
    }


def node_snapshots(service: IngestService) -> Callable[..., Awaitable[Books]]:
    """``(path, not_before=None)`` -> the node's snapshot at ``path``, loaded into new Books."""

    def new_books() -> Books:
        return Books(accept_coin=service.accept_coin)

    def fetch(path: Path, not_before: int | None = None) -> Awaitable[Books]:
        settle_s = service.sync.snapshot_settle_s
        return fetch_snapshot(
            service.reactor, service.settings, path, new_books, settle_s, not_before
        )

    return fetch


def make_tailer(settings: NodeSettings, lines: LineIntake, reactor: Any) -> NodeTailer:
    """The tailer of the mode's three hourly directories, delivering to ``lines``."""
    directories = DIRECTORIES[settings.mode]
    return NodeTailer(
        {kind: Path(settings.data_dir) / directories[kind] / "hourly" for kind in STREAM_KINDS},
        lines.deliver,
        lines.unreadable,
        reactor,
        recheck_interval_s=settings.recheck_interval_s,
    )


def make_assembler(service: IngestService) -> BlockAssembler | StreamAssembler:
    """The assembler of the service's mode, reporting trouble to its line intake."""
    lines = service.lines
    if service.streaming:
        return StreamAssembler(
            service.reactor.seconds,
            service.settings.stream_grace_ms / 1000,
            accept_coin=service.accept_coin,
            on_late=lines.late_row,
            on_gap=lines.stream_gap,
            max_pending=service.max_pending_blocks,
            behind=lambda: service.tailer.behind(),
        )
    return BlockAssembler(
        on_gap=lines.stream_gap,
        accept_coin=service.accept_coin,
        max_pending=service.max_pending_blocks,
        on_drop=lines.block_dropped,
    )


def register_metrics(service: IngestService, metrics: Metrics) -> tuple[Any, ...]:
    """The service's gauges; its counters (blocks, old, resyncs, gaps, snapshot failures)."""
    prefix = "orderbook_node_"

    def height() -> float:
        return (service.books.height or 0) if service.synced() else 0

    metrics.gauge(prefix + "height", "Height of the live book", read=height)
    metrics.gauge(
        prefix + "lag_ms",
        "Wall clock minus block time",
        read=lambda: service.status()["lag_ms"] or 0,
    )
    metrics.gauge(
        prefix + "ready",
        "1 when the live book is ready",
        read=lambda: 1 if service.status()["state"] == READY else 0,
    )
    return (
        metrics.counter(prefix + "blocks_applied_total", "Blocks applied live"),
        metrics.counter(prefix + "old_blocks_total", "Blocks at or below our height"),
        metrics.counter(prefix + "resyncs_total", "Resyncs started"),
        metrics.counter(prefix + "gaps_total", "Missing blocks detected"),
        metrics.counter(prefix + "snapshot_failures_total", "Failed snapshot requests or loads"),
    )

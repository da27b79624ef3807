"""Node lines in: decode (statuses through the pre-filter child), check, assemble.

The :class:`LineIntake` is the error boundary of a line. It hands every line
of the tailer to the assembler and the blocks that completes to the ingest
service, and reports what is wrong with a line: unreadable, undecodable, or
at a height that cannot be right. Such a line is logged, counted in
``orderbook_node_bad_lines_total{stream}`` and (statuses, diffs) resyncs; it
never reaches the assembler, so it cannot poison the lines after it.

Impossible height: once a snapshot gave the book a height H, a line whose
block is more than ``max_height_jump`` blocks behind H, or further ahead
than ``max_height_jump`` plus ``max_blocks_per_s`` for every second since
the book last moved (mainnet makes ~14.5 blocks/s; a node back after an
hour's outage is still believed), is refused. Before the first snapshot
there is no reference; a failed first snapshot starts assembly afresh.

Every fills line also goes to the service's
:class:`~orderbook.node.tape.TradeTape` (trades do not wait for the book's
state; while the book is live they are published with their block).

It also knows when each stream last delivered, for by-block stall reports
(every by-block stream has a line per block, so one stopping while the
others go on is named; streaming streams are sparse, so only the node as a
whole can stall).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from twisted.logger import Logger

from orderbook.metrics import Metrics
from orderbook.node.schema import (
    FILLS,
    STATUSES,
    STREAM_KINDS,
    LineError,
    decode_line,
    header_height,
)
from orderbook.node.tail import LineBatch

if TYPE_CHECKING:
    from orderbook.node.service import IngestService


class LineIntake:
    """The tailer's lines -> the service's assembler, with bad lines reported once."""

    _log = Logger(namespace="orderbook.node.intake")

    max_height_jump = 10_000  # blocks (~11 min of mainnet) either side of the live height
    max_blocks_per_s = 100.0  # how fast the node may have moved on while the book did not

    def __init__(self, service: IngestService, metrics: Metrics) -> None:
        self.service = service
        self.reactor = service.reactor
        self.m_bad = metrics.counter(
            "orderbook_node_bad_lines_total", "Unusable node lines", labels=("stream",)
        )
        self.m_late = metrics.counter(
            "orderbook_node_late_rows_total",
            "Streaming statuses/diffs rows read after their block was applied",
            labels=("stream",),
        )
        self._stream_at: dict[str, float] = {}
        self._late_logged: int | None = None  # the last block whose late rows were logged

    def start(self) -> None:
        self._stream_at = dict.fromkeys(STREAM_KINDS, self.reactor.seconds())

    def trust_start(self, before: dict[str, bytes | None]) -> None:
        """Streaming: blocks above the highest one the files held when reading began
        are read whole (the node writes blocks in order)."""
        assembler = self.service.assembler
        if not hasattr(assembler, "trust_from"):
            return
        heights = [header_height(raw) for raw in before.values() if raw]
        if None in heights:
            return  # an unreadable last line: fall back to dropping the first block seen
        assembler.trust_from(max(heights, default=-1) + 1)

    # -- from the tailer -------------------------------------------------------
    def deliver(self, kind: str, path: Path, batch: LineBatch) -> None:
        """New lines of one stream (the tailer's callback)."""
        self._stream_at[kind] = self.reactor.seconds()
        for offset, raw in batch:
            self._line(kind, path, offset, raw)
        if kind == FILLS:
            self.service.release_trades()
        self.service.sync_if_wanted()

    def unreadable(self, kind: str, path: Path, offset: int, problem: str) -> None:
        self.bad_line(kind, path, offset, None, problem)

    def _line(self, kind: str, path: Path, offset: int, raw: bytes | None) -> None:
        if raw is None:
            self.bad_line(kind, path, offset, None, "line exceeds the size cap")
            return
        if not raw.strip():
            return
        prefilter = self.service.prefilter
        if kind == STATUSES and prefilter is not None:
            prefilter.submit(
                raw,
                lambda line: self._prefiltered(path, offset, line, len(raw)),
                path,
                offset,
            )
            return
        self._decoded(kind, path, offset, raw, len(raw))

    def _prefiltered(self, path: Path, offset: int, raw: bytes, length: int) -> None:
        """A statuses line back from the pre-filter child (in file order)."""
        self._decoded(STATUSES, path, offset, raw, length)
        self.service.sync_if_wanted()

    def _decoded(self, kind: str, path: Path, offset: int, raw: bytes, length: int) -> None:
        """Decode, check, assemble one line: the error boundary of a line."""
        service = self.service
        try:
            try:
                line = decode_line(kind, raw)
            except LineError as exc:
                self.bad_line(kind, path, offset, exc.height, str(exc))
                service.blocks_out(service.assembler.add_bad(kind, exc.height, exc.block_time))
                return
            problem = self._impossible(line.block_number)
            if problem is not None:
                self.bad_line(kind, path, offset, None, problem)
                return
            service.retained.note(kind, line.block_number, path, offset, length)
            if kind == FILLS:
                service.tape.add(line)  # trades do not wait for the book (node.tape)
            service.blocks_out(service.assembler.add(kind, line))
        except Exception:
            self._log.failure(
                "ingest: {stream} line at {path}:{offset} crashed",
                stream=kind,
                path=path,
                offset=offset,
            )
            service.need_resync(f"internal error on a {kind} line", None)

    def _impossible(self, height: int) -> str | None:
        """Why block ``height`` cannot be right, given the live height (None: plausible)."""
        live = self.service.books.height
        if live is None:
            return None
        since = self.reactor.seconds() - (self.service.last_moved_at or self.reactor.seconds())
        ahead = self.max_height_jump + int(self.max_blocks_per_s * max(since, 0.0))
        if height > live + ahead or height < live - self.max_height_jump:
            return f"block height {height} cannot be right: the live book is at block {live}"
        return None

    # -- reports ---------------------------------------------------------------
    def bad_line(
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
            self.service.need_resync(f"bad {kind} line in {path} at byte {offset}", height)

    def stream_gap(self, kind: str, expected: int, got: int) -> None:
        self.service.m_gaps.inc()
        self.service.need_resync(f"{kind} stream skipped from block {expected} to {got}", expected)

    def block_dropped(self, height: int, waiting_for: list[str]) -> None:
        """By-block: an incomplete block given up because one stream lags too far."""
        service = self.service
        live = None if service.sync.syncing else service.books.height
        if live is not None and height <= live:
            return  # the state we serve already covers it
        service.m_gaps.inc()
        service.need_resync(
            f"block {height} dropped: stream {', '.join(waiting_for)} more than "
            f"{service.assembler.max_pending} blocks behind",
            height,
        )

    def late_row(self, kind: str, height: int, coins: set[str]) -> None:
        """A statuses/diffs row of a block already applied: counted, logged once per
        block, and its coins resynced from a snapshot (validation of those coins).
        While a snapshot is being caught up it is trouble for that attempt instead
        (its buffered block lacks the row)."""
        self.m_late.inc(1, kind)
        if self.service.sync.syncing:
            self.service.sync.trouble(height, f"late {kind} row of block {height}")
        elif coins:
            self.service.validator.resync_coins(coins)
        if self._late_logged == height:
            return
        self._late_logged = height
        self._log.warn(
            "ingest: {stream} rows of block {height} arrived after it was applied "
            "(stream_grace_ms too short for this node?); resyncing {coins}",
            stream=kind,
            height=height,
            coins=", ".join(sorted(coins)) or "nothing (no coin of ours)",
        )

    # -- streams ---------------------------------------------------------------
    def stopped_alone(self) -> list[str]:
        """By-block: the streams silent for ``stall_timeout_s`` while others deliver."""
        if self.service.streaming or not self._stream_at:
            return []
        now = self.reactor.seconds()
        limit = self.service.settings.stall_timeout_s
        stopped = sorted(k for k, t in self._stream_at.items() if now - t > limit)
        return stopped if len(stopped) < len(STREAM_KINDS) else []

    def quiet_for(self, kinds: list[str]) -> float:
        """How long the longest silent of ``kinds`` has delivered nothing."""
        now = self.reactor.seconds()
        return max(now - self._stream_at[k] for k in kinds)

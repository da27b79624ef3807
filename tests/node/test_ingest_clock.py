"""The ingest state machine in memory: every timer on task.Clock, no files, no sockets.

Lines are handed to the service as the tailer would; snapshots come from a
fake node (``FakeNode``) through the ``snapshots`` hook.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred

from orderbook.book.books import Books
from orderbook.book.events import StatusOrder
from orderbook.config import NodeSettings
from orderbook.metrics import Metrics
from orderbook.node.service import IngestService
from orderbook.node.snapshot import SnapshotError
from tests.node.support import FakeNode

NODE_FILE = Path("/nonexistent/node/file")


class Listener:
    def __init__(self) -> None:
        self.heights: list[int] = []
        self.resets: list[set[str]] = []
        self.states: list[str] = []
        self.tids: list[int] = []  # every trade published, in order

    def block_applied(self, result) -> None:
        self.heights.append(result.height)

    def trades_paired(self, trades) -> None:
        self.tids += [trade["tid"] for coin in sorted(trades) for trade in trades[coin]]

    def books_reset(self, coins) -> None:
        self.resets.append(set(coins))

    def state_changed(self, status) -> None:
        self.states.append(status["state"])


class NoTailer:
    """Lines are handed over by hand; ``waiting`` are streams with unread data."""

    def __init__(self) -> None:
        self.waiting: set[str] = set()

    def behind(self) -> set[str]:
        return set(self.waiting)

    def lines_before_start(self) -> dict[str, bytes | None]:
        return {}  # the node files were empty: every row is read

    def start(self, at_end: bool = True) -> None: ...

    def stop(self) -> None: ...


def books_of(document: list) -> Books:
    books = Books()
    for coin, (bids, asks) in document[1]:
        for side, entries in (("B", bids), ("A", asks)):
            books.load_orders(
                coin, side, [(u, msgspec.convert(o, StatusOrder)) for u, o in entries]
            )
    books.set_height(document[0], None)
    return books


class Rig:
    """An IngestService on a task.Clock fed by hand."""

    def __init__(self, tmp_path: Path, mode: str = "by_block", **overrides) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.node = FakeNode(tmp_path, mode=mode)
        options = dict(data_dir=tmp_path, mode=mode, stall_timeout_s=5.0, validate_interval_s=0,
                       stream_grace_ms=100.0)  # fmt: skip
        options.update(overrides)
        self.metrics = Metrics()
        self.listener = Listener()
        self.books = Books()
        self.fail_with: str | None = None
        self.fetches = 0
        self.service = IngestService(
            NodeSettings(**options), self.books, [self.listener], self.metrics,
            reactor=self.clock, snapshots=self.snapshot,
        )  # fmt: skip
        self.service.tailer = NoTailer()
        self.offset = 0

    async def snapshot(self, path: Path, not_before: int | None = None) -> Books:
        self.fetches += 1
        if self.fail_with:
            raise SnapshotError(self.fail_with)
        return books_of(self.node.snapshot_document())

    def settle(self) -> None:
        for _ in range(100):
            self.clock.advance(0)

    def write(self, count: int = 1, hold: tuple[str, ...] = ()) -> None:
        for _ in range(count):
            lines = self.node.next_block()
            for kind in ("fills", "diffs", "statuses"):
                data = FakeNode._rows(lines[kind]) if self.node.mode == "streaming" else lines[kind]
                if kind not in hold:
                    self.deliver(kind, data)
        self.settle()

    def deliver(self, kind: str, data: bytes) -> None:
        for raw in data.splitlines():
            self.service.lines.deliver(kind, NODE_FILE, [(self.offset, raw)])
            self.offset += len(raw) + 1

    def metric(self, name: str, *labels) -> float:
        return self.metrics.metrics["orderbook_node_" + name].get(*labels)

    def state(self) -> str:
        return self.service.status()["state"]


@pytest.fixture
def rig(tmp_path):
    made: list[Rig] = []

    def make(**overrides) -> Rig:
        made.append(Rig(tmp_path, **overrides))
        made[-1].service.startService()
        made[-1].settle()
        return made[-1]

    yield make
    for each in made:
        if each.service.running:
            each.service.stopService()


def test_states_bootstrap_ready_resync_ready(rig):
    """initializing -> bootstrapping -> ready; a gap -> resyncing -> ready again."""
    r = rig()
    assert r.listener.states == ["bootstrapping", "ready"] and r.books.height == 1000
    r.write(2)
    assert r.listener.heights == [1001, 1002]
    r.node.next_block()  # lost
    r.write(1)
    assert r.state() == "ready" and r.metric("resyncs_total") == 1  # resynced at once
    assert r.listener.states == ["bootstrapping", "ready", "resyncing", "ready"]
    assert r.books.height == r.node.height and r.fetches == 2


def test_stall_timer(rig):
    """No block for stall_timeout_s: stale at the first watchdog tick after; a block: ready."""
    r = rig(stall_timeout_s=2.0)
    r.clock.advance(2.0)
    assert r.state() == "ready"
    r.clock.advance(0.5)
    assert r.state() == "stale" and r.metric("stalls_total") == 1
    r.write(1)
    assert r.state() == "ready"


def test_retry_backoff_doubles_on_the_reactor_clock(rig):
    """Failed snapshots are retried after 1, 2, 4 s; then one succeeds: ready."""
    r = rig()
    r.fail_with = "node says no"
    r.service.need_resync("test", None)
    r.service.sync_if_wanted()
    r.settle()
    assert r.fetches == 2 and r.state() == "resyncing"
    for delay in (1.0, 2.0, 4.0):
        r.clock.advance(delay - 0.01)
        before = r.fetches
        r.clock.advance(0.01)
        r.settle()
        assert r.fetches == before + 1, delay
    r.fail_with = None
    r.clock.advance(8.0)
    r.settle()
    assert r.state() == "ready" and r.metric("snapshot_failures_total") == 4


def test_validation_interval(rig):
    """A validation every validate_interval_s of reactor time, none before."""
    r = rig(validate_interval_s=30.0)
    r.write(1)
    r.clock.advance(29.9)
    r.settle()
    assert r.metric("validation_runs_total") == 0
    r.clock.advance(0.1)
    r.settle()
    assert r.metric("validation_runs_total") == 1
    r.write(1)
    r.clock.advance(30.0)
    r.settle()
    assert r.metric("validation_runs_total") == 2


def test_validation_runs_on_the_clocks_multiples(rig):
    """Started at t=37 with a 30 s interval: the first run at t=60, then t=90 (the
    workers of one server validate together and share one node snapshot)."""
    r = rig(validate_interval_s=30.0)
    r.clock.advance(37.0)
    r.service.validator.stop()
    r.service.validator.start()
    r.write(1)
    r.clock.advance(22.9)
    r.settle()
    runs = r.metric("validation_runs_total")
    r.clock.advance(0.1)
    r.settle()
    assert r.metric("validation_runs_total") == runs + 1
    r.clock.advance(30.0)
    r.settle()
    assert r.metric("validation_runs_total") == runs + 2


def test_validation_accepts_a_recent_snapshot_only(rig):
    """not_before: the retained window's floor, but never more than reuse_blocks back."""
    r = rig(validate_interval_s=30.0)
    validator = r.service.validator
    r.write(5)
    r.settle()
    height = r.books.height
    assert validator._not_before() == validator.retained.oldest_usable_snapshot
    validator.reuse_blocks = 2
    assert validator._not_before() == height - 2


def test_streaming_grace_timer(rig):
    """Streaming, diffs silent: a block is applied exactly stream_grace_ms after a later
    block was first seen; with both book streams moved on, at once."""
    r = rig(mode="streaming")
    r.write(1)
    r.write(1, hold=("diffs",))  # block 1002: statuses only
    assert r.books.height == 1000  # 1001: diffs not yet past it; grace running
    r.clock.advance(0.099)
    assert r.books.height == 1000
    r.clock.advance(0.001)
    assert r.books.height == 1001
    r.write(1)  # 1003 in both book streams: 1002 final at once
    assert r.books.height == 1002


def test_streaming_grace_waits_for_a_stream_still_being_read(rig):
    """Diffs has data waiting (a backlog being caught up): the grace does not apply
    the block without them; once read to the end, the grace does."""
    r = rig(mode="streaming")
    r.write(1)
    r.service.tailer.waiting = {"diffs"}
    r.write(1, hold=("diffs",))
    r.clock.advance(0.5)
    assert r.books.height == 1000  # 1001 waits: diffs is behind, not quiet
    r.service.tailer.waiting = set()
    r.clock.advance(0.01)
    assert r.books.height == 1001


def test_late_rows_resync_their_coins(rig):
    """A diffs row read after its block was applied: counted once, logged, and a
    validation of just that coin runs at once and adopts the node's book."""
    r = rig(mode="streaming")
    r.write(1)
    lines = r.node.next_block()
    for kind in ("fills", "statuses"):
        r.deliver(kind, FakeNode._rows(lines[kind]))
    r.write(1)
    r.clock.advance(0.1)
    r.settle()
    assert r.books.height >= 1001
    r.deliver("diffs", FakeNode._rows(lines["diffs"]))  # block 1002's diffs, late
    r.settle()  # the snapshot (at 1003) waits for the live book to reach its height
    assert r.metric("late_rows_total", "diffs") >= 1 and r.books.height == 1002
    r.write(1)
    assert r.books.height == 1003
    assert r.metric("validation_runs_total") >= 1
    assert r.metric("validation_mismatched_coins_total") >= 1
    assert r.metric("resyncs_total") == 0


def test_impossible_height_is_a_bad_line_and_does_not_poison(rig):
    """A line 10^9 blocks ahead: bad line, resync; the lines after it still apply."""
    r = rig()
    r.write(1)
    lines = r.node.next_block()
    absurd = lines["diffs"].replace(b'"block_number":1002', b'"block_number":1000001002')
    assert absurd != lines["diffs"]
    r.deliver("diffs", absurd)
    r.settle()
    assert r.metric("bad_lines_total", "diffs") == 1 and r.metric("resyncs_total") == 1
    r.write(2)
    assert r.state() == "ready" and r.books.height == r.node.height
    r.write(2)
    assert r.listener.heights[-2:] == [r.node.height - 1, r.node.height]
    assert r.metric("resyncs_total") == 1


def test_far_behind_height_is_a_bad_line(rig):
    r = rig()
    r.service.lines.max_height_jump = 100
    r.deliver("statuses", r.node.next_block()["statuses"].replace(b":1001,", b":5,"))
    assert r.metric("bad_lines_total", "statuses") == 1


def test_node_back_after_an_outage_is_believed(rig):
    """Heights far ahead after the book stood still for long enough are plausible."""
    r = rig()
    r.clock.advance(3600)
    r.node.height += 50_000  # an hour of mainnet
    r.write(1)
    assert r.metric("bad_lines_total", "statuses") == 0


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_no_real_time_used(rig, mode):
    """The whole state machine runs on the injected clock (no wall-clock reads)."""
    r = rig(mode=mode)
    r.write(3)
    status = r.service.status()
    assert status["last_block_age_ms"] == 0
    r.clock.advance(1.5)
    assert r.service.status()["last_block_age_ms"] == 1500


class Quiet:
    """A listener that keeps nothing (its memory is not the service's)."""

    def block_applied(self, result) -> None: ...

    def trades_paired(self, trades) -> None: ...

    def books_reset(self, coins) -> None: ...

    def state_changed(self, status) -> None: ...


def _retained_by_ingest(snapshot) -> int:
    """Bytes allocated under orderbook/node and still alive, not counting the book
    itself (orders resting in it are state, not retention)."""
    total = 0
    for stat in snapshot.statistics("traceback"):
        files = [frame.filename for frame in stat.traceback]
        if any("orderbook/node/" in f for f in files) and not any(
            "orderbook/book/" in f for f in files
        ):
            total += stat.size
    return total


@pytest.mark.slow
def test_memory_is_flat_after_warm_up(rig):
    """Thousands of blocks ingested: what the ingest side keeps does not grow with them
    (validation keeps line positions in a bounded window, not decoded blocks)."""
    import gc
    import tracemalloc

    r = rig()
    r.service.listener.listeners = [Quiet()]
    r.service.retained.max_blocks = 100
    r.node.steady = True
    r.write(300)
    gc.collect()
    tracemalloc.start(25)
    try:
        r.write(200)
        gc.collect()
        before = _retained_by_ingest(tracemalloc.take_snapshot())
        r.write(800)
        gc.collect()
        after = _retained_by_ingest(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    assert r.books.height == r.node.height
    assert len(r.service.retained) <= 3 * 100
    assert after - before < 40_000, (before, after)  # decoded blocks: ~2 KB each here


def test_coin_resync_retries_after_a_pause_when_the_snapshot_fails(rig):
    """Coins to resync and a node that cannot give a snapshot: one attempt every
    coin_retry_s (not a busy loop), then done once a snapshot comes."""
    r = rig()
    r.write(1)
    r.fail_with = "node says no"
    r.service.validator.resync_coins({"BTC"})
    r.settle()
    assert r.fetches == 2  # the bootstrap, one attempt
    r.clock.advance(4.9)
    r.settle()
    assert r.fetches == 2
    r.clock.advance(0.1)
    r.settle()
    assert r.fetches == 3
    r.fail_with = None
    r.clock.advance(5.0)
    r.settle()
    assert r.fetches == 4 and r.metric("validation_runs_total") == 3
    r.clock.advance(60.0)
    r.settle()
    assert r.fetches == 4  # nothing left to resync, no periodic validation configured


def test_coins_to_resync_are_dropped_when_a_full_resync_comes(rig):
    """Not live (resyncing): the named coins are moot, no snapshot is asked for them."""
    r = rig()
    r.fail_with = "node says no"
    r.service.need_resync("test", None)
    r.service.validator.resync_coins({"BTC"})
    r.settle()
    fetches = r.fetches
    r.clock.advance(0.5)
    r.settle()
    assert r.fetches == fetches and r.metric("validation_runs_total") == 0


def test_a_refused_info_server_is_explained_once_then_counted(rig):
    """Every retry fails the same way: the reason (with what is likely wrong) is
    logged once, the repeats only as a count."""
    from twisted.logger import globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        r = rig()
        r.fail_with = "http://127.0.0.1:3001/info request failed: refused (is the node running"
        r.fail_with += " with --serve-info, and does [node] info_url point at it?)"
        r.service.need_resync("test", None)
        r.service.sync_if_wanted()
        for _ in range(4):
            r.clock.advance(60)
            r.settle()
    finally:
        globalLogPublisher.removeObserver(events.append)
    texts = [
        e.get("log_format", "") for e in events if e.get("log_namespace", "").endswith("resync")
    ]
    assert sum("{reason}" in t for t in texts) == 1
    assert sum("again" in t for t in texts) >= 3
    assert "--serve-info" in r.service.status()["reason"]


def test_a_block_that_does_not_apply_is_not_published(rig):
    """A diff the book cannot apply (remove of an unknown order): the block is not
    handed to listeners (clients would get a change that does not fit their book);
    a resync follows and its snapshots reach them instead."""
    r = rig()
    r.write(1)
    lines = r.node.next_block()
    bad = {"user": "0x1", "oid": 999_999, "coin": "BTC", "side": "B", "px": "1.0",
           "raw_book_diff": "remove"}  # fmt: skip
    doc = msgspec.json.decode(lines["diffs"])
    lines["diffs"] = msgspec.json.encode(dict(doc, events=doc["events"] + [bad])) + b"\n"
    resets = len(r.listener.resets)
    for kind in ("fills", "diffs", "statuses"):
        r.deliver(kind, lines[kind])
    r.settle()
    assert 1002 not in r.listener.heights and r.metric("resyncs_total") == 1
    assert len(r.listener.resets) == resets + 1 and r.state() == "ready"


# -- trades: every one exactly once, in order, whatever the state ----------------


class SlowSnapshots:
    """Snapshots taken when asked for, handed over only when ``release`` is called
    (blocks arrive meanwhile), or failing with ``fail_with``."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.waiting: list[tuple[Deferred, list]] = []
        self.fail_with: str | None = None

    async def fetch(self, path: Path, not_before: int | None = None) -> Books:
        self.rig.fetches += 1
        if self.fail_with:
            raise SnapshotError(self.fail_with)
        gate: Deferred = Deferred()
        self.waiting.append((gate, self.rig.node.snapshot_document()))
        document = await gate
        return books_of(document)

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for gate, document in waiting:
            gate.callback(document)
        self.rig.settle()


def node_tids(first: int, last: int, lost: set[int] = frozenset()) -> list[int]:
    """The FakeNode's trades of blocks first..last (one, tid = height, every 4th block)."""
    return [h for h in range(first, last + 1) if h % 4 == 0 and h not in lost]


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_every_trade_once_in_order_across_bootstrap_and_resyncs(tmp_path, mode):
    """Trades come from the fills, not the book: blocks read while bootstrapping, while
    a failed snapshot waits for its retry, while a snapshot is being loaded (then
    applied to it at go-live) and the block of a bad diffs line all publish their
    trades; each tid exactly once, in height order."""
    r = Rig(tmp_path, mode=mode)
    slow = SlowSnapshots(r)
    r.service.sync.fetch = slow.fetch
    r.service.startService()
    try:
        r.settle()
        assert r.state() == "bootstrapping"
        r.write(5)  # 1001..1005 read while the first snapshot (at 1000) loads
        slow.release()
        assert r.state() == "ready" and r.books.height == graced(r)
        assert r.listener.tids == [1004]
        r.write(3)  # 1006..1008 live
        slow.fail_with = "node says no"
        r.service.need_resync("test: resync", None)
        r.service.sync_if_wanted()
        r.settle()
        assert r.state() == "resyncing" and r.metric("snapshot_failures_total") == 1
        r.write(4)  # 1009..1012 while the retry waits: dropped by the book
        lines = r.node.next_block()  # 1013: its diffs line is bad
        r.deliver("fills", data_of(r, lines["fills"]))
        r.deliver("statuses", data_of(r, lines["statuses"]))
        r.deliver("diffs", b'{"block_number":1013,"events":[garbage')
        r.write(3)  # 1014..1016 (trade 1016)
        slow.fail_with = None
        r.clock.advance(1.0)  # the retry: a snapshot at 1016, loaded slowly
        r.settle()
        assert r.state() == "resyncing" and slow.waiting
        r.write(4)  # 1017..1020 buffered, applied to the snapshot at go-live
        slow.release()
        r.write(4)  # 1021..1024 live again
        assert r.state() == "ready" and r.books.height == graced(r)
        assert r.metric("resyncs_total") >= 1
        assert r.listener.tids == node_tids(1001, r.books.height)  # streaming: 1024 waits
        assert r.listener.heights[-3:] == list(range(r.books.height - 2, r.books.height + 1))
    finally:
        r.service.stopService()


def graced(r: Rig) -> int:
    """Let the grace run out; the height the book reaches (streaming: the newest block
    waits for a later one, its trades do not)."""
    r.clock.advance(0.5)
    r.settle()
    return r.node.height - (r.node.mode == "streaming")


def data_of(r: Rig, line: bytes) -> bytes:
    """A by-block line as the rig's mode writes it."""
    return FakeNode._rows(line) if r.node.mode == "streaming" else line


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_a_lost_block_costs_only_its_own_trades(rig, mode):
    """A block whose lines never come (by-block: a gap, then a resync): the trades of
    every other block are published once, in order; a fills line read again is not."""
    r = rig(mode=mode)
    r.write(3)  # 1001..1003
    r.node.next_block()  # 1004 (a trade) is lost in every stream
    r.write(3)  # 1005..1007
    lines = r.node.next_block()  # 1008 (a trade)
    for kind in ("fills", "diffs", "statuses"):
        r.deliver(kind, data_of(r, lines[kind]))
    r.deliver("fills", data_of(r, lines["fills"]))  # the same fills line handed over again
    r.write(4)  # 1009..1012
    assert r.state() == "ready" and r.books.height == graced(r)
    assert r.listener.tids == node_tids(1001, r.books.height, lost={1004})
    assert r.service.tape.skipped_lines == (1 if mode == "by_block" else 0)  # else by tid


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_live_trades_go_out_with_their_block(rig, mode):
    """While the book is live, a block's trades wait for the block to be applied (a
    client subscribing at book height H gets every trade after H), then go out once;
    a lost block (by-block: a resync) does not hold back the trades after it."""
    r = rig(mode=mode)
    r.write(3)  # 1001..1003
    lines = r.node.next_block()  # 1004: its fills line first, the book streams later
    r.deliver("fills", data_of(r, lines["fills"]))
    r.settle()
    assert r.listener.tids == [] and r.service.tape.held == 1
    for kind in ("diffs", "statuses"):
        r.deliver(kind, data_of(r, lines[kind]))
    r.write(1)  # streaming: 1004 is final once a later block shows
    assert r.books.height >= 1004 and r.listener.tids == [1004]
    lines = r.node.next_block()  # 1006
    r.write(3)  # 1007..1009: by-block a gap (resync); streaming an empty 1006
    graced(r)
    assert r.books.height >= 1008
    assert r.listener.tids == [1004, 1008] and r.service.tape.held == 0

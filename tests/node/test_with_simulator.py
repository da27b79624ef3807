"""Ingestion end to end against the real simulator (in-process, same reactor).

The simulator (``orderbook.sim``) is the independent reference: its matching
engine writes node files and answers fileSnapshot requests. IngestService
tails those files into a real Books; after N blocks our book must equal the
simulator's fileSnapshot at the same height, every order in queue order, in
both layouts, and also after faults injected on the way.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from orderbook.book.books import Books
from orderbook.config import NodeSettings
from orderbook.metrics import Metrics
from orderbook.node.service import IngestService
from orderbook.node.snapshot import load_snapshot, request_snapshot
from orderbook.sim.service import SimulatorService
from tests.node.support import wait_for

BLOCKS = 60


class Listener:
    """Counts what the ingest service announces."""

    def __init__(self) -> None:
        self.applied: list[int] = []
        self.resets = 0

    def block_applied(self, result) -> None:
        self.applied.append(result.height)

    def trades_paired(self, trades) -> None:
        pass

    def books_reset(self, coins) -> None:
        self.resets += 1

    def state_changed(self, status) -> None:
        pass


@pytest.fixture
def running(tmp_path, reactor):
    """Start a simulator and an IngestService following it; stop both afterwards."""
    started = []

    def start(mode: str) -> tuple[SimulatorService, IngestService, Books, Listener, Metrics]:
        sim = SimulatorService(
            tmp_path / "data", seed=11, mode=mode, scale=0.1, blocks_per_second=20,
            blocks=BLOCKS, reactor=reactor,
        )  # fmt: skip
        sim.startService()
        settings = NodeSettings(
            data_dir=tmp_path / "data", mode=mode, info_url=sim.info_url,
            snapshot_path=tmp_path / "snap.json", snapshot_timeout_s=10.0, stall_timeout_s=5.0,
            validate_interval_s=0, recheck_interval_s=0.05, max_buffered_blocks=2000,
        )  # fmt: skip
        books, listener, metrics = Books(), Listener(), Metrics()
        ingest = IngestService(settings, books, [listener], metrics, reactor=reactor)
        ingest.sync.retry_base_s = ingest.sync.retry_delay = 0.05
        ingest.sync.snapshot_settle_s = 0.3
        ingest.startService()
        started.append((sim, ingest))
        return sim, ingest, books, listener, metrics

    yield start
    for sim, ingest in started:
        if ingest.running:
            ingest.stopService()
        if sim.running:
            sim.stopService()


@defer.inlineCallbacks
def _final_comparison(tmp_path, reactor, sim, ingest, books, mode):
    """Once the simulator is done, our book equals its fileSnapshot at the same height."""
    height = yield sim.done
    out = tmp_path / "reference.json"
    yield defer.Deferred.fromCoroutine(request_snapshot(reactor, sim.info_url, out, 10))
    if mode == "streaming":
        sim.make_block()  # rows of a later block complete the last one
    yield wait_for(
        lambda: books.height == height and ingest.status()["state"] == "ready",
        timeout=15,
        what=f"ingest at block {height}",
    )
    reference = yield load_snapshot(out, Books)
    assert reference.height == height
    assert reference.order_count() > 100  # a real book, so the comparison means something
    assert books.order_count() == reference.order_count()
    for coin in sorted(set(reference.coins()) | set(books.coins())):
        assert books.compare_coin(reference, coin) == [], coin
        ours, theirs = books.l4_snapshot(coin)["levels"], reference.l4_snapshot(coin)["levels"]
        assert [[o["oid"] for o in side] for side in ours] == [
            [o["oid"] for o in side] for side in theirs
        ], coin  # queue order as clients see it
    return height


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
@pytest_twisted.inlineCallbacks
def test_book_equals_simulator(running, tmp_path, reactor, mode):
    """After N blocks from the files, our book is the simulator's, order by order."""
    sim, ingest, books, listener, metrics = running(mode)
    height = yield _final_comparison(tmp_path, reactor, sim, ingest, books, mode)
    assert len(listener.applied) >= BLOCKS // 2  # followed from the files, not snapshots
    assert listener.applied == sorted(listener.applied) and listener.applied[-1] == height
    assert metrics.metrics["orderbook_node_resyncs_total"].get() == 0
    assert metrics.metrics["orderbook_node_bad_lines_total"].get("diffs") == 0


@pytest.mark.parametrize(
    ("mode", "fault"),
    [
        ("by_block", {"fault": "gap"}),
        ("streaming", {"fault": "gap"}),
        ("by_block", {"fault": "garbage", "stream": "diffs"}),
        ("streaming", {"fault": "truncated", "stream": "statuses"}),
    ],
)
@pytest_twisted.inlineCallbacks
def test_book_converges_after_fault(running, tmp_path, reactor, mode, fault):
    """A gap, a garbage or a cut line mid-run: resync, and equal to the simulator again."""
    sim, ingest, books, listener, metrics = running(mode)
    yield wait_for(lambda: len(listener.applied) >= 5, timeout=10, what="5 blocks applied")
    sim.fault(fault)
    yield wait_for(
        lambda: metrics.metrics["orderbook_node_resyncs_total"].get() >= 1,
        timeout=10,
        what="resync after the fault",
    )
    yield _final_comparison(tmp_path, reactor, sim, ingest, books, mode)
    assert listener.resets >= 2  # bootstrap, then the resync

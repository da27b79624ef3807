"""The ingest state machine end to end: real files, inotify, an HTTP info server."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
import pytest_twisted

from orderbook.book.books import Books
from orderbook.book.events import StatusOrder
from orderbook.config import NodeSettings
from orderbook.metrics import Metrics
from orderbook.node.service import IngestService
from tests.node.support import FakeNode, listen_info, wait_for


class Listener:
    def __init__(self):
        self.results = []
        self.trades = []
        self.resets = []
        self.states = []
        self.explode = False

    def block_applied(self, result):
        self.results.append(result)
        if self.explode:
            raise RuntimeError("listener bug")

    def trades_paired(self, trades):
        self.trades.append(trades)

    def books_reset(self, coins):
        self.resets.append(set(coins))

    def state_changed(self, status):
        self.states.append(status["state"])


class Harness:
    def __init__(self, tmp_path, reactor, **overrides):
        self.node = FakeNode(tmp_path / "data", mode=overrides.get("mode", "by_block"))
        self.node.touch_files()
        self.info, self.port, url = listen_info(reactor, self.node.snapshot_document)
        options = dict(
            data_dir=tmp_path / "data", info_url=url, snapshot_path=tmp_path / "snap.json",
            snapshot_timeout_s=5.0, stall_timeout_s=5.0, validate_interval_s=0,
            recheck_interval_s=0.05, max_buffered_blocks=100,
        )  # fmt: skip
        options.update(overrides)
        self.settings = NodeSettings(**options)
        self.books = Books()
        self.listener = Listener()
        self.metrics = Metrics()
        self.service = IngestService(
            self.settings, self.books, [self.listener], self.metrics, reactor=reactor
        )
        self.service.sync.retry_base_s = 0.05
        self.service.sync.retry_delay = 0.05
        self.service.sync.retry_max_s = 0.2
        self.service.sync.snapshot_settle_s = 0.2

    def metric(self, name, *labels):
        return self.metrics.metrics["orderbook_node_" + name].get(*labels)

    def state(self):
        return self.service.status()["state"]

    def write(self, count=1):
        for _ in range(count):
            self.node.write_block()

    def caught_up(self):
        return self.state() == "ready" and self.books.height == self.node.height

    def assert_matches_node(self, document=None):
        """Our book equals the node's (now, or as in ``document``): every order, in order."""
        reference = Books()
        document = document or self.node.snapshot_document()
        for coin, (bids, asks) in document[1]:
            for side, entries in (("B", bids), ("A", asks)):
                reference.load_orders(
                    coin, side, [(u, msgspec.convert(o, StatusOrder)) for u, o in entries]
                )
        assert self.books.height == document[0]
        for coin in set(reference.coins()) | set(self.books.coins()):
            assert self.books.compare_coin(reference, coin) == [], coin


@pytest.fixture
def harness(tmp_path, reactor):
    made = []

    def make(**overrides):
        made.append(Harness(tmp_path, reactor, **overrides))
        return made[-1]

    yield make
    for each in made:
        if each.service.running:
            each.service.stopService()
        for request in each.info.hanging:
            if not request.finished and not request._disconnected:
                request.finish()
        each.port.stopListening()


@pytest.mark.parametrize("decode_worker", [False, True])
@pytest_twisted.inlineCallbacks
def test_bootstrap_then_follow_blocks(harness, decode_worker):
    """Start: snapshot loaded, state ready, then every block applied and announced
    (statuses decoded in-process, or through the pre-filter child)."""
    h = harness(decode_worker=decode_worker)
    assert (h.service.prefilter is not None) is decode_worker
    h.service.startService()
    assert h.state() == "bootstrapping"
    yield wait_for(h.caught_up, what="ready")
    assert h.listener.resets and h.listener.states[-1] == "ready"
    h.write(6)
    yield wait_for(h.caught_up, what="6 blocks")
    h.assert_matches_node()
    assert [r.height for r in h.listener.results] == list(range(1001, 1007))
    assert h.metric("blocks_applied_total") == 6
    status = h.service.status()
    assert status["height"] == 1006 and status["lag_ms"] is not None
    assert status["reason"] is None and status["resyncs"] == 0
    if decode_worker:  # the child read the statuses lines from the node's file itself
        assert h.service.prefilter.stripped > 0 and h.service.prefilter.unread == 0


@pytest_twisted.inlineCallbacks
def test_blocks_during_bootstrap_are_buffered_and_applied(harness):
    """Blocks written while the snapshot is pending are applied on top of it."""
    h = harness()
    h.info.mode = "hang"
    h.service.startService()
    yield wait_for(lambda: h.info.requests, what="snapshot request")
    snapshot = h.node.snapshot_document()
    h.info.snapshot = lambda: snapshot  # the node's state when asked
    h.write(4)
    yield wait_for(lambda: h.service.status()["buffered_blocks"] == 4, what="buffering")
    request = h.info.hanging.pop()
    Path(h.info.requests[-1]["outPath"]).write_text(json.dumps(snapshot))
    request.write(b"null")
    request.finish()
    yield wait_for(h.caught_up, what="caught up")
    h.assert_matches_node()


@pytest_twisted.inlineCallbacks
def test_gap_resyncs_from_fresh_snapshot(harness):
    """A missing block: resyncing (last state still served), then ready at the node's state."""
    h = harness()
    h.service.startService()
    yield wait_for(h.caught_up)
    h.write(2)
    yield wait_for(h.caught_up)
    old_books = [h.service.books.book(coin) for coin in h.service.books.coins()]
    assert any(side.levels for book in old_books for side in (book.bids, book.asks))
    h.node.next_block()  # lost: never written
    h.write(1)
    yield wait_for(lambda: h.metric("resyncs_total") == 1, what="resync")
    h.write(2)
    yield wait_for(h.caught_up, what="resynced")
    h.assert_matches_node()
    assert "resyncing" in h.listener.states and h.metric("gaps_total") >= 1
    assert len(h.info.requests) == 2
    # the replaced books are cut apart (freed by reference counting, no GC pass)
    yield wait_for(
        lambda: not any(side.levels for book in old_books for side in (book.bids, book.asks)),
        what="the old books dismantled",
    )


@pytest_twisted.inlineCallbacks
def test_garbage_lines(harness):
    """Bad fills line: trades skipped, no resync. Bad diffs line: counted, resync."""
    h = harness()
    h.service.startService()
    yield wait_for(h.caught_up)
    h.write(1)
    lines = h.node.next_block()
    lines["fills"] = b'{"block_number": 1002, "events": [garbage\n'
    h.node.write_block(lines)
    yield wait_for(h.caught_up, what="block with bad fills")
    assert h.metric("bad_lines_total", "fills") == 1
    assert h.metric("resyncs_total") == 0 and h.state() == "ready"
    lines = h.node.next_block()
    lines["diffs"] = b"\x00\xffnot json at all\n"
    h.node.write_block(lines)
    yield wait_for(lambda: h.metric("bad_lines_total", "diffs") == 1)
    h.write(1)
    yield wait_for(h.caught_up, what="resynced after bad diffs")
    assert h.metric("resyncs_total") == 1
    h.assert_matches_node()


@pytest_twisted.inlineCallbacks
def test_stall_and_recovery(harness):
    """No block for stall_timeout_s: stale; the next block makes it ready again."""
    h = harness(stall_timeout_s=0.2)
    h.service.startService()
    yield wait_for(lambda: h.state() == "stale", what="stale")
    assert "no new block" in h.service.status()["reason"]
    assert h.metric("stalls_total") == 1
    h.write(1)
    yield wait_for(h.caught_up, what="ready again")


@pytest_twisted.inlineCallbacks
def test_failing_snapshot_server_is_retried(harness):
    """500 from the node: error state reason, retry with backoff, then ready."""
    h = harness()
    h.info.mode = "fail"
    h.service.startService()
    yield wait_for(lambda: h.metric("snapshot_failures_total") >= 2, what="retries")
    status = h.service.status()
    assert status["state"] == "bootstrapping" and "500" in status["reason"]
    h.info.mode = "ok"
    yield wait_for(h.caught_up, what="ready after retries")


@pytest_twisted.inlineCallbacks
def test_slow_snapshot_server_times_out(harness):
    """A node that does not answer within snapshot_timeout_s: failure, retry, ready."""
    h = harness(snapshot_timeout_s=0.2)
    h.info.mode = "hang"
    h.service.startService()
    yield wait_for(lambda: h.metric("snapshot_failures_total") >= 1, what="timeout")
    assert "within 0.2 s" in h.service.status()["reason"]
    h.info.mode = "ok"
    yield wait_for(h.caught_up, what="ready after timeout")


@pytest_twisted.inlineCallbacks
def test_buffer_bound_exceeded(harness):
    """More blocks than max_buffered_blocks while waiting: clear error, retry, ready."""
    h = harness(max_buffered_blocks=3)
    h.info.mode = "hang"
    h.service.startService()
    yield wait_for(lambda: h.info.requests)
    h.write(5)
    yield wait_for(lambda: h.metric("snapshot_failures_total") >= 1, what="overflow")
    assert "max_buffered_blocks" in h.service.status()["reason"]
    h.info.mode = "ok"
    h.write(1)
    yield wait_for(h.caught_up, what="ready after overflow")
    h.assert_matches_node()


@pytest_twisted.inlineCallbacks
def test_validation_repairs_corrupted_coin(harness):
    """Corrupted live book: mismatch found, coin adopted, listener told, metric counted."""
    h = harness()
    h.service.startService()
    yield wait_for(h.caught_up)
    h.write(3)
    yield wait_for(h.caught_up)
    h.books.adopt_coin(Books(), "BTC")  # BTC's orders vanish from the live book
    resets = len(h.listener.resets)
    yield h.service.validate()
    assert h.listener.resets[resets:] == [{"BTC"}]
    assert h.metric("validation_runs_total") == 1
    assert h.metric("validation_mismatched_coins_total") == 1
    h.assert_matches_node()
    yield h.service.validate()  # clean now
    assert h.metric("validation_mismatched_coins_total") == 1
    assert h.metric("validation_runs_total") == 2


@pytest_twisted.inlineCallbacks
def test_listener_failure_does_not_stop_ingestion(harness):
    """An exception in the listener is logged; blocks keep being applied."""
    h = harness()
    h.service.startService()
    yield wait_for(h.caught_up)
    h.listener.explode = True
    h.write(3)
    yield wait_for(h.caught_up)
    assert h.metric("blocks_applied_total") == 3


@pytest_twisted.inlineCallbacks
def test_streaming_mode_follows_blocks(harness):
    """Streaming layout: a block applies once every stream shows a later one."""
    h = harness(mode="streaming")
    h.service.startService()
    yield wait_for(h.caught_up)
    h.write(5)
    yield wait_for(lambda: h.books.height == h.node.height - 1, what="4 blocks")
    h.write(1)
    yield wait_for(lambda: h.books.height == h.node.height - 1, what="5 blocks")
    assert [r.height for r in h.listener.results] == list(range(1001, 1006))
    assert h.state() == "ready"


@pytest_twisted.inlineCallbacks
def test_streaming_start_on_files_with_rows_keeps_the_next_block(harness):
    """Streaming, the node files already hold blocks: the first block written after the
    start is whole (the node writes blocks in order) and is applied, no resync."""
    h = harness(mode="streaming")
    h.write(3)
    h.service.startService()
    yield wait_for(h.caught_up)
    h.write(3)
    yield wait_for(lambda: h.books.height == h.node.height - 1, what="2 blocks")
    assert [r.height for r in h.listener.results] == [1004, 1005]
    assert h.metric("resyncs_total") == 0 and len(h.info.requests) == 1


@pytest_twisted.inlineCallbacks
def test_streaming_lost_block_looks_quiet_validation_repairs_it(harness):
    """Streaming: a height no stream wrote is a block without events (sparse streams
    cannot tell a lost block from a quiet one): it is applied empty, every height is
    delivered, and validation brings the book back to the node's."""
    h = harness(mode="streaming")
    h.service.startService()
    yield wait_for(h.caught_up)
    h.write(3)
    yield wait_for(lambda: h.books.height == h.node.height - 1, what="3 blocks")
    h.node.next_block()  # lost: never written
    h.write(2)
    yield wait_for(lambda: h.books.height == h.node.height - 1, what="following on")
    assert [r.height for r in h.listener.results] == list(range(1001, h.node.height))
    assert h.metric("resyncs_total") == 0 and h.state() == "ready"
    h.write(1)
    state = h.node.snapshot_document()
    h.info.snapshot = lambda: state
    h.write(1)  # completes the block of ``state``
    yield h.service.validate()
    assert h.metric("validation_mismatched_coins_total") >= 1
    h.assert_matches_node(state)


@pytest_twisted.inlineCallbacks
def test_streaming_silent_stream_neither_holds_nor_stales_late_rows_resync_coins(harness):
    """Streaming: diffs silent for three blocks: blocks still apply (after the grace); the
    diffs rows, read late, are counted and their coins resynced
    from a snapshot: the book equals the node's again. Stale is about the node: only
    once nothing comes at all."""
    h = harness(mode="streaming", stall_timeout_s=0.5)
    h.service.startService()
    yield wait_for(h.caught_up)
    for _ in range(3):
        h.node.write_block(hold=("diffs",))
    yield wait_for(lambda: h.books.height == h.node.height - 1, what="applied without diffs")
    yield wait_for(lambda: h.service.status()["last_block_age_ms"] > 600, what="quiet node")
    assert h.state() == "stale" and "no new block" in h.service.status()["reason"]
    state = h.node.snapshot_document()
    h.info.snapshot = lambda: state
    h.node.release()
    h.write(1)  # completes the block of ``state``
    yield wait_for(lambda: h.metric("late_rows_total", "diffs") >= 1, what="late rows")
    yield wait_for(
        lambda: (
            h.books.height == state[0]
            and h.metric("validation_mismatched_coins_total") >= 1
            and not h.service.validator.running
        ),
        what="coins resynced",
    )
    h.assert_matches_node(state)
    assert h.metric("resyncs_total") == 0 and h.state() == "ready"


@pytest_twisted.inlineCallbacks
def test_one_stream_stops_while_others_go_on(harness):
    """By-block: a silent stream makes the state stale naming it; its late lines bring
    it back."""
    h = harness(stall_timeout_s=0.3)
    h.service.startService()
    yield wait_for(h.caught_up)
    applied = h.books.height
    for _ in range(3):
        h.node.write_block(hold=("diffs",))
    yield wait_for(lambda: h.state() == "stale", what="stale")
    reason = h.service.status()["reason"]
    assert reason.startswith("stream diffs stopped while the others go on"), reason
    assert h.metric("stalls_total") == 1 and h.books.height == applied
    h.node.release()
    h.write(1)
    yield wait_for(lambda: h.caught_up(), what="ready")
    assert h.metric("resyncs_total") == 0 and len(h.info.requests) == 1
    h.assert_matches_node()


@pytest_twisted.inlineCallbacks
def test_lagging_stream_bounded_then_resync_when_it_flows(harness):
    """Beyond max_pending incomplete blocks the oldest is dropped (reason names the
    stream); while that stream stays silent no snapshot is asked for; once it flows
    again the book resyncs and converges."""
    h = harness(stall_timeout_s=0.3)
    h.service.assembler.max_pending = 4
    h.service.startService()
    yield wait_for(h.caught_up)

    def others_go_on():
        h.node.write_block(hold=("statuses",))
        assert h.service.assembler.pending <= 4
        return (
            h.service.lines.stopped_alone() == ["statuses"]
            and h.state() == "resyncing"
            and not h.service.sync.syncing
        )

    yield wait_for(others_go_on, what="statuses silent while the others go on")
    reason = h.service.status()["reason"]
    assert "dropped: stream " in reason and "statuses" in reason, reason  # maybe via a snapshot
    assert "more than 4 blocks behind" in reason
    asked = len(h.info.requests)
    for _ in range(6):
        h.node.write_block(hold=("statuses",))
    top = h.node.height
    yield wait_for(lambda: h.service.status()["stream_heights"]["diffs"] == top)
    assert len(h.info.requests) == asked and h.state() == "resyncing"
    h.node.release()
    h.write(2)
    yield wait_for(h.caught_up, what="resynced")
    h.assert_matches_node()
    assert len(h.info.requests) == asked + 1


@pytest.mark.parametrize("mode", ["missing", "truncated"])
@pytest_twisted.inlineCallbacks
def test_unusable_snapshot_file_retried(harness, mode):
    """200 but no file / half a file: a reason naming the file, backoff, then ready."""
    h = harness()
    h.info.mode = mode
    h.service.startService()
    yield wait_for(lambda: h.metric("snapshot_failures_total") >= 2, what="retries")
    status = h.service.status()
    assert status["state"] == "bootstrapping"
    assert "snap.json" in status["reason"] and ("missing" in status["reason"]) == (
        mode == "missing"
    )
    assert h.service.sync.retry_delay >= 4 * h.service.sync.retry_base_s  # doubling
    h.info.mode = "ok"
    h.write(1)
    yield wait_for(h.caught_up, what="ready after retries")
    h.assert_matches_node()


@pytest_twisted.inlineCallbacks
def test_slowly_written_snapshot_file_is_waited_for(harness):
    """A snapshot file still being written when the node answers is loaded once whole."""
    h = harness()
    h.info.mode = "slow"
    h.service.startService()
    yield wait_for(h.caught_up, what="ready")
    assert h.metric("snapshot_failures_total") == 0
    h.write(2)
    yield wait_for(h.caught_up)
    h.assert_matches_node()


@pytest_twisted.inlineCallbacks
def test_stale_snapshot_file_never_loaded(harness, tmp_path):
    """An old file at snapshot_path is removed before asking: a node that writes nothing
    fails clearly instead of handing us yesterday's book."""
    h = harness()
    h.settings.snapshot_path.write_text('[5,[["BTC",[[],[]]]]]')
    h.info.mode = "missing"
    h.service.startService()
    yield wait_for(lambda: h.metric("snapshot_failures_total") >= 1)
    assert "missing" in h.service.status()["reason"] and h.books.height is None


@pytest_twisted.inlineCallbacks
def test_validation_catches_an_older_snapshot_up_in_slices(harness):
    """A snapshot 3 blocks behind is brought to the live height with the retained
    blocks (one per turn with a zero budget), then compared coin by coin."""
    h = harness()
    h.service.validator.turn_budget_s = 0
    h.service.startService()
    yield wait_for(h.caught_up)
    old = h.node.snapshot_document()
    h.write(3)
    yield wait_for(h.caught_up)
    h.info.snapshot = lambda: old
    h.books.adopt_coin(Books(), "@107")
    h.service.validator.rebuild_blocks = 1
    spans = []
    rebuild = h.service.validator.retained.blocks

    def recorded(after, through):
        spans.append(through - after)
        return rebuild(after, through)

    h.service.validator.retained.blocks = recorded
    yield h.service.validate()
    assert spans == [1, 1, 1]  # decoded a block at a time, never the window at once
    assert h.listener.resets[-1] == {"@107"}
    assert h.metric("validation_mismatched_coins_total") == 1
    h.assert_matches_node()

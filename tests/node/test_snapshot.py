"""fileSnapshot: the request (200/500/timeout) and the sliced, cooperative load."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer

from orderbook.book.books import Books
from orderbook.node.snapshot import SnapshotError, load_snapshot, request_snapshot
from tests.node.support import listen_info, order


def _document():
    sides = {
        "BTC": ([("0xa", order("BTC", "B", "101.0", "1.5", 1)), ("0xb", order("BTC", "B", "100.0", "2", 2))],
                [("0xc", order("BTC", "A", "102.0", "0.1", 3))]),
        "@107": ([], []),
        "xyz:TSLA": ([], [("0xd", order("xyz:TSLA", "A", "300.5", "7", 4))]),
        'we"ird': ([("0xe", order('we"ird', "B", "1.0", "1", 5))], []),
    }  # fmt: skip
    big = [
        (f"0x{i:040x}", order("ETH", "B", f"{2000 - i % 50}.0", "0.25", 100 + i))
        for i in range(500)
    ]
    big.sort(key=lambda e: -float(e[1]["limitPx"]))
    sides["ETH"] = (big, [])
    return [
        42,
        [[coin, [[list(e) for e in b], [list(e) for e in a]]] for coin, (b, a) in sides.items()],
    ]


def _books_equal(left: Books, right: Books) -> None:
    assert left.height == right.height
    assert left.coins() == right.coins()
    for coin in left.coins():
        assert left.compare_coin(right, coin) == []
        assert left.l4_snapshot(coin) == right.l4_snapshot(coin)


@pytest_twisted.inlineCallbacks
def test_sliced_load_equals_whole_load(tmp_path):
    """Tiny slices (many reactor turns) load exactly what one whole decode loads."""
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_document(), separators=(",", ":")))
    sliced = yield load_snapshot(path, Books, slice_bytes=100)
    whole = yield load_snapshot(path, Books, slice_bytes=1 << 30)
    assert sliced.height == 42
    assert len(sliced.l4_snapshot("ETH")["levels"][0]) == 500
    _books_equal(sliced, whole)


@pytest_twisted.inlineCallbacks
def test_pretty_printed_file_falls_back_to_whole_decode(tmp_path):
    """A layout the scanner does not know is still loaded (in one piece)."""
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_document(), indent=1))
    pretty = yield load_snapshot(path, Books, slice_bytes=100)
    compact_path = tmp_path / "compact.json"
    compact_path.write_text(json.dumps(_document(), separators=(",", ":")))
    compact = yield load_snapshot(compact_path, Books)
    _books_equal(pretty, compact)


@pytest_twisted.inlineCallbacks
def test_markets_filter_applies_to_loaded_books(tmp_path):
    """The staging Books' accept_coin keeps filtered coins out of the load."""
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_document(), separators=(",", ":")))
    books = yield load_snapshot(path, lambda: Books(accept_coin=lambda c: ":" not in c))
    assert "xyz:TSLA" not in books.coins() and "BTC" in books.coins()


@pytest.mark.parametrize(
    "content", [b"", b"[1, [", b'[1,[["BTC",[[["0xa",{"coin":"BTC"}]],[]]]]]', b"nonsense"]
)
@pytest_twisted.inlineCallbacks
def test_broken_files_fail_clearly(tmp_path, content):
    """Truncated or invalid snapshot files fail with a SnapshotError naming the file."""
    path = tmp_path / "snap.json"
    path.write_bytes(content)
    with pytest.raises(SnapshotError, match="snap.json"):
        yield load_snapshot(path, Books)


@pytest_twisted.inlineCallbacks
def test_missing_file_fails_clearly(tmp_path):
    with pytest.raises(SnapshotError, match="cannot read"):
        yield load_snapshot(tmp_path / "absent.json", Books)


@pytest_twisted.inlineCallbacks
def test_request_writes_file_via_node(tmp_path, reactor):
    """A 200 answer means the node wrote outPath; the request has the documented shape."""
    info, port, url = listen_info(reactor, _document)
    try:
        out = tmp_path / "out.json"
        yield defer.Deferred.fromCoroutine(request_snapshot(reactor, url, out, 5))
        assert json.loads(out.read_text())[0] == 42
        assert info.requests == [{
            "type": "fileSnapshot",
            "request": {"type": "l4Snapshots", "includeUsers": True, "includeTriggerOrders": False},
            "outPath": str(out), "includeHeightInOutput": True,
        }]  # fmt: skip
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_request_500_and_timeout_fail(tmp_path, reactor):
    """A non-200 answer and a node that never answers both raise SnapshotError."""
    info, port, url = listen_info(reactor, _document)
    try:
        info.mode = "fail"
        with pytest.raises(SnapshotError, match="500"):
            yield defer.Deferred.fromCoroutine(request_snapshot(reactor, url, tmp_path / "o", 5))
        info.mode = "hang"
        with pytest.raises(SnapshotError, match="within 0.2 s"):
            yield defer.Deferred.fromCoroutine(request_snapshot(reactor, url, tmp_path / "o", 0.2))
        with pytest.raises(SnapshotError, match="request failed"):
            yield defer.Deferred.fromCoroutine(
                request_snapshot(reactor, "http://127.0.0.1:1/info", tmp_path / "o", 5)
            )
    finally:
        for request in info.hanging:
            if not request.finished and not request._disconnected:
                request.finish()
        yield port.stopListening()

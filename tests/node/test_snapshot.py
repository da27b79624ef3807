"""fileSnapshot: the request (200/500/timeout) and the sliced, cooperative load."""

from __future__ import annotations

import gc
import json
import weakref

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.web.client import URI

from orderbook.book.books import Books
from orderbook.book.coin_book import dismantle
from orderbook.config import NodeSettings
from orderbook.node.resync import fetch_snapshot
from orderbook.node.snapshot import (
    SnapshotError,
    _Endpoints,
    load_snapshot,
    remove_old,
    request_snapshot,
    wait_until_written,
)
from tests.node.support import listen_info, order, wait_for
from tests.test_gc_policy import no_automatic_gc, old_cyclic_garbage  # noqa: F401 (fixture)


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


class CountingBooks(Books):
    """Books that records the size of every load_orders slice."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slices: list[tuple[str, str, int]] = []

    def load_orders(self, coin, side, entries):
        entries = list(entries)
        self.slices.append((coin, side, len(entries)))
        super().load_orders(coin, side, entries)


@pytest_twisted.inlineCallbacks
def test_sliced_load_equals_whole_load(tmp_path):
    """Tiny slices (many reactor turns) load exactly what one whole decode loads."""
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_document(), separators=(",", ":")))
    sliced = yield load_snapshot(path, CountingBooks, slice_bytes=100)
    whole = yield load_snapshot(path, CountingBooks, slice_bytes=1 << 30)
    assert sliced.height == 42
    assert len(sliced.l4_snapshot("ETH")["levels"][0]) == 500
    _books_equal(sliced, whole)
    eth_slices = [n for coin, side, n in sliced.slices if coin == "ETH"]
    assert len(eth_slices) > 100 and sum(eth_slices) == 500  # the byte scanner sliced it
    assert [n for coin, _, n in whole.slices if coin == "ETH"] == [500, 0]
    assert ("@107", "B", 0) in sliced.slices  # empty coins exist in both loads
    assert whole.coins() == sliced.coins()


class _Cycle:
    """Cyclic garbage: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


class GarbageMakingBooks(Books):
    """Books whose every load_orders slice leaves a cycle behind, as the reactor does
    between slices (a closed TLS connection: Failure <-> traceback, holding its transports)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.garbage: list[weakref.ref[_Cycle]] = []

    def load_orders(self, coin, side, entries):
        super().load_orders(coin, side, entries)
        self.garbage.append(weakref.ref(_Cycle()))


@pytest_twisted.inlineCallbacks
def test_load_freezes_no_garbage(tmp_path):
    """The loader freezes every slice's orders (gc.freeze), but not the cyclic garbage
    made meanwhile: frozen garbage is never collected (the soak's workers kept
    hundreds of MB of closed connections that way, one batch per resync)."""
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_document(), separators=(",", ":")))
    books = yield load_snapshot(path, GarbageMakingBooks, slice_bytes=100)
    assert len(books.garbage) > 100
    gc.collect()
    assert [ref for ref in books.garbage if ref() is not None] == []


@pytest_twisted.inlineCallbacks
def test_empty_snapshot(tmp_path):
    """A node with no coins at all gives an empty Books at its height."""
    path = tmp_path / "snap.json"
    path.write_bytes(b"[7,[]]")
    books = yield load_snapshot(path, CountingBooks)
    assert (books.height, books.coins(), books.slices) == (7, [], [])


@pytest_twisted.inlineCallbacks
def test_damaged_compact_file_is_not_decoded_whole(tmp_path):
    """A compact file the scanner cannot follow is an error, not a slow whole decode."""
    compact = json.dumps(_document(), separators=(",", ":"))
    path = tmp_path / "snap.json"
    path.write_text(compact.replace('}],["0x', '}]x["0x', 1))
    books: list[CountingBooks] = []

    def make():
        books.append(CountingBooks())
        return books[-1]

    with pytest.raises(SnapshotError, match="snap.json is (damaged|not valid)"):
        yield load_snapshot(path, make, slice_bytes=100)
    assert len(books) == 1  # no second (whole-decode) attempt


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
    "content",
    [
        b"",
        b"[1, [",
        b'[1,[["BTC",[[["0xa",{"coin":"BTC"}]],[]]]]]',
        b"nonsense",
        json.dumps(_document(), separators=(",", ":")).encode()[:-2],
        json.dumps(_document(), separators=(",", ":")).encode()[:5000] + b"]",
    ],
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
        with pytest.raises(SnapshotError, match="request failed.*running with --serve-info"):
            yield defer.Deferred.fromCoroutine(
                request_snapshot(reactor, "http://127.0.0.1:1/info", tmp_path / "o", 5)
            )
    finally:
        for request in info.hanging:
            if not request.finished and not request._disconnected:
                request.finish()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_cancelled_load_stops_slicing(tmp_path, reactor):
    """Cancelling a load stops its slices: the staging Books gets no more orders."""
    path = tmp_path / "snap.json"
    entries = [[f"0x{i:040x}", order("ETH", "B", "100.0", "1", i + 1)] for i in range(20_000)]
    path.write_text(json.dumps([9, [["ETH", [entries, []]]]], separators=(",", ":")))
    made: list[CountingBooks] = []
    loading = load_snapshot(path, lambda: made.append(CountingBooks()) or made[-1], 100)
    yield wait_for(lambda: made and made[0].slices, what="first slice")
    loading.cancel()
    sliced = len(made[0].slices)
    yield task.deferLater(reactor, 0.05, lambda: None)
    assert len(made[0].slices) == sliced < 20_000
    with pytest.raises(defer.CancelledError):
        yield loading


def _grow(reactor, path, chunks, delay):
    """Append ``chunks`` to ``path``, one every ``delay`` seconds."""
    for index, chunk in enumerate(chunks):
        reactor.callLater(delay * (index + 1), lambda c=chunk: path.open("ab").write(c))


@pytest_twisted.inlineCallbacks
def test_wait_until_written_follows_a_slow_writer(tmp_path, reactor):
    """A snapshot written in pieces is only handed over once whole and quiet."""
    path = tmp_path / "snap.json"
    data = json.dumps(_document(), separators=(",", ":")).encode()
    path.write_bytes(data[:1000])
    _grow(reactor, path, [data[1000:5000], data[5000:-1], data[-1:]], 0.05)
    size = yield defer.Deferred.fromCoroutine(wait_until_written(reactor, path, 5, quiet_s=1))
    assert size == len(data) == path.stat().st_size


@pytest.mark.parametrize("content", [None, b"", b'[1,[["BTC",[[["0xa",{"coin":"BT'])
@pytest_twisted.inlineCallbacks
def test_wait_until_written_gives_up_on_missing_or_truncated(tmp_path, reactor, content):
    """Missing, empty or cut files that stop changing fail, naming the file."""
    path = tmp_path / "snap.json"
    if content is not None:
        path.write_bytes(content)
    problem = "missing" if content is None else "incomplete"
    with pytest.raises(SnapshotError, match=f"snap.json {problem}"):
        yield defer.Deferred.fromCoroutine(wait_until_written(reactor, path, 5, quiet_s=0.1))


@pytest_twisted.inlineCallbacks
def test_wait_until_written_deadline(tmp_path, reactor):
    """A file that keeps growing without ever finishing fails at the deadline."""
    path = tmp_path / "snap.json"
    path.write_bytes(b"[")
    _grow(reactor, path, [b"1"] * 40, 0.02)
    with pytest.raises(SnapshotError, match="still being written after 0.3 s"):
        yield defer.Deferred.fromCoroutine(wait_until_written(reactor, path, 0.3, quiet_s=1))


def test_remove_old(tmp_path):
    """An old snapshot is removed before asking; a missing one is fine; a dir is an error."""
    old = tmp_path / "snap.json"
    old.write_text("[1,[]]")
    remove_old(old)
    remove_old(old)
    assert not old.exists()
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(SnapshotError, match="cannot remove the old snapshot .*dir.json"):
        remove_old(tmp_path / "dir.json")


# -- what a load freezes (issue 14) -------------------------------------------------


def frozen_garbage() -> list[object]:
    """Cyclic garbage that only frozen-ness keeps: collect, unfreeze, look (not freed)."""
    gc.collect()
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    return found


@pytest.mark.usefixtures("no_automatic_gc")
@pytest_twisted.inlineCallbacks
def test_load_collects_garbage_made_before_it_instead_of_freezing_it(tmp_path):
    """The load freezes after every slice; cyclic garbage already there (a snapshot
    request's objects) is collected first, not frozen with the orders for good."""
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_document(), separators=(",", ":")))
    garbage = old_cyclic_garbage()
    books = yield load_snapshot(path, Books)
    assert books.height == 42 and gc.get_freeze_count() > 0
    assert garbage() is None


@pytest.mark.usefixtures("no_automatic_gc")
@pytest_twisted.inlineCallbacks
def test_validation_fetches_leave_nothing_frozen_for_good(tmp_path, reactor):
    """Request, wait, load (a validation's fetch) three times: no cyclic garbage is
    frozen. Before (issue 14) each fetch kept ~90 objects, ~12 KB: the HTTP
    client's (pool, factory, protocol, parser, headers) and the resolver
    thread's last job (127.0.0.1 resolved in a thread pool)."""
    info, port, url = listen_info(reactor, _document)
    settings = NodeSettings(info_url=url)
    frozen_garbage()  # a clean start: nothing frozen, no garbage
    earlier = gc.get_objects()  # kept alive: what other tests left cannot die meanwhile
    try:
        for _ in range(3):
            books = yield defer.Deferred.fromCoroutine(
                fetch_snapshot(reactor, settings, tmp_path / "snap.json", Books, 0.05)
            )
            assert books.height == 42
            for _ in dismantle(books.abandon()):  # as validation does with its copy
                pass
        kept = [f"{type(o).__module__}.{type(o).__qualname__}" for o in frozen_garbage()]
        assert kept == []
    finally:
        del earlier
        yield port.stopListening()


def test_snapshot_requests_connect_to_an_ip_address_directly(reactor):
    """No name resolution (a thread pool's job) for 127.0.0.1 or ::1; a name is resolved."""
    endpoints = _Endpoints(reactor)
    assert isinstance(
        endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:3001/info")), TCP4ClientEndpoint
    )
    assert isinstance(
        endpoints.endpointForURI(URI.fromBytes(b"http://[::1]:3001/info")), TCP6ClientEndpoint
    )
    assert isinstance(
        endpoints.endpointForURI(URI.fromBytes(b"http://node:3001/info")), HostnameEndpoint
    )
    tls = endpoints.endpointForURI(URI.fromBytes(b"https://127.0.0.1:3001/info"))
    assert isinstance(tls._wrappedEndpoint, TCP4ClientEndpoint)

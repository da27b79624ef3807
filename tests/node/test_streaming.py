"""Streaming assembly on sparse streams: the finalisation rule, the grace, late rows."""

from __future__ import annotations

import msgspec
import pytest

from orderbook.book.books import Books
from orderbook.book.trades import TradePairer
from orderbook.node.blocks import BlockAssembler
from orderbook.node.schema import DIRECTORIES, decode_line
from orderbook.node.streaming import StreamAssembler
from tests.node.support import envelope

DIFF = {"user": "0x1", "oid": 1, "coin": "BTC", "side": "B", "px": "1.0", "raw_book_diff": "remove"}
GRACE = 0.1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


STATUS = {"time": "2026-04-30T20:46:00.0", "user": "0x1", "hash": None, "builder": None,
          "status": "canceled", "order": {"coin": "BTC", "side": "B", "limitPx": "1", "sz": "1",
                                          "oid": 9, "timestamp": 1}}  # fmt: skip
FILL = ["0xa", {"coin": "BTC", "px": "1", "sz": "1", "side": "B", "time": 1, "hash": "0x",
                "oid": 1, "crossed": True, "tid": 7, "fee": "0", "feeToken": "USDC",
                "startPosition": "0", "dir": "Open Long", "closedPnl": "0"}]  # fmt: skip
ONE_EVENT = {"statuses": [STATUS], "diffs": [DIFF], "fills": [FILL]}


def _row(kind: str, height: int, events: list | None = None):
    """A row of ``kind``; one event by default (a real node writes no empty rows)."""
    return decode_line(kind, envelope(height, ONE_EVENT[kind] if events is None else events)[:-1])


@pytest.fixture
def made():
    clock, late, gaps = Clock(), [], []
    assembler = StreamAssembler(
        clock, GRACE, on_late=lambda *a: late.append(a), on_gap=lambda *a: gaps.append(a)
    )
    assembler.trust_from(1)  # the rows below are read from the files' start
    return assembler, clock, late, gaps


def _add(assembler, kind, height, events=None):
    return [b.height for b in assembler.add(kind, _row(kind, height, events))]


def test_final_once_both_book_streams_move_on_fills_never_wait(made):
    """Block 1 is out when statuses and diffs show block 2; fills (silent) hold nothing."""
    assembler, clock, _, _ = made
    assert _add(assembler, "statuses", 1) == []
    assert _add(assembler, "diffs", 1, [DIFF]) == []
    assert _add(assembler, "diffs", 2) == []  # statuses may still have rows of 1
    assert _add(assembler, "statuses", 2) == [1]
    assert assembler.due() is None or assembler.due() > clock.now


def test_grace_finalises_when_one_book_stream_is_silent(made):
    """No diffs in block 2: block 1 is final ``grace`` after block 2 was first seen."""
    assembler, clock, _, _ = made
    _add(assembler, "statuses", 1)
    _add(assembler, "diffs", 1)
    clock.now += 0.01
    assert _add(assembler, "statuses", 2) == []
    assert assembler.due() == pytest.approx(clock.now + GRACE)
    clock.now += GRACE / 2
    assert assembler.flush() == [] and _add(assembler, "statuses", 2) == []
    clock.now += GRACE / 2
    assert [b.height for b in assembler.flush()] == [1]
    assert assembler.due() is None  # block 2: nothing later seen yet


def test_rows_within_the_grace_are_part_of_their_block(made):
    """A statuses row of block 1 read after a diffs row of block 2 (file read skew)."""
    assembler, clock, late, _ = made
    _add(assembler, "statuses", 1)
    _add(assembler, "diffs", 1, [DIFF])
    _add(assembler, "diffs", 2, [dict(DIFF, oid=2)])
    clock.now += GRACE * 0.9
    _add(assembler, "diffs", 1, [dict(DIFF, oid=3)])  # not late: 1 is not final yet
    [block] = assembler.add("statuses", _row("statuses", 2))
    assert [d.oid for d in block.diffs] == [1, 3] and late == []


def test_late_book_row_is_reported_with_its_coins_and_not_applied(made):
    """A diffs row of a block already out: on_late(kind, height, coins); nothing emitted."""
    assembler, clock, late, _ = made
    _add(assembler, "statuses", 1)
    _add(assembler, "diffs", 1)
    _add(assembler, "statuses", 2)
    clock.now += GRACE
    assert [b.height for b in assembler.flush()] == [1]
    assert _add(assembler, "diffs", 1, [dict(DIFF, coin="ETH")]) == []
    assert late == [("diffs", 1, {"ETH"})] and assembler.late_rows == 1


def test_late_fills_go_out_with_the_next_block(made):
    """Fills of block 1 read after block 1 was applied: they ride with block 2."""
    assembler, clock, late, _ = made
    fill = FILL
    _add(assembler, "statuses", 1)
    _add(assembler, "diffs", 1)
    _add(assembler, "statuses", 2)
    assert _add(assembler, "diffs", 2) == [1]
    _add(assembler, "fills", 1, [fill])
    _add(assembler, "statuses", 3)
    [block] = assembler.add("diffs", _row("diffs", 3))
    assert block.height == 2 and [f.tid for _, f in block.fills] == [7] and late == []


def test_heights_no_stream_wrote_come_out_empty(made):
    """Blocks 2 and 3 had no event at all: empty blocks, so every height is seen."""
    assembler, clock, _, gaps = made
    _add(assembler, "statuses", 1)
    _add(assembler, "diffs", 1)
    _add(assembler, "statuses", 4)
    assert _add(assembler, "diffs", 4) == [1]
    _add(assembler, "statuses", 5)
    blocks = assembler.add("diffs", _row("diffs", 5))
    assert [(b.height, len(b.diffs)) for b in blocks] == [(2, 0), (3, 0), (4, 1)]
    assert blocks[0].time_ms == blocks[2].time_ms and gaps == []


def test_more_missing_heights_than_can_be_quiet_is_a_gap(made):
    assembler, clock, _, gaps = made
    _add(assembler, "statuses", 1)
    _add(assembler, "diffs", 1)
    _add(assembler, "statuses", 500)
    _add(assembler, "diffs", 500)
    _add(assembler, "statuses", 501)
    assert [b.height for b in assembler.add("diffs", _row("diffs", 501))] == [500]
    assert gaps == [("statuses", 2, 500)]


def test_startup_block_joined_midway_is_dropped():
    """Reading began inside block 7: it (and anything older) is dropped."""
    assembler = StreamAssembler(Clock(), GRACE)
    _add(assembler, "diffs", 7)
    _add(assembler, "statuses", 6)
    _add(assembler, "statuses", 8)
    assert _add(assembler, "diffs", 8) == []
    _add(assembler, "statuses", 9)
    assert _add(assembler, "diffs", 9) == [8]
    assert assembler.old_lines == 2  # the rows of 7 and 6


# -- the real capture, sparse ---------------------------------------------------------
DAY_HOUR = ("20260430", "20")


def sparse_rows(mainnet_data) -> dict[str, list[bytes]]:
    """The capture's streaming rows per stream with the empty rows removed (as a node
    writes them); statuses (not in the capture) are the by-block lines split per event."""
    rows: dict[str, list[bytes]] = {}
    for kind, directory in DIRECTORIES["streaming"].items():
        path = mainnet_data / directory / "hourly" / DAY_HOUR[0] / DAY_HOUR[1]
        if path.exists():
            lines = path.read_bytes().splitlines()
        else:
            by_block = mainnet_data / DIRECTORIES["by_block"][kind] / "hourly" / "/".join(DAY_HOUR)
            lines = []
            for raw in by_block.read_bytes().splitlines():
                doc = msgspec.json.decode(raw)
                lines += [msgspec.json.encode(dict(doc, events=[e])) for e in doc["events"]]
        rows[kind] = [raw for raw in lines if b'"events":[]' not in raw]
    last = msgspec.json.decode(rows["statuses"][-1])  # the node goes on: block 978995417
    rows["statuses"].append(msgspec.json.encode(dict(last, block_number=978995417)))
    return rows


def by_block_blocks(mainnet_data) -> list:
    assembler = BlockAssembler()
    blocks = []
    lines = {
        kind: (mainnet_data / d / "hourly" / "/".join(DAY_HOUR)).read_bytes().splitlines()
        for kind, d in DIRECTORIES["by_block"].items()
    }
    for index in range(len(lines["diffs"])):
        for kind in ("fills", "diffs", "statuses"):
            blocks += assembler.add(kind, decode_line(kind, lines[kind][index]))
    return blocks


def node_order(rows: dict[str, list[bytes]], skew: dict[str, int]) -> list[tuple[str, bytes]]:
    """Rows as a reader meets them: block by block, streams interleaved row by row;
    ``skew[kind]`` blocks later for a stream read behind the others."""
    by_height: dict[int, dict[str, list[bytes]]] = {}
    for kind, lines in rows.items():
        for raw in lines:
            height = msgspec.json.decode(raw)["block_number"]
            by_height.setdefault(height + skew.get(kind, 0), {}).setdefault(kind, []).append(raw)
    order = []
    for height in sorted(by_height):
        streams = by_height[height]
        while any(streams.values()):
            for kind in ("fills", "diffs", "statuses"):
                if streams.get(kind):
                    order.append((kind, streams[kind].pop(0)))
    return order


def replay_streaming(order, grace=GRACE, step=0.005) -> tuple[list, list]:
    """Feed rows with a clock that moves ``step`` per block change; flush on the grace."""
    clock, late = Clock(), []
    assembler = StreamAssembler(clock, grace, on_late=lambda *a: late.append(a))
    assembler.trust_from(0)  # replayed from the files' start
    blocks, seen = [], set()
    for kind, raw in order:
        line = decode_line(kind, raw)
        if line.block_number not in seen:
            seen.add(line.block_number)
            clock.now += step
            blocks += assembler.flush()
        blocks += assembler.add(kind, line)
    clock.now += grace
    blocks += assembler.flush()
    return blocks, late


def tids_of(pairer: TradePairer, block) -> list[int]:
    """The tids of the trades ``block``'s fills complete (the blocks carry the fills
    the node wrote for them; the server pairs them from the lines in node.tape)."""
    if not block.fills_ok:
        return []
    return [t["tid"] for ts in pairer.feed(block.height, block.fills, bool).values() for t in ts]


def assert_same_books_at_every_height(by_block: list, streaming: list) -> list:
    """Apply both block lists to their own Books; equal books after every height."""
    ours, theirs = Books(), Books()
    pair_ours, pair_theirs = TradePairer(), TradePairer()
    streamed = {b.height: b for b in streaming}
    trades = {"by_block": [], "streaming": []}
    for block in by_block:
        if block.height not in streamed:
            continue
        theirs.apply_block(block)
        ours.apply_block(streamed[block.height])
        trades["by_block"] += tids_of(pair_theirs, block)
        trades["streaming"] += tids_of(pair_ours, streamed[block.height])
        for coin in set(ours.coins()) | set(theirs.coins()):
            assert ours.compare_coin(theirs, coin) == [], (block.height, coin)
    assert trades["streaming"] == trades["by_block"]
    return trades["streaming"]


def test_real_sparse_capture_same_book_at_every_height(mainnet_data):
    """The real capture without its empty rows: every block (40), the same book at every
    height as by-block, and both trades, with no block waiting on the silent fills."""
    rows = sparse_rows(mainnet_data)
    heights = {k: len({msgspec.json.decode(r)["block_number"] for r in v}) for k, v in rows.items()}
    assert heights["fills"] < 10 < heights["diffs"]  # sparse: fills in few blocks
    by_block = by_block_blocks(mainnet_data)
    streaming, late = replay_streaming(node_order(rows, {}))
    assert [b.height for b in streaming] == [b.height for b in by_block]
    assert late == []
    assert len(assert_same_books_at_every_height(by_block, streaming)) == 2


def test_real_sparse_capture_fills_read_late_trades_follow(mainnet_data):
    """Fills read a block behind the book streams: books equal at every height, the two
    trades still arrive (with the next block)."""
    rows = sparse_rows(mainnet_data)
    by_block = by_block_blocks(mainnet_data)
    streaming, late = replay_streaming(node_order(rows, {"fills": 1}))
    assert late == []
    tids = [f.tid for b in streaming for _, f in b.fills]
    assert sorted(tids) == sorted(f.tid for b in by_block for _, f in b.fills)
    ours, theirs = TradePairer(), TradePairer()
    trades = [t for b in streaming for t in tids_of(ours, b)]
    expected = [t for b in by_block for t in tids_of(theirs, b)]
    assert trades == expected and len(trades) == 2


def test_real_sparse_capture_statuses_read_behind_within_the_grace(mainnet_data):
    """Statuses read a block behind diffs (a slower file): within the grace, the same
    book at every height and no late row."""
    rows = sparse_rows(mainnet_data)
    by_block = by_block_blocks(mainnet_data)
    streaming, late = replay_streaming(node_order(rows, {"statuses": 1}), step=0.01)
    assert late == []
    assert_same_books_at_every_height(by_block, streaming)


def test_a_dense_stream_that_skips_a_height_is_a_gap(made):
    """A stream that writes empty rows announces every block: a skip there is a gap."""
    assembler, clock, _, gaps = made
    _add(assembler, "statuses", 1)
    _add(assembler, "diffs", 1)
    _add(assembler, "fills", 1, [])  # an empty row: fills is dense
    _add(assembler, "fills", 2)
    _add(assembler, "fills", 4)
    assert gaps == [("fills", 3, 4)]
    _add(assembler, "diffs", 4, [DIFF])  # diffs never wrote an empty row: sparse
    assert gaps == [("fills", 3, 4)]


def test_no_empty_blocks_made_up_below_the_trusted_start():
    """Joined inside block 7, consumer at 5 (a snapshot): 6 and 7 are unknown, not
    empty; block 8 comes out alone (the consumer sees the jump and resyncs)."""
    assembler = StreamAssembler(Clock(), GRACE)
    _add(assembler, "diffs", 7)
    assembler.skip_through(5)
    _add(assembler, "statuses", 8)
    _add(assembler, "diffs", 8)
    _add(assembler, "statuses", 9)
    assert _add(assembler, "diffs", 9) == [8]


# -- the simulator's output, made sparse ----------------------------------------------
def _load_snapshot(path) -> Books:
    from orderbook.book.events import StatusOrder

    height, coins = msgspec.json.decode(path.read_bytes())
    books = Books()
    for coin, (bids, asks) in coins:
        for side, entries in (("B", bids), ("A", asks)):
            books.load_orders(
                coin, side, [(u, msgspec.convert(o, StatusOrder)) for u, o in entries]
            )
    books.set_height(height, None)
    return books


def _sim_lines(root, mode: str) -> dict[str, list[bytes]]:
    lines = {}
    for kind, directory in DIRECTORIES[mode].items():
        files = sorted(
            (root / directory / "hourly").glob("*/*"), key=lambda p: (p.parent.name, int(p.name))
        )
        lines[kind] = [raw for path in files for raw in path.read_bytes().splitlines()]
    return lines


@pytest.mark.parametrize(
    ("skew", "quiet"), [({}, False), ({"statuses": 1}, False), ({"fills": 2}, False), ({}, True)]
)
def test_simulator_sparse_streaming_same_book_at_every_height(tmp_path, skew, quiet):
    """The simulator's streaming files without empty rows (as a node writes them; older
    simulators wrote them, they are dropped here) replay to the same book at every height as its by-block files, with the same trades,
    whichever stream is read a block or two behind (within the grace)."""
    import inspect

    from orderbook.sim.generate import generate

    options = {}
    if quiet:  # a quiet market: 9 blocks in 10 without fills
        if "trade_share" not in inspect.signature(generate).parameters:
            pytest.skip("this simulator has no quiet-market knob (trade_share) yet")
        options["trade_share"] = 0.1
    blocks = 120
    runs = {}
    for mode in ("by_block", "streaming"):
        data = tmp_path / mode
        runs[mode] = generate(data / "hl", blocks, seed=3, mode=mode, scale=0.05, snapshot_at=[0],
                              snapshot_dir=data, split_probability=0, **options)  # fmt: skip
    snapshot = next(iter(runs["by_block"].snapshots.values()))
    by_block_lines = _sim_lines(tmp_path / "by_block" / "hl", "by_block")
    rows = {
        kind: [raw for raw in lines if not raw.endswith(b'"events":[]}')]
        for kind, lines in _sim_lines(tmp_path / "streaming" / "hl", "streaming").items()
    }
    assembler = BlockAssembler()
    by_block = []
    for index in range(len(by_block_lines["diffs"])):
        for kind in ("fills", "diffs", "statuses"):
            by_block += assembler.add(kind, decode_line(kind, by_block_lines[kind][index]))
    streaming, late = replay_streaming(node_order(rows, skew), step=0.01)
    assert late == []
    start = _load_snapshot(snapshot).height
    by_block = [b for b in by_block if b.height > start]
    streaming = [b for b in streaming if b.height > start]
    assert [b.height for b in streaming] == [b.height for b in by_block][: len(streaming)]
    assert len(streaming) >= blocks - 3
    ours, theirs = _load_snapshot(snapshot), _load_snapshot(snapshot)
    trades = {"by_block": [], "streaming": []}
    pair_ours, pair_theirs = TradePairer(), TradePairer()
    for mine, reference in zip(streaming, by_block, strict=False):
        a, b = theirs.apply_block(reference), ours.apply_block(mine)
        assert not a.errors and not b.errors, (a.errors[:1], b.errors[:1])
        trades["by_block"] += tids_of(pair_theirs, reference)
        trades["streaming"] += tids_of(pair_ours, mine)
        for coin in set(ours.coins()) | set(theirs.coins()):
            assert ours.compare_coin(theirs, coin) == [], (mine.height, coin)
    # trades: all of them, each once; with fills read late, the last ones follow later
    assert trades["streaming"] == trades["by_block"][: len(trades["streaming"])]
    missing = trades["by_block"][len(trades["streaming"]) :]
    applied = streaming[-1].height
    assert set(missing) <= {f.tid for b in by_block if b.height > applied - 3 for _, f in b.fills}
    assert len(trades["streaming"]) > (2 if quiet else 10)

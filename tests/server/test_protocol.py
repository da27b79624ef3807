"""The JSON API over real TLS connections on 127.0.0.1 (autobahn clients), and
in memory (StringTransport, task.Clock) for timers and write batching."""

from __future__ import annotations

import msgspec
import pytest
import pytest_twisted

from orderbook.book.books import Books
from orderbook.book.events import Block, BookDiff, DiffBody, NewDiff, OrderStatus
from tests.server.harness import order, small_books
from tests.server.memory import MemoryServer

L2_BTC = {"type": "l2Book", "coin": "BTC"}


def new_order_block(height: int, oid: int, side: str, px: str, sz: str, coin: str = "BTC") -> Block:
    """A block that adds one resting order."""
    raw = msgspec.Raw(msgspec.json.encode(order(oid, side, px, sz, coin)))
    status = OrderStatus(time="2026-04-30T20:46:43.3", user="0xd", status="open", order=raw)
    diff = BookDiff(
        user="0xd", oid=oid, coin=coin, side=side, px=px, raw_book_diff=DiffBody(new=NewDiff(sz=sz))
    )
    return Block(height, 1_700_000_000_000 + height, "t", [status], [diff], [])


@pytest_twisted.ensureDeferred
async def test_subscribe_l2_echoes_and_sends_the_view(harness_factory):
    """A subscribe is echoed as sent, then the current l2Book (with height) follows."""
    harness = await harness_factory()
    client = await harness.connect()
    client.send({"method": "subscribe", "subscription": L2_BTC})
    echo = await client.channel("subscriptionResponse")
    assert echo["data"] == {"method": "subscribe", "subscription": L2_BTC}
    book = await client.channel("l2Book")
    assert book["data"]["coin"] == "BTC"
    assert book["data"]["height"] == 100
    assert book["data"]["levels"][0][0] == {"px": "100.0", "sz": "1.5", "n": 1}
    assert book["data"]["levels"][1] == [{"px": "101.0", "sz": "1.0", "n": 1}]


@pytest_twisted.ensureDeferred
async def test_official_client_receives_blocks(harness_factory):
    """A client speaking only the official API gets l2Book, bbo, trades and pong as blocks apply."""
    harness = await harness_factory()
    client = await harness.connect()
    for sub in (L2_BTC, {"type": "bbo", "coin": "BTC"}, {"type": "trades", "coin": "BTC"}):
        client.send({"method": "subscribe", "subscription": sub})
    await client.channel("bbo")
    block = new_order_block(101, 10, "A", "100.5", "0.25")
    harness.registry.block_applied(harness.books.apply_block(block))
    trades = [
        {
            "coin": "BTC",
            "side": "A",
            "px": "100.0",
            "sz": "0.1",
            "time": 1,
            "hash": "0x1",
            "tid": 7,
            "users": ["0xa", "0xb"],
        }
    ]
    harness.registry.trades_paired({"BTC": trades, "ETH": []})
    l2 = await client.expect(lambda m: m["channel"] == "l2Book" and m["data"]["height"] == 101)
    assert l2["data"]["levels"][1][0] == {"px": "100.5", "sz": "0.25", "n": 1}
    bbo = await client.expect(lambda m: m["channel"] == "bbo" and m["data"]["height"] == 101)
    assert bbo["data"]["bbo"][1] == {"px": "100.5", "sz": "0.25", "n": 1}
    trades = await client.channel("trades")
    assert trades["data"][0]["tid"] == 7
    client.send({"method": "ping"})
    assert await client.channel("pong") == {"channel": "pong"}


@pytest_twisted.ensureDeferred
async def test_all_mids_l4_and_status(harness_factory):
    """allMids, l4Book (Snapshot then consecutive Updates, empty when untouched) and status."""
    harness = await harness_factory()
    client = await harness.connect()
    client.send({"method": "subscribe", "subscription": {"type": "allMids"}})
    mids = await client.channel("allMids")
    assert mids["data"] == {"mids": {"BTC": "100.5", "ETH": "10.5"}}
    client.send({"method": "subscribe", "subscription": {"type": "l4Book", "coin": "ETH"}})
    snapshot = (await client.channel("l4Book"))["data"]["Snapshot"]
    assert snapshot["height"] == 100 and snapshot["levels"][0][0]["oid"] == 4
    client.send({"method": "subscribe", "subscription": {"type": "status"}})
    assert (await client.channel("status"))["data"]["state"] == "ready"
    harness.registry.block_applied(
        harness.books.apply_block(new_order_block(101, 11, "A", "10.5", "1", "ETH"))
    )
    harness.registry.block_applied(
        harness.books.apply_block(new_order_block(102, 12, "A", "101.5", "1"))
    )
    assert (await client.channel("allMids"))["data"]["mids"]["ETH"] == "10.25"
    client.cursor = 0
    first = (await client.expect(lambda m: "Updates" in m.get("data", {})))["data"]["Updates"]
    assert first["height"] == 101
    assert first["book_diffs"] == [
        {
            "user": "0xd",
            "oid": 11,
            "coin": "ETH",
            "side": "A",
            "px": "10.5",
            "raw_book_diff": {"new": {"sz": "1"}},
        }
    ]
    assert first["order_statuses"][0]["order"]["oid"] == 11
    second = (await client.channel("l4Book"))["data"]["Updates"]
    assert (second["height"], second["order_statuses"], second["book_diffs"]) == (102, [], [])
    harness.registry.state_changed({"state": "stale", "height": 102})
    assert (await client.channel("status"))["data"] == {"state": "stale", "height": 102}


@pytest_twisted.ensureDeferred
async def test_unsubscribe_and_post(harness_factory):
    """Unsubscribe stops a feed; post info l2Book and allMids answer with the view."""
    harness = await harness_factory()
    client = await harness.connect(compression=False)
    client.send({"method": "subscribe", "subscription": L2_BTC})
    await client.channel("l2Book")
    client.send({"method": "unsubscribe", "subscription": {**L2_BTC, "nSigFigs": None}})
    echo = await client.channel("subscriptionResponse")
    assert echo["data"]["method"] == "unsubscribe"
    assert harness.registry.subscription_count() == 0
    client.send(
        {
            "method": "post",
            "id": 7,
            "request": {
                "type": "info",
                "payload": {"type": "l2Book", "coin": "BTC", "nSigFigs": None},
            },
        }
    )
    post = await client.channel("post")
    assert post["data"]["id"] == 7
    assert post["data"]["response"]["payload"]["type"] == "l2Book"
    assert post["data"]["response"]["payload"]["data"]["levels"][1][0]["px"] == "101.0"
    client.send(
        {"method": "post", "id": 8, "request": {"type": "info", "payload": {"type": "allMids"}}}
    )
    assert (await client.channel("post"))["data"]["response"]["payload"]["data"] == {
        "BTC": "100.5",
        "ETH": "10.5",
    }
    client.send(
        {
            "method": "post",
            "id": 9,
            "request": {"type": "info", "payload": {"type": "l2Book", "coin": "NOPE"}},
        }
    )
    failed = (await client.channel("post"))["data"]
    assert failed == {
        "id": 9,
        "response": {"type": "error", "payload": "Invalid subscription: unknown coin 'NOPE'"},
    }


ERRORS = [
    (b"{not json", "Invalid JSON"),
    (b"[1]", "Invalid request: expected a JSON object"),
    (b'{"method":"fly"}', "Unknown method 'fly'"),
    (b'{"method":"subscribe"}', "Invalid request: missing 'subscription'"),
    (
        b'{"method":"subscribe","subscription":{"type":"orderUpdates","user":"0x1"}}',
        "Invalid subscription: unknown type 'orderUpdates'",
    ),
    (
        b'{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC","nSigFigs":7}}',
        "Invalid subscription: nSigFigs must be 2-5 or null",
    ),
    (
        b'{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC","nSigFigs":4,"mantissa":2}}',
        "Invalid subscription: mantissa is only allowed with nSigFigs 5",
    ),
    (
        b'{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC","nLevels":0}}',
        "Invalid subscription: nLevels must be 1-100",
    ),
    (
        b'{"method":"subscribe","subscription":{"type":"trades"}}',
        "Invalid subscription: trades needs a 'coin' string",
    ),
    (
        b'{"method":"subscribe","subscription":{"type":"bbo","coin":"DOGE"}}',
        "Invalid subscription: unknown coin 'DOGE'",
    ),
    (
        b'{"method":"unsubscribe","subscription":{"type":"bbo","coin":"BTC"}}',
        "Already unsubscribed",
    ),
    (b'{"method":"post","id":"x"}', "Invalid post: 'id' must be an integer"),
]


@pytest_twisted.ensureDeferred
async def test_every_error_keeps_the_connection_usable(harness_factory):
    """Each bad request gets one error message; the connection then still answers pings."""
    harness = await harness_factory()
    client = await harness.connect()
    for payload, text in ERRORS:
        client.sendMessage(payload)
        error = await client.channel("error")
        assert error["data"].startswith(text), (payload, error)
    client.sendMessage(b"\x00\x01", isBinary=True)
    assert "Binary messages are not supported" in (await client.channel("error"))["data"]
    client.send({"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}})
    await client.channel("subscriptionResponse")
    client.send({"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}})
    assert (await client.channel("error"))["data"].startswith("Already subscribed")
    client.send({"method": "ping"})
    await client.channel("pong")
    assert harness.metrics.metrics["orderbook_ws_client_errors_total"].get("subscription") >= 6


@pytest_twisted.ensureDeferred
async def test_too_many_subscriptions(harness_factory):
    """Past max_subscriptions a subscribe gets an error, and earlier ones keep working."""
    harness = await harness_factory(max_subscriptions=2)
    client = await harness.connect()
    for sub in ({"type": "bbo", "coin": "BTC"}, {"type": "bbo", "coin": "ETH"}, L2_BTC):
        client.send({"method": "subscribe", "subscription": sub})
    error = await client.channel("error")
    assert error["data"] == "Too many subscriptions: at most 2 per connection"
    client.send({"method": "unsubscribe", "subscription": {"type": "bbo", "coin": "ETH"}})
    client.send({"method": "subscribe", "subscription": L2_BTC})
    await client.channel("l2Book")


@pytest_twisted.ensureDeferred
async def test_unknown_coin_accepted_before_ready_then_rejected(reactor, tmp_path, harness_factory):
    """Before the book is ready any coin is accepted; books_reset then sends views or errors."""
    from tests.server.harness import small_books

    books = small_books(height=None)
    harness = await harness_factory(books=books)
    client = await harness.connect()
    client.send({"method": "subscribe", "subscription": {"type": "l4Book", "coin": "BTC"}})
    client.send({"method": "subscribe", "subscription": {"type": "bbo", "coin": "NEWCOIN"}})
    await client.channel("subscriptionResponse")
    await client.channel("subscriptionResponse")
    assert not any(m["channel"] == "l4Book" for m in client.messages)
    books.set_height(500, 1_700_000_000_000)
    harness.registry.books_reset(set(books.coins()))
    snapshot = await client.channel("l4Book")
    assert snapshot["data"]["Snapshot"]["height"] == 500
    client.cursor = 0  # the error may come before or after the snapshot
    error = await client.expect(lambda m: m["channel"] == "error")
    assert error["data"] == "Invalid subscription: unknown coin 'NEWCOIN'"
    assert harness.registry.subscription_count() == 1


@pytest_twisted.ensureDeferred
async def test_compression_window_bits_9_and_uncompressed(harness_factory):
    """Clients with 9-bit windows, 15-bit windows or no compression all decode a large view."""
    books = __import__("tests.server.harness", fromlist=["small_books"]).small_books(height=None)
    books.load_orders(
        "SOL",
        "B",
        [
            (f"0x{i:040x}", order(1000 + i, "B", f"{50 - i * 0.01:.2f}", "1", "SOL"))
            for i in range(300)
        ],
    )
    books.set_height(100, 1_700_000_000_000)
    harness = await harness_factory(books=books)
    clients = [
        await harness.connect(window_bits=9),
        await harness.connect(window_bits=0),
        await harness.connect(compression=False),
    ]
    negotiated = sorted((p.outbox.window_bits or 0) for p in harness.registry.connections)
    assert negotiated == [0, 9, 15]
    for client in clients:
        client.send({"method": "subscribe", "subscription": {"type": "l4Book", "coin": "SOL"}})
    for client in clients:
        snapshot = await client.channel("l4Book")
        assert len(snapshot["data"]["Snapshot"]["levels"][0]) == 300


@pytest_twisted.ensureDeferred
async def test_all_mids_dex_errors_are_replies(harness_factory):
    """allMids with a dex the book does not know, or a non-string dex, gets an error
    reply (post and subscribe) and the connection stays usable (issue 14)."""
    harness = await harness_factory()
    client = await harness.connect(compression=False)
    for request_id, dex, text in [
        (1, 5, "Invalid subscription: dex must be a string"),
        (2, [1], "Invalid subscription: dex must be a string"),
        (3, "zzz", "Invalid post: unknown dex 'zzz'"),
    ]:
        payload = {"type": "allMids", "dex": dex}
        client.send(
            {"method": "post", "id": request_id, "request": {"type": "info", "payload": payload}}
        )
        reply = (await client.channel("post"))["data"]
        assert reply == {"id": request_id, "response": {"type": "error", "payload": text}}
    client.send({"method": "subscribe", "subscription": {"type": "allMids", "dex": "zzz"}})
    assert (await client.channel("error"))["data"] == "Invalid subscription: unknown dex 'zzz'"
    assert harness.registry.subscription_count() == 0
    client.send({"method": "ping"})
    await client.channel("pong")


# -- in memory (StringTransport, task.Clock) ---------------------------------------


@pytest.fixture
def memory():
    """``memory(**websocket_settings)``: an in-memory server; connections lost after."""
    made: list[MemoryServer] = []

    def make(**kwargs):
        made.append(MemoryServer(**kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close_all()


def deep_books(levels: int = 30) -> Books:
    """small_books plus ``levels`` more bid levels of BTC."""
    books = small_books(height=None)
    books.load_orders(
        "BTC",
        "B",
        [(f"0x{i:040x}", order(100 + i, "B", f"{90 - i}.0", "1")) for i in range(levels)],
    )
    books.set_height(100, 1_700_000_000_000)
    return books


def test_idle_rule_counts_what_the_server_sends(memory):
    """A silent subscriber of a busy feed stays; 60 s after the last frame sent, 1000."""
    server = memory(idle_timeout_s=60)
    client = server.connect()
    client.send({"method": "subscribe", "subscription": L2_BTC})
    for height in range(101, 111):  # a block that changes the view every 10 s
        server.clock.advance(10)
        side, px = ("A", "100.5") if height % 2 else ("B", "100.2")
        server.registry.block_applied(
            server.books.apply_block(new_order_block(height, height, side, px, "1"))
        )
    assert client.close_frame() is None  # 100 s without a client message
    server.clock.advance(59.9)
    assert client.close_frame() is None
    server.clock.advance(0.2)
    assert client.close_frame() == (1000, "idle timeout: nothing sent for 60 s")
    assert server.counter("orderbook_ws_connections_rejected_total", "idle") == 1


def test_pong_and_responses_keep_a_quiet_connection(memory):
    """On a quiet feed, {"method":"ping"} every 50 s keeps the connection: pong is a frame sent."""
    server = memory(idle_timeout_s=60)
    client = server.connect()
    client.send({"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}})
    for _ in range(5):
        server.clock.advance(50)
        client.send({"method": "ping"})
    assert client.channels() == ["subscriptionResponse"] + ["pong"] * 5
    server.clock.advance(61)
    assert client.close_frame() == (1000, "idle timeout: nothing sent for 60 s")


def test_websocket_pongs_count_as_sent_and_pings_do_not(memory):
    """A client pinging at the WebSocket level gets pongs: it stays. The server's own
    pings (answered) do not keep a connection it sends nothing else to."""
    server = memory(idle_timeout_s=60, auto_ping_interval_s=20, auto_ping_timeout_s=10)
    pinging, silent = server.connect(), server.connect()
    for _ in range(6):
        server.clock.advance(25)
        pinging.send_frame(0x9, b"hi")
        for client in (pinging, silent):
            for opcode, payload in client.read():
                if opcode == 0x9:
                    client.send_frame(0xA, payload)
    assert pinging.close_frame() is None
    assert (0xA, b"hi") in pinging.frames
    assert silent.close_frame() == (1000, "idle timeout: nothing sent for 60 s")


def test_websocket_pings_drop_a_dead_peer(memory):
    """A peer that answers no WebSocket ping is dropped after interval + timeout."""
    server = memory(idle_timeout_s=0, auto_ping_interval_s=20, auto_ping_timeout_s=10)
    client = server.connect()
    server.clock.advance(20.5)
    assert [op for op, _ in client.read()] == [0x9]  # the ping
    assert not client.transport.disconnecting
    server.clock.advance(10.5)
    assert client.transport.disconnecting


def test_fast_l2book_has_five_levels(memory):
    """The official ``fast: true`` flag means nLevels 5 (unless given), sent every block."""
    server = memory()
    server.books = deep_books()
    server.registry.books = server.books
    client = server.connect()
    fast = {"type": "l2Book", "coin": "BTC", "fast": True}
    client.send({"method": "subscribe", "subscription": fast})
    echo, book = client.messages()
    assert echo["data"]["subscription"] == fast
    assert len(book["data"]["levels"][0]) == 5
    client.send({"method": "subscribe", "subscription": {**fast, "nLevels": 8}})
    assert len(client.messages()[1]["data"]["levels"][0]) == 8
    client.send({"method": "unsubscribe", "subscription": {**L2_BTC, "nLevels": 5}})
    assert client.messages()[0]["channel"] == "subscriptionResponse"
    client.send({"method": "subscribe", "subscription": {**fast, "fast": "yes"}})
    assert client.messages() == [
        {"channel": "error", "data": "Invalid subscription: fast must be true, false or null"}
    ]


@pytest.mark.parametrize("dex", [5, [1], {"a": 1}, True])
def test_all_mids_post_with_bad_dex_is_an_error_reply(memory, dex):
    """allMids post with a non-string dex: an error reply, and the connection keeps working."""
    server = memory()
    client = server.connect()
    payload = {"type": "allMids", "dex": dex}
    client.send({"method": "post", "id": 3, "request": {"type": "info", "payload": payload}})
    client.send({"method": "ping"})
    post, pong = client.messages()
    assert post["data"] == {
        "id": 3,
        "response": {"type": "error", "payload": "Invalid subscription: dex must be a string"},
    }
    assert pong == {"channel": "pong"}


def test_block_frames_arrive_in_one_write_in_order(memory):
    """Per block, one transport.write per client holds all its frames, in publishing order
    (and one the trades read from the fills)."""
    server = memory()
    clients = [server.connect(), server.connect(compression=True)]
    subs = (L2_BTC, {"type": "bbo", "coin": "BTC"}, {"type": "trades", "coin": "BTC"})
    for client in clients:
        for sub in subs:
            client.send({"method": "subscribe", "subscription": sub})
        client.read()
        client.transport.writes.clear()
    for height in (101, 102, 103):
        px = f"{100 + (height - 100) / 10:.1f}"  # a better bid each block: l2Book and bbo change
        server.registry.block_applied(
            server.books.apply_block(new_order_block(height, height, "B", px, "1"))
        )
        server.registry.trades_paired({"BTC": [{"coin": "BTC", "tid": height, "time": height}]})
    for client in clients:
        assert len(client.transport.writes) == 6  # a block's views, then its trades
        seen = [m for m in client.messages()]
        assert [m["channel"] for m in seen] == ["l2Book", "bbo", "trades"] * 3
        heights = [m["data"]["height"] for m in seen if m["channel"] != "trades"]
        assert heights == [101, 101, 102, 102, 103, 103]
        assert [m["data"][0]["tid"] for m in seen if m["channel"] == "trades"] == [101, 102, 103]


def test_one_request_one_write(memory):
    """A subscribe's response and current view go out in one write."""
    server = memory()
    client = server.connect()
    client.send({"method": "subscribe", "subscription": L2_BTC})
    assert len(client.transport.writes) == 1
    assert client.channels() == ["subscriptionResponse", "l2Book"]

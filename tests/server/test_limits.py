"""Protocol abuse closes connections; slow consumers are bounded; closed connections
are freed (real TLS clients, and in memory on a task.Clock)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from orderbook.book.books import Books
from orderbook.feed.registry import CHANNEL_ENVELOPE
from orderbook.feed.subscriptions import Subscription
from orderbook.server.outbox import CHUNK_BYTES
from tests.server.harness import order, small_books, until
from tests.server.memory import MemoryServer, WriteLog

L2_BTC = {"type": "l2Book", "coin": "BTC"}


@pytest_twisted.ensureDeferred
async def test_max_connections_rejected_with_503(harness_factory):
    """The connection past max_connections fails its handshake with HTTP 503."""
    harness = await harness_factory(max_connections=1)
    await harness.connect()
    second = await harness.connect(wait_open=False)
    with pytest.raises(ConnectionError, match="503"):
        await second.opened
    assert (
        harness.metrics.metrics["orderbook_ws_connections_rejected_total"].get("max_connections")
        == 1
    )


@pytest_twisted.ensureDeferred
async def test_oversized_message_closes_1009(harness_factory):
    """A message over max_message_bytes closes the connection with 1009."""
    harness = await harness_factory(max_message_bytes=1024)
    client = await harness.connect(compression=False)
    client.sendMessage(b'{"method":"ping","pad":"' + b"x" * 2000 + b'"}')
    code, _reason = await client.closed
    assert code == 1009


@pytest_twisted.ensureDeferred
async def test_flood_closes_1008(harness_factory):
    """A new connection's bucket holds a tenth of messages_per_minute: past it, 1008."""
    harness = await harness_factory(messages_per_minute=50)
    client = await harness.connect()
    for _ in range(10):
        client.send({"method": "ping"})
    code, reason = await client.closed
    assert code == 1008
    assert reason == "rate limit: more than 50 messages per minute"
    assert len([m for m in client.messages if m["channel"] == "pong"]) == 5


@pytest_twisted.ensureDeferred
async def test_idle_connection_closed(harness_factory):
    """A client the server sent nothing to for idle_timeout_s is closed with 1000 and a reason."""
    harness = await harness_factory(idle_timeout_s=0.3)
    client = await harness.connect()
    code, reason = await client.closed
    assert (code, reason) == (1000, "idle timeout: nothing sent for 0.3 s")


@pytest_twisted.ensureDeferred
async def test_disallowed_origin_refused(harness_factory):
    """An Origin outside allowed_origins fails the handshake; a listed one (explicit port) works."""
    harness = await harness_factory(allowed_origins=("https://app.example.com:443",))
    good = await harness.connect(origin="https://app.example.com")
    good.send({"method": "ping"})
    await good.channel("pong")
    bad = await harness.connect(origin="https://evil.example.com", wait_open=False)
    with pytest.raises(ConnectionError, match="origin .* not allowed"):
        await bad.opened


def trades_of(height: int, count: int) -> dict[str, list[dict[str, Any]]]:
    """``count`` BTC trades of one block (about 200 bytes each)."""
    trade = {
        "coin": "BTC",
        "side": "A",
        "px": "100.0",
        "sz": "0.1",
        "time": height,
        "hash": "0x" + "ab" * 32,
        "users": ["0x" + "1" * 40, "0x" + "2" * 40],
    }
    return {"BTC": [dict(trade, tid=height * 1000 + i) for i in range(count)]}


@pytest_twisted.ensureDeferred
async def test_stalled_client_is_bounded_and_closed(reactor, harness_factory):
    """A client that stops reading holds at most max_queued_bytes, others get everything,
    and it is closed (1008, "slow consumer") once its trades queue overflows."""
    limit = 64 * 1024
    harness = await harness_factory(max_queued_bytes=limit)
    fast = await harness.connect(compression=False)
    slow = await harness.connect(compression=False)
    for client in (fast, slow):
        client.send({"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}})
        client.send({"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}})
        await client.channel("l2Book")
    slow.transport.pauseProducing()  # stop reading: kernel buffers fill, then the server's
    server_side = {p for p in harness.registry.connections}
    blocks = 0
    slow_closed = harness.metrics.metrics["orderbook_ws_slow_clients_closed_total"]
    while slow_closed.get() == 0 and blocks < 3000:
        blocks += 1
        harness.registry.trades_paired(trades_of(1000 + blocks, 50))
        for proto in server_side:
            assert proto.outbox.queued_bytes <= limit
        await task.deferLater(reactor, 0, lambda: None)  # let the reactor write and read
    assert slow_closed.get() == 1
    await until(
        reactor, lambda: len([m for m in fast.messages if m["channel"] == "trades"]) == blocks
    )
    heights = [m["data"][0]["time"] for m in fast.messages if m["channel"] == "trades"]
    assert heights == list(range(1001, 1001 + blocks))
    slow.transport.resumeProducing()
    code, reason = await slow.closed
    assert code == 1008
    assert reason == f"slow consumer: more than {limit} bytes queued"


def references(protocols: Any) -> list[weakref.ref[Any]]:
    """Weak references to each protocol, its transport and its outbox."""
    return [weakref.ref(o) for p in protocols for o in (p, p.transport, p.outbox)]


@pytest_twisted.ensureDeferred
async def test_closed_connections_are_freed_across_a_freeze(reactor, harness_factory):
    """Connections alive at a gc.freeze() (gc_policy does one a minute) are freed once
    closed: nothing but reference counting may be needed to free a protocol."""
    harness = await harness_factory()
    for _round in range(2):
        clients = [await harness.connect() for _ in range(10)]
        for client in clients:
            client.send({"method": "subscribe", "subscription": {"type": "l4Book", "coin": "BTC"}})
            await client.channel("l4Book")
        refs = references(harness.registry.connections)
        assert len(refs) == 30
        gc.collect()
        gc.freeze()
        try:
            for client in clients:
                client.sendClose()
            for client in clients:
                await client.closed
            await until(reactor, lambda: not harness.registry.connections)
            await until(reactor, lambda: all(ref() is None for ref in refs))  # noqa: B023
        finally:
            gc.unfreeze()
        harness.clients.clear()


# -- in memory (StringTransport, task.Clock) ---------------------------------------


class SocketBuffer(WriteLog):
    """A transport that pauses its producer once ``size`` bytes wait unread."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.size and self.producer is not None:
            self.producer.pauseProducing()


def l4_books(orders: int) -> Books:
    """small_books plus ``orders`` BTC bids (an L4 snapshot of ~200 bytes per order)."""
    books = small_books(height=None)
    books.load_orders(
        "BTC",
        "B",
        [(f"0x{i:040x}", order(100 + i, "B", f"{90 - i * 0.001:.3f}", "1")) for i in range(orders)],
    )
    books.set_height(100, 1_700_000_000_000)
    return books


def test_stalled_l4_client_counts_its_snapshot_and_is_closed():
    """The unsent rest of an L4 snapshot counts against max_queued_bytes; trades that
    arrive on top of it close the client (1008); what it held is given back."""
    server = MemoryServer(books=l4_books(3000), max_queued_bytes=1 << 20)
    client = server.connect()
    buffer = SocketBuffer(CHUNK_BYTES)  # the client reads nothing more
    client.protocol.outbox.transport = buffer
    client.protocol.transport = buffer
    outbox = client.protocol.outbox
    buffer.registerProducer(outbox, True)
    client.send({"method": "subscribe", "subscription": {"type": "l4Book", "coin": "BTC"}})
    client.send({"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}})
    snapshot = server.registry.current_message(
        Subscription("l4Book", "BTC"), CHANNEL_ENVELOPE
    ).frame(None)
    assert len(snapshot) > 500_000
    assert outbox.paused
    assert outbox.queued_bytes > len(snapshot) - 2 * CHUNK_BYTES
    blocks = 0
    while outbox.on_overflow is not None and blocks < 1000:
        blocks += 1
        server.registry.trades_paired(trades_of(1000 + blocks, 50))
        assert outbox.queued_bytes <= 1 << 20
    assert server.counter("orderbook_ws_slow_clients_closed_total") == 1
    assert blocks < (1 << 20) // (50 * 200)  # the snapshot's rest counted: closed early
    assert outbox.held <= 1  # only the frame in progress (shared bytes) is kept
    server.clock.advance(5.5)  # the closing handshake's deadline, on the Clock
    assert buffer.disconnecting
    client.lose()
    assert outbox.held == 0 and outbox.queued_bytes == 0
    assert client.protocol.outbox is None


def test_reading_client_gets_a_big_snapshot_in_chunks():
    """A client that reads receives the whole snapshot, then later frames, intact."""
    server = MemoryServer(books=l4_books(3000), max_queued_bytes=64 * 1024)
    client = server.connect(compression=True)
    client.send({"method": "subscribe", "subscription": {"type": "l4Book", "coin": "BTC"}})
    client.send({"method": "ping"})
    echo, snapshot, pong = client.messages()
    assert echo["channel"] == "subscriptionResponse" and pong == {"channel": "pong"}
    assert len(snapshot["data"]["Snapshot"]["levels"][0]) == 3002  # 2 + 3000 bids


def test_rate_bucket_starts_small():
    """A new connection may send a tenth of messages_per_minute at once, not all of it."""
    server = MemoryServer(messages_per_minute=2000)
    client = server.connect()
    for _ in range(201):
        client.send({"method": "ping"})
    assert client.channels().count("pong") == 200
    assert client.close_frame() == (1008, "rate limit: more than 2000 messages per minute")


def test_max_views_refuses_a_new_view_with_an_error():
    """Past max_views distinct views a subscribe to a new one gets an error; existing
    views still take subscribers; /metrics counts views and refusals."""
    server = MemoryServer(max_views=2)
    first, second = server.connect(), server.connect()
    for sub in (L2_BTC, {"type": "bbo", "coin": "BTC"}, {"type": "bbo", "coin": "ETH"}):
        first.send({"method": "subscribe", "subscription": sub})
    assert [m["data"] for m in first.messages() if m["channel"] == "error"] == [
        "Too many distinct views on this server (max_views 2): subscribe to one already in use"
    ]
    second.send({"method": "subscribe", "subscription": L2_BTC})
    assert second.channels() == ["subscriptionResponse", "l2Book"]
    assert server.counter("orderbook_ws_views_refused_total") == 1
    assert "orderbook_ws_views 2" in server.metrics.render()


def test_rate_limited_connection_counted_once():
    """Messages a client sends past its rate limit (while the close handshake runs) are
    ignored: the connection is one rejection{reason="rate"}, closed once with 1008."""
    server = MemoryServer(messages_per_minute=600)
    flooder, other = server.connect(), server.connect()
    for _ in range(60 + 25):
        flooder.send({"method": "ping"})
    assert flooder.channels().count("pong") == 60
    assert flooder.close_frame() == (1008, "rate limit: more than 600 messages per minute")
    assert server.counter("orderbook_ws_connections_rejected_total", "rate") == 1
    for _ in range(61):
        other.send({"method": "ping"})
    assert other.close_frame() == (1008, "rate limit: more than 600 messages per minute")
    assert server.counter("orderbook_ws_connections_rejected_total", "rate") == 2

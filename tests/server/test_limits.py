"""Protocol abuse closes connections; slow consumers are bounded (real TLS clients)."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import task

from orderbook.book.books import BlockResult
from tests.server.harness import until


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


def trades_result(height: int, count: int) -> BlockResult:
    """A block with ``count`` BTC trades (about 200 bytes each)."""
    trade = {
        "coin": "BTC",
        "side": "A",
        "px": "100.0",
        "sz": "0.1",
        "time": height,
        "hash": "0x" + "ab" * 32,
        "users": ["0x" + "1" * 40, "0x" + "2" * 40],
    }
    return BlockResult(
        height, height, trades={"BTC": [dict(trade, tid=height * 1000 + i) for i in range(count)]}
    )


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
        harness.registry.block_applied(trades_result(1000 + blocks, 50))
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

"""Registry fan-out: one view, one serialization and one compression per message."""

from __future__ import annotations

import pytest
from twisted.internet.testing import StringTransport

from orderbook.config import WebSocketSettings
from orderbook.feed import frames, messages
from orderbook.feed.registry import CHANNEL_ENVELOPE, Registry
from orderbook.feed.snapshots import SnapshotMessage
from orderbook.feed.subscriptions import Subscription, SubscriptionError
from orderbook.metrics import Metrics
from orderbook.server.outbox import Outbox
from tests.server.harness import small_books
from tests.server.test_protocol import new_order_block


class FakeClient:
    """A connection as the registry sees it, writing frames to a StringTransport."""

    envelope = CHANNEL_ENVELOPE

    def __init__(self, registry, window_bits):
        self.transport = StringTransport()
        self.outbox = Outbox(self.transport, registry.round, 1 << 20, None, window_bits)
        self.failed = []

    def deliver(self, sub, message):
        return self.outbox.send(message, sub, sub.lossless)

    def subscription_failed(self, sub, text):
        self.failed.append(text)


@pytest.fixture
def registry():
    return Registry(small_books(), WebSocketSettings(max_subscriptions=3), Metrics())


def test_fan_out_encodes_and_compresses_once(registry, monkeypatch):
    """100 compressed + 100 plain clients of one l2Book view cost one encode and one compress."""
    compress_calls, encode_calls = [], []
    real_compress, real_encode = frames.compress, messages.encode
    monkeypatch.setattr(
        frames, "compress", lambda *a: compress_calls.append(a) or real_compress(*a)
    )
    monkeypatch.setattr(messages, "encode", lambda v: encode_calls.append(v) or real_encode(v))
    clients = [FakeClient(registry, 15) for _ in range(100)] + [
        FakeClient(registry, None) for _ in range(100)
    ]
    sub = Subscription("l2Book", "BTC")
    for client in clients:
        registry.subscribe(client, sub)
        client.transport.clear()
    registry.block_applied(registry.books.apply_block(new_order_block(101, 10, "A", "100.5", "1")))
    assert len(compress_calls) == 1
    assert len(encode_calls) == 1
    written = {bytes(c.transport.value()) for c in clients}
    assert len(written) == 2  # one compressed frame, one plain frame, shared by all
    assert registry.metrics.messages.get("l2Book") == 200


def test_unchanged_view_not_sent(registry):
    """A block that does not change the top 1 level sends nothing to nLevels=1 subscribers."""
    client = FakeClient(registry, None)
    registry.subscribe(client, Subscription("l2Book", "BTC", n_levels=1))
    registry.send_current(client, Subscription("l2Book", "BTC", n_levels=1))
    client.transport.clear()
    registry.block_applied(registry.books.apply_block(new_order_block(101, 10, "A", "105.0", "1")))
    assert client.transport.value() == b""
    registry.block_applied(registry.books.apply_block(new_order_block(102, 11, "A", "100.5", "1")))
    assert b'"100.5"' in client.transport.value()


def test_subscribe_errors(registry):
    """Already subscribed, too many and unknown coin are SubscriptionErrors with the client text."""
    client = FakeClient(registry, None)
    registry.subscribe(client, Subscription("bbo", "BTC"))
    with pytest.raises(SubscriptionError, match="Already subscribed"):
        registry.subscribe(client, Subscription("bbo", "BTC"))
    with pytest.raises(SubscriptionError, match="unknown coin 'NOPE'"):
        registry.subscribe(client, Subscription("bbo", "NOPE"))
    registry.subscribe(client, Subscription("bbo", "ETH"))
    registry.subscribe(client, Subscription("allMids"))
    with pytest.raises(SubscriptionError, match="Too many subscriptions"):
        registry.subscribe(client, Subscription("trades", "ETH"))
    registry.remove(client)
    assert registry.subscription_count() == 0


def test_paused_client_keeps_latest_snapshot_only(registry):
    """While paused, l2Book keeps only the newest message; trades queue; resume sends them."""
    client = FakeClient(registry, None)
    registry.subscribe(client, Subscription("l2Book", "BTC"))
    client.outbox.pauseProducing()
    for height, px in ((101, "100.7"), (102, "100.6"), (103, "100.5")):
        registry.block_applied(
            registry.books.apply_block(new_order_block(height, height, "A", px, "1"))
        )
    assert client.outbox.held == 1 and client.outbox.replaced == 2
    client.outbox.resumeProducing()
    assert client.transport.value().count(b'"channel":"l2Book"') == 1
    assert b'"height":103' in client.transport.value()


def test_all_mids_dex_must_be_one_the_book_knows():
    """A ready book refuses an unknown dex at subscribe; before it is ready the
    subscription waits and is refused when the book arrives without that dex."""
    ready = Registry(small_books(), WebSocketSettings(), Metrics())
    client = FakeClient(ready, None)
    ready.subscribe(client, Subscription("allMids", dex=None))
    with pytest.raises(SubscriptionError, match="unknown dex 'xyz'"):
        ready.subscribe(client, Subscription("allMids", dex="xyz"))
    with pytest.raises(SubscriptionError, match=r"unknown dex 'jjjj.*\.\.\.'$"):
        ready.subscribe(client, Subscription("allMids", dex="j" * 1000))
    assert ready.subscription_count() == 1

    waiting = Registry(small_books(height=None), WebSocketSettings(), Metrics())
    waiting.subscribe(client, Subscription("allMids", dex="xyz"))
    waiting.books.set_height(100, 1_700_000_000_000)
    waiting.books_reset(set(waiting.books.coins()))
    assert client.failed == ["Invalid subscription: unknown dex 'xyz'"]
    assert waiting.subscription_count() == 0


def test_current_view_encoded_and_compressed_once_per_height(registry, monkeypatch):
    """Ten l4Book subscribers in one block share one encoding and one compression per
    window size; the next height builds it once more."""
    compress_calls, snapshot_calls = [], []
    real_compress, real_snapshot = SnapshotMessage._deflated, registry.books.l4_snapshot_pieces
    monkeypatch.setattr(
        SnapshotMessage, "_deflated", lambda *a: compress_calls.append(a[1:]) or real_compress(*a)
    )
    monkeypatch.setattr(
        registry.books, "l4_snapshot_pieces", lambda c: snapshot_calls.append(c) or real_snapshot(c)
    )
    sub = Subscription("l4Book", "BTC")
    clients = [FakeClient(registry, bits) for bits in (15,) * 9 + (9,)]
    for client in clients:
        registry.subscribe(client, sub)
        registry.send_current(client, sub)
    assert snapshot_calls == ["BTC"] and sorted(compress_calls) == [(9,), (15,)]
    assert len({c.transport.value() for c in clients}) == 2
    registry.books.apply_block(new_order_block(101, 10, "A", "100.5", "1"))
    late = FakeClient(registry, 15)
    registry.subscribe(late, sub)
    registry.send_current(late, sub)
    assert snapshot_calls == ["BTC", "BTC"] and len(compress_calls) == 3

"""Shared L4 snapshots: a recent snapshot plus the Updates since, built once."""

from __future__ import annotations

import json
import zlib

import msgspec
import pytest

from orderbook.book.events import Block
from orderbook.config import WebSocketSettings
from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.registry import CHANNEL_ENVELOPE, Registry
from orderbook.feed.snapshots import MAX_AGE_BLOCKS, SharedSnapshot, SnapshotMessage
from orderbook.feed.subscriptions import Subscription
from orderbook.metrics import Metrics
from tests.feed.test_registry import FakeClient
from tests.server.harness import small_books
from tests.server.test_protocol import new_order_block
from tests.server.test_wamp_js import deep_books

L4_BTC = Subscription("l4Book", "BTC")


@pytest.fixture
def registry(monkeypatch):
    registry = Registry(small_books(), WebSocketSettings(), Metrics())
    builds = registry.builds = []
    real = registry.books.l4_snapshot_pieces
    monkeypatch.setattr(registry.books, "l4_snapshot_pieces", lambda c: builds.append(c) or real(c))
    return registry


def subscribe(registry: Registry) -> list[dict]:
    """A new l4Book BTC subscriber; the messages it gets at once."""
    client = FakeClient(registry, None)
    registry.subscribe(client, L4_BTC)
    registry.send_current(client, L4_BTC)
    return frames(client)


def frames(client: FakeClient) -> list[dict]:
    data, messages = client.transport.value(), []
    while data:
        length = data[1] & 0x7F
        start = 2 if length < 126 else 4 if length == 126 else 10
        if length >= 126:
            length = int.from_bytes(data[2:start], "big")
        messages.append(json.loads(data[start : start + length])["data"])
        data = data[start + length :]
    return messages


def empty_block(height: int) -> Block:
    return Block(height, 1_700_000_000_000 + height, "t", [], [], [])


def test_late_subscriber_gets_the_shared_snapshot_and_the_updates_since(registry):
    """A subscriber two blocks later gets Snapshot(100), Updates 101 and 102: no new build."""
    first = subscribe(registry)
    assert [m["Snapshot"]["height"] for m in first] == [100]
    registry.block_applied(registry.books.apply_block(new_order_block(101, 10, "A", "100.5", "1")))
    registry.block_applied(registry.books.apply_block(empty_block(102)))
    late = subscribe(registry)
    assert late[0] == first[0]
    assert [m["Updates"]["height"] for m in late[1:]] == [101, 102]
    assert late[1]["Updates"]["book_diffs"][0]["oid"] == 10
    assert registry.builds == ["BTC"]


def test_snapshot_rebuilt_when_old_or_reset(registry):
    """Past MAX_AGE_BLOCKS, or after books_reset of the coin, a subscribe builds anew."""
    subscribe(registry)
    for height in range(101, 102 + MAX_AGE_BLOCKS):
        registry.block_applied(registry.books.apply_block(empty_block(height)))
    fresh = subscribe(registry)
    assert [m["Snapshot"]["height"] for m in fresh] == [101 + MAX_AGE_BLOCKS]
    registry.books_reset({"BTC"})
    subscribe(registry)
    assert registry.builds == ["BTC"] * 3


def inflate(frame: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of one server frame, inflated when RSV1 is set."""
    length, start = frame[1] & 0x7F, 2
    if length >= 126:
        start = 4 if length == 126 else 10
        length = int.from_bytes(frame[2:start], "big")
    body = frame[start : start + length]
    assert start + length == len(frame)
    if frame[0] & 0x40:
        body = zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")
    return frame[0], body


def test_snapshot_message_frames_are_the_wrapped_snapshot():
    """Plain and per-window compressed frames carry exactly the envelope around the data,
    each built once; the payload is never held joined."""
    books = deep_books(3_000)
    shared = SharedSnapshot(L4_BTC, 100, books.l4_snapshot_pieces("BTC"))
    message = shared.messages(CHANNEL_ENVELOPE)[0]
    assert isinstance(message, SnapshotMessage)
    data = msgspec.json.encode(books.l4_snapshot("BTC"))
    expected = CHANNEL_ENVELOPE.wrap(L4_BTC, data, "Snapshot")
    assert message.payload == expected.payload
    for bits in (None, 15, 9):
        assert inflate(message.frame(bits)) == inflate(expected.frame(bits))
        assert message.frame(bits) is message.frame(bits)
    assert len(message.frame(15)) < len(message.plain()) // 5


class PartOnly:
    """An envelope whose messages are not bytes around the data (like the publisher's)."""

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip

    def wrap(self, sub, data, part):
        if self.skip:
            return None
        message = Tagged(bytes(data))
        message.part = part
        return message


class Tagged(OutgoingMessage):
    __slots__ = ("part",)


def test_other_envelopes_get_the_data_whole_or_nothing():
    """An envelope wrapping in its own way gets the joined data; one that skips, nothing."""
    books = deep_books(10)
    shared = SharedSnapshot(L4_BTC, 100, books.l4_snapshot_pieces("BTC"))
    [message] = shared.messages(PartOnly())
    assert message.payload == msgspec.json.encode(books.l4_snapshot("BTC"))
    assert message.part == "Snapshot"
    assert shared.messages(PartOnly(skip=True)) == []

"""Tests for orderbook.server.wamp.parts: an L4 snapshot in parts of bounded size."""

from __future__ import annotations

import json

import pytest

from orderbook.feed import messages
from orderbook.server.wamp.parts import MAX_MESSAGE_BYTES, MAX_PART_BYTES, snapshot_parts
from tests.server.harness import small_books
from tests.server.test_wamp_js import deep_books


def merged(parts: list[bytes]) -> dict:
    """The parts decoded and their levels concatenated; heads must all agree."""
    decoded = [json.loads(part) for part in parts]
    heads = {(d["coin"], d["time"], d["height"]) for d in decoded}
    assert len(heads) == 1, heads
    coin, time, height = heads.pop()
    levels: list[list] = [[], []]
    for part in decoded:
        assert set(part) == {"coin", "time", "height", "levels"}
        levels[0] += part["levels"][0]
        levels[1] += part["levels"][1]
    return {"coin": coin, "time": time, "height": height, "levels": levels}


def test_a_deep_snapshot_splits_into_full_parts_that_rebuild_it():
    """Every part but the last is filled close to the bound, none over it; the parts
    concatenated are the snapshot, in queue order."""
    books = deep_books(16_000)
    snapshot = books.l4_snapshot("BTC")
    whole = len(messages.encode(snapshot))
    parts = snapshot_parts(snapshot)
    assert len(parts) == -(-whole // MAX_PART_BYTES)
    assert all(len(part) <= MAX_PART_BYTES for part in parts)
    assert all(len(part) > MAX_PART_BYTES - 1_000 for part in parts[:-1])
    assert merged(parts) == json.loads(messages.encode(snapshot))


def test_a_part_may_hold_the_last_bids_and_the_first_asks():
    """Parts are filled in order across the sides (5 bids, 4 asks; two orders a part)."""
    snapshot = deep_books(6).l4_snapshot("BTC")
    empty = len(snapshot_parts({**snapshot, "levels": [[], []]})[0])
    longest = max(len(messages.encode(o)) for side in snapshot["levels"] for o in side)
    parts = snapshot_parts(snapshot, limit=empty + 2 * longest + 1)
    sides = [[len(side) for side in json.loads(part)["levels"]] for part in parts]
    assert sides == [[2, 0], [2, 0], [1, 1], [0, 2], [0, 1]]
    assert merged(parts) == json.loads(messages.encode(snapshot))


def test_a_small_or_empty_book_is_one_part():
    books = small_books()
    assert snapshot_parts(books.l4_snapshot("ETH")) == [messages.encode(books.l4_snapshot("ETH"))]
    empty = {"coin": "X", "time": 1, "height": 2, "levels": [[], []]}
    assert snapshot_parts(empty) == [b'{"coin":"X","time":1,"height":2,"levels":[[],[]]}']


def test_an_order_over_the_bound_goes_alone():
    snapshot = small_books().l4_snapshot("BTC")
    parts = snapshot_parts(snapshot, limit=10)
    assert len(parts) == 3
    assert merged(parts) == json.loads(messages.encode(snapshot))


@pytest.mark.parametrize("request_id", [1, 2**53])
def test_the_result_around_a_part_stays_within_one_mib(request_id):
    envelope = b'[50,%d,{"progress":true},[]]' % request_id
    assert len(envelope) + MAX_PART_BYTES <= MAX_MESSAGE_BYTES == 1024 * 1024

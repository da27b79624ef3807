"""Tests for orderbook.server.wamp.uri: topic URIs <-> feed subscriptions."""

from __future__ import annotations

import pytest
from autobahn.wamp.message import check_or_raise_uri

from orderbook.feed.subscriptions import Subscription
from orderbook.server.wamp.uri import (
    InvalidTopic,
    decode_component,
    encode_component,
    parse_topic,
    topic_uri,
)


@pytest.mark.parametrize(
    ("coin", "component"),
    [
        ("BTC", "BTC"),
        ("@107", "%40107"),
        ("PURR/USDC", "PURR%2FUSDC"),
        ("xyz:TSLA", "xyz%3ATSLA"),
        ("#12", "%2312"),
        ("k-PEPE_x", "k-PEPE_x"),
        ("a.b c", "a%2Eb%20c"),
        ("é", "%C3%A9"),
    ],
)
def test_coin_encoding_matches_the_api_document(coin: str, component: str) -> None:
    """Every character outside [A-Za-z0-9_-] is %XX of its UTF-8 bytes, uppercase hex."""
    assert encode_component(coin) == component
    assert decode_component(component) == coin
    check_or_raise_uri(f"orderbook.bbo.{component}", strict=False)


@pytest.mark.parametrize("text", ["%40x%4", "%4a107", "%40%", "a.b", "x y", "", "%FF"])
def test_badly_encoded_components_are_refused(text: str) -> None:
    """Lowercase hex, truncated escapes, raw dots/spaces and non-UTF-8 bytes are refused."""
    with pytest.raises(InvalidTopic):
        decode_component(text)


def test_unneeded_escapes_are_refused() -> None:
    """``%41`` for ``A`` would be a second spelling of the same topic."""
    with pytest.raises(InvalidTopic, match="topic form is 'A'"):
        decode_component("%41")


@pytest.mark.parametrize(
    ("uri", "sub"),
    [
        ("orderbook.l2book.BTC", Subscription("l2Book", "BTC")),
        ("orderbook.l2book.BTC.sig5", Subscription("l2Book", "BTC", 5)),
        ("orderbook.l2book.BTC.sig5.man2", Subscription("l2Book", "BTC", 5, 2)),
        ("orderbook.l2book.BTC.sig3.lev50", Subscription("l2Book", "BTC", 3, None, 50)),
        ("orderbook.l2book.%40107.lev1", Subscription("l2Book", "@107", n_levels=1)),
        ("orderbook.trades.xyz%3ATSLA", Subscription("trades", "xyz:TSLA")),
        ("orderbook.bbo.ETH", Subscription("bbo", "ETH")),
        ("orderbook.l4book.BTC", Subscription("l4Book", "BTC")),
        ("orderbook.allmids", Subscription("allMids")),
        ("orderbook.allmids.xyz", Subscription("allMids", dex="xyz")),
        ("orderbook.status", Subscription("status")),
    ],
)
def test_topics_map_to_subscriptions_and_back(uri: str, sub: Subscription) -> None:
    """Each topic names one feed subscription, and that subscription has exactly that topic."""
    assert parse_topic(uri) == sub
    assert topic_uri(sub) == uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("com.example.x", "start with"),
        ("orderbook.l2book", "unknown topic"),
        ("orderbook.candles.BTC", "unknown topic"),
        ("orderbook.status.x", "unknown topic"),
        ("orderbook.allmids.a.b", "unknown topic"),
        ("orderbook.trades.BTC.sig5", "only l2book"),
        ("orderbook.l2book.BTC.sig6", "nSigFigs must be 2-5"),
        ("orderbook.l2book.BTC.sig4.man2", "only allowed with nSigFigs 5"),
        ("orderbook.l2book.BTC.man2", "l2book options"),
        ("orderbook.l2book.BTC.lev101", "nLevels must be 1-100"),
        ("orderbook.l2book.BTC.lev020", "l2book options"),
        ("orderbook.l2book.BTC.lev20", "defaults are left out"),
        ("orderbook.l2book.BTC.sig5.man1", "defaults are left out"),
        ("orderbook.l2book.BTC.lev5.sig5", "l2book options"),
        ("orderbook.bbo.@107", "percent-encoded"),
    ],
)
def test_unknown_or_non_canonical_topics_are_refused(uri: str, reason: str) -> None:
    """A topic that is not ours, or not the one spelling of a view, is InvalidTopic."""
    with pytest.raises(InvalidTopic, match=reason):
        parse_topic(uri)

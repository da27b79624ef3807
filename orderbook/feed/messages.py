"""Server messages: channel ``data`` from the book's views, and their envelopes.

Serialization happens in two steps so that a view is encoded once however
many clients and wire protocols receive it:

1. :func:`view_data` / :func:`l4_updates_data` build a channel's ``data``
   object and :func:`encode` turns it into bytes (once per view and block);
2. :func:`envelope` wraps those bytes as ``{"channel": …, "data": …}`` by
   concatenation, without decoding or re-encoding them.

Messages that concern one client (``subscriptionResponse``, ``error``,
``pong``, ``post``) are built here too.
"""

from __future__ import annotations

from typing import Any

import msgspec

from orderbook.book.books import Books, CoinUpdate
from orderbook.feed.subscriptions import Subscription

_encoder = msgspec.json.Encoder()
encode = _encoder.encode

PONG = b'{"channel":"pong"}'


def view_data(books: Books, sub: Subscription, status: dict[str, Any] | None = None) -> Any:
    """The current ``data`` object of a snapshot-type subscription.

    l2Book and bbo carry the book ``height`` too (an extension clients
    ignore); l4Book is the ``{"Snapshot": …}`` object; status is ``status``.
    """
    channel = sub.channel
    if channel == "l2Book":
        view = books.l2_view(sub.coin, sub.n_sig_figs, sub.mantissa, sub.n_levels)
        return _with_height(view, books.height)
    if channel == "bbo":
        return _with_height(books.bbo_view(sub.coin), books.height)
    if channel == "allMids":
        return {"mids": books.all_mids(sub.dex)}
    if channel == "l4Book":
        return {"Snapshot": books.l4_snapshot(sub.coin)}
    if channel == "status":
        return status if status is not None else {"state": "initializing"}
    raise ValueError(f"no snapshot view for channel {channel!r}")


def _with_height(view: dict[str, Any], height: int | None) -> dict[str, Any]:
    if "height" in view:
        return view
    return {**view, "height": height}


def l4_updates_data(
    coin: str, height: int, time_ms: int, update: CoinUpdate | None
) -> dict[str, Any]:
    """The l4Book ``{"Updates": …}`` object of one block (empty lists if untouched).

    ``coin`` is our extension: without it a client subscribed to several
    coins could not tell whose empty Updates message it got.
    """
    statuses: list[dict[str, Any]] = []
    diffs: list[Any] = []
    if update is not None:
        statuses = [
            {"time": s.time, "user": s.user, "status": s.status, "order": s.order}
            for s in update.statuses
        ]
        diffs = update.diffs
    return {
        "Updates": {
            "coin": coin,
            "time": time_ms,
            "height": height,
            "order_statuses": statuses,
            "book_diffs": diffs,
        }
    }


def envelope(channel: str, data: bytes) -> bytes:
    """``{"channel": channel, "data": <data bytes>}`` without re-encoding data."""
    return b'{"channel":"' + channel.encode() + b'","data":' + data + b"}"


def subscription_response(method: str, subscription: Any) -> bytes:
    """The echo of an accepted subscribe/unsubscribe (the subscription as sent)."""
    return encode(
        {
            "channel": "subscriptionResponse",
            "data": {"method": method, "subscription": subscription},
        }
    )


def error(text: str) -> bytes:
    """``{"channel": "error", "data": text}``."""
    return encode({"channel": "error", "data": text})


def post_response(request_id: Any, payload: Any) -> bytes:
    """A successful ``post`` info answer."""
    return encode(
        {
            "channel": "post",
            "data": {"id": request_id, "response": {"type": "info", "payload": payload}},
        }
    )


def post_error(request_id: Any, text: str) -> bytes:
    """A failed ``post`` answer."""
    return encode(
        {
            "channel": "post",
            "data": {"id": request_id, "response": {"type": "error", "payload": text}},
        }
    )

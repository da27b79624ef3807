"""Subscriptions -> connections, and publishing after every block.

The ingest service calls, in the reactor thread::

    block_applied(result)   after every block
    books_reset(coins)      fresh state for these coins: re-send snapshots
    state_changed(status)   the ingest status document (``status`` channel)

Work per block is per *view*, never per client:

1. for each subscribed :class:`Subscription` whose view the block changed,
   the registry asks the book ONCE and encodes the channel ``data`` ONCE
   (bytes, cached per height for late subscribers too);
2. for each *envelope kind* among that key's subscribers, the envelope wraps
   those bytes ONCE into an :class:`OutgoingMessage` (frames built on first
   use: one plain, one compressed per window size);
3. every subscriber gets the same message object (``client.deliver``);
4. all of it happens inside one :class:`~orderbook.feed.frames.Round`
   (``registry.round``): each connection writes its frames of the block
   once, when the round ends.

The current view a subscribe receives is cached per height as a message
too: every subscriber of that view in that block shares its encoding and
compression. An l4Book subscriber gets a shared snapshot of a recent height
and the Updates since (orderbook.feed.snapshots): an L4 snapshot of a big
coin is MBs and ~100 ms to build.

The seam for a second wire protocol (WAMP v2 in orderbook.server.wamp): give
its connections an ``envelope`` object with ``wrap(sub, data, part)`` that
returns an OutgoingMessage (a WAMP EVENT around ``data`` with the topic's one
subscription id) or None (nothing to send for this part), and implement
:class:`Client`. ``part`` is None except for l4Book, where ``data`` is the
inner object and ``part`` is ``"Snapshot"`` or ``"Updates"`` (the WAMP topic
carries only Updates; the JSON envelope adds ``{"Snapshot": …}``). Envelope
objects are compared by identity, so share one instance per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger

from orderbook.book.books import BlockResult, Books
from orderbook.config import WebSocketSettings
from orderbook.feed import messages
from orderbook.feed.frames import OutgoingMessage, Round
from orderbook.feed.snapshots import Snapshots
from orderbook.feed.subscriptions import COIN_CHANNELS, Subscription, SubscriptionError
from orderbook.metrics import Metrics


class Envelope(Protocol):
    """Wraps encoded channel data into one wire message (once per fan-out)."""

    def wrap(self, sub: Subscription, data: bytes, part: str | None) -> OutgoingMessage | None: ...


class Client(Protocol):
    """What the registry needs from a connection."""

    envelope: Envelope

    def deliver(self, sub: Subscription, message: OutgoingMessage) -> int:
        """Send (or hold) ``message``; return the bytes it costs (0: dropped)."""

    def subscription_failed(self, sub: Subscription, text: str) -> None:
        """The registry dropped ``sub`` (e.g. its coin does not exist)."""


class ChannelEnvelope:
    """Hyperliquid's ``{"channel": …, "data": …}``."""

    shareable = True  # wrap() depends only on its arguments: results may be cached

    def wrap(self, sub: Subscription, data: bytes, part: str | None) -> OutgoingMessage:
        if part is not None:
            data = b'{"' + part.encode() + b'":' + data + b"}"
        return OutgoingMessage(messages.envelope(sub.channel, data))


CHANNEL_ENVELOPE = ChannelEnvelope()


class FeedMetrics:
    """The feed's metrics in the shared registry."""

    def __init__(self, metrics: Metrics, feed: Registry) -> None:
        self.connections = metrics.gauge(
            "orderbook_ws_connections", "Open WebSocket connections", read=feed.connection_count
        )
        self.subscriptions = metrics.gauge(
            "orderbook_ws_subscriptions",
            "Active subscriptions over all connections",
            read=feed.subscription_count,
        )
        self.messages = metrics.counter(
            "orderbook_ws_messages_sent_total", "Messages sent or queued per channel", ["channel"]
        )
        self.bytes = metrics.counter(
            "orderbook_ws_bytes_sent_total", "Frame bytes sent or queued per channel", ["channel"]
        )
        self.views = metrics.gauge(
            "orderbook_ws_views", "Distinct views subscribed to", read=feed.view_count
        )
        self.views_refused = metrics.counter(
            "orderbook_ws_views_refused_total",
            "Subscribes refused because max_views distinct views exist",
        )
        self.slow_closed = metrics.counter(
            "orderbook_ws_slow_clients_closed_total",
            "Clients closed because their loss-intolerant queue overflowed",
        )
        self.replaced = metrics.counter(
            "orderbook_ws_replaced_messages_total",
            "Snapshot messages superseded by a newer one while a client was not reading",
        )
        self.client_errors = metrics.counter(
            "orderbook_ws_client_errors_total", "Error messages sent to clients, by kind", ["kind"]
        )
        self.rejected = metrics.counter(
            "orderbook_ws_connections_rejected_total",
            "Connections refused or closed for abuse, by reason",
            ["reason"],
        )


class Registry:
    """Who is subscribed to what; publishes the book's views to them."""

    _log = Logger()

    def __init__(
        self,
        books: Books,
        ws: WebSocketSettings,
        metrics: Metrics,
        reactor: Any = None,
        status_provider: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.books = books
        self.ws = ws
        self.status_provider = status_provider
        self.connections: set[Any] = set()
        self._subscribers: dict[Subscription, dict[Envelope, set[Client]]] = {}
        self._by_client: dict[Client, set[Subscription]] = {}
        self._data: dict[tuple[Subscription, str | None], bytes] = {}  # this height's bytes
        self._current: dict[tuple[Subscription, Envelope], OutgoingMessage | None] = {}
        self._updates: dict[str, bytes] = {}  # this block's l4Book Updates data per coin
        self.snapshots = Snapshots(self._l4_snapshot_data)
        self._data_height: int | None = None
        self._last: dict[Subscription, Any] = {}  # last published view content
        self._coins: set[str] = set()
        self._status: dict[str, Any] | None = None
        self.round = Round()
        self.metrics = FeedMetrics(metrics, self)

    # -- connections ---------------------------------------------------------
    def admit(self, connection: Any) -> bool:
        """Count a new connection; False when max_connections is reached."""
        if len(self.connections) >= self.ws.max_connections:
            self.metrics.rejected.inc(1, "max_connections")
            return False
        self.connections.add(connection)
        return True

    def remove(self, connection: Any) -> None:
        """Forget a closed connection and all its subscriptions."""
        self.connections.discard(connection)
        for sub in self._by_client.pop(connection, set()):
            self._discard(connection, sub)

    def connection_count(self) -> int:
        return len(self.connections)

    def subscription_count(self) -> int:
        return sum(len(subs) for subs in self._by_client.values())

    def view_count(self) -> int:
        return len(self._subscribers)

    # -- subscriptions ---------------------------------------------------------
    def subscribe(self, client: Client, sub: Subscription) -> None:
        """Add ``sub`` for ``client`` (SubscriptionError: already, too many, unknown coin)."""
        subs = self._by_client.setdefault(client, set())
        if sub in subs:
            raise SubscriptionError(f"Already subscribed: {_describe(sub)}")
        if len(subs) >= self.ws.max_subscriptions:
            raise SubscriptionError(
                f"Too many subscriptions: at most {self.ws.max_subscriptions} per connection"
            )
        if sub.channel in COIN_CHANNELS and not self.known_coin(sub.coin):
            raise SubscriptionError(f"Invalid subscription: unknown coin {sub.coin!r}")
        if sub.dex is not None and not self.known_dex(sub.dex):
            raise SubscriptionError(_unknown_dex(sub.dex))
        if sub not in self._subscribers and len(self._subscribers) >= self.ws.max_views:
            self.metrics.views_refused.inc()
            raise SubscriptionError(
                f"Too many distinct views on this server (max_views {self.ws.max_views}):"
                " subscribe to one already in use"
            )
        subs.add(sub)
        by_envelope = self._subscribers.setdefault(sub, {})
        by_envelope.setdefault(client.envelope, set()).add(client)

    def unsubscribe(self, client: Client, sub: Subscription) -> None:
        """Remove ``sub`` for ``client`` (SubscriptionError when not subscribed)."""
        subs = self._by_client.get(client)
        if not subs or sub not in subs:
            raise SubscriptionError(f"Already unsubscribed: {_describe(sub)}")
        subs.discard(sub)
        self._discard(client, sub)

    def subscriptions_of(self, client: Client) -> frozenset[Subscription]:
        return frozenset(self._by_client.get(client, ()))

    def _discard(self, client: Client, sub: Subscription) -> None:
        by_envelope = self._subscribers.get(sub)
        if by_envelope is None:
            return
        clients = by_envelope.get(client.envelope)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del by_envelope[client.envelope]
        if not by_envelope:
            del self._subscribers[sub]
            self._last.pop(sub, None)

    def known_coin(self, coin: str | None) -> bool:
        """True for a coin the book has, or for any coin while the book is not ready."""
        if self.books.height is None:
            return True
        if coin in self._coins:
            return True
        self._coins = set(self.books.coins())
        return coin in self._coins

    def known_dex(self, dex: str) -> bool:
        """True for a dex of the book's coins, or for any dex while the book is not ready."""
        return self.books.height is None or self.books.knows_dex(dex)

    # -- current views ---------------------------------------------------------
    def send_current(self, client: Client, sub: Subscription) -> None:
        """Send ``client`` the current view of ``sub`` (nothing for trades or before ready)."""
        if sub.channel == "trades":
            return
        height = self.books.height
        if height is None and sub.channel != "status":
            return  # books_reset sends it once the book is ready
        if sub.channel == "l4Book" and getattr(client.envelope, "shareable", False):
            shared = self.snapshots.get(sub, height)
            for message in shared.messages(client.envelope):
                self._count(sub, 1, client.deliver(sub, message))
            return
        message = self.current_message(sub, client.envelope)
        if message is not None:
            self._count(sub, 1, client.deliver(sub, message))

    def current_message(self, sub: Subscription, envelope: Envelope) -> OutgoingMessage | None:
        """The current view of ``sub`` wrapped by ``envelope``, shared within a height."""
        self._check_height()
        key = (sub, envelope)
        if key in self._current:
            return self._current[key]
        part = "Snapshot" if sub.channel == "l4Book" else None
        message = envelope.wrap(sub, self.current_data(sub), part)
        if sub.channel != "status" and getattr(envelope, "shareable", False):
            self._current[key] = message
        return message

    def _l4_snapshot_data(self, sub: Subscription) -> bytes:
        return messages.encode(messages.view_data(self.books, sub)["Snapshot"])

    def _check_height(self) -> None:
        if self._data_height != self.books.height:
            self._data.clear()
            self._current.clear()
            self._data_height = self.books.height

    def current_data(self, sub: Subscription) -> bytes:
        """The encoded current ``data`` of a snapshot-type view (inner for l4Book)."""
        self._check_height()
        key = (sub, None)
        data = self._data.get(key)
        if data is None:
            if sub.channel == "status":
                return messages.encode(self.status())
            view = messages.view_data(self.books, sub)
            if sub.channel == "l4Book":
                view = view["Snapshot"]
            else:
                self._last[sub] = _content(sub, view)
            data = self._data[key] = messages.encode(view)
        return data

    def status(self) -> dict[str, Any]:
        """The ingest status document (latest pushed, else asked for)."""
        if self.status_provider is not None:
            return self.status_provider()
        return self._status if self._status is not None else {"state": "initializing"}

    # -- ingest interface --------------------------------------------------------
    def block_applied(self, result: BlockResult) -> None:
        """Publish what ``result`` changed to the subscribers of each changed view."""
        if self.books.height is None:
            return
        self._updates.clear()
        try:
            self.snapshots.block_applied(result.height, lambda coin: self._l4_update(coin, result))
        except Exception:
            self._log.failure("keeping l4Book updates at {height} failed", height=result.height)
            self.snapshots.forget()
        with self.round:
            for sub in list(self._subscribers):
                try:
                    self._publish_block(sub, result)
                except Exception:
                    self._log.failure(
                        "publishing {sub} at {height} failed", sub=sub, height=result.height
                    )

    def _l4_update(self, coin: str, result: BlockResult) -> bytes:
        """The encoded l4Book Updates data of ``coin`` in this block (once per block)."""
        data = self._updates.get(coin)
        if data is None:
            update = messages.l4_updates_data(
                coin, result.height, result.time_ms, result.updates.get(coin)
            )
            data = self._updates[coin] = messages.encode(update["Updates"])
        return data

    def _publish_block(self, sub: Subscription, result: BlockResult) -> None:
        channel = sub.channel
        if channel == "l4Book":
            self._fan_out(sub, self._l4_update(sub.coin, result), "Updates")
        elif channel == "trades":
            trades = result.trades.get(sub.coin)
            if trades:
                self._fan_out(sub, messages.encode(trades), None)
        elif self._view_changed(sub, result):
            self._fan_out(sub, self.current_data(sub), None)

    def _view_changed(self, sub: Subscription, result: BlockResult) -> bool:
        channel = sub.channel
        if channel == "l2Book":
            touched = sub.coin in result.changed
        elif channel == "bbo":
            touched = sub.coin in result.bbo_changed or sub.coin in result.changed
        elif channel == "allMids":
            touched = result.mids_changed
        else:
            return False
        if not touched:
            return False
        before = self._last.get(sub)
        return before is None or _content(sub, messages.view_data(self.books, sub)) != before

    def books_reset(self, coins: set[str]) -> None:
        """Fresh state for ``coins``: send every snapshot-type view of them again."""
        self._data.clear()
        self._current.clear()
        self.snapshots.forget(coins)
        self._coins = set(self.books.coins())
        with self.round:
            for sub in list(self._subscribers):
                try:
                    self._reset_one(sub, coins)
                except Exception:
                    self._log.failure("re-sending {sub} after reset failed", sub=sub)

    def _reset_one(self, sub: Subscription, coins: set[str]) -> None:
        if sub.coin is not None and sub.coin not in self._coins:
            self._reject(sub, f"Invalid subscription: unknown coin {sub.coin!r}")
            return
        if sub.dex is not None and not self.known_dex(sub.dex):
            self._reject(sub, _unknown_dex(sub.dex))
            return
        if sub.channel in ("trades", "status"):
            return
        touched = bool(coins) if sub.coin is None else sub.coin in coins
        if not touched:
            return
        self._last.pop(sub, None)
        if sub.channel == "l4Book" and self.books.height is not None:
            self._fan_out(sub, self.snapshots.get(sub, self.books.height).snapshot, "Snapshot")
        else:
            self._fan_out(sub, self.current_data(sub), None)

    def _reject(self, sub: Subscription, text: str) -> None:
        for clients in list(self._subscribers.get(sub, {}).values()):
            for client in list(clients):
                self._by_client.get(client, set()).discard(sub)
                self._discard(client, sub)
                client.subscription_failed(sub, text)

    def state_changed(self, status: dict[str, Any]) -> None:
        """Push the status document to ``status`` subscribers."""
        self._status = status
        sub = Subscription("status")
        if sub in self._subscribers:
            with self.round:
                self._fan_out(sub, messages.encode(status), None)

    # -- fan-out -------------------------------------------------------------------
    def _fan_out(self, sub: Subscription, data: bytes, part: str | None) -> None:
        sent = size = 0
        for envelope, clients in list(self._subscribers.get(sub, {}).items()):
            message = envelope.wrap(sub, data, part)
            if message is None:
                continue
            for client in list(clients):
                size += client.deliver(sub, message)
                sent += 1
        self._count(sub, sent, size)

    def _count(self, sub: Subscription, sent: int, size: int) -> None:
        self.metrics.messages.inc(sent, sub.channel)
        self.metrics.bytes.inc(size, sub.channel)


def _content(sub: Subscription, view: dict[str, Any]) -> Any:
    """The part of a view whose change is worth a message (not its time/height)."""
    if sub.channel == "l2Book":
        return view["levels"]
    if sub.channel == "bbo":
        return view["bbo"]
    return view.get("mids", view)


def _unknown_dex(dex: str) -> str:
    return f"Invalid subscription: unknown dex {dex if len(dex) <= 40 else dex[:40] + '...'!r}"


def _describe(sub: Subscription) -> str:
    fields: dict[str, Any] = {"type": sub.channel}
    if sub.coin is not None:
        fields["coin"] = sub.coin
    if sub.channel == "l2Book":
        fields.update(nSigFigs=sub.n_sig_figs, mantissa=sub.mantissa, nLevels=sub.n_levels)
    if sub.dex is not None:
        fields["dex"] = sub.dex
    return messages.encode(fields).decode()

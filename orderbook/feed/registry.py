"""Publishing after every block: each changed view built once, sent to every subscriber.

The ingest service calls, in the reactor thread::

    block_applied(result)   after every block
    trades_paired(trades)   trades paired from the node's fills (after their block)
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

Who is subscribed is :class:`~orderbook.feed.subscribers.Subscribers`; the
current content of each view, encoded once per height, is
:class:`~orderbook.feed.current.CurrentViews`; the counters are
:class:`~orderbook.feed.metrics.FeedMetrics`. The registry publishes.

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
from typing import Any

from twisted.logger import Logger

from orderbook.book.books import BlockResult, Books
from orderbook.config import WebSocketSettings
from orderbook.feed import messages
from orderbook.feed.current import CurrentViews
from orderbook.feed.frames import OutgoingMessage, Round
from orderbook.feed.snapshots import Snapshots
from orderbook.feed.subscribers import Client, Envelope, Subscribers, unknown_dex
from orderbook.feed.subscriptions import Subscription
from orderbook.metrics import Metrics

__all__ = ["CHANNEL_ENVELOPE", "ChannelEnvelope", "Client", "Envelope", "Registry"]


class ChannelEnvelope:
    """Hyperliquid's ``{"channel": …, "data": …}``."""

    shareable = True  # wrap() depends only on its arguments: results may be cached

    def wrap(self, sub: Subscription, data: bytes, part: str | None) -> OutgoingMessage:
        if part is not None:
            data = b'{"' + part.encode() + b'":' + data + b"}"
        return OutgoingMessage(messages.envelope(sub.channel, data))


CHANNEL_ENVELOPE = ChannelEnvelope()


class Registry:
    """Publishes the book's views to their subscribers after every block."""

    _log = Logger()

    def __init__(
        self,
        books: Books,
        ws: WebSocketSettings,
        metrics: Metrics,
        reactor: Any = None,
        status_provider: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._books = books
        self.ws = ws
        self.status_provider = status_provider
        self._status: dict[str, Any] | None = None
        self.views = CurrentViews(books, self.status)
        self.subscribers = Subscribers(books, ws, metrics, self.views.forget)
        self.connections = self.subscribers.connections
        self.metrics = self.subscribers.metrics
        self._subscribers = self.subscribers.by_view  # the fan-out walks it directly
        self._updates: dict[str, bytes] = {}  # this block's l4Book Updates data per coin
        self.snapshots = Snapshots(self._l4_snapshot_data)
        self.round = Round()

    @property
    def books(self) -> Books:
        return self._books

    @books.setter
    def books(self, books: Books) -> None:
        """Publish another book's views (subscribers and caches follow)."""
        self._books = self.views.books = self.subscribers.books = books

    # -- connections and subscriptions (orderbook.feed.subscribers) --------------
    def admit(self, connection: Any) -> bool:
        """Count a new connection; False when max_connections is reached."""
        return self.subscribers.admit(connection)

    def remove(self, connection: Any) -> None:
        """Forget a closed connection and all its subscriptions."""
        self.subscribers.remove(connection)

    def subscribe(self, client: Client, sub: Subscription) -> None:
        """Add ``sub`` for ``client`` (SubscriptionError: already, too many, unknown coin)."""
        self.subscribers.subscribe(client, sub)

    def unsubscribe(self, client: Client, sub: Subscription) -> None:
        """Remove ``sub`` for ``client`` (SubscriptionError when not subscribed)."""
        self.subscribers.unsubscribe(client, sub)

    def subscriptions_of(self, client: Client) -> frozenset[Subscription]:
        return self.subscribers.subscriptions_of(client)

    def known_coin(self, coin: str | None) -> bool:
        """True for a coin the book has, or for any coin while the book is not ready."""
        return self.subscribers.known_coin(coin)

    def known_dex(self, dex: str) -> bool:
        """True for a dex of the book's coins, or for any dex while the book is not ready."""
        return self.subscribers.known_dex(dex)

    def connection_count(self) -> int:
        return self.subscribers.connection_count()

    def subscription_count(self) -> int:
        return self.subscribers.subscription_count()

    def view_count(self) -> int:
        return self.subscribers.view_count()

    # -- current views (orderbook.feed.current) ------------------------------------
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
        message = self.views.message(sub, client.envelope)
        if message is not None:
            self._count(sub, 1, client.deliver(sub, message))

    def current_message(self, sub: Subscription, envelope: Envelope) -> OutgoingMessage | None:
        """The current view of ``sub`` wrapped by ``envelope``, shared within a height."""
        return self.views.message(sub, envelope)

    def current_data(self, sub: Subscription) -> bytes:
        """The encoded current ``data`` of a snapshot-type view (inner for l4Book)."""
        return self.views.data(sub)

    def _l4_snapshot_data(self, sub: Subscription) -> list[bytes]:
        return self.books.l4_snapshot_pieces(sub.coin)

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
        elif channel != "trades" and self.views.changed(sub, result):
            self._fan_out(sub, self.views.data(sub), None)

    def trades_paired(self, trades: dict[str, list[dict[str, Any]]]) -> None:
        """Publish ``trades`` (coin -> its trades, in order) to each coin's subscribers.

        Trades do not depend on the book: ingestion hands each over once, in
        order, after its block while the book is live and as read while it
        bootstraps or resyncs (orderbook.node.tape).
        """
        with self.round:
            for coin, coin_trades in trades.items():
                sub = Subscription("trades", coin)
                if coin_trades and sub in self._subscribers:
                    try:
                        self._fan_out(sub, messages.encode(coin_trades), None)
                    except Exception:
                        self._log.failure("publishing trades of {coin} failed", coin=coin)

    def books_reset(self, coins: set[str]) -> None:
        """Fresh state for ``coins``: send every snapshot-type view of them again."""
        self.views.clear()
        self.snapshots.forget(coins)
        self.subscribers.coins = set(self.books.coins())
        with self.round:
            for sub in list(self._subscribers):
                try:
                    self._reset_one(sub, coins)
                except Exception:
                    self._log.failure("re-sending {sub} after reset failed", sub=sub)

    def _reset_one(self, sub: Subscription, coins: set[str]) -> None:
        if sub.coin is not None and sub.coin not in self.subscribers.coins:
            self._reject(sub, f"Invalid subscription: unknown coin {sub.coin!r}")
            return
        if sub.dex is not None and not self.known_dex(sub.dex):
            self._reject(sub, unknown_dex(sub.dex))
            return
        if sub.channel in ("trades", "status"):
            return
        touched = bool(coins) if sub.coin is None else sub.coin in coins
        if not touched:
            return
        self.views.forget(sub)
        if sub.channel == "l4Book" and self.books.height is not None:
            self._fan_out(sub, self.snapshots.get(sub, self.books.height).snapshot, "Snapshot")
        else:
            self._fan_out(sub, self.views.data(sub), None)

    def _reject(self, sub: Subscription, text: str) -> None:
        for client in self.subscribers.drop(sub):
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

"""Who is subscribed to what: connections, their subscriptions, the limits on both.

:class:`Subscribers` is the feed's bookkeeping; the registry
(orderbook.feed.registry) publishes to the clients it holds.
``by_view[sub][envelope]`` is the set of clients of one view that share one
envelope kind: the fan-out walks it directly, so it is one dict for the
object's lifetime (never rebound).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from orderbook.book.books import Books
from orderbook.config import WebSocketSettings
from orderbook.feed import messages
from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.metrics import FeedMetrics
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


class Subscribers:
    """Connections and subscriptions, checked against max_connections/_subscriptions/_views."""

    def __init__(
        self,
        books: Books,
        ws: WebSocketSettings,
        metrics: Metrics,
        view_dropped: Callable[[Subscription], None],
    ) -> None:
        self.books = books
        self.ws = ws
        self.view_dropped = view_dropped  # the last client of a view left
        self.connections: set[Any] = set()
        self.by_view: dict[Subscription, dict[Envelope, set[Client]]] = {}
        self.by_client: dict[Client, set[Subscription]] = {}
        self.coins: set[str] = set()  # the book's coins when last asked
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
        for sub in self.by_client.pop(connection, set()):
            self._discard(connection, sub)

    def connection_count(self) -> int:
        return len(self.connections)

    def subscription_count(self) -> int:
        return sum(len(subs) for subs in self.by_client.values())

    def view_count(self) -> int:
        return len(self.by_view)

    # -- subscriptions ---------------------------------------------------------
    def subscribe(self, client: Client, sub: Subscription) -> None:
        """Add ``sub`` for ``client`` (SubscriptionError: already, too many, unknown coin)."""
        subs = self.by_client.setdefault(client, set())
        if sub in subs:
            raise SubscriptionError(f"Already subscribed: {_describe(sub)}")
        if len(subs) >= self.ws.max_subscriptions:
            raise SubscriptionError(
                f"Too many subscriptions: at most {self.ws.max_subscriptions} per connection"
            )
        if sub.channel in COIN_CHANNELS and not self.known_coin(sub.coin):
            raise SubscriptionError(f"Invalid subscription: unknown coin {sub.coin!r}")
        if sub.dex is not None and not self.known_dex(sub.dex):
            raise SubscriptionError(unknown_dex(sub.dex))
        if sub not in self.by_view and len(self.by_view) >= self.ws.max_views:
            self.metrics.views_refused.inc()
            raise SubscriptionError(
                f"Too many distinct views on this server (max_views {self.ws.max_views}):"
                " subscribe to one already in use"
            )
        subs.add(sub)
        by_envelope = self.by_view.setdefault(sub, {})
        by_envelope.setdefault(client.envelope, set()).add(client)

    def unsubscribe(self, client: Client, sub: Subscription) -> None:
        """Remove ``sub`` for ``client`` (SubscriptionError when not subscribed)."""
        subs = self.by_client.get(client)
        if not subs or sub not in subs:
            raise SubscriptionError(f"Already unsubscribed: {_describe(sub)}")
        subs.discard(sub)
        self._discard(client, sub)

    def drop(self, sub: Subscription) -> list[Client]:
        """Remove ``sub`` from every client that has it; return those clients."""
        dropped = []
        for clients in list(self.by_view.get(sub, {}).values()):
            for client in list(clients):
                self.by_client.get(client, set()).discard(sub)
                self._discard(client, sub)
                dropped.append(client)
        return dropped

    def subscriptions_of(self, client: Client) -> frozenset[Subscription]:
        return frozenset(self.by_client.get(client, ()))

    def _discard(self, client: Client, sub: Subscription) -> None:
        by_envelope = self.by_view.get(sub)
        if by_envelope is None:
            return
        clients = by_envelope.get(client.envelope)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del by_envelope[client.envelope]
        if not by_envelope:
            del self.by_view[sub]
            self.view_dropped(sub)

    # -- what exists -------------------------------------------------------------
    def known_coin(self, coin: str | None) -> bool:
        """True for a coin the book has, or for any coin while the book is not ready."""
        if self.books.height is None:
            return True
        if coin in self.coins:
            return True
        self.coins = set(self.books.coins())
        return coin in self.coins

    def known_dex(self, dex: str) -> bool:
        """True for a dex of the book's coins, or for any dex while the book is not ready."""
        return self.books.height is None or self.books.knows_dex(dex)


def unknown_dex(dex: str) -> str:
    """The error text for an unknown dex (long names cut to 40 characters)."""
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

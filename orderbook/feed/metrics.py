"""The feed's counters and gauges in the shared :class:`~orderbook.metrics.Metrics`."""

from __future__ import annotations

from typing import Protocol

from orderbook.metrics import Metrics


class Counts(Protocol):
    """What the feed's gauges read."""

    def connection_count(self) -> int: ...

    def subscription_count(self) -> int: ...

    def view_count(self) -> int: ...


class FeedMetrics:
    """The feed's metrics: connections, subscriptions, views, what was sent, who was refused."""

    def __init__(self, metrics: Metrics, counts: Counts) -> None:
        self.connections = metrics.gauge(
            "orderbook_ws_connections", "Open WebSocket connections", read=counts.connection_count
        )
        self.subscriptions = metrics.gauge(
            "orderbook_ws_subscriptions",
            "Active subscriptions over all connections",
            read=counts.subscription_count,
        )
        self.messages = metrics.counter(
            "orderbook_ws_messages_sent_total", "Messages sent or queued per channel", ["channel"]
        )
        self.bytes = metrics.counter(
            "orderbook_ws_bytes_sent_total", "Frame bytes sent or queued per channel", ["channel"]
        )
        self.views = metrics.gauge(
            "orderbook_ws_views", "Distinct views subscribed to", read=counts.view_count
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

"""The broker side of one WAMP session: its topics, and the feed registry's Client for them.

SUBSCRIBE joins the feed registry's subscription of the topic (one
subscription id per topic, shared by every session, so one EVENT per topic
and block reaches all); UNSUBSCRIBE leaves it; the registry delivers events
through :meth:`Broker.deliver` and revokes a topic (its coin is gone) through
:meth:`Broker.subscription_failed`. Clients may not publish here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from autobahn.wamp import message

from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.subscriptions import COIN_CHANNELS, Subscription, SubscriptionError
from orderbook.server.wamp.calls import Link
from orderbook.server.wamp.errors import (
    INVALID_ARGUMENT,
    INVALID_URI,
    NO_SUCH_SUBSCRIPTION,
    NOT_AUTHORIZED,
    TOO_MANY_SUBSCRIPTIONS,
    WampError,
)
from orderbook.server.wamp.uri import InvalidTopic, parse_topic

if TYPE_CHECKING:
    from orderbook.server.wamp.session import WampHub


class Broker:
    """One session's subscriptions (subscription id -> topic); the registry's Client."""

    def __init__(self, hub: WampHub, link: Link, send: Callable[[message.Message], None]) -> None:
        self.hub = hub
        self.link = link
        self._send = send  # a WAMP reply to this session
        self.envelope = hub.envelope
        self.topics: dict[int, Subscription] = {}  # subscription id -> topic

    def subscribe(self, msg: message.Subscribe) -> None:
        """SUBSCRIBED with the topic's shared id (and its current view if ``get_retained``)."""
        if msg.match not in (None, "exact"):
            raise WampError(
                INVALID_ARGUMENT, f"match policy {msg.match!r} is not offered (exact only)"
            )
        sub = _topic(msg.topic)
        sub_id = self.envelope.subscription_id(sub)
        if sub_id is None or self.topics.get(sub_id) != sub:
            self._check_new(sub)
            try:
                self.hub.registry.subscribe(self, sub)
            except SubscriptionError as exc:
                raise WampError(INVALID_URI, str(exc)) from None
            sub_id = self.envelope.acquire(sub)
            self.topics[sub_id] = sub
        self._send(message.Subscribed(msg.request, sub_id))
        if msg.get_retained and sub.channel not in ("trades", "l4Book"):
            self._send_retained(sub)

    def _check_new(self, sub: Subscription) -> None:
        limit = self.hub.registry.ws.max_subscriptions
        if len(self.topics) >= limit:
            raise WampError(TOO_MANY_SUBSCRIPTIONS, f"at most {limit} subscriptions per session")
        if sub.channel in COIN_CHANNELS and not self.hub.registry.known_coin(sub.coin):
            raise WampError(INVALID_URI, f"unknown coin {sub.coin!r}")

    def _send_retained(self, sub: Subscription) -> None:
        registry = self.hub.registry
        if sub.channel != "status" and registry.books.height is None:
            return
        data = registry.current_data(sub)
        self.link.send(self.envelope.retained(sub, data), key=sub, lossless=True)

    def unsubscribe(self, msg: message.Unsubscribe) -> None:
        """UNSUBSCRIBED (ERROR no_such_subscription for an id this session does not hold)."""
        sub = self.topics.pop(msg.subscription, None)
        if sub is None:
            raise WampError(NO_SUCH_SUBSCRIPTION, f"no subscription {msg.subscription}")
        self._forget(sub)
        self._send(message.Unsubscribed(msg.request))

    def publish(self, msg: message.Publish) -> None:
        """Refused: ERROR when acknowledged, else only counted (WAMP has no reply)."""
        if msg.acknowledge:
            raise WampError(NOT_AUTHORIZED, "clients may not publish here")
        self.hub.metrics.errors.inc(1, NOT_AUTHORIZED)

    def leave_all(self) -> None:
        """Leave every topic (the session is over)."""
        for sub in self.topics.values():
            self._forget(sub)
        self.topics.clear()

    def _forget(self, sub: Subscription) -> None:
        with contextlib.suppress(SubscriptionError):  # the registry may have dropped it
            self.hub.registry.unsubscribe(self, sub)
        self.envelope.release(sub)

    # -- Client interface for the feed registry -----------------------------------
    def deliver(self, sub: Subscription, msg: OutgoingMessage) -> int:
        """Send one EVENT built by the envelope."""
        return self.link.send(msg, key=sub, lossless=sub.lossless)

    def subscription_failed(self, sub: Subscription, text: str) -> None:
        """The registry revoked ``sub``: UNSUBSCRIBED with the subscription and reason."""
        sub_id = self.envelope.subscription_id(sub)
        if sub_id is None or self.topics.pop(sub_id, None) is None:
            return
        self.envelope.release(sub)
        self._send(message.Unsubscribed(0, subscription=sub_id, reason=INVALID_URI))


def _topic(uri: str) -> Subscription:
    try:
        return parse_topic(uri)
    except InvalidTopic as exc:
        raise WampError(INVALID_URI, str(exc)) from None

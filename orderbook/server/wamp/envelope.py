"""One WAMP EVENT per topic and block, shared by every subscriber of the topic.

Every subscriber of a topic shares the topic's one subscription id (as WAMP
routers do), so :class:`WampEnvelope` wraps a view's encoded ``data`` in ONE
``EVENT`` message, which the feed registry hands to every WAMP subscriber
through the same Outbox as the JSON channels.
"""

from __future__ import annotations

import itertools
from typing import Any

from autobahn.util import id as random_id

from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.subscriptions import Subscription


class WampEnvelope:
    """WAMP EVENTs for the feed registry: one shared subscription id per topic.

    ``acquire``/``release`` count a topic's WAMP subscribers; its id lives as
    long as it has any. ``wrap`` is the registry's envelope seam.
    """

    def __init__(self) -> None:
        self._ids: dict[Subscription, int] = {}
        self._refs: dict[Subscription, int] = {}
        self._publications = itertools.count(1)
        self.events_built = 0

    def acquire(self, sub: Subscription) -> int:
        """One more subscriber of ``sub``: its subscription id."""
        if sub not in self._ids:
            self._ids[sub] = _new_id(self._ids.values())
        self._refs[sub] = self._refs.get(sub, 0) + 1
        return self._ids[sub]

    def release(self, sub: Subscription) -> None:
        """One subscriber of ``sub`` fewer."""
        count = self._refs.get(sub, 0) - 1
        if count > 0:
            self._refs[sub] = count
        else:
            self._refs.pop(sub, None)
            self._ids.pop(sub, None)

    def subscription_id(self, sub: Subscription) -> int | None:
        return self._ids.get(sub)

    def wrap(self, sub: Subscription, data: bytes, part: str | None) -> OutgoingMessage | None:
        """EVENT with ``args[0] = data``; an l4Book Snapshot also gets kwargs ``part``."""
        sub_id = self._ids.get(sub)
        if sub_id is None:
            return None
        extra = b',{"part":"Snapshot"}' if part == "Snapshot" else b""
        return self._event(sub_id, b"{}", data, extra)

    def retained(self, sub: Subscription, data: bytes) -> OutgoingMessage:
        """The current view for one new subscriber that asked ``get_retained``."""
        return self._event(self._ids[sub], b'{"retained":true}', data, b"")

    def _event(self, sub_id: int, details: bytes, data: bytes, extra: bytes) -> OutgoingMessage:
        self.events_built += 1
        head = b"[36,%d,%d," % (sub_id, next(self._publications))
        return OutgoingMessage(head + details + b",[" + data + b"]" + extra + b"]")


def _new_id(taken: Any) -> int:
    used = set(taken)
    while True:
        candidate = random_id()
        if candidate not in used:
            return candidate

"""The WebSocket side of WAMP: a FeedProtocol whose messages go to a WampSession.

The Site's ``SubprotocolSwitch`` routes a handshake that offers
``wamp.2.json`` to :class:`WampFactory`; everything else about the
connection is the JSON API's: admission (``max_connections``), the rate
limit, the idle timeout (here also reset by WebSocket pongs, since WAMP
clients send nothing while they only listen), frame and message size
limits, compression and the Outbox send path with its slow-consumer rules.
:class:`PacedLink` stands in front of the Outbox as the transport's producer
so that a result in parts goes out one part each time the client has read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Any

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from orderbook.config import WebSocketSettings
from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.registry import Registry
from orderbook.server.outbox import Outbox
from orderbook.server.protocol import FeedFactory, FeedProtocol
from orderbook.server.site import protocol_options
from orderbook.server.wamp.auth import upgrade_token
from orderbook.server.wamp.session import SUBPROTOCOL, WampHub, WampSession


@implementer(IPushProducer)
class PacedLink:
    """A session's link: sends through the connection's Outbox and, as the
    transport's producer in front of it, runs callbacks waiting for a resume."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._waiting: list[Callable[[], None]] = []

    def attach(self, transport: Any) -> None:
        """Take the Outbox's place as the transport's producer."""
        with contextlib.suppress(RuntimeError):
            transport.unregisterProducer()
        transport.registerProducer(self, True)

    def send(self, message: OutgoingMessage, key: Hashable = None, lossless: bool = True) -> int:
        return self.outbox.send(message, key, lossless)

    def writable(self) -> bool:
        return not self.outbox.paused and not self.outbox.closed

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._waiting.append(callback)

    def pauseProducing(self) -> None:
        self.outbox.pauseProducing()

    def resumeProducing(self) -> None:
        self.outbox.resumeProducing()
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()  # each checks writable() again and waits anew if paused

    def stopProducing(self) -> None:
        self._waiting.clear()
        self.outbox.stopProducing()


class WampProtocol(FeedProtocol):
    """One WAMP client connection, carrying a :class:`WampSession` (its Broker subscribes)."""

    factory: WampFactory
    session: WampSession | None = None
    _upgrade_token: str | None = None

    def onConnect(self, request: ConnectionRequest) -> str:
        if SUBPROTOCOL not in request.protocols:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, f"offer subprotocol {SUBPROTOCOL}")
        super().onConnect(request)
        self._upgrade_token = upgrade_token(request.headers, request.params)
        return SUBPROTOCOL

    def onOpen(self) -> None:
        super().onOpen()
        try:
            assert self.outbox is not None
            link = PacedLink(self.outbox)
            link.attach(self.transport)
            hub = self.factory.hub
            self.session = hub.open(link, self.close_if_open, self.peer, self._upgrade_token)
        except Exception:
            self._log.failure("WAMP onOpen failed for {peer}", peer=self.peer)
            raise

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not self._within_rate():
            return
        self._touch()
        if self.session is not None:
            self.session.on_message(payload, isBinary)

    def onPong(self, payload: bytes) -> None:
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.factory.ws.idle_timeout_s)

    def revoke(self, code: int, reason: str) -> bool:
        """Its upgrade token was revoked: end the session (GOODBYE, see
        :meth:`WampSession.revoke`) and the connection (False if both had ended)."""
        if self.session is not None and self.session.revoke(code, reason):
            return True
        return self.close_if_open(code, reason)

    def forget(self) -> None:
        if self.session is not None:
            self.session.connection_lost()
        super().forget()


class WampFactory(FeedFactory):
    """Builds :class:`WampProtocol` connections sharing one :class:`WampHub`."""

    protocol = WampProtocol

    def __init__(
        self, hub: WampHub, registry: Registry, ws: WebSocketSettings, clock: Any, **kwargs: Any
    ) -> None:
        super().__init__(registry, ws, clock, protocols=[SUBPROTOCOL], **kwargs)
        self.hub = hub

    @property
    def ticket_auth(self) -> bool:
        """True when sessions check tickets: the site may then let a WAMP upgrade
        without a token through (a wrong token is still refused there)."""
        return self.hub.tokens.enabled


def make_wamp_factory(hub: WampHub, ws: WebSocketSettings, clock: Any) -> WampFactory:
    """The factory to pass as ``make_site(..., wamp_factory=...)``."""
    factory = WampFactory(hub, hub.registry, ws, clock)
    factory.setProtocolOptions(**protocol_options(ws))
    return factory

"""The Crossbar publisher: our topics and procedures in an external Crossbar.io router.

With ``[wamp] router_url`` set, the server joins that router's
``router_realm`` as one more WAMP session (anonymous, ticket or cryptosign),
publishes the same topics as its own broker and registers the same
procedures; browsers then connect to the router farm instead of to us::

    node -> orderbook server --(one session, publish + register)--> Crossbar router(s)
                 |                                                     |   |   |
            direct clients                                       many browsers

Only topics somebody is subscribed to on the router are published: the
router's subscription meta API (``wamp.subscription.on_create/on_delete``,
``list``, ``get``) tells us which, so our role there needs ``subscribe`` on
``wamp.subscription.`` and ``call`` on ``wamp.subscription.``. Without those
rights we fall back to a fixed set (status, allmids, and bbo, trades and the
default l2book of every coin). Views are computed by a private feed
:class:`Registry` (build once per view and block, same change detection as
the direct clients).

A router that is down or slow never delays ingestion or direct clients:
publications are not acknowledged, and are dropped (and counted) while the
router connection is absent or its transport is paused (more than ~64 KiB
unsent). The connection is retried with exponential backoff (1 s .. 30 s).

Each procedure is registered on its own: one the router refuses (e.g.
``wamp.error.procedure_already_exists`` from a second instance) is reported
in /health (``router.registration_errors``) and the rest, and publishing, go
on. ``orderbook.l4book.snapshot`` honours ``receive_progress`` as on the
direct endpoint. A ticket is never sent over plain ``ws://`` unless
``allow_plaintext_ticket`` says so: the publisher then stays disconnected and
/health says why.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

import msgspec
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import ComponentConfig, PublishOptions
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IPushProducer
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from zope.interface import implementer

from orderbook.book.books import BlockResult, Books
from orderbook.config import WampSettings, WebSocketSettings
from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.registry import Registry
from orderbook.feed.subscriptions import Subscription, SubscriptionError
from orderbook.metrics import Metrics
from orderbook.server.wamp.crossbar import CrossbarSession, plaintext_ticket_refusal
from orderbook.server.wamp.procedures import Procedures
from orderbook.server.wamp.uri import InvalidTopic, parse_topic, topic_uri

INITIAL_RETRY_S = 1.0
MAX_RETRY_S = 30.0
_decode = msgspec.json.decode


class Publication(OutgoingMessage):
    """Encoded ``data`` for one topic (``part`` is set for an l4Book Snapshot)."""

    __slots__ = ("part",)

    def __init__(self, data: bytes, part: str | None) -> None:
        super().__init__(data)
        self.part = part


class PublisherEnvelope:
    """Keeps the encoded data as is; the router session publishes it."""

    def wrap(self, sub: Subscription, data: bytes, part: str | None) -> Publication:
        return Publication(data, part if part == "Snapshot" else None)


@implementer(IPushProducer)
class _Flow:
    """Tracks whether the router transport wants us to stop writing."""

    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True


class CrossbarPublisher(Service):
    """Joins the external router, publishes our topics there, serves our procedures.

    Chain it after the feed registry: it has the same listener methods
    (``block_applied``, ``trades_paired``, ``books_reset``, ``state_changed``).
    """

    _log = Logger()

    def __init__(
        self, settings: WampSettings, books: Books, metrics: Metrics, reactor: Any = None
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.reactor = reactor
        self.books = books
        self.envelope = PublisherEnvelope()
        self._status: dict[str, Any] = {"state": "initializing"}
        self.feed = Registry(
            books,
            replace(WebSocketSettings(), max_subscriptions=1_000_000),
            Metrics(),  # private: the lead's feed owns the orderbook_ws_* names
            reactor=reactor,
            status_provider=lambda: self._status,
        )
        self.procedures = Procedures(books, lambda: self._status, self.feed.known_coin)
        self.session: CrossbarSession | None = None
        self.flow = _Flow()
        self.topics: dict[int, Subscription] = {}  # router subscription id -> our view
        self.fallback = False
        self.connects = 0
        self.published = 0
        self.dropped = 0
        self.registered_procedures = 0
        self.registration_errors: dict[str, str] = {}  # procedure -> the router's error
        self.refused = plaintext_ticket_refusal(settings)
        self._service: ClientService | None = None
        self._metrics(metrics)

    def _metrics(self, metrics: Metrics) -> None:
        metrics.gauge(
            "orderbook_router_connected",
            "1 while joined to the external WAMP router",
            read=lambda: 1 if self.session is not None else 0,
        )
        self._published = metrics.counter(
            "orderbook_router_published_total", "Events published to the external router"
        )
        self._dropped = metrics.counter(
            "orderbook_router_dropped_total",
            "Events not published because the router was absent or not reading",
        )
        self._reconnects = metrics.counter(
            "orderbook_router_reconnects_total", "Joins to the router after the first"
        )

    # -- service ---------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        if self.refused:
            self._log.error("not joining WAMP router: {why}", why=self.refused)
            return
        factory = WampWebSocketClientFactory(
            self._new_session, url=self.settings.router_url, serializers=[JsonSerializer()]
        )
        factory.setProtocolOptions(autoPingInterval=10, autoPingTimeout=10, openHandshakeTimeout=10)
        self._service = ClientService(
            self._endpoint(),
            factory,
            retryPolicy=backoffPolicy(INITIAL_RETRY_S, MAX_RETRY_S),
            clock=self.reactor,
        )
        self._service.startService()
        self._log.info(
            "publishing to WAMP router {url} realm {realm}",
            url=self.settings.router_url,
            realm=self.settings.router_realm,
        )

    def stopService(self) -> Any:
        super().stopService()
        service, self._service = self._service, None
        if self.session is not None and self.session.is_attached():
            self.session.leave()
        return service.stopService() if service is not None else defer.succeed(None)

    def _endpoint(self) -> Any:
        url = urlparse(self.settings.router_url)
        secure = url.scheme == "wss"
        port = url.port or (443 if secure else 80)
        endpoint = HostnameEndpoint(self.reactor, url.hostname, port, timeout=10)
        if not secure:
            return endpoint
        trust = None
        if self.settings.router_ca_certificate is not None:
            trust = Certificate.loadPEM(self.settings.router_ca_certificate.read_bytes())
        return wrapClientTLS(optionsForClientTLS(url.hostname, trustRoot=trust), endpoint)

    def _new_session(self) -> CrossbarSession:
        return CrossbarSession(ComponentConfig(self.settings.router_realm), self)

    # -- session events ---------------------------------------------------------------
    def joined(self, session: CrossbarSession) -> None:
        """The session is on the router: watch its subscriptions, register procedures."""
        self.connects += 1
        if self.connects > 1:
            self._reconnects.inc()
        self.session = session
        self.flow.paused = False
        transport = getattr(session._transport, "transport", None)
        if transport is not None:
            transport.registerProducer(self.flow, True)
        self._log.info("joined WAMP router {url}", url=self.settings.router_url)

    def registered(self, count: int, errors: dict[str, str]) -> None:
        """``count`` procedures are registered; ``errors``: procedure -> the router's error."""
        self.registered_procedures = count
        self.registration_errors = errors
        for name, error in errors.items():
            self._log.warn(
                "router refused to register {procedure}: {error} (publishing goes on)",
                procedure=name,
                error=error,
            )

    def left(self) -> None:
        """The router session ended; topics stay (their events count as dropped) until
        the next join lists the router's subscriptions again."""
        if self.session is not None:
            self._log.warn("left WAMP router {url}", url=self.settings.router_url)
        self.session = None
        self.registered_procedures = 0
        self.registration_errors = {}

    def resync_started(self) -> dict[int, Subscription]:
        """A new session: router subscription ids start afresh; returns the old map."""
        old, self.topics = self.topics, {}
        return old

    def resync_done(self, old: dict[int, Subscription]) -> None:
        """Stop publishing topics that nobody subscribes to on the router any more."""
        current = set(self.topics.values())
        for sub in set(old.values()) - current:
            self._unwatch(sub)

    def watch(self, router_sub_id: int, uri: str) -> None:
        """Someone subscribed to ``uri`` on the router: publish that topic."""
        try:
            sub = parse_topic(uri)
        except InvalidTopic:
            return  # not one of ours
        if router_sub_id in self.topics:
            return
        try:
            self.feed.subscribe(self, sub)
        except SubscriptionError as exc:
            if "Already subscribed" not in str(exc):
                self._log.info("router topic {uri} not published: {why}", uri=uri, why=str(exc))
                return
        self.topics[router_sub_id] = sub
        self.feed.send_current(self, sub)

    def unwatch(self, router_sub_id: int) -> None:
        """The router deleted a subscription: stop publishing it if nobody else has it."""
        sub = self.topics.pop(router_sub_id, None)
        if sub is not None and sub not in self.topics.values():
            self._unwatch(sub)

    def _unwatch(self, sub: Subscription) -> None:
        with contextlib.suppress(SubscriptionError):
            self.feed.unsubscribe(self, sub)

    def use_fallback(self) -> None:
        """No meta API rights: publish status, allmids and every coin's bbo/trades/l2book."""
        self.fallback = True
        subs = [Subscription("status"), Subscription("allMids")]
        if self.books.height is not None:
            for coin in self.books.coins():
                subs += [Subscription(ch, coin) for ch in ("bbo", "trades", "l2Book")]
        for index, sub in enumerate(subs, start=1):
            if sub not in self.topics.values():
                self.topics[-index] = sub
                try:
                    self.feed.subscribe(self, sub)
                except SubscriptionError:
                    del self.topics[-index]

    # -- the feed Registry's Client interface ------------------------------------------
    def deliver(self, sub: Subscription, message: Publication) -> int:
        """Publish (fire and forget), or drop when the router is absent or not reading."""
        session = self.session
        if session is None or self.flow.paused or not session.is_attached():
            self.dropped += 1
            self._dropped.inc()
            return 0
        kwargs = {"part": message.part} if message.part else {}
        options = PublishOptions(retain=not sub.lossless)
        session.publish(topic_uri(sub), _decode(message.payload), options=options, **kwargs)
        self.published += 1
        self._published.inc()
        return len(message.payload)

    def subscription_failed(self, sub: Subscription, text: str) -> None:
        for sub_id, known in list(self.topics.items()):
            if known == sub:
                del self.topics[sub_id]

    # -- ingest listener interface -----------------------------------------------------
    def block_applied(self, result: BlockResult) -> None:
        """Publish what the block changed (never raises)."""
        self.feed.block_applied(result)

    def trades_paired(self, trades: dict[str, list[dict[str, Any]]]) -> None:
        """Publish the trades read from the node's fills (never raises)."""
        self.feed.trades_paired(trades)

    def books_reset(self, coins: set[str]) -> None:
        """Re-publish snapshot views of ``coins``."""
        if self.fallback and self.session is not None:
            self.use_fallback()
        self.feed.books_reset(coins)

    def state_changed(self, status: dict[str, Any]) -> None:
        """Publish the ingest status on orderbook.status."""
        self._status = status
        self.feed.state_changed(status)

    def status(self) -> dict[str, Any]:
        """The router link for /health."""
        document = {
            "url": self.settings.router_url,
            "realm": self.settings.router_realm,
            "connected": self.session is not None,
            "topics": len(set(self.topics.values())),
            "published": self.published,
            "dropped": self.dropped,
            "reconnects": max(0, self.connects - 1),
            "registered": self.registered_procedures,
            "registration_errors": dict(self.registration_errors),
        }
        if self.refused:
            document["refused"] = self.refused
        return document

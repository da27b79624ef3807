"""The WebSocket protocol of the Hyperliquid-compatible JSON API.

Wire protocol (../shared/docs/ws-api.md), client -> server::

    {"method": "subscribe",   "subscription": {"type": "l2Book", "coin": "BTC"}}
    {"method": "unsubscribe", "subscription": {…}}
    {"method": "ping"}                                -> {"channel": "pong"}
    {"method": "post", "id": 7, "request": {"type": "info",
        "payload": {"type": "l2Book", "coin": "BTC"}}}  -> {"channel": "post", …}

An accepted (un)subscribe is echoed as ``subscriptionResponse`` with the
subscription as sent, then (subscribe) the current view follows. Anything
wrong gets ``{"channel": "error", "data": "…"}`` and the connection stays
usable. Abuse closes it: frames/messages over ``max_message_bytes`` (1009, by
autobahn), more than ``messages_per_minute`` (1008; a new connection's
bucket starts at a tenth of it), a loss-intolerant queue over
``max_queued_bytes`` (1008, "slow consumer"). Like the official API, a
connection the server has SENT nothing to (no data, JSON or WebSocket pong, or response) for
``idle_timeout_s`` is closed (1000); WebSocket pings find dead peers.
Connections past ``max_connections`` get HTTP 503.

Every byte a connection sends goes through its
:class:`~orderbook.server.outbox.Outbox` (shared, pre-built frames; the
connection's push producer), never autobahn's ``sendMessage``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from orderbook.book.views import UnknownDex
from orderbook.config import WebSocketSettings
from orderbook.feed import messages
from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.registry import CHANNEL_ENVELOPE, Registry
from orderbook.feed.subscriptions import (
    Subscription,
    SubscriptionError,
    parse_dex,
    parse_l2,
    parse_subscription,
)
from orderbook.server.gate import GatedWebSocketResource
from orderbook.server.outbox import Outbox

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
# A new connection's rate bucket holds this share of messages_per_minute (it
# refills at the full rate): reconnecting does not buy a full minute's burst.
INITIAL_RATE_SHARE = 0.1
_decode = msgspec.json.Decoder().decode


class _RequestError(Exception):
    """A bad client request; ``str()`` is the error text sent back."""

    def __init__(self, text: str, kind: str) -> None:
        super().__init__(text)
        self.kind = kind


class OutboxProtocol(WebSocketServerProtocol):
    """A server protocol whose every frame goes out through an :class:`Outbox`."""

    _log = Logger()
    outbox: Outbox | None = None

    def onOpen(self) -> None:
        try:
            pmce = self._perMessageCompress
            window = pmce.server_max_window_bits if pmce is not None else None
            factory = self.factory
            self.outbox = Outbox(
                self.transport,
                factory.registry.round,
                factory.ws.max_queued_bytes,
                self._overflowed,
                window,
                now=factory.clock.seconds,
            )
            self.outbox.on_replaced = factory.message_replaced
            self.outbox.attach()
        except Exception:
            self._log.failure("onOpen failed for {peer}", peer=self.peer)
            raise

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """autobahn's own frames (ping, pong, close): never inside a chunked frame."""
        if self.outbox is None or sync or chopsize:
            super().sendData(data, sync, chopsize)
        else:
            self.outbox.control(data)

    def sendCloseFrame(
        self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
    ) -> None:
        if self.outbox is not None:
            self.outbox.stop()
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def send_bytes(self, payload: bytes, binary: bool = False) -> None:
        """Send one message of this connection only (queued if the client is slow)."""
        if self.outbox is not None:
            self.outbox.send(OutgoingMessage(payload, binary))

    def _overflowed(self, queued: int) -> None:
        self.factory.slow_client_closed()
        self._log.warn(
            "closing slow consumer {peer}: {queued} bytes queued", peer=self.peer, queued=queued
        )
        limit = self.factory.ws.max_queued_bytes
        self.close_with(CLOSE_POLICY, f"slow consumer: more than {limit} bytes queued")

    def close_with(self, code: int, reason: str) -> None:
        """Start the closing handshake with any valid code (sendClose allows few)."""
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)

    def close_if_open(self, code: int, reason: str) -> bool:
        """:meth:`close_with` unless closing has begun (then False)."""
        if self.state != self.STATE_OPEN:
            return False
        self.close_with(code, reason)
        return True

    def revoke(self, code: int, reason: str) -> bool:
        """Its access token was revoked (access.TokenStore): close; False if it had ended."""
        return self.close_if_open(code, reason)

    def connectionLost(self, reason: Failure) -> None:
        try:
            super().connectionLost(reason)
        finally:
            try:
                self.forget()
            finally:
                self._release()

    def forget(self) -> None:
        """Release what this connection holds (called once, when it is lost)."""

    def _release(self) -> None:
        """Break every reference cycle through this connection, so it is freed
        by reference counting even after gc.freeze() (gc_policy) saw it alive."""
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        # autobahn resolves is_closed with the protocol itself: a cycle.
        self.is_closed = succeed(None)


class FeedProtocol(OutboxProtocol):
    """One client of the JSON API."""

    envelope = CHANNEL_ENVELOPE
    factory: FeedFactory

    def __init__(self) -> None:
        super().__init__()
        self._admitted = False
        self._idle: Any = None
        self._tokens = 0.0
        self._stamp = 0.0
        self._rate_limited = False  # closed for its rate: later messages are ignored

    # -- connection life ---------------------------------------------------------
    def onConnect(self, request: ConnectionRequest) -> None:
        try:
            if not self.factory.registry.admit(self):
                raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "too many connections")
            self._admitted = True
        except ConnectionDeny:
            raise
        except Exception:
            self._log.failure("onConnect failed for {peer}", peer=request.peer)
            raise

    def onOpen(self) -> None:
        super().onOpen()
        ws = self.factory.ws
        self._tokens = max(1.0, ws.messages_per_minute * INITIAL_RATE_SHARE)
        self._stamp = self.factory.clock.seconds()
        if ws.idle_timeout_s > 0:
            self._idle = self.factory.clock.callLater(ws.idle_timeout_s, self._idle_check)

    def forget(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self._admitted:
            self.factory.registry.remove(self)

    def _idle_check(self) -> None:
        """Close a connection sent nothing for idle_timeout_s (the official rule)."""
        self._idle = None
        outbox = self.outbox
        if outbox is None:
            return
        idle = self.factory.ws.idle_timeout_s
        quiet = self.factory.clock.seconds() - outbox.last_sent
        if quiet < idle:
            self._idle = self.factory.clock.callLater(idle - quiet, self._idle_check)
            return
        self.factory.reject("idle")
        self.close_with(CLOSE_NORMAL, f"idle timeout: nothing sent for {idle:g} s")

    # -- requests ------------------------------------------------------------------
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not self._within_rate():
            return
        with self.factory.registry.round:  # the replies to one request: one write
            try:
                if isBinary:
                    raise _RequestError(
                        "Binary messages are not supported: send JSON text", "binary"
                    )
                self._dispatch(payload)
            except _RequestError as exc:
                self.factory.client_error(exc.kind)
                self.send_bytes(messages.error(str(exc)))

    def _within_rate(self) -> bool:
        """Token bucket of messages_per_minute; False (and closing) when empty.

        The connection is rejected and closed once; what it sends while the
        close handshake runs is ignored (neither answered nor counted again).
        """
        if self._rate_limited:
            return False
        per_minute = self.factory.ws.messages_per_minute
        now = self.factory.clock.seconds()
        self._tokens = min(float(per_minute), self._tokens + (now - self._stamp) * per_minute / 60)
        self._stamp = now
        if self._tokens < 1:
            self._rate_limited = True
            self.factory.reject("rate")
            self.close_with(CLOSE_POLICY, f"rate limit: more than {per_minute} messages per minute")
            return False
        self._tokens -= 1
        return True

    def _dispatch(self, payload: bytes) -> None:
        try:
            request = _decode(payload)
        except msgspec.DecodeError as exc:
            raise _RequestError(f"Invalid JSON: {exc}", "json") from None
        if not isinstance(request, dict):
            raise _RequestError(
                "Invalid request: expected a JSON object with a 'method'", "request"
            )
        method = request.get("method")
        handler = self._handlers.get(method) if isinstance(method, str) else None
        if handler is None:
            known = ", ".join(self._handlers)
            raise _RequestError(f"Unknown method {method!r} (known: {known})", "method")
        handler(self, request)

    def _subscribe(self, request: dict[str, Any]) -> None:
        sub = self._subscription(request)
        try:
            self.factory.registry.subscribe(self, sub)
        except SubscriptionError as exc:
            raise _RequestError(str(exc), "subscription") from None
        self.send_bytes(messages.subscription_response("subscribe", request["subscription"]))
        self.factory.registry.send_current(self, sub)

    def _unsubscribe(self, request: dict[str, Any]) -> None:
        sub = self._subscription(request)
        try:
            self.factory.registry.unsubscribe(self, sub)
        except SubscriptionError as exc:
            raise _RequestError(str(exc), "subscription") from None
        self.send_bytes(messages.subscription_response("unsubscribe", request["subscription"]))

    def _subscription(self, request: dict[str, Any]) -> Subscription:
        if "subscription" not in request:
            raise _RequestError("Invalid request: missing 'subscription'", "request")
        try:
            return parse_subscription(request["subscription"])
        except SubscriptionError as exc:
            raise _RequestError(str(exc), "subscription") from None

    def _ping(self, request: dict[str, Any]) -> None:
        self.send_bytes(messages.PONG)

    def _post(self, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            raise _RequestError("Invalid post: 'id' must be an integer", "post")
        try:
            payload = self._info(request.get("request"))
        except SubscriptionError as exc:
            self.factory.client_error("post")
            self.send_bytes(messages.post_error(request_id, str(exc)))
            return
        self.send_bytes(messages.post_response(request_id, payload))

    def _info(self, body: Any) -> dict[str, Any]:
        """The payload of an info post (SubscriptionError: what is wrong)."""
        if not isinstance(body, dict) or body.get("type") != "info":
            raise SubscriptionError("Invalid post: only request type 'info' is supported")
        query = body.get("payload")
        kind = query.get("type") if isinstance(query, dict) else None
        registry = self.factory.registry
        if kind == "l2Book":
            sub = parse_l2(query)
            if registry.books.height is None:
                raise SubscriptionError("Book not ready yet: retry shortly")
            if not registry.known_coin(sub.coin):
                raise SubscriptionError(f"Invalid subscription: unknown coin {sub.coin!r}")
            return {"type": "l2Book", "data": msgspec.Raw(registry.current_data(sub))}
        if kind == "allMids":
            try:
                mids = registry.books.all_mids(parse_dex(query.get("dex")))
            except UnknownDex as exc:
                raise SubscriptionError(f"Invalid post: {exc}") from None
            return {"type": "allMids", "data": mids}
        raise SubscriptionError(f"Invalid post: unsupported info type {kind!r} (l2Book, allMids)")

    _handlers = {
        "subscribe": _subscribe,
        "unsubscribe": _unsubscribe,
        "ping": _ping,
        "post": _post,
    }

    # -- registry Client interface -------------------------------------------------
    def deliver(self, sub: Subscription, message: OutgoingMessage) -> int:
        if self.outbox is None:
            return 0
        return self.outbox.send(message, sub, sub.lossless)

    def subscription_failed(self, sub: Subscription, text: str) -> None:
        self.factory.client_error("subscription")
        self.send_bytes(messages.error(text))


class EchoProtocol(OutboxProtocol):
    """Echoes every message through the feeds' send path (for the conformance suite)."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.send_bytes(payload, isBinary)


class FeedFactory(WebSocketServerFactory):
    """Builds :class:`FeedProtocol` connections sharing one registry."""

    protocol = FeedProtocol

    def __init__(
        self, registry: Registry, ws: WebSocketSettings, clock: Any, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.registry = registry
        self.ws = ws
        self.clock = clock

    def client_error(self, kind: str) -> None:
        self.registry.metrics.client_errors.inc(1, kind)

    def reject(self, reason: str) -> None:
        self.registry.metrics.rejected.inc(1, reason)

    def message_replaced(self) -> None:
        self.registry.metrics.replaced.inc()

    def slow_client_closed(self) -> None:
        self.registry.metrics.slow_closed.inc()


class EchoFactory(FeedFactory):
    """The echo endpoint's factory (same options and send path as the feeds)."""

    protocol = EchoProtocol


class FeedResource(GatedWebSocketResource):
    """The gate's WebSocketResource, letting go of the upgrade's HTTP request.

    That request is never finished (its connection became a WebSocket), so
    it and its HTTPChannel keep referencing each other: a cycle per
    connection that outlives it, for good once gc.freeze() (gc_policy) has
    seen it. Dropping the request from the channel's list frees both by
    reference counting when the connection goes.
    """

    def render(self, request: Request) -> Any:
        result = super().render(request)
        channel = request.channel
        if result is NOT_DONE_YET and channel is not None and request in channel.requests:
            channel.requests.remove(request)
        return result

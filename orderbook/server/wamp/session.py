"""WAMP v2 (``wamp.2.json``) on the WebSocket endpoint, for Autobahn|JS clients.

The server is the router for its own realm: a broker for exact-match topics
(one per JSON channel, see :mod:`orderbook.server.wamp.uri`) and a dealer for
its own procedures. Clients join anonymously, or with a ticket when access
control is on (:mod:`orderbook.server.wamp.auth`), and may SUBSCRIBE,
UNSUBSCRIBE and CALL; PUBLISH and REGISTER are refused. Wire messages are
parsed and built with autobahn's WAMP message classes
(:mod:`orderbook.server.wamp.wire`); the router-side session state machine is
here::

    client                          server
    HELLO realm  ------------------> WELCOME (or ABORT no_such_realm / no_auth_method)
                                     | CHALLENGE ticket (access control on)
    AUTHENTICATE token ------------> WELCOME | ABORT authentication_failed
    SUBSCRIBE req {} topic --------> SUBSCRIBED req sub     | ERROR invalid_uri
    UNSUBSCRIBE req sub -----------> UNSUBSCRIBED req       | ERROR no_such_subscription
    CALL req {} proc args kwargs --> RESULT req {} [value]  | ERROR no_such_procedure,
                                                              invalid_argument
    CALL req {receive_progress} ---> RESULT req {progress} [part] ... RESULT req {} [part]
      (orderbook.l4book.snapshot; parts paced by the client's reading, see calls.py)
    CANCEL req --------------------> ERROR canceled (a result still going out in parts)
    PUBLISH req {acknowledge} -----> ERROR not_authorized (only when acknowledge: an
                                     unacknowledged publish has no reply in WAMP)
    REGISTER req {} proc ----------> ERROR not_authorized
    GOODBYE -----------------------> GOODBYE goodbye_and_out, then close
    anything malformed or out of order -> ABORT protocol_violation, then close

Fan-out stays build-once: every subscriber of a topic shares the topic's one
subscription id (as WAMP routers do), so :class:`WampEnvelope` wraps a view's
encoded ``data`` in ONE ``EVENT`` message per topic and block, which the feed
registry hands to every WAMP subscriber through the same Outbox (frames,
compression, producer, slow-consumer rules) as the JSON channels. A
subscriber that asks ``get_retained`` gets the topic's current view at once
(``details.retained``), as from a broker with event retention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from autobahn.util import id as random_id
from autobahn.wamp import message
from autobahn.wamp.role import RoleBrokerFeatures, RoleDealerFeatures
from twisted.logger import Logger

from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.subscriptions import COIN_CHANNELS, Subscription, SubscriptionError
from orderbook.metrics import Metrics
from orderbook.server.wamp import auth, wire
from orderbook.server.wamp.auth import AUTH_DISABLED, TokenChecker
from orderbook.server.wamp.calls import Link, ResultInParts
from orderbook.server.wamp.envelope import WampEnvelope
from orderbook.server.wamp.errors import (
    CANCELED,
    CLOSE_NORMAL,
    GOODBYE_AND_OUT,
    INTERNAL_ERROR,
    INVALID_ARGUMENT,
    INVALID_URI,
    NO_SUCH_REALM,
    NO_SUCH_REGISTRATION,
    NO_SUCH_SUBSCRIPTION,
    NOT_AUTHORIZED,
    PROTOCOL_VIOLATION,
    SYSTEM_SHUTDOWN,
    TOO_MANY_CALLS,
    TOO_MANY_SUBSCRIPTIONS,
    SessionAbort,
    WampError,
)
from orderbook.server.wamp.procedures import Procedures
from orderbook.server.wamp.uri import InvalidTopic, parse_topic

SUBPROTOCOL = "wamp.2.json"

_ROLES = {
    "broker": RoleBrokerFeatures(event_retention=True, subscription_revocation=True),
    "dealer": RoleDealerFeatures(progressive_call_results=True, call_canceling=True),
}
# Calls answering in parts at once per session: each holds its encoded parts
# (a 16 MB snapshot) until the client has read them.
MAX_CALLS_IN_PARTS = 4


# -- the router side of one connection -------------------------------------------------


class WampMetrics:
    """WAMP counters in the shared metrics registry."""

    def __init__(self, metrics: Metrics, hub: WampHub) -> None:
        self.sessions = metrics.gauge(
            "orderbook_wamp_sessions", "Open WAMP sessions", read=lambda: len(hub.sessions)
        )
        self.calls = metrics.counter(
            "orderbook_wamp_calls_total", "WAMP calls answered, by procedure", ["procedure"]
        )
        self.errors = metrics.counter(
            "orderbook_wamp_errors_total", "WAMP ERROR and ABORT replies, by URI", ["error"]
        )


class WampHub:
    """Server-wide WAMP state: realm, the registry link, the envelope, procedures."""

    _log = Logger()

    def __init__(
        self,
        realm: str,
        registry: Any,
        books: Any,
        metrics: Metrics,
        status: Callable[[], dict[str, Any]] | None = None,
        tokens: TokenChecker = AUTH_DISABLED,
    ) -> None:
        self.realm = realm
        self.tokens = tokens
        self.registry = registry
        self.envelope = WampEnvelope()
        self.procedures = Procedures(books, status or registry.status, registry.known_coin)
        self.sessions: set[WampSession] = set()
        self.metrics = WampMetrics(metrics, self)

    def open(
        self,
        link: Link,
        close: Callable[[int, str], None],
        peer: str = "",
        upgrade_token: str | None = None,
    ) -> WampSession:
        """A session for a connection that negotiated ``wamp.2.json`` (``upgrade_token``:
        the access token its WebSocket upgrade carried, if any)."""
        return WampSession(self, link, close, peer, upgrade_token)

    def shutdown(self) -> None:
        """Say GOODBYE system_shutdown to every open session."""
        for session in list(self.sessions):
            session.goodbye(SYSTEM_SHUTDOWN)


class WampSession:
    """The router side of one client session; the registry's Client for its topics.

    States: ``hello`` (waiting for HELLO), ``challenged`` (waiting for the ticket),
    ``open`` (joined), ``closed``.
    """

    _log = Logger()

    def __init__(
        self,
        hub: WampHub,
        link: Link,
        close: Callable[[int, str], None],
        peer: str = "",
        upgrade_token: str | None = None,
    ) -> None:
        self.hub = hub
        self.upgrade_token = upgrade_token
        self.link = link
        self._close = close
        self.peer = peer
        self.envelope = hub.envelope
        self.state = "hello"
        self.session_id = 0
        self.topics: dict[int, Subscription] = {}  # subscription id -> topic
        self.calls: dict[int, ResultInParts] = {}  # request id -> result going out in parts
        self._authid: str | None = None

    # -- input ------------------------------------------------------------------
    def on_message(self, payload: bytes, is_binary: bool) -> None:
        """Handle one WebSocket message; never raises."""
        if self.state == "closed":
            return
        try:
            if is_binary:
                raise SessionAbort(PROTOCOL_VIOLATION, "binary message on wamp.2.json")
            for raw in wire.decode(payload):
                self._handle_raw(raw)
                if self.state == "closed":
                    return
        except SessionAbort as exc:
            self.abort(exc.reason, str(exc))
        except Exception:
            self._log.failure("WAMP session {session} failed on a message", session=self.session_id)
            self.abort(PROTOCOL_VIOLATION, "internal error handling the message")

    def _handle_raw(self, raw: list[Any]) -> None:
        try:
            msg = wire.parse(raw, in_session=self.state == "open")
        except wire.InvalidRequestUri as exc:
            self.hub.metrics.errors.inc(1, INVALID_URI)
            error = message.Error(exc.message_type, exc.request, INVALID_URI, args=[str(exc)])
            self._send(error)
            return
        if self.state == "hello":
            self._hello(_expect(msg, message.Hello))
            return
        if self.state == "challenged":
            self._authenticate(_expect(msg, message.Authenticate))
            return
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            raise SessionAbort(
                PROTOCOL_VIOLATION, f"{type(msg).__name__.upper()} is not valid in an open session"
            )
        try:
            handler(self, msg)
        except WampError as exc:
            self._error(msg, exc.uri, str(exc))

    def _hello(self, msg: message.Hello) -> None:
        if msg.realm != self.hub.realm:
            raise SessionAbort(
                NO_SUCH_REALM, f"no realm {msg.realm!r} here (realm is {self.hub.realm!r})"
            )
        self.session_id = random_id()
        if auth.method_for(msg, self.hub.tokens, self.upgrade_token) == "ticket":
            self._authid = msg.authid
            self.state = "challenged"
            self._send(message.Challenge("ticket", {}))
            return
        self._welcome(f"anonymous-{self.session_id}", "anonymous", "anonymous")

    def _authenticate(self, msg: message.Authenticate) -> None:
        auth.check_ticket(msg, self.hub.tokens)
        self._welcome(self._authid or f"client-{self.session_id}", "client", "ticket")

    def _welcome(self, authid: str, authrole: str, authmethod: str) -> None:
        self.state = "open"
        self.hub.sessions.add(self)
        welcome = message.Welcome(
            self.session_id,
            _ROLES,
            realm=self.hub.realm,
            authid=authid,
            authrole=authrole,
            authmethod=authmethod,
            authprovider="static",
        )
        self._send(welcome)
        self._log.debug(
            "WAMP session {session} joined from {peer} ({method})",
            session=self.session_id,
            peer=self.peer,
            method=authmethod,
        )

    # -- requests (open session) -----------------------------------------------
    def _subscribe(self, msg: message.Subscribe) -> None:
        if msg.match not in (None, "exact"):
            raise WampError(
                INVALID_ARGUMENT, f"match policy {msg.match!r} is not offered (exact only)"
            )
        sub = _topic(msg.topic)
        registry = self.hub.registry
        sub_id = self.envelope.subscription_id(sub)
        if sub_id is None or self.topics.get(sub_id) != sub:
            self._check_new(sub)
            try:
                registry.subscribe(self, sub)
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

    def _unsubscribe(self, msg: message.Unsubscribe) -> None:
        sub = self.topics.pop(msg.subscription, None)
        if sub is None:
            raise WampError(NO_SUCH_SUBSCRIPTION, f"no subscription {msg.subscription}")
        self._forget(sub)
        self._send(message.Unsubscribed(msg.request))

    def _forget(self, sub: Subscription) -> None:
        with contextlib.suppress(SubscriptionError):  # the registry may have dropped it
            self.hub.registry.unsubscribe(self, sub)
        self.envelope.release(sub)

    def _call(self, msg: message.Call) -> None:
        procedures = self.hub.procedures
        parts = self._run(procedures.call_in_parts, msg) if msg.receive_progress else None
        if parts is None:
            value = self._run(procedures.call, msg)
            self.hub.metrics.calls.inc(1, msg.procedure)
            self._send(message.Result(msg.request, args=[value]))
            return
        self._check_calls(msg.request)
        self.hub.metrics.calls.inc(1, msg.procedure)
        sender = ResultInParts(self.link, msg.request, parts, self._call_over)
        self.calls[msg.request] = sender
        sender.pump()

    def _run(self, function: Callable[..., Any], msg: message.Call) -> Any:
        """``function(procedure, args, kwargs)``; an unexpected failure is logged and
        answered ERROR orderbook.error.internal."""
        try:
            return function(msg.procedure, msg.args, msg.kwargs)
        except WampError:
            raise
        except Exception:
            self._log.failure("WAMP call {procedure} failed", procedure=msg.procedure)
            raise WampError(INTERNAL_ERROR, f"{msg.procedure} failed on the server") from None

    def _check_calls(self, request: int) -> None:
        if request in self.calls:
            raise SessionAbort(PROTOCOL_VIOLATION, f"request id {request} is still in progress")
        if len(self.calls) >= MAX_CALLS_IN_PARTS:
            raise WampError(
                TOO_MANY_CALLS,
                f"at most {MAX_CALLS_IN_PARTS} calls returning in parts at once per session",
            )

    def _call_over(self, sender: ResultInParts) -> None:
        if self.calls.get(sender.request) is sender:
            del self.calls[sender.request]

    def _publish(self, msg: message.Publish) -> None:
        if msg.acknowledge:
            raise WampError(NOT_AUTHORIZED, "clients may not publish here")
        self.hub.metrics.errors.inc(1, NOT_AUTHORIZED)

    def _register(self, msg: message.Register) -> None:
        raise WampError(NOT_AUTHORIZED, "clients may not register procedures here")

    def _unregister(self, msg: message.Unregister) -> None:
        raise WampError(NO_SUCH_REGISTRATION, f"no registration {msg.registration}")

    def _cancel(self, msg: message.Cancel) -> None:
        """Stop a result still going out in parts (others are answered at once)."""
        sender = self.calls.get(msg.request)
        if sender is None:
            return
        sender.stop()
        text = f"call cancelled after {sender.sent} parts"
        self._send(message.Error(message.Call.MESSAGE_TYPE, msg.request, CANCELED, args=[text]))

    def _goodbye(self, msg: message.Goodbye) -> None:
        self._send(message.Goodbye(GOODBYE_AND_OUT))
        self._end(CLOSE_NORMAL, "goodbye")

    def _client_abort(self, msg: message.Abort) -> None:
        self._end(CLOSE_NORMAL, "aborted by client")

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

    # -- output and ending --------------------------------------------------------
    def _send(self, msg: message.Message) -> None:
        self.link.send(OutgoingMessage(wire.encode(msg)))

    def _error(self, request: Any, uri: str, text: str) -> None:
        self.hub.metrics.errors.inc(1, uri)
        self._send(message.Error(request.MESSAGE_TYPE, request.request, uri, args=[text]))

    def abort(self, reason: str, text: str) -> None:
        """ABORT the session and close the connection."""
        if self.state == "closed":
            return
        self.hub.metrics.errors.inc(1, reason)
        self._log.info(
            "WAMP session {session} from {peer} aborted: {reason} {text}",
            session=self.session_id,
            peer=self.peer,
            reason=reason,
            text=text,
        )
        self._send(message.Abort(reason, text))
        self._end(CLOSE_NORMAL, reason)

    def goodbye(self, reason: str) -> None:
        """End an open session from the server side (e.g. shutdown)."""
        if self.state == "open":
            self._send(message.Goodbye(reason))
        self._end(CLOSE_NORMAL, reason)

    def _end(self, code: int, reason: str) -> None:
        self.connection_lost()
        self._close(code, reason)

    def connection_lost(self) -> None:
        """Leave every topic; the session is over (idempotent)."""
        if self.state == "closed":
            return
        self.state = "closed"
        self.hub.sessions.discard(self)
        for sender in list(self.calls.values()):
            sender.stop()
        for sub in self.topics.values():
            self._forget(sub)
        self.topics.clear()


_HANDLERS: dict[type, Callable[[WampSession, Any], None]] = {
    message.Subscribe: WampSession._subscribe,
    message.Unsubscribe: WampSession._unsubscribe,
    message.Call: WampSession._call,
    message.Publish: WampSession._publish,
    message.Register: WampSession._register,
    message.Unregister: WampSession._unregister,
    message.Cancel: WampSession._cancel,
    message.Goodbye: WampSession._goodbye,
    message.Abort: WampSession._client_abort,
}


def _expect(msg: message.Message, cls: type[Any]) -> Any:
    if not isinstance(msg, cls):
        name = cls.__name__.upper()
        raise SessionAbort(PROTOCOL_VIOLATION, f"expected {name}, got {type(msg).__name__}")
    return msg


def _topic(uri: str) -> Subscription:
    try:
        return parse_topic(uri)
    except InvalidTopic as exc:
        raise WampError(INVALID_URI, str(exc)) from None

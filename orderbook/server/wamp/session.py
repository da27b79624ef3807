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
                                     GOODBYE token_revoked, then close 1008 (SIGHUP
                                     dropped the ticket or upgrade token it came in with)
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

from collections.abc import Callable
from typing import Any

from autobahn.util import id as random_id
from autobahn.wamp import message
from autobahn.wamp.role import RoleBrokerFeatures, RoleDealerFeatures
from twisted.application.service import Service
from twisted.logger import Logger

from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.subscriptions import Subscription
from orderbook.metrics import Metrics
from orderbook.server.wamp import auth, wire
from orderbook.server.wamp.auth import AUTH_DISABLED, TokenChecker
from orderbook.server.wamp.broker import Broker
from orderbook.server.wamp.calls import Link, ResultInParts
from orderbook.server.wamp.dealer import Dealer
from orderbook.server.wamp.envelope import WampEnvelope
from orderbook.server.wamp.errors import (
    CLOSE_NORMAL,
    GOODBYE_AND_OUT,
    INVALID_URI,
    NO_SUCH_REALM,
    PROTOCOL_VIOLATION,
    SYSTEM_SHUTDOWN,
    TOKEN_REVOKED,
    SessionAbort,
    WampError,
)
from orderbook.server.wamp.procedures import Procedures

SUBPROTOCOL = "wamp.2.json"

_ROLES = {
    "broker": RoleBrokerFeatures(event_retention=True, subscription_revocation=True),
    "dealer": RoleDealerFeatures(progressive_call_results=True, call_canceling=True),
}


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


class WampShutdown(Service):
    """Say GOODBYE to every WAMP session when the server stops."""

    def __init__(self, hub: WampHub) -> None:
        self.hub = hub

    def stopService(self) -> None:
        super().stopService()
        self.hub.shutdown()


class WampSession:
    """The router side of one client session: joining, dispatch, errors, ending.

    States: ``hello`` (waiting for HELLO), ``challenged`` (waiting for the ticket),
    ``open`` (joined), ``closed``. In an open session, SUBSCRIBE/UNSUBSCRIBE/PUBLISH
    go to its :class:`~orderbook.server.wamp.broker.Broker` (the feed registry's
    Client for its topics), CALL/CANCEL/REGISTER/UNREGISTER to its
    :class:`~orderbook.server.wamp.dealer.Dealer`.
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
        self.state = "hello"
        self.session_id = 0
        self._authid: str | None = None
        self.broker = Broker(hub, link, self._send)
        self.dealer = Dealer(hub, link, self._send)
        self.topics: dict[int, Subscription] = self.broker.topics  # subscription id -> topic
        self.calls: dict[int, ResultInParts] = self.dealer.calls  # request id -> parts
        self._handlers: dict[type, Callable[[Any], None]] = {
            message.Subscribe: self.broker.subscribe,
            message.Unsubscribe: self.broker.unsubscribe,
            message.Publish: self.broker.publish,
            message.Call: self.dealer.call,
            message.Cancel: self.dealer.cancel,
            message.Register: self.dealer.register,
            message.Unregister: self.dealer.unregister,
            message.Goodbye: self._goodbye,
            message.Abort: self._client_abort,
        }

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
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise SessionAbort(
                PROTOCOL_VIOLATION, f"{type(msg).__name__.upper()} is not valid in an open session"
            )
        try:
            handler(msg)
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
        self.hub.tokens.hold(msg.signature, self, "ticket")
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

    # -- ending ------------------------------------------------------------------
    def _goodbye(self, msg: message.Goodbye) -> None:
        self._send(message.Goodbye(GOODBYE_AND_OUT))
        self._end(CLOSE_NORMAL, "goodbye")

    def _client_abort(self, msg: message.Abort) -> None:
        self._end(CLOSE_NORMAL, "aborted by client")

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

    def revoke(self, code: int, reason: str) -> bool:
        """End the session, its access token was revoked: GOODBYE (ABORT before it
        joined) ``token_revoked`` with ``reason``, then close with ``code``.
        False when it had already ended."""
        if self.state == "closed":
            return False
        ending = message.Goodbye if self.state == "open" else message.Abort
        self._send(ending(TOKEN_REVOKED, reason))
        self._log.info(
            "WAMP session {session} from {peer} closed: {reason}",
            session=self.session_id,
            peer=self.peer,
            reason=reason,
        )
        self._end(code, reason)
        return True

    def _end(self, code: int, reason: str) -> None:
        self.connection_lost()
        self._close(code, reason)

    def connection_lost(self) -> None:
        """Leave every topic; the session is over (idempotent)."""
        if self.state == "closed":
            return
        self.state = "closed"
        self.hub.sessions.discard(self)
        self.dealer.stop_all()
        self.broker.leave_all()


def _expect(msg: message.Message, cls: type[Any]) -> Any:
    if not isinstance(msg, cls):
        name = cls.__name__.upper()
        raise SessionAbort(PROTOCOL_VIOLATION, f"expected {name}, got {type(msg).__name__}")
    return msg

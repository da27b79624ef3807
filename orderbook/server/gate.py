"""Every socket of the public site, counted from accept: caps and a handshake deadline.

The gate wraps each connection of the Site, inside TLS, from the moment TCP
accepts it (before the TLS handshake), so half-open sockets count:

- ``max_connections`` caps the sockets of all addresses, and
  ``max_connections_per_ip`` (0: no cap) those of one address (an IPv6
  client's whole /64). A socket past a cap is answered, once its request
  arrives, with HTTP 503 (all addresses) or 429 (per address) naming the
  limit, and closed. While ``REFUSALS_PENDING`` such refusals are under way,
  further sockets past a cap are closed at accept without a reply.
- ``handshake_timeout_s`` (0: none): a socket whose TLS handshake and first
  HTTP request (the WebSocket upgrade) are not done by then is closed; if it
  got as far as sending part of a request it is told so (HTTP 408).

The handshake is done when the server answers the first request: a
WebSocket upgrade (:class:`GatedWebSocketResource`), or the first byte of any
HTTP response. The WebSocket protocol then writes to the TLS transport itself
(autobahn reads TLS details from it); the gate stays in the chain only to
relay what the client sends and to see the connection end.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.server import Site
from zope.interface import directlyProvides, providedBy

from orderbook.config import WebSocketSettings
from orderbook.metrics import Counter, Metrics

REFUSALS_PENDING = 64
REFUSAL_DEADLINE_S = 10.0  # for refused sockets when handshake_timeout_s is 0
CLOSE_GRACE_S = 2.0
OPEN, REFUSE, DROP = "open", "refuse", "drop"


def address_key(address: Any) -> str:
    """What the per-address cap counts: the IPv4 address, or the IPv6 /64."""
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return type(address).__name__  # UNIX sockets and the like: one bucket
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def http_reply(status: str, text: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    body = text.encode() + b"\n"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class Gate:
    """The counts and caps shared by every listen endpoint of one site."""

    def __init__(
        self, ws: WebSocketSettings, metrics: Metrics, clock: Any, rejected: Counter
    ) -> None:
        """``rejected``: the counter of refused connections, by reason."""
        self.max_connections = ws.max_connections
        self.per_address = ws.max_connections_per_ip
        self.deadline_s = ws.handshake_timeout_s
        self.clock = clock
        self.by_address: dict[str, int] = {}
        self.handshaking: set[GateProtocol] = set()
        self.admitted = 0
        self.refusing = 0
        metrics.gauge("orderbook_sockets_open", "Open sockets (every state)", read=self.open_count)
        metrics.gauge(
            "orderbook_sockets_handshaking",
            "Sockets whose TLS handshake or first request is not done",
            read=lambda: len(self.handshaking),
        )
        metrics.gauge(
            "orderbook_sockets_addresses",
            "Client addresses (IPv6: /64) with an admitted socket",
            read=lambda: len(self.by_address),
        )
        self.rejected = rejected

    def open_count(self) -> int:
        return self.admitted + self.refusing

    def wrap(self, protocol: Any) -> GateProtocol:
        return GateProtocol(self, protocol)

    # -- ProtocolWrapper's factory interface ---------------------------------------
    def registerProtocol(self, protocol: GateProtocol) -> None:
        """Decide at accept: admit, refuse with a reply, or drop."""
        protocol.key = address_key(protocol.getPeer())
        limit = self._exceeded(protocol.key)
        if limit is None:
            self.admitted += 1
            self.by_address[protocol.key] = self.by_address.get(protocol.key, 0) + 1
            protocol.state = OPEN
        elif self.refusing < REFUSALS_PENDING:
            self.refusing += 1
            protocol.state = REFUSE
            protocol.refusal = limit
            self.rejected.inc(1, limit[0])
        else:
            protocol.state = DROP
            self.rejected.inc(1, "dropped")
        if protocol.state != DROP:
            self.handshaking.add(protocol)

    def _exceeded(self, key: str) -> tuple[str, str, str] | None:
        """(reason, HTTP status, text) of the cap a new socket from ``key`` would pass."""
        if self.admitted >= self.max_connections:
            text = f"too many connections (limit {self.max_connections})"
            return "max_connections", "503 Service Unavailable", text
        if self.per_address and self.by_address.get(key, 0) >= self.per_address:
            text = f"too many connections from your address (limit {self.per_address})"
            return "per_ip", "429 Too Many Requests", text
        return None

    def unregisterProtocol(self, protocol: GateProtocol) -> None:
        self.handshaking.discard(protocol)
        if protocol.state == OPEN:
            self.admitted -= 1
            self.by_address[protocol.key] -= 1
            if self.by_address[protocol.key] <= 0:
                del self.by_address[protocol.key]
        elif protocol.state == REFUSE:
            self.refusing -= 1
        protocol.state = DROP  # counted once


class GateProtocol(ProtocolWrapper):
    """One socket between TLS and the HTTP channel (later the WebSocket protocol)."""

    factory: Gate

    def __init__(self, gate: Gate, wrapped: Any) -> None:
        super().__init__(gate, wrapped)  # type: ignore[arg-type]
        self.key = ""
        self.state = DROP
        self.refusal: tuple[str, str, str] | None = None
        self._received = False
        self._replied = False
        self._deadline_s = 0.0
        self._timer: Any = None
        self._connected = False

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        if self.state == DROP:
            transport.abortConnection()
            return
        self._deadline_s = self.factory.deadline_s
        if self.state == REFUSE and not self._deadline_s:
            self._deadline_s = REFUSAL_DEADLINE_S
        if self._deadline_s > 0:
            self._timer = self.factory.clock.callLater(self._deadline_s, self._expired)
        if self.state == OPEN:
            self._connected = True
            self.wrappedProtocol.makeConnection(self)

    def dataReceived(self, data: bytes) -> None:
        self._received = True
        if self._replied:
            return
        if self.state == OPEN:
            self.wrappedProtocol.dataReceived(data)
        elif self.state == REFUSE and self.refusal is not None:
            _reason, status, text = self.refusal
            self.refusal = None
            self._reply(status, text)

    def write(self, data: bytes) -> None:
        if self.transport is None:  # lost: nowhere to write
            return
        self._handshake_done()
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        if self.transport is None:
            return
        self._handshake_done()
        self.transport.writeSequence(data)

    def _handshake_done(self) -> None:
        """The server answers: the deadline is over; later writes go straight through."""
        self._cancel()
        self.factory.handshaking.discard(self)
        self.write = self.transport.write  # type: ignore[method-assign]
        self.writeSequence = self.transport.writeSequence  # type: ignore[method-assign]

    def upgraded(self) -> None:
        """A WebSocket took over the connection below us: stay between it and TLS."""
        below = self.transport
        if isinstance(below, ProtocolWrapper) and below.wrappedProtocol is not self:
            self.wrappedProtocol = below.wrappedProtocol
            below.wrappedProtocol = self
        self._handshake_done()

    def _expired(self) -> None:
        self._timer = None
        self.factory.rejected.inc(1, "handshake_timeout")
        if not self._received:  # nothing past TLS (or no TLS at all): nobody to tell
            self.transport.abortConnection()
            return
        self._reply("408 Request Timeout", f"handshake not completed within {self._deadline_s:g} s")

    def _reply(self, status: str, text: str) -> None:
        """Answer with a complete HTTP response and close (aborting if the client stalls)."""
        self._cancel()
        self._replied = True
        self.factory.handshaking.discard(self)
        self.transport.write(http_reply(status, text))
        if self._connected:  # the HTTP channel's producer would hold the close back
            self.transport.unregisterProducer()
        self.disconnecting = 1
        self.transport.loseConnection()
        self._timer = self.factory.clock.callLater(CLOSE_GRACE_S, self.transport.abortConnection)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._cancel()
        self.factory.unregisterProtocol(self)
        if self._connected:
            self.wrappedProtocol.connectionLost(reason)
        self._let_go()

    def _let_go(self) -> None:
        """Drop every reference down and up the chain, so it is freed by reference counting.

        TLS still holds the HTTP channel as its producer, and the channel
        holds us: with our transport (and ``write``, bound to it) that is a
        cycle, and one that lived through a gc.freeze() (gc_policy) would
        never be collected.
        """
        self.wrappedProtocol = None
        self.transport = None
        self.__dict__.pop("write", None)
        self.__dict__.pop("writeSequence", None)


class GatedSite(Site):
    """A Site whose every connection goes through a :class:`Gate`."""

    def __init__(self, resource: Any, gate: Gate, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.gate = gate

    def buildProtocol(self, addr: Any) -> Any:
        return self.gate.wrap(super().buildProtocol(addr))


class GatedWebSocketResource(WebSocketResource):
    """autobahn's WebSocketResource, upgrading over the transport below the gate."""

    def render(self, request: Any) -> Any:
        gate = request.channel.transport
        if not isinstance(gate, GateProtocol):
            return super().render(request)
        request.channel.transport = gate.transport
        try:
            return super().render(request)
        finally:
            if request.channel.transport is None:  # taken over by the WebSocket
                gate.upgraded()
            else:
                request.channel.transport = gate

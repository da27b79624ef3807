"""The twisted.web Site: WebSocket at ``[server] path``, /health, /metrics, the page.

The WebSocket is served through autobahn's ``WebSocketResource`` inside a
Site, never as a bare factory: on a TLS port a bare factory fails the
handshake of every client that offers ALPN (browsers, curl).

    <path>        the JSON API (and WAMP v2 when a wamp factory is given and the
                  client offers subprotocol wamp.2.json)
    <path>-echo   echo endpoint for the Autobahn|Testsuite ([websocket] echo)
    /health       JSON status (orderbook.server.health), unless [server]
    /metrics      metrics_listen serves them on their own endpoints
    /             the page (orderbook/server/static) when [server] page is on

Every socket goes through the connection gate (orderbook.server.gate); with
access control on (orderbook.server.access) the WebSocket upgrades need a token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import File

from orderbook.book.books import Books
from orderbook.config import ServerSettings, WebSocketSettings
from orderbook.feed.registry import Registry
from orderbook.metrics import Metrics
from orderbook.server import health
from orderbook.server.access import Guarded, TokenStore, redacting_log_formatter
from orderbook.server.gate import Gate, GatedSite
from orderbook.server.protocol import EchoFactory, FeedFactory, FeedResource

STATIC = Path(__file__).resolve().parent / "static"
CLOSE_HANDSHAKE_TIMEOUT_S = 5.0
OPEN_HANDSHAKE_TIMEOUT_S = 10.0
MIN_WINDOW_BITS = 9  # zlib cannot produce raw deflate with an 8-bit window


def accept_deflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    """Accept the first permessage-deflate offer whose window we can honour."""
    for offer in offers:
        if not isinstance(offer, PerMessageDeflateOffer):
            continue
        bits = offer.request_max_window_bits
        if bits == 0 or bits >= MIN_WINDOW_BITS:
            return PerMessageDeflateOfferAccept(offer)
    return None


def refuse_compression(offers: list[Any]) -> None:
    """Accept no compression offer."""
    return None


def protocol_options(ws: WebSocketSettings) -> dict[str, Any]:
    """autobahn ``setProtocolOptions`` keyword arguments for ``ws`` (a new dict)."""
    origins = list(ws.allowed_origins)
    return {
        "maxFramePayloadSize": ws.max_message_bytes,
        "maxMessagePayloadSize": ws.max_message_bytes,
        "autoPingInterval": ws.auto_ping_interval_s,
        "autoPingTimeout": ws.auto_ping_timeout_s,
        "allowedOrigins": origins,
        "perMessageCompressionAccept": accept_deflate if ws.compression else refuse_compression,
        "failByDrop": False,
        "openHandshakeTimeout": OPEN_HANDSHAKE_TIMEOUT_S,
        "closeHandshakeTimeout": CLOSE_HANDSHAKE_TIMEOUT_S,
        "autoFragmentSize": 0,
        "tcpNoDelay": True,
    }


class SubprotocolSwitch(Resource):
    """One WebSocket path, two protocols: WAMP for clients offering wamp.2.json."""

    isLeaf = True

    def __init__(self, feed: Resource, wamp: Resource) -> None:
        super().__init__()
        self.feed = feed
        self.wamp = wamp

    def render(self, request: Request) -> Any:
        offered = request.getHeader(b"sec-websocket-protocol") or b""
        protocols = {p.strip() for p in offered.split(b",")}
        target = self.wamp if b"wamp.2.json" in protocols else self.feed
        return target.render(request)


def make_site(
    server: ServerSettings,
    ws: WebSocketSettings,
    books: Books,
    registry: Registry,
    metrics: Metrics,
    status_provider: Callable[[], dict[str, Any]],
    reactor: Any = None,
    wamp_factory: WebSocketServerFactory | None = None,
    tokens: TokenStore | None = None,
    protect_metrics: bool = True,
    health_document: Callable[[], dict[str, Any]] | None = None,
    exposition: health.Exposition | None = None,
) -> GatedSite:
    """The Site for every public listen endpoint (the registry must be built on ``books``).

    ``tokens`` (enabled): WebSocket upgrades need a token, and /health and
    /metrics too when ``protect_metrics``. ``health_document`` and
    ``exposition`` replace this process's /health and /metrics (a worker
    serves the whole server's).
    """
    if reactor is None:
        from twisted.internet import reactor
    if registry.status_provider is None:
        registry.status_provider = status_provider
    guard = tokens if tokens is not None and tokens.enabled else None
    root = _root(server)
    _put(root, server.path, _websocket(registry, ws, reactor, wamp_factory, guard))
    if ws.echo:
        echo = EchoFactory(registry, ws, reactor)
        echo.setProtocolOptions(**protocol_options(ws))
        echo_resource: Resource = FeedResource(echo)
        if guard is not None:
            echo_resource = Guarded(echo_resource, guard, "echo")
        _put(root, server.path + "-echo", echo_resource)
    if not server.metrics_listen:
        ops_guard = guard if protect_metrics else None
        document = health_document or health.health_document(status_provider, registry)
        health.mount(root, document, exposition or metrics, ops_guard)
    site = GatedSite(
        root,
        Gate(ws, metrics, reactor, registry.metrics.rejected),
        logFormatter=redacting_log_formatter,
    )
    site.displayTracebacks = False
    return site


def _websocket(
    registry: Registry,
    ws: WebSocketSettings,
    reactor: Any,
    wamp_factory: WebSocketServerFactory | None,
    tokens: TokenStore | None,
) -> Resource:
    """The resource at ``[server] path``: the JSON API, WAMP beside it, behind tokens."""
    feed = FeedFactory(registry, ws, reactor)
    feed.setProtocolOptions(**protocol_options(ws))
    resource: Resource = FeedResource(feed)
    if tokens is not None:
        resource = Guarded(resource, tokens, "ws")
    if wamp_factory is None:
        return resource
    wamp: Resource = FeedResource(wamp_factory)
    if tokens is not None:
        ticket_auth = bool(getattr(wamp_factory, "ticket_auth", False))
        wamp = Guarded(wamp, tokens, "wamp", allow_missing=ticket_auth)
    return SubprotocolSwitch(resource, wamp)


def _root(server: ServerSettings) -> Resource:
    if server.page and (STATIC / "index.html").is_file():
        return File(str(STATIC))
    return Resource()


def _put(root: Resource, path: str, resource: Resource) -> None:
    """Mount ``resource`` at an absolute ``path`` like /ws or /api/ws."""
    parts = [part.encode() for part in path.strip("/").split("/")]
    node = root
    for part in parts[:-1]:
        child = node.children.get(part)
        if child is None:
            child = Resource()
            node.putChild(part, child)
        node = child
    node.putChild(parts[-1], resource)

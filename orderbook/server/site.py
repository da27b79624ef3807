"""The twisted.web Site: WebSocket at ``[server] path``, /health, /metrics, the page.

The WebSocket is served through autobahn's ``WebSocketResource`` inside a
Site, never as a bare factory: on a TLS port a bare factory fails the
handshake of every client that offers ALPN (browsers, curl).

    <path>        the JSON API (and WAMP v2 when a wamp factory is given and the
                  client offers subprotocol wamp.2.json)
    <path>-echo   echo endpoint for the Autobahn|Testsuite ([websocket] echo)
    /health       JSON status; 200 when ingestion is ready, else 503
    /metrics      Prometheus text
    /             the page (orderbook/server/static) when [server] page is on
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from orderbook.book.books import Books
from orderbook.config import ServerSettings, WebSocketSettings
from orderbook.feed.registry import Registry
from orderbook.metrics import Metrics
from orderbook.server.protocol import EchoFactory, FeedFactory

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


class HealthResource(Resource):
    """``GET /health``: the ingest status plus connection counts."""

    isLeaf = True

    def __init__(self, status_provider: Callable[[], dict[str, Any]], registry: Registry) -> None:
        super().__init__()
        self.status_provider = status_provider
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        document = dict(self.status_provider())
        document.setdefault("connections", self.registry.connection_count())
        document.setdefault("subscriptions", self.registry.subscription_count())
        request.setResponseCode(200 if document.get("state") == "ready" else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(document).encode() + b"\n"


class MetricsResource(Resource):
    """``GET /metrics``: Prometheus text exposition."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.metrics.render().encode()


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
) -> Site:
    """The Site for every listen endpoint (the registry must be built on ``books``)."""
    if reactor is None:
        from twisted.internet import reactor
    if registry.status_provider is None:
        registry.status_provider = status_provider
    root = _root(server)
    feed = FeedFactory(registry, ws, reactor)
    feed.setProtocolOptions(**protocol_options(ws))
    resource: Resource = WebSocketResource(feed)
    if wamp_factory is not None:
        resource = SubprotocolSwitch(resource, WebSocketResource(wamp_factory))
    _put(root, server.path, resource)
    if ws.echo:
        echo = EchoFactory(registry, ws, reactor)
        echo.setProtocolOptions(**protocol_options(ws))
        _put(root, server.path + "-echo", WebSocketResource(echo))
    root.putChild(b"health", HealthResource(status_provider, registry))
    root.putChild(b"metrics", MetricsResource(metrics))
    site = Site(root)
    site.displayTracebacks = False
    return site


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

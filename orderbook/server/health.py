"""``/health`` and ``/metrics``: on the public site, or on their own listen endpoint.

    /health    JSON status; 200 when ingestion is ready, else 503
    /metrics   Prometheus text

With ``[server] metrics_listen`` set, :func:`make_ops_site` serves both on
those endpoints and the public site does not serve them. With access control
on and ``[access] protect_metrics`` (the default), both need a token wherever
they are served.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from orderbook.feed.registry import Registry
from orderbook.server.access import Guarded, TokenStore, redacting_log_formatter


class HealthResource(Resource):
    """``GET /health``: the health document (ingest status and connection counts)."""

    isLeaf = True

    def __init__(self, document: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self.document = document

    def render_GET(self, request: Request) -> bytes:
        document = self.document()
        request.setResponseCode(200 if document.get("state") == "ready" else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(document).encode() + b"\n"


def health_document(
    status_provider: Callable[[], dict[str, Any]], registry: Registry
) -> Callable[[], dict[str, Any]]:
    """The status plus this process's connection and subscription counts."""

    def document() -> dict[str, Any]:
        return {
            **status_provider(),
            "connections": registry.connection_count(),
            "subscriptions": registry.subscription_count(),
        }

    return document


class Exposition(Protocol):
    """What /metrics renders: this process's :class:`Metrics`, or a whole server's."""

    def render(self) -> str: ...


class MetricsResource(Resource):
    """``GET /metrics``: Prometheus text exposition."""

    isLeaf = True

    def __init__(self, metrics: Exposition) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.metrics.render().encode()


def mount(
    root: Resource,
    document: Callable[[], dict[str, Any]],
    exposition: Exposition,
    tokens: TokenStore | None = None,
) -> None:
    """Put /health and /metrics under ``root`` (behind ``tokens`` when given)."""
    health: Resource = HealthResource(document)
    metrics: Resource = MetricsResource(exposition)
    if tokens is not None:
        health = Guarded(health, tokens, "health")
        metrics = Guarded(metrics, tokens, "metrics")
    root.putChild(b"health", health)
    root.putChild(b"metrics", metrics)


def make_ops_site(
    document: Callable[[], dict[str, Any]],
    exposition: Exposition,
    tokens: TokenStore | None = None,
) -> Site:
    """A Site serving only /health and /metrics (for ``[server] metrics_listen``)."""
    root = Resource()
    mount(root, document, exposition, tokens)
    site = Site(root, logFormatter=redacting_log_formatter)
    site.displayTracebacks = False
    return site

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
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from orderbook.feed.registry import Registry
from orderbook.metrics import Metrics
from orderbook.server.access import Guarded, TokenStore, redacting_log_formatter


class HealthResource(Resource):
    """``GET /health``: the ingest status plus connection counts."""

    isLeaf = True

    def __init__(self, status_provider: Callable[[], dict[str, Any]], registry: Registry) -> None:
        super().__init__()
        self.status_provider = status_provider
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        document = dict(self.status_provider())
        document["connections"] = self.registry.connection_count()
        document["subscriptions"] = self.registry.subscription_count()
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


def mount(
    root: Resource,
    status_provider: Callable[[], dict[str, Any]],
    registry: Registry,
    metrics: Metrics,
    tokens: TokenStore | None = None,
) -> None:
    """Put /health and /metrics under ``root`` (behind ``tokens`` when given)."""
    health: Resource = HealthResource(status_provider, registry)
    exposition: Resource = MetricsResource(metrics)
    if tokens is not None:
        health = Guarded(health, tokens, "health")
        exposition = Guarded(exposition, tokens, "metrics")
    root.putChild(b"health", health)
    root.putChild(b"metrics", exposition)


def make_ops_site(
    status_provider: Callable[[], dict[str, Any]],
    registry: Registry,
    metrics: Metrics,
    tokens: TokenStore | None = None,
) -> Site:
    """A Site serving only /health and /metrics (for ``[server] metrics_listen``)."""
    root = Resource()
    mount(root, status_provider, registry, metrics, tokens)
    site = Site(root, logFormatter=redacting_log_formatter)
    site.displayTracebacks = False
    return site

"""The Site: /health, /metrics over HTTPS, the echo endpoint, autobahn options."""

from __future__ import annotations

import json

import pytest_twisted
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from orderbook.config import WebSocketSettings
from orderbook.server.site import accept_deflate, protocol_options


@implementer(IPolicyForHTTPS)
class _Trust:
    def __init__(self, options):
        self.options = options

    def creatorForNetloc(self, hostname, port):
        return self.options


async def get(harness, path):
    agent = Agent(harness.reactor, contextFactory=_Trust(harness.tls()))
    response = await agent.request(
        b"GET", f"https://localhost:{harness.port_number}{path}".encode()
    )
    return response.code, response.headers, await readBody(response)


@pytest_twisted.ensureDeferred
async def test_health_ready_and_not_ready(harness_factory):
    """/health is JSON with state, height and counts: 200 when ready, 503 otherwise."""
    harness = await harness_factory()
    await harness.connect()
    code, _headers, body = await get(harness, "/health")
    document = json.loads(body)
    assert code == 200
    assert document == {
        "state": "ready",
        "height": 100,
        "lag_ms": 5,
        "connections": 1,
        "subscriptions": 0,
    }
    harness.status = {"state": "resyncing", "height": 100}
    code, _headers, body = await get(harness, "/health")
    assert code == 503 and json.loads(body)["state"] == "resyncing"


@pytest_twisted.ensureDeferred
async def test_metrics_text(harness_factory):
    """/metrics renders the registry, including the feed's connection gauge and counters."""
    harness = await harness_factory()
    client = await harness.connect()
    client.send({"method": "subscribe", "subscription": {"type": "bbo", "coin": "BTC"}})
    await client.channel("bbo")
    code, headers, body = await get(harness, "/metrics")
    text = body.decode()
    assert code == 200
    assert headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    assert "orderbook_ws_connections 1" in text
    assert "orderbook_ws_subscriptions 1" in text
    assert 'orderbook_ws_messages_sent_total{channel="bbo"} 1' in text


@pytest_twisted.ensureDeferred
async def test_echo_endpoint(harness_factory):
    """With echo on, <path>-echo returns text and binary messages through the feed send path."""
    harness = await harness_factory(echo=True)
    client = await harness.connect(path="/ws-echo")
    client.send({"hello": "x" * 5000})
    assert await client.expect(lambda m: "hello" in m) == {"hello": "x" * 5000}


def test_protocol_options_do_not_mutate_and_map_limits():
    """protocol_options maps each setting to autobahn's option without touching the settings."""
    ws = WebSocketSettings(
        max_message_bytes=4096, allowed_origins=("https://a.example:443",), compression=False
    )
    options = protocol_options(ws)
    assert options["maxFramePayloadSize"] == options["maxMessagePayloadSize"] == 4096
    assert options["allowedOrigins"] == ["https://a.example:443"]
    assert options["perMessageCompressionAccept"]([object()]) is None
    assert ws.allowed_origins == ("https://a.example:443",)


def test_deflate_offer_accepted_with_its_window():
    """A permessage-deflate offer is accepted as offered (window 9 included); others are not."""
    from autobahn.websocket.compress import PerMessageDeflateOffer

    offer = PerMessageDeflateOffer(request_max_window_bits=9)
    assert accept_deflate([object(), offer]).offer is offer
    assert accept_deflate([object()]) is None

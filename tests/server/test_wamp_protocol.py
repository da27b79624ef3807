"""Tests for orderbook.server.wamp.protocol: WAMP over real TLS on 127.0.0.1.

The server is the real Site (make_site with the WAMP factory); clients are
autobahn-python's own WAMP session and raw WebSocket clients offering
``wamp.2.json``, next to a JSON API client on the same endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory, WebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import CallOptions, ComponentConfig, PublishOptions, SubscribeOptions
from twisted.internet import defer
from twisted.internet.endpoints import SSL4ClientEndpoint

from orderbook.metrics import Metrics
from orderbook.server.wamp.protocol import make_wamp_factory
from orderbook.server.wamp.session import WampHub
from tests.server.harness import Client, Harness, until

TRADE = {"coin": "BTC", "side": "B", "px": "101.0", "sz": "1.0", "time": 3, "hash": "0x2", "tid": 8}


class WampHarness(Harness):
    """The feed harness with WAMP on the same path."""

    def __init__(self, reactor: Any, tmp_path: Path, tokens: Any = None, **ws: Any) -> None:
        self.tokens = tokens
        super().__init__(reactor, tmp_path, **ws)
        self.sessions: list[Probe] = []

    def make_site(self, reactor: Any, wamp_factory: Any = None) -> Any:
        auth = {"tokens": self.tokens} if self.tokens is not None else {}
        self.hub = WampHub("orderbook", self.registry, self.books, self.metrics, **auth)
        return super().make_site(reactor, make_wamp_factory(self.hub, self.ws, reactor))

    async def join(
        self, realm: str = "orderbook", ticket: str | None = None, query: str = ""
    ) -> Probe:
        """An autobahn-python WAMP session joined over wss (with a ticket if given)."""
        probe = Probe(ComponentConfig(realm), ticket)
        factory = WampWebSocketClientFactory(
            lambda: probe,
            url=f"wss://localhost:{self.port_number}/ws{query}",
            serializers=[JsonSerializer()],
        )
        endpoint = SSL4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number, self.tls())
        await endpoint.connect(factory)
        self.sessions.append(probe)
        return await probe.joined

    async def raw(self) -> Client:
        """A plain WebSocket client that offers wamp.2.json (to send anything at all)."""
        url = f"wss://localhost:{self.port_number}/ws"
        factory = WebSocketClientFactory(url, protocols=["wamp.2.json"])
        factory.protocol = Client
        endpoint = SSL4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number, self.tls())
        client = await endpoint.connect(factory)
        self.clients.append(client)
        await client.opened
        return client

    async def stop(self) -> None:
        for probe in self.sessions:
            if probe.is_attached():
                probe.leave()
        await defer.DeferredList([p.left for p in self.sessions])
        await super().stop()


class Probe(ApplicationSession):
    """An autobahn-python client session that records events per topic."""

    def __init__(self, config: ComponentConfig, ticket: str | None = None) -> None:
        super().__init__(config)
        self.ticket = ticket
        self.joined: defer.Deferred[Probe] = defer.Deferred()
        self.left: defer.Deferred[None] = defer.Deferred()
        self.events: dict[str, list[Any]] = {}

    def onConnect(self) -> None:
        if self.ticket is None:
            super().onConnect()
        else:
            self.join(self.config.realm, authmethods=["ticket"], authid="probe")

    def onChallenge(self, challenge: Any) -> str:
        assert challenge.method == "ticket" and self.ticket is not None
        return self.ticket

    def onJoin(self, details: Any) -> None:
        self.details = details
        self.joined.callback(self)

    def onLeave(self, details: Any) -> None:
        if not self.joined.called:
            self.joined.errback(ConnectionError(f"{details.reason}: {details.message}"))
        super().onLeave(details)

    def onDisconnect(self) -> None:
        if not self.left.called:
            self.left.callback(None)

    async def listen(self, topic: str, **options: Any) -> Any:
        self.events.setdefault(topic, [])
        return await self.subscribe(
            lambda *args, **kwargs: self.events[topic].append((args, kwargs)),
            topic,
            options=SubscribeOptions(**options) if options else None,
        )


@pytest.fixture
def harness(reactor: Any, tmp_path: Path) -> WampHarness:
    return WampHarness(reactor, tmp_path)


@pytest_twisted.ensureDeferred
async def test_autobahn_python_session_subscribes_and_calls(harness: WampHarness) -> None:
    """A real WAMP client joins, gets events for its topics and results of calls."""
    await harness.start()
    try:
        session = await harness.join()
        trades = await session.listen("orderbook.trades.BTC")
        await session.listen("orderbook.bbo.BTC", get_retained=True)
        await until(harness.reactor, lambda: session.events["orderbook.bbo.BTC"])
        assert session.events["orderbook.bbo.BTC"][0][0][0]["bbo"][0]["px"] == "100.0"
        harness.registry.trades_paired({"BTC": [TRADE]})
        await until(harness.reactor, lambda: session.events["orderbook.trades.BTC"])
        assert session.events["orderbook.trades.BTC"] == [(([TRADE],), {})]
        assert await session.call("orderbook.coins") == ["BTC", "ETH"]
        book = await session.call("orderbook.l2book.get", "BTC", nLevels=1)
        assert book["levels"][1] == [{"px": "101.0", "sz": "1.0", "n": 1}]
        snapshot = await session.call("orderbook.l4book.snapshot", coin="ETH")
        assert snapshot["height"] == 100
        with pytest.raises(ApplicationError) as caught:
            await session.call("orderbook.bbo.get", "DOGE")
        assert caught.value.error == "wamp.error.invalid_argument"
        with pytest.raises(ApplicationError) as caught:
            await session.publish(
                "orderbook.trades.BTC", 1, options=PublishOptions(acknowledge=True)
            )
        assert caught.value.error == "wamp.error.not_authorized"
        with pytest.raises(ApplicationError) as caught:
            await session.register(lambda: 1, "com.example.one")
        assert caught.value.error == "wamp.error.not_authorized"
        await trades.unsubscribe()
        assert harness.registry.subscription_count() == 1
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_wamp_and_json_clients_share_the_endpoint_and_the_fan_out(
    harness: WampHarness,
) -> None:
    """Two WAMP sessions and a JSON client on /ws: one block, one EVENT built, all receive."""
    await harness.start()
    try:
        first, second = await harness.join(), await harness.join()
        a = await first.listen("orderbook.trades.BTC")
        b = await second.listen("orderbook.trades.BTC")
        assert a.id == b.id
        plain = await harness.connect()
        plain.send({"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}})
        await plain.channel("subscriptionResponse")
        built = harness.hub.envelope.events_built
        harness.registry.trades_paired({"BTC": [TRADE]})
        message = await plain.channel("trades")
        assert message["data"] == [TRADE]
        await until(
            harness.reactor,
            lambda: first.events["orderbook.trades.BTC"] and second.events["orderbook.trades.BTC"],
        )
        assert harness.hub.envelope.events_built == built + 1
        assert first.events["orderbook.trades.BTC"] == second.events["orderbook.trades.BTC"]
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_wrong_realm_is_refused_over_the_wire(harness: WampHarness) -> None:
    """Joining another realm fails with no_such_realm and the connection is closed."""
    await harness.start()
    try:
        with pytest.raises(ConnectionError, match="no_such_realm"):
            await harness.join(realm="elsewhere")
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_garbage_gets_abort_and_close(harness: WampHarness) -> None:
    """A client sending non-WAMP text gets ABORT protocol_violation, then close."""
    await harness.start()
    try:
        client = await harness.raw()
        client.sendMessage(b'{"method": "subscribe"}')
        abort = await client.expect(lambda m: m[0] == 3)
        assert abort[2] == "wamp.error.protocol_violation"
        code, _ = await client.closed
        assert code == 1000
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_message_size_limit_applies_to_wamp(reactor: Any, tmp_path: Path) -> None:
    """A WAMP message over max_message_bytes closes the connection with 1009."""
    harness = WampHarness(reactor, tmp_path, max_message_bytes=256)
    await harness.start()
    try:
        client = await harness.raw()
        client.sendMessage(json.dumps([1, "orderbook", {"roles": {}, "x": "y" * 400}]).encode())
        code, _ = await client.closed
        assert code == 1009
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_rate_limit_applies_to_wamp(reactor: Any, tmp_path: Path) -> None:
    """More than messages_per_minute WAMP messages close the connection with 1008."""
    harness = WampHarness(reactor, tmp_path, messages_per_minute=5)
    await harness.start()
    try:
        client = await harness.raw()
        client.sendMessage(json.dumps([1, "orderbook", {"roles": {"caller": {}}}]).encode())
        for request in range(1, 10):
            client.sendMessage(json.dumps([48, request, {}, "orderbook.coins"]).encode())
        code, reason = await client.closed
        assert code == 1008 and "rate limit" in reason
    finally:
        await harness.stop()


class Tokens:
    """A fake access token store."""

    enabled = True

    def accepts(self, token: str | None) -> bool:
        return token == "t0ken"

    def hold(self, token: str, holder: Any, via: str) -> None:
        """Nothing is revoked here (tests/server/test_access_wamp.py revokes)."""


@pytest_twisted.ensureDeferred
async def test_ticket_authentication_over_the_wire(reactor: Any, tmp_path: Path) -> None:
    """Access control on: autobahn-python joins with the right ticket, or anonymously
    with the token on the upgrade URL; a wrong ticket or none at all is refused with a
    reason saying why."""
    harness = WampHarness(reactor, tmp_path, tokens=Tokens())
    await harness.start()
    try:
        session = await harness.join(ticket="t0ken")
        assert session.details.authmethod == "ticket"
        assert await session.call("orderbook.coins") == ["BTC", "ETH"]
        with pytest.raises(ConnectionError, match="authentication_failed: invalid ticket"):
            await harness.join(ticket="guess")
        with pytest.raises(ConnectionError, match="no_auth_method: .* requires ticket"):
            await harness.join()
        anonymous = await harness.join(query="?token=t0ken")  # as JSON API clients do
        assert anonymous.details.authmethod == "anonymous"
        assert make_wamp_factory(harness.hub, harness.ws, reactor).ticket_auth is True
        plain = WampHub("orderbook", harness.registry, harness.books, Metrics())
        assert make_wamp_factory(plain, harness.ws, reactor).ticket_auth is False
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_a_snapshot_in_parts_is_paced_by_the_client(reactor: Any, tmp_path: Path) -> None:
    """A ~5 MB snapshot in parts to a client without compression, with a 256 KiB
    slow-consumer bound: each part waits for the socket to drain instead of queueing
    (all at once they would close the client), and the parts rebuild the snapshot."""
    from tests.server.test_wamp_js import deep_books, snapshot_oids

    books = deep_books()
    harness = WampHarness(reactor, tmp_path, books=books, max_queued_bytes=256 * 1024)
    await harness.start()
    try:
        session = await harness.join()
        parts: list[Any] = []
        options = CallOptions(on_progress=parts.append)
        final = await session.call("orderbook.l4book.snapshot", "BTC", options=options)
        parts.append(final)
        assert len(parts) == 5 and {part["height"] for part in parts} == {100}
        oids = [[o["oid"] for part in parts for o in part["levels"][side]] for side in (0, 1)]
        assert oids == snapshot_oids(books, "BTC")
        whole = await session.call("orderbook.l4book.snapshot", "BTC")
        assert [[o["oid"] for o in side] for side in whole["levels"]] == oids
        assert session.is_attached()
    finally:
        await harness.stop()

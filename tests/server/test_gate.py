"""The connection gate: real sockets on 127.0.0.1, the handshake deadline on a task.Clock."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint

from orderbook.server import gate
from orderbook.server.gate import address_key, http_reply
from tests.server.harness import Harness, until

DEADLINE = 10.0


class Raw(protocol.Protocol):
    """A raw client socket: records what it receives and when it is closed."""

    def __init__(self, send: bytes = b"") -> None:
        self.send = send
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.send:
            self.transport.write(self.send)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class GateHarness(Harness):
    """The feed harness whose site (gate and feeds) runs its timers on a task.Clock."""

    def __init__(self, reactor: Any, tmp_path: Any, **ws: Any) -> None:
        self.clock = task.Clock()
        super().__init__(reactor, tmp_path, **ws)
        self.raws: list[Raw] = []

    def make_site(self, reactor: Any, wamp_factory: Any = None) -> Any:
        return super().make_site(self.clock, wamp_factory)

    @property
    def gate(self) -> gate.Gate:
        return self.site.gate

    def rejected(self, reason: str) -> float:
        return self.metrics.metrics["orderbook_ws_connections_rejected_total"].get(reason)

    async def raw(self, send: bytes = b"", tls: bool = False) -> Raw:
        """A socket that connects (TLS or plain TCP) and sends ``send``, then nothing."""
        client = Raw(send)
        if tls:
            endpoint: Any = SSL4ClientEndpoint(
                self.reactor, "127.0.0.1", self.port_number, self.tls()
            )
        else:
            endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number)
        await endpoint.connect(protocol.Factory.forProtocol(lambda: client))
        self.raws.append(client)
        return client

    async def stop(self) -> None:
        for raw in self.raws:
            if not raw.lost.called:
                raw.transport.abortConnection()
            await raw.lost
        await super().stop()
        await until(self.reactor, lambda: self.gate.open_count() == 0)


@pytest_twisted.async_yield_fixture
async def gated(reactor, tmp_path):
    made: list[GateHarness] = []

    async def make(**ws: Any) -> GateHarness:
        harness = await GateHarness(reactor, tmp_path, **ws).start()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.stop()


# -- pure parts ----------------------------------------------------------------------


def test_address_key_groups_ipv6_by_64():
    """IPv4 by address; IPv6 by its /64; an IPv4-mapped IPv6 address as the IPv4 one."""
    assert address_key(IPv4Address("TCP", "10.1.2.3", 5)) == "10.1.2.3"
    a = address_key(IPv6Address("TCP", "2001:db8:1:2:aaaa::1", 5))
    b = address_key(IPv6Address("TCP", "2001:db8:1:2:bbbb::9", 5))
    assert a == b == "2001:db8:1:2::/64"
    assert address_key(IPv6Address("TCP", "2001:db8:1:3::1", 5)) != a
    assert address_key(IPv6Address("TCP", "::ffff:10.1.2.3", 5)) == "10.1.2.3"
    assert address_key(UNIXAddress(b"/tmp/s")) == "UNIXAddress"


def test_http_reply_is_complete_and_closes():
    """The canned reply has the status, the length of its text and Connection: close."""
    reply = http_reply("429 Too Many Requests", "too many")
    head, body = reply.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"Content-Length: 9" in head and b"Connection: close" in head
    assert body == b"too many\n"


# -- caps ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_per_ip_cap_answers_429_and_frees_on_close(gated):
    """Past max_connections_per_ip the upgrade gets HTTP 429 naming the limit; a closed
    connection frees its slot."""
    harness = await gated(max_connections_per_ip=2)
    first = await harness.connect()
    await harness.connect()
    third = await harness.connect(wait_open=False)
    with pytest.raises(ConnectionError, match="429"):
        await third.opened
    assert harness.rejected("per_ip") == 1
    first.sendClose()
    await first.closed
    await until(harness.reactor, lambda: harness.gate.by_address.get("127.0.0.1") == 1)
    fourth = await harness.connect()
    fourth.send({"method": "ping"})
    await fourth.channel("pong")


@pytest_twisted.ensureDeferred
async def test_per_ip_reply_text(gated):
    """The refused socket reads a complete HTTP 429 with the reason, then is closed."""
    harness = await gated(max_connections_per_ip=1)
    await harness.connect()
    refused = await harness.raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", tls=True)
    await refused.lost
    assert refused.received.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert refused.received.endswith(b"too many connections from your address (limit 1)\n")


@pytest_twisted.ensureDeferred
async def test_half_open_sockets_count(gated):
    """Sockets that never start TLS count against the per-IP cap and in the gauges."""
    harness = await gated(max_connections_per_ip=2)
    await harness.raw()
    await harness.raw()
    await until(harness.reactor, lambda: len(harness.gate.handshaking) == 2)
    text = harness.metrics.render()
    assert "orderbook_sockets_open 2" in text
    assert "orderbook_sockets_handshaking 2" in text
    refused = await harness.connect(wait_open=False)
    with pytest.raises(ConnectionError, match="429"):
        await refused.opened


@pytest_twisted.ensureDeferred
async def test_global_cap_counts_every_socket(gated):
    """max_connections counts handshaking sockets too: past it, HTTP 503 naming the limit."""
    harness = await gated(max_connections=2, max_connections_per_ip=0)
    await harness.raw()
    await harness.connect()
    refused = await harness.connect(wait_open=False)
    with pytest.raises(ConnectionError, match="503"):
        await refused.opened
    assert harness.rejected("max_connections") == 1


@pytest_twisted.ensureDeferred
async def test_refusals_pending_bound_drops_at_accept(gated, monkeypatch):
    """While REFUSALS_PENDING refusals are under way, further sockets are closed at once."""
    monkeypatch.setattr(gate, "REFUSALS_PENDING", 1)
    harness = await gated(max_connections_per_ip=1)
    await harness.raw()
    pending = await harness.raw()  # refused, waits for a request to answer
    dropped = await harness.raw()
    await dropped.lost
    assert not pending.lost.called
    assert harness.rejected("per_ip") == 1
    assert harness.rejected("dropped") == 1
    assert harness.gate.open_count() == 2


# -- the handshake deadline ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_silent_socket_closed_at_the_deadline(gated):
    """A socket that sends nothing is aborted when the deadline passes, not before."""
    harness = await gated(handshake_timeout_s=DEADLINE)
    silent = await harness.raw()
    await until(harness.reactor, lambda: len(harness.gate.handshaking) == 1)
    harness.clock.advance(DEADLINE - 0.1)
    assert not silent.lost.called and harness.rejected("handshake_timeout") == 0
    harness.clock.advance(0.2)
    await silent.lost
    assert harness.rejected("handshake_timeout") == 1
    await until(harness.reactor, lambda: harness.gate.open_count() == 0)
    assert harness.gate.by_address == {}


@pytest_twisted.ensureDeferred
async def test_partial_request_gets_408_at_the_deadline(gated):
    """TLS done and half a request sent: the client reads HTTP 408 with the reason."""
    harness = await gated(handshake_timeout_s=DEADLINE)
    slow = await harness.raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n", tls=True)
    await until(harness.reactor, lambda: harness.gate.handshaking and _received(harness))
    harness.clock.advance(DEADLINE)
    await slow.lost
    assert slow.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert slow.received.endswith(b"handshake not completed within 10 s\n")


def _received(harness: GateHarness) -> bool:
    return all(p._received for p in harness.gate.handshaking)


@pytest_twisted.ensureDeferred
async def test_open_websocket_outlives_the_deadline(gated):
    """An upgraded WebSocket is past the deadline: it stays open and its close is seen."""
    harness = await gated(handshake_timeout_s=DEADLINE, idle_timeout_s=0)
    client = await harness.connect()
    assert not harness.gate.handshaking
    harness.clock.advance(DEADLINE * 3)
    client.send({"method": "ping"})
    await client.channel("pong")
    assert harness.rejected("handshake_timeout") == 0
    client.sendClose()
    await client.closed
    await until(harness.reactor, lambda: harness.gate.open_count() == 0)


@pytest_twisted.ensureDeferred
async def test_answered_http_request_is_past_the_deadline(gated, reactor):
    """A plain HTTP request that got its answer is not closed by the deadline."""
    harness = await gated(handshake_timeout_s=DEADLINE)
    client = await harness.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", tls=True)
    await until(reactor, lambda: b"\r\n\r\n" in client.received)
    assert client.received.startswith(b"HTTP/1.1 200")
    assert not harness.gate.handshaking
    harness.clock.advance(DEADLINE * 2)
    assert not client.lost.called
    assert harness.rejected("handshake_timeout") == 0


@pytest_twisted.ensureDeferred
async def test_closed_http_sockets_are_freed_across_a_freeze(gated, reactor):
    """Sockets alive at a gc.freeze() (gc_policy does one a minute) that never became
    WebSockets (answered, timed out, aborted) are freed once closed without a full
    collection: cyclic garbage that was frozen is never collected."""
    harness = await gated(handshake_timeout_s=DEADLINE)
    raws = [await harness.raw(tls=True) for _ in range(4)]
    await until(reactor, lambda: len(harness.gate.handshaking) == 4)
    sockets = [(p, p.transport, p.wrappedProtocol) for p in harness.gate.handshaking]
    refs = [weakref.ref(o) for objects in sockets for o in objects]
    del sockets
    gc.collect()
    gc.freeze()
    try:
        raws[0].transport.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await until(reactor, lambda: b"\r\n\r\n" in raws[0].received)
        raws[0].transport.loseConnection()
        raws[1].transport.write(b"GET /ws HTTP/1.1\r\n")  # partial: 408 at the deadline
        await until(reactor, lambda: sum(p._received for p in harness.gate.handshaking) == 1)
        raws[3].transport.abortConnection()
        harness.clock.advance(DEADLINE)  # raws[1] 408, raws[2] (silent) aborted
        for raw in raws:
            await raw.lost
        await until(reactor, lambda: harness.gate.open_count() == 0)
        # young collections only (they run all the time): Twisted's TLS leaves a
        # young Failure <-> traceback cycle at an unclean close
        await until(reactor, lambda: gc.collect(1) >= 0 and all(r() is None for r in refs))
    finally:
        gc.unfreeze()

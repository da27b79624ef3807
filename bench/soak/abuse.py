"""Careless and hostile clients: churn, stall, flood, half-open handshakes.

Each is a loop that runs until the soak's :class:`Pacer` stops it, with a
bounded number of rounds. Pauses between actions shape the load; every wait
for the server is on a Deferred with a deadline.
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred

from bench.soak.connect import Closed, Connector, SoakProtocol, Tally

CHANNELS = ("l2Book", "trades", "bbo", "l4Book")
RESUBSCRIBES = 12  # l4Book resubscribes of a stalled client (48 messages: within any rate bucket)


class Pacer:
    """The soak's clock for load shaping: pauses that end early when the soak stops."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.stopping = False
        self._waiting: list[Deferred] = []

    async def pause(self, seconds: float) -> None:
        """Let ``seconds`` pass (or less, if the soak stops meanwhile)."""
        if self.stopping:
            return
        waiter: Deferred = Deferred()
        call = self.reactor.callLater(seconds, lambda: waiter.called or waiter.callback(None))
        self._waiting.append(waiter)
        try:
            await waiter
        finally:
            self._waiting.remove(waiter)
            if call.active():
                call.cancel()

    def stop(self) -> None:
        self.stopping = True
        for waiter in list(self._waiting):
            if not waiter.called:
                waiter.callback(None)


class Reader(SoakProtocol):
    """A connection that counts what it gets and remembers the first message."""

    first: Deferred
    received = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N803
        self.received += 1
        if not self.first.called:
            self.first.callback(payload)


class Pinger(Reader):
    """A reader that keeps its connection alive with ``{"method":"ping"}`` every ``ping_s``."""

    ping_s = 5.0

    def onOpen(self) -> None:
        super().onOpen()
        self._pinger = task.LoopingCall(self.send_json, {"method": "ping"})
        self._pinger.clock = self.factory.reactor
        self._pinger.start(self.ping_s, now=False)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        if getattr(self, "_pinger", None) is not None and self._pinger.running:
            self._pinger.stop()
        super().onClose(wasClean, code, reason)


async def closed_within(proto: SoakProtocol, reactor: Any, seconds: float) -> Closed | None:
    """The connection's end, or None if it is still open after ``seconds``."""
    waiter: Deferred = Deferred()
    proto.closed.addCallback(lambda ended: waiter.called or waiter.callback(ended) or ended)
    call = reactor.callLater(seconds, lambda: waiter.called or waiter.callback(None))
    ended = await waiter
    if call.active():
        call.cancel()
    return ended


def random_subscriptions(rng: random.Random, coins: list[str]) -> list[dict[str, Any]]:
    picks = rng.sample([(c, k) for c in CHANNELS for k in coins], rng.randint(1, 4))
    subscriptions = [{"type": channel, "coin": coin} for channel, coin in picks]
    if rng.random() < 0.3:
        subscriptions.append({"type": "allMids"})
    return subscriptions


@dataclass
class Abuse:
    """The clients that are not well behaved, and what happened to them."""

    connector: Connector
    pacer: Pacer
    coins: list[str]
    messages_per_minute: int
    seed: int = 0
    tallies: dict[str, Tally] = field(default_factory=dict)
    stalled_open: list[str] = field(default_factory=list)  # stallers the server never closed
    admitted: list[str] = field(default_factory=list)  # intruders the server let in
    half_open_left: int = 0  # half-open sockets the server had not closed when we gave up

    def tally(self, kind: str) -> Tally:
        return self.tallies.setdefault(kind, Tally())

    async def churn(self, index: int, rounds: int) -> None:
        """Connect, subscribe to a few views, maybe read one message, leave (cleanly or not)."""
        rng = random.Random(f"churn-{self.seed}-{index}")
        reactor = self.connector.reactor
        for _ in range(rounds):
            if self.pacer.stopping:
                return
            try:
                proto = await self.connector.open(
                    Reader, self.tally("churn"), in_url=rng.random() < 0.5, first=Deferred()
                )
            except Exception:
                await self.pacer.pause(0.5)
                continue
            for subscription in random_subscriptions(rng, self.coins):
                proto.subscribe(subscription)
            if rng.random() < 0.5:
                await self.pacer.pause(rng.uniform(0.0, 1.0))
            if rng.random() < 0.5:
                proto.close()
            else:
                proto.abort()
            await closed_within(proto, reactor, 10)
            await self.pacer.pause(rng.uniform(0.0, 0.3))

    async def stall(self, index: int, rounds: int, stall_s: float) -> None:
        """Subscribe to the big lossless views, stop reading for ``stall_s``, then look.

        Every other staller also resubscribes l4Book while not reading, so
        Snapshots pile up towards ``max_queued_bytes`` (slow-consumer close).
        """
        reactor = self.connector.reactor
        for _ in range(rounds):
            if self.pacer.stopping:
                return
            try:
                proto = await self.connector.open(Reader, self.tally("stall"), first=Deferred())
            except Exception:
                await self.pacer.pause(1.0)
                continue
            for coin in self.coins:
                proto.subscribe({"type": "l4Book", "coin": coin})
                proto.subscribe({"type": "trades", "coin": coin})
            proto.subscribe({"type": "allMids"})
            proto.transport.pauseProducing()
            for _ in range(0 if index % 2 else RESUBSCRIBES):  # every one queues a Snapshot
                for coin in self.coins[:2]:
                    proto.subscribe({"type": "l4Book", "coin": coin}, "unsubscribe")
                    proto.subscribe({"type": "l4Book", "coin": coin})
            started = time.monotonic()
            await self.pacer.pause(stall_s)
            proto.transport.resumeProducing()
            held = time.monotonic() - started
            ended = await closed_within(proto, reactor, 15)
            if ended is None:
                if held >= stall_s:  # (the soak's end may cut a stall short)
                    self.stalled_open.append(f"stall {index}: still open after {held:.0f} s")
                proto.abort()
                await closed_within(proto, reactor, 10)

    async def flood(self, index: int, rounds: int) -> None:
        """Send requests far past ``messages_per_minute`` at once; the server must close."""
        reactor = self.connector.reactor
        burst = 3 * self.messages_per_minute
        for _ in range(rounds):
            if self.pacer.stopping:
                return
            try:
                proto = await self.connector.open(Reader, self.tally("flood"), first=Deferred())
            except Exception:
                await self.pacer.pause(1.0)
                continue
            coin = self.coins[index % len(self.coins)]
            for n in range(burst):
                if proto.state != proto.STATE_OPEN:
                    break
                if n % 3 == 2:
                    proto.send_json({"method": "ping"})
                else:
                    method = "subscribe" if n % 3 == 0 else "unsubscribe"
                    proto.subscribe({"type": "bbo", "coin": coin}, method)
            ended = await closed_within(proto, reactor, 15)
            if ended is None:
                self.tally("flood").closes["still open after the burst"] += 1
                proto.abort()
                await closed_within(proto, reactor, 10)
            await self.pacer.pause(1.0)

    async def intrude(self, rounds: int) -> None:
        """Connect without a token or with a wrong one: every upgrade must be refused."""
        tally = self.tally("intruder")
        for n in range(rounds):
            if self.pacer.stopping:
                return
            token = None if n % 2 else "not-a-token-" + str(n)
            try:
                proto = await self.connector.open(Reader, tally, token=token, first=Deferred())
            except Exception:
                pass  # refused: counted by the connector
            else:
                self.admitted.append(f"intruder {n} admitted")
                proto.abort()
            await self.pacer.pause(0.5)

    async def revoked_client(self, token: str, ping_s: float) -> SoakProtocol | None:
        """A client whose token the operator will revoke: it must be closed then."""
        try:
            proto = await self.connector.open(
                Pinger, self.tally("revoked"), token=token, first=Deferred(), ping_s=ping_s
            )
        except Exception:
            return None
        proto.subscribe({"type": "bbo", "coin": self.coins[0]})
        return proto

    async def half_open(self, count: int, handshake_timeout_s: float) -> None:
        """Rounds of ``count`` sockets that never finish the handshake; the server must close them.

        A third send nothing, a third the first bytes of a TLS ClientHello, a
        third complete TLS and half an HTTP request (those get HTTP 408).
        """
        tally = self.tally("half-open")
        reactor = self.connector.reactor
        while not self.pacer.stopping:
            sockets = [sock for n in range(count) if (sock := self._half_open(n, tally))]
            deadline = time.monotonic() + handshake_timeout_s + CLOSING_GRACE_S
            while sockets and time.monotonic() < deadline and not self.pacer.stopping:
                sockets = [sock for sock in sockets if not _closed_by_peer(sock, tally)]
                await task.deferLater(reactor, 0.2, lambda: None)
            if not self.pacer.stopping:
                self.half_open_left += len(sockets)
            for sock in sockets:
                sock.close()
            await self.pacer.pause(1.0)

    def _half_open(self, n: int, tally: Tally) -> socket.socket | ssl.SSLSocket | None:
        tally.connects += 1
        try:
            sock = socket.create_connection(("127.0.0.1", self.connector.port), timeout=5)
            if n % 3 == 1:
                sock.sendall(b"\x16\x03\x01\x00")  # the first bytes of a TLS ClientHello
            elif n % 3 == 2:
                sock = _unverified.wrap_socket(sock, server_hostname="127.0.0.1")
                sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError as exc:
            tally.refused[str(exc)[:60]] += 1
            return None
        sock.setblocking(False)
        return sock


_unverified = ssl.create_default_context()
_unverified.check_hostname = False
_unverified.verify_mode = ssl.CERT_NONE
CLOSING_GRACE_S = 10.0  # past the handshake deadline, for the server's timer and a busy machine


def _closed_by_peer(sock: socket.socket, tally: Tally) -> bool:
    """True once the server closed ``sock`` (what it said last is tallied)."""
    try:
        data = sock.recv(4096)
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        data = b""
    if data:
        status = data.split(b"\r\n", 1)[0].decode(errors="replace")
        if status.startswith("HTTP/"):
            tally.closes[status[:40]] += 1
        return False
    tally.closes["closed by the server"] += 1
    sock.close()
    return True

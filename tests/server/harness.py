"""A real TLS server on 127.0.0.1 and real autobahn clients, for the server tests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import defer
from twisted.internet.endpoints import SSL4ClientEndpoint, serverFromString
from twisted.internet.ssl import Certificate, optionsForClientTLS

from orderbook.book.books import Books
from orderbook.book.events import StatusOrder
from orderbook.config import ServerSettings, WebSocketSettings
from orderbook.feed.registry import Registry
from orderbook.metrics import Metrics
from orderbook.server.site import make_site
from orderbook.tls import make_self_signed
from tests import polling

TIMEOUT = 5.0


def order(oid: int, side: str, px: str, sz: str, coin: str = "BTC") -> StatusOrder:
    return StatusOrder(
        coin=coin, side=side, limitPx=px, sz=sz, oid=oid, timestamp=1_700_000_000_000
    )


def small_books(height: int | None = 100) -> Books:
    """Books with BTC (2 bids, 1 ask) and ETH, at ``height`` (None: not ready)."""
    books = Books()
    books.load_orders(
        "BTC", "B", [("0xa", order(1, "B", "100.0", "1.5")), ("0xb", order(2, "B", "99.0", "2"))]
    )
    books.load_orders("BTC", "A", [("0xc", order(3, "A", "101.0", "1"))])
    books.load_orders("ETH", "B", [("0xa", order(4, "B", "10.0", "3", "ETH"))])
    books.load_orders("ETH", "A", [("0xa", order(5, "A", "11.0", "3", "ETH"))])
    if height is not None:
        books.set_height(height, 1_700_000_000_000)
    return books


class Client(WebSocketClientProtocol):
    """Collects every message; ``expect`` waits for one matching a predicate."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []
        self.cursor = 0
        self.opened: defer.Deferred[Client] = defer.Deferred()
        self.closed: defer.Deferred[tuple[int | None, str | None]] = defer.Deferred()
        self.close_info: tuple[int | None, str | None] | None = None
        self._waiters: list[tuple[Any, defer.Deferred[Any]]] = []

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(json.loads(payload))
        self._check()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_info = (code, reason)
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"handshake failed: {code} {reason}"))
        self.closed.callback(self.close_info)

    def send(self, request: Any) -> None:
        self.sendMessage(json.dumps(request).encode())

    def expect(self, predicate: Any, timeout: float = TIMEOUT) -> defer.Deferred[Any]:
        """The next message (after the last expected one) matching ``predicate``."""
        from twisted.internet import reactor

        waiter: defer.Deferred[Any] = defer.Deferred()
        waiter.addTimeout(timeout, reactor)
        self._waiters.append((predicate, waiter))
        self._check()
        return waiter

    def channel(self, name: str, timeout: float = TIMEOUT) -> defer.Deferred[Any]:
        return self.expect(lambda m: m.get("channel") == name, timeout)

    def _check(self) -> None:
        while self._waiters:
            predicate, waiter = self._waiters[0]
            if waiter.called:
                self._waiters.pop(0)
                continue
            for index in range(self.cursor, len(self.messages)):
                if predicate(self.messages[index]):
                    self.cursor = index + 1
                    self._waiters.pop(0)
                    waiter.callback(self.messages[index])
                    break
            else:
                return


class Harness:
    """One server (TLS, port 0) with real Books, registry and metrics."""

    def __init__(self, reactor: Any, tmp_path: Path, books: Books | None = None, **ws: Any) -> None:
        self.reactor = reactor
        self.books = books if books is not None else small_books()
        self.ws = replace(WebSocketSettings(auto_ping_interval_s=0), **ws)
        self.server = ServerSettings(listen=("ssl:0",), path="/ws", page=False)
        self.metrics = Metrics()
        self.status = {"state": "ready", "height": self.books.height, "lag_ms": 5}
        self.registry = Registry(self.books, self.ws, self.metrics, reactor=reactor)
        self.site = self.make_site(reactor)
        key, cert = make_self_signed(["localhost", "127.0.0.1"])
        (tmp_path / "key.pem").write_bytes(key)
        (tmp_path / "cert.pem").write_bytes(cert)
        self.cert = cert
        self.tmp_path = tmp_path
        self.clients: list[Client] = []
        self.port: Any = None

    def make_site(self, reactor: Any, wamp_factory: Any = None) -> Any:
        """The Site under test (subclasses add a WAMP factory)."""
        return make_site(
            self.server,
            self.ws,
            self.books,
            self.registry,
            self.metrics,
            lambda: self.status,
            reactor,
            wamp_factory=wamp_factory,
        )

    async def start(self) -> Harness:
        spec = f"ssl:0:interface=127.0.0.1:privateKey={self.tmp_path / 'key.pem'}:certKey={self.tmp_path / 'cert.pem'}"
        self.port = await serverFromString(self.reactor, spec).listen(self.site)
        return self

    @property
    def port_number(self) -> int:
        return self.port.getHost().port

    def tls(self) -> Any:
        return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(self.cert))

    async def connect(
        self,
        path: str = "/ws",
        compression: bool = True,
        window_bits: int = 0,
        origin: str | None = None,
        wait_open: bool = True,
    ) -> Client:
        factory = WebSocketClientFactory(f"wss://localhost:{self.port_number}{path}", origin=origin)
        factory.protocol = Client
        if compression:
            offer = PerMessageDeflateOffer(
                accept_max_window_bits=True, request_max_window_bits=window_bits
            )
            factory.setProtocolOptions(
                perMessageCompressionOffers=[offer],
                perMessageCompressionAccept=_accept_response,
            )
        endpoint = SSL4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number, self.tls())
        client = await endpoint.connect(factory)
        self.clients.append(client)
        if wait_open:
            await client.opened
        return client

    async def stop(self) -> None:
        for client in self.clients:
            if client.close_info is None:
                client.transport.resumeProducing()
                client.dropConnection(abort=True)
        for client in self.clients:
            await client.closed
        await until(self.reactor, lambda: not self.registry.connections)
        await self.port.stopListening()


def _accept_response(response: Any) -> Any:
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


async def until(reactor: Any, condition: Any, timeout: float = TIMEOUT) -> None:
    """Wait (polling the reactor) until ``condition()`` is true, or fail at the deadline."""
    await polling.until(condition, timeout, "the condition", reactor)


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)

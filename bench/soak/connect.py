"""WebSocket connections to the server under test: TLS, permessage-deflate, autobahn.

:class:`Connector` opens ``wss://127.0.0.1:PORT/ws`` as a client written from
the documentation would: TLS trusting the server's certificate, a
permessage-deflate offer, no message size limit. Every connection is a
:class:`SoakProtocol` whose ``opened`` fires when the WebSocket is open and
``closed`` with its :class:`Closed` when it ends, so callers wait on those
(with deadlines) instead of sleeping.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint


@dataclass(frozen=True)
class Closed:
    """How a connection ended: ``code`` None when it closed without a close frame."""

    code: int | None
    reason: str
    clean: bool
    by_us: bool


@dataclass
class Tally:
    """What happened to one kind of client."""

    connects: int = 0  # connection attempts
    opened: int = 0  # WebSocket handshakes completed
    refused: Counter = field(default_factory=Counter)  # why a connect failed
    closes: Counter = field(default_factory=Counter)  # "1008 rate limit: …" -> n

    def closed(self, closed: Closed) -> None:
        who = "client" if closed.by_us else "server"
        refused = re.search(r"upgrade failed \[(\d+)", closed.reason)
        reason = f"HTTP {refused.group(1)}" if refused else closed.reason[:60]
        self.closes[f"{closed.code} {reason} ({who})".replace("  ", " ")] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "connects": self.connects,
            "opened": self.opened,
            "refused": dict(self.refused),
            "closes": dict(self.closes.most_common(8)),
        }


class SoakProtocol(WebSocketClientProtocol):
    """A client connection that reports open and close through Deferreds."""

    tally: Tally
    opened: Deferred
    closed: Deferred
    closing_by_us = False

    def onOpen(self) -> None:
        self.tally.opened += 1
        self.opened.callback(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        ended = Closed(code, reason or "", bool(wasClean), self.closing_by_us)
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"closed before open: {code} {reason}"))
        if not self.closed.called:
            self.tally.closed(ended)
            self.closed.callback(ended)

    def send_json(self, value: Any) -> None:
        self.sendMessage(json.dumps(value).encode())

    def subscribe(self, subscription: dict[str, Any], method: str = "subscribe") -> None:
        self.send_json({"method": method, "subscription": subscription})

    def close(self, code: int = 1000) -> None:
        self.closing_by_us = True
        self.sendClose(code)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self.closing_by_us = True
        if self.transport is not None:
            self.transport.abortConnection()


class _Factory(WebSocketClientFactory):
    def __init__(
        self, url: str, protocol: type[SoakProtocol], tally: Tally, attrs: dict, headers: dict
    ) -> None:
        super().__init__(url, headers=headers)
        self.protocol = protocol
        self._tally = tally
        self._attrs = attrs
        self.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer(accept_max_window_bits=True)],
            perMessageCompressionAccept=_accept_deflate,
            maxMessagePayloadSize=0,
            maxFramePayloadSize=0,
            openHandshakeTimeout=20,
            closeHandshakeTimeout=5,
            autoPingInterval=0,
        )

    def buildProtocol(self, addr: Any) -> SoakProtocol:  # noqa: N802 (Twisted API)
        proto = super().buildProtocol(addr)
        proto.tally = self._tally
        proto.opened = Deferred()
        proto.closed = Deferred()
        for name, value in self._attrs.items():
            setattr(proto, name, value)
        return proto


def _accept_deflate(response: Any) -> PerMessageDeflateResponseAccept | None:
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


class Connector:
    """Opens client connections to ``wss://127.0.0.1:port/ws`` trusting ``certificate``.

    ``token`` goes in an ``Authorization: Bearer`` header, or in the URL
    (``?token=``, as browsers must) when ``in_url``.
    """

    def __init__(
        self, reactor: Any, port: int, certificate: Path, token: str | None, path: str = "/ws"
    ) -> None:
        self.reactor = reactor
        self.port = port
        self.token = token
        self.url = f"wss://127.0.0.1:{port}{path}"
        authority = ssl.Certificate.loadPEM(certificate.read_bytes())
        self.tls = ssl.optionsForClientTLS("127.0.0.1", trustRoot=authority)

    async def open(
        self,
        protocol: type[SoakProtocol],
        tally: Tally,
        timeout: float = 30.0,
        token: str | None = "",
        in_url: bool = False,
        **attrs: Any,
    ) -> SoakProtocol:
        """Connect and complete the WebSocket handshake; raise if refused or too slow.

        ``token``: "" for the connector's own, None for none, else that one.
        """
        tally.connects += 1
        token = self.token if token == "" else token
        url, headers = self.url, {}
        if token and in_url:
            url += "?token=" + urllib.parse.quote(token)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        endpoint = SSL4ClientEndpoint(self.reactor, "127.0.0.1", self.port, self.tls, timeout=10)
        factory = _Factory(url, protocol, tally, attrs, headers)
        try:
            proto = await endpoint.connect(factory).addTimeout(timeout, self.reactor)
            return await proto.opened.addTimeout(timeout, self.reactor)
        except Exception as exc:
            refused = re.search(r"upgrade failed \[(\d+)", str(exc))
            tally.refused[f"HTTP {refused.group(1)}" if refused else str(exc)[:60]] += 1
            raise

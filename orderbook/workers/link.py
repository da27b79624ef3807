"""The parent <-> worker channel: JSON lines over a socketpair.

Up (worker -> parent), once a second: ``{"health": {...}, "metrics": [families]}``.
Down (parent -> worker): ``{"health": {...}, "metrics": "text"}``, the whole
server's view that the worker serves on ``/health`` and ``/metrics``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from orderbook.metrics import Metrics
from orderbook.workers.reports import families

MAX_LINE = 1 << 24
FRESH_S = 5.0  # the parent's view is served while it is younger than this


class JsonLines(LineOnlyReceiver):
    """One JSON document per line, handed to ``on_message``."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE
    _log = Logger()

    def __init__(self, on_message: Callable[[dict], None], on_lost: Callable[[], None]) -> None:
        self.on_message = on_message
        self.on_lost = on_lost

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted API)
        try:
            message = json.loads(line)
        except ValueError:
            self._log.warn("worker link: a line that is not JSON ({size} bytes)", size=len(line))
            return
        self.on_message(message)

    def send(self, message: dict) -> None:
        if self.transport is not None:
            self.sendLine(json.dumps(message, separators=(",", ":")).encode())

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 (Twisted API)
        self.on_lost()


def adopt(reactor: Any, fd: int, protocol: JsonLines) -> JsonLines:
    """Run ``protocol`` on one end of a socketpair (the descriptor is duplicated)."""
    reactor.adoptStreamConnection(fd, socket.AF_UNIX, Factory.forProtocol(lambda: protocol))
    return protocol


class WorkerLink:
    """The worker's end: reports up every second, keeps the parent's latest view."""

    interval_s = 1.0

    def __init__(
        self,
        reactor: Any,
        fd: int,
        health: Callable[[], dict[str, Any]],
        metrics: Metrics,
    ) -> None:
        self.reactor = reactor
        self.health = health
        self.metrics = metrics
        self.view: dict[str, Any] | None = None
        self._view_at = 0.0
        self._shutting_down = False
        reactor.addSystemEventTrigger("before", "shutdown", self._shutdown_begins)
        self.protocol = adopt(reactor, fd, JsonLines(self._received, self._lost))
        os.close(fd)
        self._loop = task.LoopingCall(self.report)
        self._loop.clock = reactor
        self._loop.start(self.interval_s, now=False)

    def report(self) -> None:
        document = dict(self.health())
        document["pid"] = os.getpid()
        self.protocol.send({"health": document, "metrics": families(self.metrics)})

    def _received(self, message: dict) -> None:
        self.view = message
        self._view_at = self.reactor.seconds()

    def _lost(self) -> None:
        # the parent closed the link (it is stopping us) or is gone: a worker never outlives it
        if self._loop.running:
            self._loop.stop()
        if not self._shutting_down:
            self.reactor.callLater(0, self.reactor.stop)

    def _shutdown_begins(self) -> None:
        self._shutting_down = True

    def fresh_view(self) -> dict[str, Any] | None:
        if self.view is not None and self.reactor.seconds() - self._view_at < FRESH_S:
            return self.view
        return None

    def server_health(self, own: dict[str, Any]) -> dict[str, Any]:
        view = self.fresh_view()
        return view["health"] if view else own

    def render(self) -> str:
        """The /metrics text: the whole server's, as the parent last sent it."""
        view = self.fresh_view()
        return view["metrics"] if view else self.metrics.render()

"""The parent process of ``[server] workers = N``: sockets, snapshot fan-in, supervisor.

At privileged start it binds every listen endpoint (one line and exit 1 when
one cannot be bound, as a single server does) and opens the snapshot fan-in
on 127.0.0.1; then the supervisor spawns the workers onto them.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from orderbook.config import NodeSettings
from orderbook.metrics import Metrics
from orderbook.workers import environment
from orderbook.workers.snapshots import SnapshotFanIn
from orderbook.workers.sockets import (
    ListenError,
    ListeningSockets,
    NotPassed,
    activated_descriptor,
    address_of,
)
from orderbook.workers.supervisor import WorkerSupervisor

_log = Logger(namespace="orderbook.workers")


class ParentService(MultiService):
    """Bind, open the fan-in, then start the supervisor (and any sibling services)."""

    def __init__(
        self,
        reactor: Any,
        endpoints: list[tuple[str, str]],
        source: Path,
        count: int,
        balance: str,
        config_path: str,
        node: NodeSettings,
        logfile: str | None,
        fail: Any,
    ) -> None:
        super().__init__()
        for spec, transport in endpoints:  # config mistakes: one line before twistd starts
            try:
                if address_of(transport) is None:
                    activated_descriptor(spec, transport)
            except NotPassed as exc:
                fail(f"{source}: {exc}")
            except ListenError as exc:
                fail(str(exc))
        self.reactor = reactor
        self.endpoints = endpoints
        self.source = source
        self.count = count
        self.balance = balance
        self.config_path = config_path
        self.metrics = Metrics()
        self.fan_in = SnapshotFanIn(
            reactor, node.info_url, node.snapshot_path, node.snapshot_timeout_s
        )
        self.metrics.gauge(
            "orderbook_node_snapshot_requests_total",
            "fileSnapshot requests sent to the node for every worker (one serves them all)",
            read=lambda: self.fan_in.node_requests,
        )
        self.logfile = logfile
        self.fail = fail
        self.supervisor: WorkerSupervisor | None = None
        self._fan_in_port: Any = None

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted API)
        try:
            sockets = ListeningSockets(self.endpoints, self.count, self.balance)
        except NotPassed as exc:
            self.fail(f"{self.source}: {exc}")
            return
        except ListenError as exc:
            self.fail(str(exc))
            return
        root = Resource()
        root.putChild(b"info", self.fan_in)
        site = Site(root)
        site.noisy = False
        self._fan_in_port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        info_url = f"http://127.0.0.1:{self._fan_in_port.getHost().port}/info"
        self.supervisor = WorkerSupervisor(
            self.reactor,
            self.count,
            self.config_path,
            sockets,
            self.metrics,
            {environment.INFO_URL: info_url},
            self.logfile,
        )
        self.supervisor.setServiceParent(self)
        for spec, _ in self.endpoints:
            _log.info(
                "listening on {spec} for {count} workers ({balance})",
                spec=spec,
                count=self.count,
                balance=self.balance,
            )
        super().privilegedStartService()

    def health(self) -> dict[str, Any]:
        """The whole server's health document (``metrics_listen`` in the parent)."""
        if self.supervisor is None:
            return {"state": "initializing", "reason": "workers not started", "workers": []}
        return self.supervisor.health()

    def render(self) -> str:
        """The whole server's /metrics text."""
        if self.supervisor is None:
            return self.metrics.render()
        return self.supervisor.exposition()

    def reload_workers(self) -> None:
        """SIGHUP reached the parent: every worker re-reads its files too."""
        if self.supervisor is not None:
            self.supervisor.signal_workers(signal.SIGHUP)

    def stopService(self) -> Any:  # noqa: N802 (Twisted API)
        stopped = super().stopService()
        if self._fan_in_port is not None:
            self._fan_in_port.stopListening()
        return stopped

"""The parent of ``[server] workers = N``: spawns, watches and stops the workers.

Each worker is a whole server (``twistd -n orderbook`` with the same config:
its own ingest, book and feeds) accepting on the listening sockets the parent
made. The parent restarts a worker that dies (doubling delay, reset after a
minute of health; logged and counted), forwards SIGTERM (via ``stopService``)
and SIGHUP (the parent's reload hook), combines the workers' health and metrics, and serves the one
node snapshot they all bootstrap and validate from.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from orderbook.metrics import Metrics
from orderbook.workers import environment
from orderbook.workers.environment import FIRST_LISTEN_FD
from orderbook.workers.link import JsonLines, adopt
from orderbook.workers.reports import combined_health, merged_exposition
from orderbook.workers.sockets import ListeningSockets

LINK_FD = 3
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


@dataclass
class Worker:
    """What the parent knows of one worker."""

    index: int
    process: Any = None
    link: JsonLines | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive quick deaths: the restart delay doubles
    health: dict[str, Any] | None = None
    metrics: list = field(default_factory=list)
    ended: Deferred | None = None


class WorkerProcess(ProcessProtocol):
    """One worker's process: its end tells the supervisor."""

    def __init__(self, supervisor: WorkerSupervisor, worker: Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker

    def processEnded(self, reason: Any) -> None:  # noqa: N802 (Twisted API)
        self.supervisor.worker_ended(self.worker, reason.value)


class WorkerSupervisor(Service):
    """Spawn ``count`` workers on ``sockets``; restart, signal and combine them."""

    _log = Logger()
    restart_base_s = 0.5
    restart_max_s = 30.0
    healthy_after_s = 60.0
    stop_timeout_s = 15.0

    def __init__(
        self,
        reactor: Any,
        count: int,
        config_path: str,
        sockets: ListeningSockets,
        metrics: Metrics,
        worker_env: dict[str, str],
        logfile: str | None,
    ) -> None:
        self.reactor = reactor
        self.count = count
        self.config_path = str(Path(config_path).resolve())
        self.sockets = sockets
        self.metrics = metrics
        self.worker_env = worker_env
        self.logfile = logfile
        self.workers = [Worker(index) for index in range(count)]
        self.stopping = False
        self.restarts = metrics.counter(
            "orderbook_worker_restarts_total", "Workers restarted after they died"
        )
        metrics.gauge("orderbook_workers_alive", "Worker processes running", read=self.alive)

    def alive(self) -> int:
        return sum(1 for w in self.workers if w.process is not None)

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        super().startService()
        for worker in self.workers:
            self.spawn(worker)

    def spawn(self, worker: Worker) -> None:
        if self.stopping:
            return
        ours, theirs = socket.socketpair()
        fds: dict[int, Any] = {0: "w", 1: 1, 2: 2, LINK_FD: theirs.fileno()}
        for offset, fd in enumerate(self.sockets.per_worker[worker.index]):
            fds[FIRST_LISTEN_FD + offset] = fd
        env = dict(os.environ, **self.worker_env)
        env.update(environment.for_worker(worker.index, LINK_FD, len(self.sockets.endpoints)))
        args = [sys.executable, "-c", TWISTD, "-n", "--pidfile", ""]
        if self.logfile and self.logfile != "-":
            args += ["--logfile", self.logfile]
        args += ["orderbook", "--config", self.config_path]
        worker.process = self.reactor.spawnProcess(
            WorkerProcess(self, worker), sys.executable, args, env=env, childFDs=fds
        )
        theirs.close()
        worker.link = adopt(
            self.reactor,
            ours.fileno(),
            JsonLines(lambda m, w=worker: self.reported(w, m), lambda: None),
        )
        ours.close()
        worker.started_at = self.reactor.seconds()
        self._log.info(
            "worker {index} started (pid {pid})", index=worker.index, pid=worker.process.pid
        )

    def reported(self, worker: Worker, message: dict) -> None:
        worker.health = message.get("health")
        worker.metrics = message.get("metrics") or []
        if worker.link is not None:
            worker.link.send({"health": self.health(), "metrics": self.exposition()})

    def health(self) -> dict[str, Any]:
        reports = {w.index: w.health for w in self.workers if w.health and w.process}
        return combined_health(reports, self.count)

    def exposition(self) -> str:
        reports = {w.index: w.metrics for w in self.workers if w.metrics and w.process}
        return merged_exposition(reports, own=self.metrics)

    def worker_ended(self, worker: Worker, reason: Any) -> None:
        worker.process, worker.health, worker.metrics = None, None, []
        if worker.ended is not None:
            ended, worker.ended = worker.ended, None
            ended.callback(None)
        if self.stopping:
            return
        lived = self.reactor.seconds() - worker.started_at
        worker.failures = 0 if lived >= self.healthy_after_s else worker.failures + 1
        delay = min(self.restart_max_s, self.restart_base_s * 2 ** max(worker.failures - 1, 0))
        self.restarts.inc()
        self._log.error(
            "worker {index} exited ({reason}); restarting in {delay:.1f} s",
            index=worker.index,
            reason=reason,
            delay=delay,
        )
        self.reactor.callLater(delay, self.spawn, worker)

    def signal_workers(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None:
                with suppress(ProcessExitedAlready, OSError):  # processEnded will say so
                    worker.process.signalProcess(signum)

    def stopService(self) -> Deferred:  # noqa: N802 (Twisted API)
        """Close every worker's link (each stops itself); SIGKILL what still runs later.

        A service manager may also signal the whole process group: a worker
        stops once, whichever comes first.
        """
        super().stopService()
        self.stopping = True
        running = [w for w in self.workers if w.process is not None]
        for worker in running:
            worker.ended = Deferred()
            if worker.link is not None and worker.link.transport is not None:
                worker.link.transport.loseConnection()
        kill = self.reactor.callLater(self.stop_timeout_s, self.signal_workers, signal.SIGKILL)
        waiting = defer.DeferredList([w.ended for w in running])

        def done(result: Any) -> None:
            if kill.active():
                kill.cancel()
            self.sockets.close()

        return waiting.addBoth(done)

"""``twistd orderbook --config FILE``: Options and makeService (wiring only).

The config file is read and validated in ``Options.postOptions``: any problem
prints one line naming the file, the key and the problem, and twistd exits 1.
``makeService`` wires the services into one MultiService::

    [simulator] -> node files -> IngestService -> Books -> feed Registry -> Site(s)
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from orderbook import config, logs, tls
from orderbook.config import ConfigError, Settings
from orderbook.gc_policy import GcPolicy

_log = Logger(namespace="orderbook.tap")


class Options(usage.Options):
    """Command line of ``twistd orderbook``."""

    synopsis = "--config FILE"
    optParameters = [
        ["config", "c", None, "The config file (INI). See etc/orderbook.ini for every key."],
    ]

    settings: Settings

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        try:
            self.settings = config.load(self["config"])
            tls.ensure_self_signed(self.settings.tls)
            if any(not tls.is_plaintext(spec) for spec in self.settings.server.listen):
                tls.check_pair(self.settings.tls, self.settings.source)
        except ConfigError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(
                f"{self['config']}: [tls] self_signed: cannot write {exc.filename}: {exc.strerror}"
            )
        if self.parent is not None:
            self.parent["logger"] = logs.use_config(self.settings.log, _logfile(self.parent))


def _logfile(twistd: Any) -> str:
    """Where twistd would log: --logfile, else stdout in the foreground, else twistd.log."""
    logfile = twistd.get("logfile")
    if logfile:
        return logfile
    return "-" if twistd.get("nodaemon") else "twistd.log"


def _fail(line: str) -> None:
    """One line on stderr, exit code 1: twistd would bury a UsageError in its usage text."""
    sys.stderr.write(f"orderbook: {line}\n")
    raise SystemExit(1)


def makeService(options: Options, reactor: Any = None) -> IService:
    """Wire simulator (optional), ingestion, book, feeds, WAMP and listening sites."""
    if reactor is None:
        from twisted.internet import reactor
    from orderbook.book.books import Books
    from orderbook.feed.registry import Registry
    from orderbook.metrics import Metrics
    from orderbook.node.service import IngestService
    from orderbook.server.site import make_site

    settings = options.settings
    top = MultiService()
    metrics = Metrics()
    books = Books()
    if settings.simulator.enabled:
        _simulator_service(settings).setServiceParent(top)
    feed = Registry(books, settings.websocket, metrics, reactor=reactor)
    listeners = BookListeners([feed])
    ingest = IngestService(settings.node, books, listeners, metrics, reactor=reactor)
    status = ingest.status
    router = _router_service(settings, books, metrics, reactor)
    if router is not None:
        listeners.add(router)
        router.setServiceParent(top)
        status = _with_router(ingest.status, router.status)
    ingest.setServiceParent(top)
    GcPolicy().setServiceParent(top)
    site = make_site(
        settings.server,
        settings.websocket,
        books,
        feed,
        metrics,
        status,
        reactor=reactor,
        wamp_factory=_wamp_factory(settings, feed, books, metrics, status, reactor, top),
    )
    for spec in settings.server.listen:
        if tls.is_plaintext(spec):
            _log.warn("listening on {spec}: plaintext, no TLS", spec=spec)
        endpoint = serverFromString(reactor, tls.endpoint_string(spec, settings.tls))
        ListeningService(spec, endpoint, site).setServiceParent(top)
    return top


class BookListeners:
    """Hand each ingest event to every listener in turn; one failing never starves the rest."""

    _log = Logger()

    def __init__(self, listeners: list[Any]) -> None:
        self.listeners = list(listeners)

    def add(self, listener: Any) -> None:
        self.listeners.append(listener)

    def block_applied(self, result: Any) -> None:
        self._each("block_applied", result)

    def books_reset(self, coins: set[str]) -> None:
        self._each("books_reset", coins)

    def state_changed(self, status: dict[str, Any]) -> None:
        self._each("state_changed", status)

    def _each(self, method: str, argument: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, method)(argument)
            except Exception:
                self._log.failure("{listener}.{method} failed", listener=listener, method=method)


def _with_router(ingest_status: Any, router_status: Any) -> Any:
    def status() -> dict[str, Any]:
        return {**ingest_status(), "router": router_status()}

    return status


def _wamp_factory(
    settings: Settings, feed: Any, books: Any, metrics: Any, status: Any, reactor: Any, top: Any
) -> Any:
    if not settings.wamp.enabled:
        return None
    from orderbook.server.wamp.protocol import make_wamp_factory
    from orderbook.server.wamp.session import WampHub

    hub = WampHub(settings.wamp.realm, feed, books, metrics, status=status)
    WampShutdown(hub).setServiceParent(top)
    return make_wamp_factory(hub, settings.websocket, reactor)


class WampShutdown(Service):
    """Say GOODBYE to every WAMP session when the server stops."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    def stopService(self) -> None:
        super().stopService()
        self.hub.shutdown()


def _router_service(settings: Settings, books: Any, metrics: Any, reactor: Any) -> Any:
    if not settings.wamp.router_url:
        return None
    from orderbook.server.wamp.publisher import CrossbarPublisher

    return CrossbarPublisher(settings.wamp, books, metrics, reactor)


class ListeningService(StreamServerEndpointService):
    """Listen on one endpoint; log the bound address; fail startup in one line."""

    def __init__(self, spec: str, endpoint: Any, factory: Any) -> None:
        super().__init__(endpoint, factory)
        self.spec = spec
        self.port: Any = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._waitingForPort = self.endpoint.listen(self.factory)
        failures: list[Failure] = []
        self._waitingForPort.addCallbacks(self._listening, failures.append)
        if failures:  # TCP/TLS listen errors are synchronous: stop before the reactor runs
            _fail(f"cannot listen on {self.spec}: {failures[0].getErrorMessage()}")

    def _listening(self, port: Any) -> Any:
        self.port = port
        address = port.getHost()
        scheme = "plaintext" if tls.is_plaintext(self.spec) else "tls"
        _log.info(
            "listening on {host}:{port} ({scheme})",
            host=address.host,
            port=address.port,
            scheme=scheme,
        )
        return port


def _simulator_service(settings: Settings) -> IService:
    from orderbook.sim.service import SimulatorService

    sim = settings.simulator
    return SimulatorService(
        data_dir=settings.node.data_dir,
        info_port=sim.info_port,
        seed=sim.seed,
        blocks_per_second=sim.blocks_per_second,
        mode=settings.node.mode,
        scale=sim.scale,
        trade_share=sim.trade_share,
    )

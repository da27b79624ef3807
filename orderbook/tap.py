"""``twistd orderbook --config FILE``: Options and makeService (wiring only).

``Options.postOptions`` reads and validates the config file (any problem is
one line naming the file, the key and the problem, and exit code 1);
``--example-config`` prints the documented config. ``makeService`` wires
the services into one MultiService, in start order::

    file limit, SIGHUP reload, TLS certificates, [simulator],
    node files -> IngestService -> Books -> feed Registry -> Site(s) on each listen line

Nothing is written or bound before the services start; a start that cannot go
on (a bad certificate, a port in use) is one line and exit code 1
(orderbook.listening).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService, MultiService
from twisted.python import usage

from orderbook import config, logs, process, tls
from orderbook.config import ConfigError, NodeSettings, Settings
from orderbook.gc_policy import GcPolicy
from orderbook.listening import Startup, listening_service
from orderbook.workers import environment
from orderbook.workers.link import WorkerLink

if TYPE_CHECKING:
    from twisted.web.server import Site

    from orderbook.book.books import Books
    from orderbook.feed.registry import Registry
    from orderbook.metrics import Metrics
    from orderbook.server.access import TokenStore
    from orderbook.server.wamp.protocol import WampFactory
    from orderbook.server.wamp.publisher import CrossbarPublisher

Status = Callable[[], dict[str, Any]]


class Options(usage.Options):
    """Command line of ``twistd orderbook``."""

    synopsis = "--config FILE | --example-config"
    optParameters = [
        [
            "config",
            "c",
            None,
            "The config file (INI). `twistd orderbook --example-config` prints one "
            "with every key, its default and its meaning.",
        ],
    ]
    optFlags = [
        ["example-config", None, "Print the documented production config file and exit."],
    ]

    settings: Settings
    listens: list[tls.Listen]
    metrics_listens: list[tls.Listen]

    def postOptions(self) -> None:
        if self["example-config"]:
            sys.stdout.write(config.example())
            raise SystemExit(0)
        if not self["config"]:
            raise usage.UsageError("--config FILE is required (--example-config prints one)")
        try:
            self.settings = config.load(self["config"])
        except ConfigError as exc:
            process.fail(str(exc))
        section = self.settings.tls
        try:
            server = self.settings.server
            self.listens = [tls.parse_listen(s, section) for s in server.listen]
            self.metrics_listens = [tls.parse_listen(s, section) for s in server.metrics_listen]
            tls.check(self.listens + self.metrics_listens, section)
        except tls.CertificateError as exc:
            process.fail(f"{self.settings.source}: {exc}")
        if self.parent is not None:
            process.use_twistd_options(self.parent)
            self.parent["logger"] = logs.use_config(
                self.settings.log, process.twistd_logfile(self.parent)
            )


def makeService(options: Options, reactor: Any = None) -> IService:
    """Wire process services, simulator (optional), ingestion, book, feeds, WAMP and sites."""
    if reactor is None:
        from twisted.internet import reactor
    from orderbook.book.books import Books
    from orderbook.feed.registry import Registry
    from orderbook.metrics import Metrics
    from orderbook.node.service import IngestService
    from orderbook.server.health import health_document, make_ops_site

    settings = options.settings
    role = environment.role()
    if role is None and settings.server.workers > 1:
        return _parent(options, reactor)
    top = Startup()
    reload, certificates = _process_services(settings, reactor, top, file_limit=role is None)
    metrics = Metrics()
    books = Books()
    if role is None:
        _simulator(settings, top)
    feed = Registry(books, settings.websocket, metrics, reactor=reactor)
    router = _router_service(settings, books, metrics, reactor)
    listeners = [feed] if router is None else [feed, router]
    node = settings.node if role is None else _worker_node(settings, role)
    ingest = IngestService(node, books, listeners, metrics, reactor=reactor)
    if router is not None:
        router.setServiceParent(top)
    status = _status(ingest.status, router)
    ingest.setServiceParent(top)
    GcPolicy().setServiceParent(top)
    tokens = _tokens(settings, metrics, reload)
    document, exposition = health_document(status, feed), None
    if role is not None:
        link = WorkerLink(reactor, role.link_fd, document, metrics)
        document, exposition = _server_view(link, document), link
    site = _site(settings, books, feed, metrics, status, reactor, top, tokens, document, exposition)
    served = [
        (listen, site, None if role is None else role.listen_fds[index])
        for index, listen in enumerate(options.listens)
    ]
    if role is None:  # a worker's parent serves metrics_listen for the whole server
        ops = make_ops_site(document, metrics, _ops_tokens(settings, tokens))
        served += [(listen, ops, None) for listen in options.metrics_listens]
    for listen, factory, fd in served:
        listening_service(
            listen, factory, certificates, reactor, settings.source, fd
        ).setServiceParent(top)
    return top


def _simulator(settings: Settings, top: MultiService) -> None:
    """The node simulator (the demo), in the single server or the workers' parent."""
    if settings.simulator.enabled:
        simulator = _simulator_service(settings)
        simulator.setName(
            f"the simulator's info server: [simulator] info_port in {settings.source}"
        )
        simulator.setServiceParent(top)


def _parent(options: Options, reactor: Any) -> IService:
    """``[server] workers = N``: bind, then supervise N worker processes (each a server)."""
    from orderbook.server.health import make_ops_site
    from orderbook.workers.parent import ParentService

    settings = options.settings
    top = Startup()
    # the self-signed pair is made once, here, before any worker starts
    reload, certificates = _process_services(settings, reactor, top)
    _simulator(settings, top)
    parent = ParentService(
        reactor,
        [(listen.spec, listen.transport) for listen in options.listens],
        settings.source,
        settings.server.workers,
        settings.server.balance,
        options["config"],
        settings.node,
        process.twistd_logfile(options.parent) if options.parent is not None else "-",
        process.fail,
    )
    parent.setServiceParent(top)
    reload.add(parent.reload_workers)
    tokens = _tokens(settings, parent.metrics, reload)
    ops = make_ops_site(parent.health, parent, _ops_tokens(settings, tokens))
    for listen in options.metrics_listens:
        listening_service(listen, ops, certificates, reactor, settings.source).setServiceParent(top)
    return top


def _worker_node(settings: Settings, role: environment.WorkerRole) -> NodeSettings:
    """A worker asks the parent's snapshot fan-in, into a snapshot file of its own."""
    path = settings.node.snapshot_path
    return replace(
        settings.node,
        info_url=role.info_url,
        snapshot_path=path.with_name(f"{path.name}.worker{role.index}"),
    )


def _server_view(link: WorkerLink, own: Status) -> Status:
    """A worker's /health: the whole server's, as the parent last sent it."""

    def document() -> dict[str, Any]:
        return link.server_health(own())

    return document


def _ops_tokens(settings: Settings, tokens: TokenStore) -> TokenStore | None:
    """The tokens /health and /metrics ask for (None: open, [access] protect_metrics = no)."""
    return tokens if settings.access.protect_metrics else None


def _tokens(settings: Settings, metrics: Metrics, reload: process.HangupReload) -> TokenStore:
    """The access tokens ([access] tokens_file), re-read on SIGHUP."""
    from orderbook.server.access import TokenStore

    try:
        tokens = TokenStore(settings.access.tokens_file, metrics)
    except ConfigError as exc:
        process.fail(f"{settings.source}: {exc}")
    reload.add(tokens.reload)
    return tokens


def _process_services(
    settings: Settings, reactor: Any, top: MultiService, file_limit: bool = True
) -> tuple[process.HangupReload, tls.Certificates]:
    """The first services to start: open-files limit, SIGHUP hooks, TLS certificates.

    Anything that re-reads a file on SIGHUP adds itself with ``reload.add(hook)``.
    Workers inherit the limit their parent raised (and said once).
    """
    if file_limit:
        process.FileLimit(settings.websocket.max_connections).setServiceParent(top)
    reload = process.HangupReload(reactor)
    reload.setServiceParent(top)
    certificates = tls.Certificates(settings.tls, settings.source)
    certificates.setServiceParent(top)
    reload.add(certificates.reload)
    return reload, certificates


def _site(
    settings: Settings,
    books: Books,
    feed: Registry,
    metrics: Metrics,
    status: Status,
    reactor: Any,
    top: MultiService,
    tokens: TokenStore,
    document: Status,
    exposition: WorkerLink | None = None,
) -> Site:
    """The public Site; a worker's ``document`` and ``exposition`` are the whole server's."""
    from orderbook.server.site import make_site

    wamp = _wamp_factory(settings, feed, books, metrics, status, reactor, top, tokens)
    return make_site(
        settings.server,
        settings.websocket,
        books,
        feed,
        metrics,
        status,
        reactor=reactor,
        wamp_factory=wamp,
        tokens=tokens,
        protect_metrics=settings.access.protect_metrics,
        health_document=document,
        exposition=exposition,
    )


def _status(ingest: Status, router: CrossbarPublisher | None) -> Status:
    """The /health document: the ingest state, plus the router's when there is one."""
    if router is None:
        return ingest

    def status() -> dict[str, Any]:
        return {**ingest(), "router": router.status()}

    return status


def _wamp_factory(
    settings: Settings,
    feed: Registry,
    books: Books,
    metrics: Metrics,
    status: Status,
    reactor: Any,
    top: MultiService,
    tokens: TokenStore,
) -> WampFactory | None:
    """The WAMP factory for the Site ([wamp] enabled), and its shutdown service."""
    if not settings.wamp.enabled:
        return None
    from orderbook.server.wamp.protocol import make_wamp_factory
    from orderbook.server.wamp.session import WampHub, WampShutdown

    hub = WampHub(settings.wamp.realm, feed, books, metrics, status=status, tokens=tokens)
    WampShutdown(hub).setServiceParent(top)
    return make_wamp_factory(hub, settings.websocket, reactor)


def _router_service(
    settings: Settings, books: Books, metrics: Metrics, reactor: Any
) -> CrossbarPublisher | None:
    if not settings.wamp.router_url:
        return None
    from orderbook.server.wamp.publisher import CrossbarPublisher

    return CrossbarPublisher(settings.wamp, books, metrics, reactor)


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

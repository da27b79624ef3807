"""Tests for orderbook.server.wamp.publisher: publishing into a real Crossbar.io router.

Crossbar runs from .tools/crossbar (scripts/install-test-tools); the tests
skip when it is absent. Our server joins with a ticket as publisher +
callee; clients join anonymously and may only subscribe and call.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import ComponentConfig
from twisted.internet.endpoints import TCP4ClientEndpoint

from orderbook import config
from orderbook.config import ConfigError, WampSettings
from orderbook.metrics import Metrics
from orderbook.server.wamp.publisher import CrossbarPublisher
from tests.e2e.procs import REPO, Proc, free_port
from tests.server.harness import small_books, until
from tests.server.test_wamp_protocol import TRADE, Probe, WampHarness

CROSSBAR = REPO / ".tools" / "crossbar" / "bin" / "crossbar"
TICKET = "s3cret"


def crossbar_config(port: int) -> dict[str, Any]:
    """A version-2 node: realm orderbook, roles publisher (ticket) and anonymous."""
    read_only = {"call": True, "register": False, "publish": False, "subscribe": True}
    hidden = {"caller": False, "publisher": False}
    return {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "realms": [
                    {
                        "name": "orderbook",
                        "roles": [
                            {
                                "name": "publisher",
                                "permissions": [
                                    {
                                        "uri": "orderbook.",
                                        "match": "prefix",
                                        "allow": {
                                            "call": True,
                                            "register": True,
                                            "publish": True,
                                            "subscribe": True,
                                        },
                                        "disclose": hidden,
                                        "cache": True,
                                    },
                                    {
                                        "uri": "wamp.subscription.",
                                        "match": "prefix",
                                        "allow": read_only,
                                        "disclose": hidden,
                                        "cache": True,
                                    },
                                ],
                            },
                            {
                                "name": "anonymous",
                                "permissions": [
                                    {
                                        "uri": "orderbook.",
                                        "match": "prefix",
                                        "allow": read_only,
                                        "disclose": hidden,
                                        "cache": True,
                                    }
                                ],
                            },
                        ],
                    }
                ],
                "transports": [
                    {
                        "type": "web",
                        "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1"},
                        "paths": {
                            "ws": {
                                "type": "websocket",
                                "auth": {
                                    "anonymous": {"type": "static", "role": "anonymous"},
                                    "ticket": {
                                        "type": "static",
                                        "principals": {
                                            "orderbook-server": {
                                                "ticket": TICKET,
                                                "role": "publisher",
                                            }
                                        },
                                    },
                                },
                            }
                        },
                    }
                ],
            }
        ],
    }


class Crossbar:
    """A Crossbar.io node in a temporary directory, started and stopped by the test."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.cbdir = workdir / ".crossbar"
        self.cbdir.mkdir(parents=True)
        (self.cbdir / "config.json").write_text(json.dumps(crossbar_config(self.port)))
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        args = [str(CROSSBAR), "start", "--cbdir", str(self.cbdir)]
        self.proc = Proc(args, self.workdir / f"crossbar-{self.starts}.log", self.workdir)

    def wait_ready(self) -> None:
        assert self.proc is not None
        self.proc.wait_for(r"configured and ready", timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


def credentials(crossbar: Crossbar) -> dict[str, Any]:
    """Ticket credentials for the test router (plain ws:// on 127.0.0.1: allowed)."""
    return {
        "router_url": crossbar.url,
        "router_authid": "orderbook-server",
        "router_ticket": TICKET,
        "allow_plaintext_ticket": True,
    }


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One Crossbar.io node for the module (starting one takes seconds)."""
    if not CROSSBAR.exists():
        pytest.skip(f"Crossbar.io not installed at {CROSSBAR} (run scripts/install-test-tools)")
    node = Crossbar(tmp_path_factory.mktemp("cb"))
    try:
        node.start()
        node.wait_ready()
        yield node
    finally:
        node.stop()


@pytest.fixture
def crossbar(router: Crossbar) -> Crossbar:
    """The module's router, running: started again if a test stopped it and failed.

    Every test ends its sessions (publishers stopped, clients left), so the
    next one finds none of our registrations. Subscriptions of an Autobahn|JS
    client that has exited can outlive it on the router for seconds, so the
    tests that count the router's topics exactly come before the Node ones
    (pytest runs a module's tests in file order).
    """
    if router.proc is None or router.proc.popen.poll() is not None:
        router.stop()
        router.start()
        router.wait_ready()
    return router


async def join_router(reactor: Any, port: int) -> Probe:
    """An anonymous autobahn-python session on the router."""
    probe = Probe(ComponentConfig("orderbook"))
    factory = WampWebSocketClientFactory(
        lambda: probe, url=f"ws://127.0.0.1:{port}/ws", serializers=[JsonSerializer()]
    )
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    return await probe.joined


async def wait_for_router(reactor: Any, crossbar: Crossbar) -> None:
    """Wait (without blocking the reactor) for a restarted node to be ready."""
    await until(
        reactor,
        lambda: crossbar.proc is not None and "configured and ready" in crossbar.proc.output(),
        timeout=60,
    )


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_events_and_calls_flow_through_crossbar(
    reactor: Any, tmp_path: Path, crossbar: Crossbar
) -> None:
    """Events published by the server reach a router client; stopping the router drops
    publications (counted) while direct clients keep receiving; a restart reconnects."""
    books = small_books()
    metrics = Metrics()
    settings = WampSettings(**credentials(crossbar))
    publisher = CrossbarPublisher(settings, books, metrics, reactor)
    publisher.state_changed({"state": "ready", "height": 100})
    direct = WampHarness(reactor, tmp_path)
    await direct.start()
    publisher.startService()
    try:
        await until(reactor, lambda: publisher.status()["connected"], timeout=20)
        client = await join_router(reactor, crossbar.port)
        await until(reactor, lambda: client.is_attached())
        await client.listen("orderbook.trades.BTC")
        await until(reactor, lambda: publisher.status()["topics"] == 1, timeout=10)
        await client.listen("orderbook.bbo.ETH", get_retained=True)
        assert await client.call("orderbook.coins") == ["BTC", "ETH"]
        assert (await client.call("orderbook.bbo.get", "BTC"))["bbo"][1]["px"] == "101.0"

        direct.registry.trades_paired({"BTC": [TRADE]})
        publisher.trades_paired({"BTC": [TRADE]})
        await until(reactor, lambda: client.events["orderbook.trades.BTC"], timeout=10)
        assert client.events["orderbook.trades.BTC"] == [(([TRADE],), {})]
        assert publisher.status()["published"] >= 1

        direct_client = await direct.join()
        await direct_client.listen("orderbook.trades.BTC")
        crossbar.stop()
        await until(reactor, lambda: not publisher.status()["connected"], timeout=20)
        started = time.monotonic()
        direct.registry.trades_paired({"BTC": [TRADE]})
        publisher.trades_paired({"BTC": [TRADE]})
        assert time.monotonic() - started < 1.0  # never waits for the router
        assert publisher.status()["dropped"] >= 1
        await until(reactor, lambda: direct_client.events["orderbook.trades.BTC"])
        assert metrics.metrics["orderbook_router_dropped_total"].get() >= 1

        crossbar.start()
        await wait_for_router(reactor, crossbar)
        await until(reactor, lambda: publisher.status()["connected"], timeout=40)
        assert publisher.status()["reconnects"] == 1
        again = await join_router(reactor, crossbar.port)
        await again.listen("orderbook.trades.BTC")
        await until(reactor, lambda: publisher.status()["topics"] == 1, timeout=10)
        publisher.trades_paired({"BTC": [TRADE]})
        await until(reactor, lambda: again.events["orderbook.trades.BTC"], timeout=10)
        again.leave()
        await again.left
    finally:
        await publisher.stopService()
        await direct.stop()


def test_a_ticket_is_refused_over_plain_ws(tmp_path: Path) -> None:
    """router_ticket with a ws:// router_url: the config is refused at load, and a
    publisher given such settings does not connect and says why in /health."""
    path = tmp_path / "orderbook.ini"
    head = f"[node]\ndata_dir = {tmp_path}\n[server]\nlisten = tcp:8000\n"
    wamp = "[wamp]\nrouter_url = ws://127.0.0.1:9/ws\nrouter_ticket = t\n"
    path.write_text(head + wamp)
    with pytest.raises(ConfigError, match=r"\[wamp\] router_ticket: refused over plain ws://"):
        config.load(path)
    path.write_text(head + wamp + "allow_plaintext_ticket = yes\n")
    assert config.load(path).wamp.allow_plaintext_ticket is True
    path.write_text(head + wamp.replace("ws:", "wss:"))
    assert config.load(path).wamp.router_ticket == "t"

    settings = WampSettings(router_url="ws://127.0.0.1:9/ws", router_ticket="t")
    publisher = CrossbarPublisher(settings, small_books(), Metrics())
    publisher.startService()
    assert publisher._service is None
    status = publisher.status()
    assert status["connected"] is False
    assert "allow_plaintext_ticket" in status["refused"]


@pytest_twisted.ensureDeferred
async def test_a_refused_registration_does_not_stop_publishing(
    reactor: Any, crossbar: Crossbar
) -> None:
    """A second instance on the same router cannot register our procedures
    (procedure_already_exists): /health says so, and it still publishes."""
    books = small_books()
    first = CrossbarPublisher(WampSettings(**credentials(crossbar)), books, Metrics(), reactor)
    second = CrossbarPublisher(WampSettings(**credentials(crossbar)), books, Metrics(), reactor)
    first.startService()
    try:
        await until(reactor, lambda: first.status()["connected"], timeout=20)
        second.startService()
        await until(reactor, lambda: second.status()["registration_errors"], timeout=20)
        errors = second.status()["registration_errors"]
        assert set(errors) == set(second.procedures.table)
        assert set(errors.values()) == {"wamp.error.procedure_already_exists"}
        assert second.status()["registered"] == 0
        assert first.status()["registration_errors"] == {}
        assert first.status()["registered"] == 5
        client = await join_router(reactor, crossbar.port)
        await client.listen("orderbook.trades.BTC")
        await until(reactor, lambda: second.status()["topics"] == 1, timeout=10)
        await first.stopService()
        second.trades_paired({"BTC": [TRADE]})
        await until(reactor, lambda: client.events["orderbook.trades.BTC"], timeout=10)
        assert second.status()["published"] >= 1
        client.leave()
        await client.left
    finally:
        await first.stopService()
        await second.stopService()


@pytest_twisted.ensureDeferred
async def test_autobahn_js_on_crossbar_gets_the_events(reactor: Any, crossbar: Crossbar) -> None:
    """An Autobahn|JS client connected to Crossbar receives our events and calls our procedures."""
    from tests.server.test_wamp_js import deliver_block, need_node, run_node, wait_subscribed

    need_node()
    publisher = CrossbarPublisher(
        WampSettings(**credentials(crossbar)),
        small_books(),
        Metrics(),
        reactor,
    )
    publisher.startService()
    node = None
    try:
        await until(reactor, lambda: publisher.status()["connected"], timeout=20)
        node = run_node(reactor, [crossbar.url, "orderbook", "BTC", "ETH", "2", "router"])
        await wait_subscribed(reactor, node)
        await until(reactor, lambda: publisher.status()["topics"] == 4, timeout=10)
        calls = await deliver_block(node, publisher)
        assert calls["coins"] == ["BTC", "ETH"]
        assert calls["bad"] == "wamp.error.invalid_argument"
    finally:
        if node is not None and not node.ended.called:
            node.transport.signalProcess("KILL")  # a failed test must not leave node running
            await node.ended
        await publisher.stopService()


@pytest_twisted.ensureDeferred
async def test_autobahn_js_takes_a_deep_snapshot_in_parts_through_crossbar(
    reactor: Any, crossbar: Crossbar
) -> None:
    """receive_progress through the router: our callee yields parts of <= 1 MiB of one
    block, Crossbar passes them on, Autobahn|JS in Node rebuilds the snapshot."""
    from tests.server.test_wamp_js import check_parts, deep_books, need_node, take_snapshot

    need_node()
    books = deep_books()
    publisher = CrossbarPublisher(WampSettings(**credentials(crossbar)), books, Metrics(), reactor)
    publisher.startService()
    try:
        await until(reactor, lambda: publisher.status()["connected"], timeout=20)
        await until(reactor, lambda: publisher.status()["registered"] == 5, timeout=20)
        code, result = await take_snapshot(reactor, crossbar.url, "progress", None)
        assert code == 0, result
        assert len(result["parts"]) == 5
        check_parts(books, result)
    finally:
        await publisher.stopService()

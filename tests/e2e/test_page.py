"""The browser page (orderbook/server/static) in headless Chromium.

Two kinds of tests:

- Against a stand-in server in this process (twisted.web serving the static
  files, an autobahn WebSocket answering from canned books): rendering,
  controls, subscriptions, banners and reconnects, deterministically.
- Against the real demo (``twistd -n orderbook`` with the simulator, over
  TLS): the page's ladder is compared with the server's own l2Book at the
  height the page shows, for two coins and aggregations.

Set ORDERBOOK_SCREENSHOT=path to also save the demo screenshot there (that is
how docs/screenshot.png is made).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.web.server import Site
from twisted.web.static import File

from tests.e2e.browser import Browser, WebSocketClient, find_chromium
from tests.e2e.procs import REPO, free_port, spawn_twistd

STATIC = REPO / "orderbook" / "server" / "static"

READ_PAGE = """(() => {
  const ladder = document.querySelector('[data-test=ladder]');
  const rows = (side) => [...document.querySelectorAll('[data-test=' + side + '-row]')]
    .map((r) => ({index: Number(r.dataset.index), px: r.dataset.px, sz: r.dataset.sz,
                  n: Number(r.dataset.n), total: r.children[2].textContent}))
    .sort((a, b) => a.index - b.index);
  const banner = document.querySelector('[data-test=banner]');
  return {height: ladder.dataset.height, coin: ladder.dataset.coin, agg: ladder.dataset.agg,
          bids: rows('bid'), asks: rows('ask'),
          mid: document.querySelector('[data-test=mid]').textContent,
          spread: document.querySelector('[data-test=spread]').textContent,
          banner: banner.hidden ? '' : banner.dataset.kind,
          bannerText: banner.textContent,
          state: document.querySelector('[data-test=status]').dataset.state,
          statusHeight: document.querySelector('[data-test=status-height]').textContent,
          statusLag: document.querySelector('[data-test=status-lag]').textContent,
          errors: [...document.querySelectorAll('[data-test=error]')].map((e) => e.textContent),
          trades: [...document.querySelectorAll('[data-test=trade-row]')]
            .map((r) => ({side: r.dataset.side, cls: r.className.split(' ')[0],
                          cells: [...r.children].map((c) => c.textContent)}))};
})()"""


def choose(browser: Browser, select: str, value: str) -> None:
    """Pick ``value`` in a select the way a user does (value + change event)."""
    browser.evaluate(
        f"""(() => {{ const s = document.querySelector('[data-test={select}]');
        s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()"""
    )


def open_page(browser: Browser, url: str) -> None:
    """A fresh load (a hash-only change of the same URL would not reload), no old errors."""
    browser.navigate("about:blank")
    browser.pump(0.01)
    browser.errors.clear()
    browser.navigate(url)


# -- the stand-in server ---------------------------------------------------------

MIDS = {"BTC": "81307.5", "ETH": "2345.65", "@107": "41.251", "xyz:TSLA": "251.23"}
TICKS = {"BTC": "1.0", "ETH": "0.1", "@107": "0.001", "xyz:TSLA": "0.01"}
AGG_FACTOR = {(None, None): 1, (5, None): 1, (5, 2): 2, (5, 5): 5, (4, None): 10, (3, None): 100}
TRADES = [
    {"coin": "BTC", "side": "B", "px": "81308.0", "sz": "0.0013", "time": 1778002753763, "tid": 1},
    {"coin": "BTC", "side": "A", "px": "81307.0", "sz": "0.25", "time": 1778002753900, "tid": 2},
]


def canonical(value: Decimal) -> str:
    """The exchange's form: at least one decimal place, no exponent."""
    text = f"{value.normalize():f}"
    return text if "." in text else text + ".0"


def canned_levels(coin: str, n_sig: int | None, mantissa: int | None, bump: int) -> list:
    """Deterministic bids and asks; ``bump`` changes the sizes (a new block)."""
    step = Decimal(TICKS[coin]) * AGG_FACTOR[(n_sig, mantissa)]
    mid = Decimal(MIDS[coin])
    best_bid = (mid // step) * step
    sides = []
    for sign, start in ((-1, best_bid), (1, best_bid + step)):
        sides.append(
            [
                {
                    "px": canonical(start + sign * i * step),
                    "sz": canonical(Decimal("0.15") * (i + 1) + Decimal("0.0001") * (i + bump)),
                    "n": i + 1,
                }
                for i in range(20)
            ]
        )
    return sides


class StandInProtocol(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.factory.standin.connections.append(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.standin.request(self, json.loads(payload))

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:
        if self in self.factory.standin.connections:
            self.factory.standin.connections.remove(self)


class StandIn:
    """Serves the page and answers subscriptions from canned data."""

    def __init__(self) -> None:
        self.connections: list[StandInProtocol] = []
        self.received: list[tuple[int, dict[str, Any]]] = []  # (connection id, request)
        self.subs: dict[int, list[dict[str, Any]]] = {}
        self.height = 1000
        self.bump = 0
        self.block_time = 1778002755115
        self.status = {"state": "ready", "height": 1000, "block_time": 1778002755115, "lag_ms": 120}

    def request(self, conn: StandInProtocol, req: dict[str, Any]) -> None:
        self.received.append((id(conn), req))
        method, sub = req.get("method"), req.get("subscription", {})
        if method == "ping":
            return self.send(conn, {"channel": "pong"})
        active = self.subs.setdefault(id(conn), [])
        if sub.get("type") == "l2Book" and sub.get("nSigFigs") == 2:
            return self.send(conn, {"channel": "error", "data": "Invalid subscription: no 2"})
        if method == "unsubscribe":
            if sub not in active:
                return self.send(conn, {"channel": "error", "data": "Not subscribed"})
            active.remove(sub)
        else:
            active.append(sub)
        self.send(conn, {"channel": "subscriptionResponse", "data": req})
        if method == "subscribe":
            self.send(conn, self.message(sub))

    def message(self, sub: dict[str, Any]) -> dict[str, Any]:
        kind = sub["type"]
        if kind == "allMids":
            return {"channel": "allMids", "data": {"mids": MIDS}}
        if kind == "status":
            return {"channel": "status", "data": self.status}
        if kind == "trades":
            return {"channel": "trades", "data": [t for t in TRADES if t["coin"] == sub["coin"]]}
        levels = canned_levels(sub["coin"], sub.get("nSigFigs"), sub.get("mantissa"), self.bump)
        data = {
            "coin": sub["coin"],
            "time": self.block_time,
            "height": self.height,
            "levels": levels,
        }
        return {"channel": "l2Book", "data": data}

    def send(self, conn: StandInProtocol, message: dict[str, Any]) -> None:
        conn.sendMessage(json.dumps(message).encode())

    def publish(self, kind: str) -> None:
        for conn in self.connections:
            for sub in self.subs.get(id(conn), []):
                if sub["type"] == kind:
                    self.send(conn, self.message(sub))

    def new_block(self) -> None:
        self.height += 1
        self.bump += 1
        self.status = {**self.status, "height": self.height}
        self.publish("l2Book")
        self.publish("status")

    def quiet_block(self) -> None:
        """A block as the real server sends it: l2Book only (status is sent on state changes)."""
        self.height += 1
        self.bump += 1
        self.block_time += 1000
        self.publish("l2Book")

    def set_state(self, state: str) -> None:
        self.status = {**self.status, "state": state}
        self.publish("status")

    def drop_all(self) -> None:
        for conn in list(self.connections):
            conn.dropConnection(abort=True)

    def subscriptions(self) -> list[list[dict[str, Any]]]:
        """The live subscriptions of each open connection."""
        return [list(self.subs.get(id(conn), [])) for conn in self.connections]


@pytest.fixture(scope="module")
def browser():
    with Browser.launch() as chromium:
        yield chromium


@pytest.fixture
def standin(reactor):
    state = StandIn()
    factory = WebSocketServerFactory()
    factory.protocol = StandInProtocol
    factory.standin = state
    root = File(str(STATIC))
    root.putChild(b"ws", WebSocketResource(factory))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    state.url = f"http://127.0.0.1:{port.getHost().port}/"
    yield state
    for conn in list(state.connections):
        conn.dropConnection(abort=True)
    pytest_twisted.blockon(port.stopListening())


def in_thread(reactor, scenario):
    """Run a blocking browser scenario off the reactor thread."""
    return deferToThread(scenario)


def expected_side(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    total = Decimal(0)
    rows = []
    for i, level in enumerate(levels):
        total += Decimal(level["sz"])
        rows.append({"index": i, **level, "total": canonical(total)})
    return rows


def assert_shows(page: dict[str, Any], levels: list) -> None:
    assert page["bids"] == expected_side(levels[0])
    assert page["asks"] == expected_side(levels[1])
    best_bid, best_ask = Decimal(levels[0][0]["px"]), Decimal(levels[1][0]["px"])
    assert page["spread"] == canonical(best_ask - best_bid)
    assert page["mid"] == canonical((best_ask + best_bid) / 2)


@pytest_twisted.inlineCallbacks
def test_ladder_shows_the_book_exactly(reactor, standin, browser):
    """The page subscribes allMids, status, l2Book (nLevels 20) and trades for BTC and
    shows every level, exact running totals, mid, spread, trades and the feed status."""

    def scenario():
        open_page(browser, standin.url)
        page = browser.wait_for(READ_PAGE, 10, "the BTC ladder", lambda p: p["height"] == "1000")
        assert page["coin"] == "BTC" and page["agg"] == "full"
        assert_shows(page, canned_levels("BTC", None, None, 0))
        assert page["trades"] == [
            {"side": "A", "cls": "sell", "cells": [_clock(1778002753900), "81307.0", "0.25"]},
            {"side": "B", "cls": "buy", "cells": [_clock(1778002753763), "81308.0", "0.0013"]},
        ]
        assert page["state"] == "ready" and page["statusHeight"] == "1000"
        assert page["banner"] == "" and page["errors"] == []
        subs = blockingCallFromThread(reactor, standin.subscriptions)
        assert subs == [
            [
                {"type": "allMids"},
                {"type": "status"},
                {"type": "l2Book", "coin": "BTC", "nLevels": 20},
                {"type": "trades", "coin": "BTC"},
            ]
        ]
        assert browser.js_errors() == []

    yield in_thread(reactor, scenario)


@pytest_twisted.inlineCallbacks
def test_switching_coin_and_aggregation(reactor, standin, browser):
    """Choosing a coin or an aggregation replaces the subscriptions (unsubscribe,
    subscribe with nSigFigs/mantissa) and the ladder shows only the new view."""

    def scenario():
        open_page(browser, standin.url)
        browser.wait_for(READ_PAGE, 10, "the BTC ladder", lambda p: p["coin"] == "BTC")
        options = browser.evaluate(
            "[...document.querySelector('[data-test=coin-select]').options].map(o => o.value)"
        )
        assert options == ["BTC", "ETH", "xyz:TSLA", "@107"]
        choose(browser, "coin-select", "ETH")
        page = browser.wait_for(READ_PAGE, 10, "the ETH ladder", lambda p: p["coin"] == "ETH")
        assert_shows(page, canned_levels("ETH", None, None, 0))
        assert page["trades"] == []
        choose(browser, "agg-select", "5m2")
        page = browser.wait_for(READ_PAGE, 10, "ETH by 5/2", lambda p: p["agg"] == "5m2")
        assert_shows(page, canned_levels("ETH", 5, 2, 0))
        subs = blockingCallFromThread(reactor, standin.subscriptions)
        assert subs == [
            [
                {"type": "allMids"},
                {"type": "status"},
                {"type": "trades", "coin": "ETH"},
                {"type": "l2Book", "coin": "ETH", "nSigFigs": 5, "mantissa": 2, "nLevels": 20},
            ]
        ]
        assert browser.evaluate("location.hash") == "#coin=ETH&agg=5m2&bars=cumulative"
        assert browser.js_errors() == []

    yield in_thread(reactor, scenario)


@pytest_twisted.inlineCallbacks
def test_new_blocks_and_feed_states(reactor, standin, browser):
    """Each l2Book message replaces the ladder (data-height follows); a stale or
    resyncing feed shows a warning banner that goes away when it is ready again."""

    def scenario():
        open_page(browser, standin.url + "#coin=BTC&agg=4")
        browser.wait_for(READ_PAGE, 10, "the ladder", lambda p: p["height"] == "1000")
        blockingCallFromThread(reactor, standin.new_block)
        page = browser.wait_for(READ_PAGE, 10, "height 1001", lambda p: p["height"] == "1001")
        assert page["agg"] == "4"
        assert_shows(page, canned_levels("BTC", 4, None, 1))
        assert page["statusHeight"] == "1001"
        for state in ("stale", "resyncing"):
            blockingCallFromThread(reactor, standin.set_state, state)
            page = browser.wait_for(READ_PAGE, 10, state, lambda p, s=state: p["banner"] == s)
            assert state in page["bannerText"].lower() or "resynchronising" in page["bannerText"]
        blockingCallFromThread(reactor, standin.set_state, "ready")
        browser.wait_for(READ_PAGE, 10, "no banner", lambda p: p["banner"] == "")
        assert browser.js_errors() == []

    yield in_thread(reactor, scenario)


@pytest_twisted.inlineCallbacks
def test_header_height_and_lag_follow_the_live_block(reactor, standin, browser):
    """Height and Lag in the header follow each block's l2Book message, not the status
    document of the last state change (issue 12 §5: the header said 985148182 while the
    book was at 985148232). Lag is on the server's clock: the status document says the
    server is 60 s behind block 1000, so block 1001 (1 s later) arrives ~59 s late, even
    though this browser's clock is months away from the canned block times."""
    standin.status = {**standin.status, "lag_ms": 60_000}

    def scenario():
        open_page(browser, standin.url)
        page = browser.wait_for(READ_PAGE, 10, "the ladder", lambda p: p["height"] == "1000")
        assert (page["statusHeight"], page["statusLag"]) == ("1000", "60.0 s")
        for height in ("1001", "1002"):
            blockingCallFromThread(reactor, standin.quiet_block)
            page = browser.wait_for(READ_PAGE, 10, height, lambda p, h=height: p["height"] == h)
            assert page["statusHeight"] == height
        assert page["statusLag"].startswith("58.")  # block 1002: 2 s after block 1000
        assert (
            browser.evaluate("document.querySelector('[data-test=status]').dataset.height")
            == "1002"
        )
        blockingCallFromThread(reactor, standin.set_state, "stale")  # a state change at 1000
        page = browser.wait_for(READ_PAGE, 10, "stale", lambda p: p["state"] == "stale")
        assert page["statusHeight"] == "1002"  # an older height never takes the header back
        standin.status = {**standin.status, "state": "resyncing", "height": None}
        blockingCallFromThread(reactor, standin.publish, "status")
        page = browser.wait_for(READ_PAGE, 10, "resyncing", lambda p: p["state"] == "resyncing")
        assert (page["statusHeight"], page["statusLag"]) == ("–", "–")
        assert browser.js_errors() == []

    yield in_thread(reactor, scenario)


@pytest_twisted.inlineCallbacks
def test_reconnects_and_resubscribes(reactor, standin, browser):
    """When the socket drops the page says so, reconnects by itself and subscribes
    again to the same coin and aggregation."""

    def scenario():
        open_page(browser, standin.url + "#coin=ETH&agg=3")
        browser.wait_for(READ_PAGE, 10, "the ladder", lambda p: p["height"] == "1000")
        blockingCallFromThread(reactor, standin.drop_all)
        page = browser.wait_for(READ_PAGE, 10, "a banner", lambda p: p["banner"] == "disconnected")
        assert "lost" in page["bannerText"] or "onnecting" in page["bannerText"]

        def resubscribed():
            subs = blockingCallFromThread(reactor, standin.subscriptions)
            wanted = {"type": "l2Book", "coin": "ETH", "nSigFigs": 3, "nLevels": 20}
            return (
                len(subs) == 1
                and wanted in subs[0]
                and {"type": "trades", "coin": "ETH"} in subs[0]
            )

        browser.wait_for(
            READ_PAGE, 10, "reconnected", lambda p: p["banner"] == "" and resubscribed()
        )
        blockingCallFromThread(reactor, standin.new_block)
        browser.wait_for(READ_PAGE, 10, "updates again", lambda p: p["height"] == "1001")
        assert browser.js_errors() == []

    yield in_thread(reactor, scenario)


@pytest_twisted.inlineCallbacks
def test_subscription_errors_are_shown(reactor, standin, browser):
    """An error message from the server is shown on the page, which stays usable."""

    def scenario():
        open_page(browser, standin.url)
        browser.wait_for(READ_PAGE, 10, "the ladder", lambda p: p["height"] == "1000")
        choose(browser, "agg-select", "2")
        page = browser.wait_for(READ_PAGE, 10, "the error", lambda p: p["errors"])
        assert page["errors"][0].endswith("Invalid subscription: no 2")
        choose(browser, "agg-select", "full")
        page = browser.wait_for(READ_PAGE, 10, "the ladder again", lambda p: p["agg"] == "full")
        assert len(page["errors"]) == 1  # the refused subscription is not unsubscribed
        assert browser.js_errors() == []

    yield in_thread(reactor, scenario)


@pytest_twisted.inlineCallbacks
def test_keepalive_pings(reactor, standin, browser):
    """The page sends {"method": "ping"} on its 30 s keepalive timer (shortened here)."""
    shorten = (
        "const realSetInterval = window.setInterval;"
        "window.setInterval = (f, ms, ...a) => realSetInterval(f, ms === 30000 ? 50 : ms, ...a);"
    )

    def scenario():
        script = browser.call("Page.addScriptToEvaluateOnNewDocument", {"source": shorten})
        try:
            open_page(browser, standin.url)

            def pings() -> int:
                received = blockingCallFromThread(reactor, lambda: list(standin.received))
                return sum(1 for _, req in received if req == {"method": "ping"})

            browser.wait_for(READ_PAGE, 10, "two pings", lambda p: pings() >= 2)
        finally:
            browser.call("Page.removeScriptToEvaluateOnNewDocument", script)
        assert browser.js_errors() == []

    yield in_thread(reactor, scenario)


def test_driver_reports_javascript_errors(browser):
    """The driver collects uncaught exceptions and console.error (so the page tests can fail)."""
    browser.navigate("about:blank")
    before = len(browser.js_errors())
    browser.evaluate("setTimeout(() => { throw new Error('boom'); }); console.error('bad', 1)")
    browser.wait_for("1", 5, check=lambda _: len(browser.js_errors()) >= before + 2)
    texts = [error["text"] for error in browser.js_errors()[before:]]
    assert any("boom" in text for text in texts) and "bad 1" in texts
    browser.errors[before:] = []  # do not leak into the other tests of this module


def _clock(ms: int) -> str:
    """The page's trade time: local HH:MM:SS.mmm."""
    seconds = time.localtime(ms / 1000)
    return time.strftime("%H:%M:%S", seconds) + f".{ms % 1000:03d}"


# -- the real demo ------------------------------------------------------------------


# workers = 1: the test is about the page;
# the process layout is tested in tests/e2e/test_workers.py.
DEMO_INI = """\
[simulator]
enabled = yes
seed = 1
blocks_per_second = 14.5
scale = 0.1
info_port = {info_port}

[node]
data_dir = {tmp}/hl/data
mode = by_block
info_url = http://127.0.0.1:{info_port}/info
snapshot_path = {tmp}/snapshot.json
validate_interval_s = 30

[tls]
certificate = {tmp}/tls/cert.pem
private_key = {tmp}/tls/key.pem
self_signed = yes

[server]
listen = ssl:{port}:interface=127.0.0.1
path = /ws
page = yes
workers = 1

[log]
format = text
level = info
"""


def _demo_ready() -> str | None:
    """Why the demo cannot run yet, or None."""
    for module in ("orderbook.server.site", "orderbook.sim.service", "orderbook.node.service"):
        if importlib.util.find_spec(module) is None:
            return f"{module} does not exist yet"
    if find_chromium() is None:
        return "chromium is not installed"
    return None


@pytest.fixture
def demo(tmp_path: Path):
    reason = _demo_ready()
    if reason:
        pytest.skip(reason)
    port, info_port = free_port(), free_port()
    config = tmp_path / "demo.ini"
    config.write_text(DEMO_INI.format(tmp=tmp_path, port=port, info_port=info_port))
    proc = spawn_twistd(config, tmp_path)
    try:
        proc.wait_for(rf"listening on 127\.0\.0\.1:{port}", timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


class ServerBooks:
    """Our own client of the server: l2Book messages of one view, by height."""

    def __init__(self, address: str) -> None:
        self.client = WebSocketClient.connect(f"wss://{address}/ws")
        self.by_height: dict[str, list] = {}
        self.sub: dict[str, Any] = {}
        self.agg = "full"
        self.pinged = time.monotonic()

    def watch(self, coin: str, n_sig: int | None) -> None:
        if self.sub:
            self.client.send_json({"method": "unsubscribe", "subscription": self.sub})
        self.agg = str(n_sig) if n_sig else "full"
        self.sub = {"type": "l2Book", "coin": coin, "nLevels": 20}
        if n_sig:
            self.sub["nSigFigs"] = n_sig
        self.by_height = {}
        self.client.send_json({"method": "subscribe", "subscription": self.sub})

    def pump(self) -> None:
        """Take every message that has arrived (waits at most 20 ms for one)."""
        if time.monotonic() - self.pinged > 20:  # the server drops clients silent for 60 s
            self.client.send_json({"method": "ping"})
            self.pinged = time.monotonic()
        timeout = 0.02
        while (message := self.client.receive_json(timeout)) is not None:
            timeout = 0
            data = message.get("data")
            if message.get("channel") == "l2Book" and data["coin"] == self.sub["coin"]:
                self.by_height[str(data["height"])] = data["levels"]
            elif message.get("channel") == "subscriptionResponse" and (
                message["data"]["method"] == "unsubscribe"
            ):
                self.by_height = {}  # everything before this was the old view

    def matches(self, page: dict[str, Any]) -> bool:
        """True when the page shows exactly what the server sent at the page's height."""
        self.pump()
        levels = self.by_height.get(page["height"])
        if levels is None or (page["coin"], page["agg"]) != (self.sub["coin"], self.agg):
            return False
        strip = [[{"px": lv["px"], "sz": lv["sz"], "n": lv["n"]} for lv in side] for side in levels]
        shown = [[{k: r[k] for k in ("px", "sz", "n")} for r in page[s]] for s in ("bids", "asks")]
        return shown == strip and page["bids"] != []


def test_page_matches_the_demo_server(demo: str, tmp_path: Path):
    """Over TLS against twistd + simulator, the page shows exactly the server's
    l2Book at the height it displays, for BTC and after switching coin and
    aggregation; no JavaScript error is logged."""
    server = ServerBooks(demo)
    try:
        with Browser.launch() as browser:
            server.watch("BTC", None)
            browser.navigate(f"https://{demo}/")
            page = browser.wait_for(READ_PAGE, 60, "BTC as on the server", server.matches)
            assert page["coin"] == "BTC" and page["banner"] == ""
            # The header follows the live block, not the last state change's height.
            first = int(page["statusHeight"])
            assert first >= int(page["height"])
            browser.wait_for(
                READ_PAGE, 30, "the header's height moves", lambda p: int(p["statusHeight"]) > first
            )
            server.watch("ETH", 4)
            choose(browser, "coin-select", "ETH")
            choose(browser, "agg-select", "4")
            page = browser.wait_for(READ_PAGE, 30, "ETH/4 as on the server", server.matches)
            assert page["agg"] == "4"
            browser.wait_for(READ_PAGE, 30, "trades", lambda p: len(p["trades"]) >= 3)
            browser.screenshot(tmp_path / "page.png")
            target = os.environ.get("ORDERBOOK_SCREENSHOT")
            if target:
                showcase(browser, Path(target))
            assert browser.js_errors() == []
    finally:
        server.client.close()


def showcase(browser: Browser, target: Path) -> None:
    """The README screenshot: BTC at 5 significant figures once the book and trades fill."""
    browser.call(  # no trade flashes frozen mid-animation
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]},
    )
    choose(browser, "coin-select", "BTC")
    choose(browser, "agg-select", "5")
    browser.wait_for(
        READ_PAGE,
        120,
        "a full BTC book and trades",
        lambda p: len(p["bids"]) == len(p["asks"]) == 20 and len(p["trades"]) >= 40,
        interval=0.02,
    )
    browser.screenshot(target)

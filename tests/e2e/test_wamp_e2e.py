"""End to end over WAMP: the real ``twistd -n orderbook`` fed by the real simulator, over wss.

One server for the module: the simulator as a separate process (like a node),
``twistd -n orderbook`` tailing its files with TLS from a self-signed
certificate and WAMP on (realm ``orderbook-e2e``). Three real WAMP clients:

- Autobahn|JS in Node (tests/js/wamp_e2e_client.mjs) subscribes to every coin
  topic, calls every procedure, and rebuilds L4 books from the snapshot call
  plus update events; those books equal the simulator's at one height, and
  its l2book view at that height is the aggregation of the L4 book;
- the ``autobahn-browser`` bundle in headless Chromium (tests/js/wamp_e2e_page.html)
  joins, receives events of every coin topic and calls; no JavaScript errors;
- an autobahn-python ApplicationSession does the same and also rebuilds an
  L4 book equal to the simulator's.

Skips only when node, the npm packages or chromium are absent
(scripts/install-test-tools installs them).
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import ComponentConfig
from twisted.internet import ssl, threads
from twisted.internet.endpoints import SSL4ClientEndpoint

from tests.e2e.browser import Browser, find_chromium
from tests.e2e.l4client import L4Book, comparable, request_snapshot
from tests.e2e.procs import REPO, Proc, free_port, spawn_simulator, spawn_twistd, wait_until
from tests.e2e.test_server import describe_difference, http_get, post_json
from tests.server.harness import until
from tests.server.test_wamp_protocol import Probe

pytestmark = pytest.mark.e2e

JS = REPO / "tests" / "js"
BUNDLE = JS / "node_modules" / "autobahn-browser" / "autobahn.min.js"
REALM = "orderbook-e2e"
COIN = "BTC"
L4_COINS = ["BTC", "@107"]  # @107: a coin whose topic needs percent-encoding (%40107)

# workers = 1: these tests are about the WAMP clients;
# the process layout is tested in tests/e2e/test_workers.py.
SERVER_INI = """\
[node]
data_dir = {data_dir}
mode = by_block
info_url = {info_url}
snapshot_path = {tmp}/server-snapshot.json
snapshot_timeout_s = 10
validate_interval_s = 0

[server]
listen = ssl:{port}:interface=127.0.0.1
path = /ws
workers = 1

[tls]
certificate = {tmp}/tls/cert.pem
private_key = {tmp}/tls/key.pem
self_signed = yes

[wamp]
enabled = yes
realm = {realm}
"""


@dataclass
class Stack:
    """The running simulator and server, and where to reach them."""

    tmp: Path
    simulator: Proc
    server: Proc
    info_url: str
    port: int

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws"

    @property
    def certificate(self) -> Path:
        return self.tmp / "tls" / "cert.pem"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator + ``twistd -n orderbook`` (TLS, WAMP), ready; stopped (no traceback) after."""
    tmp = tmp_path_factory.mktemp("wamp-e2e")
    data_dir = tmp / "hl" / "data"
    simulator = spawn_simulator(
        tmp,
        "--data-dir", str(data_dir), "--info-port", "0", "--seed", "5",
        "--mode", "by_block", "--scale", "0.05", "--blocks-per-second", "20",
    )  # fmt: skip
    server = None
    try:
        info_url = simulator.wait_for(r"simulator ready: .* info=(\S+)", timeout=30).group(1)
        port = free_port()
        config = tmp / "server.ini"
        config.write_text(
            SERVER_INI.format(data_dir=data_dir, info_url=info_url, tmp=tmp, port=port, realm=REALM)
        )
        server = spawn_twistd(config, tmp)
        server.wait_for(rf"listening on 127\.0\.0\.1:{port} \(tls\)", timeout=30)
        wait_until(
            lambda: http_get(f"https://127.0.0.1:{port}/health")[0] == 200, 30, "server ready"
        )
        yield Stack(tmp, simulator, server, info_url, port)
        assert "Traceback" not in server.output(), server.output()[-4000:]
    finally:
        if server is not None:
            server.stop()
        simulator.stop()


# -- checks shared by the three clients ------------------------------------------------------


def check_calls(calls: dict[str, Any]) -> None:
    """Results of orderbook.coins / status / l2book.get / bbo.get from a ready server."""
    assert set(L4_COINS) <= set(calls["coins"]) and calls["coins"] == sorted(calls["coins"])
    assert calls["status"]["state"] == "ready", calls["status"]
    assert calls["l2"]["coin"] == COIN and isinstance(calls["l2"]["height"], int)
    bids, asks = calls["l2"]["levels"]
    assert 0 < len(bids) <= 20 and 0 < len(asks) <= 20
    assert Decimal(bids[0]["px"]) < Decimal(asks[0]["px"])
    assert calls["bbo"]["coin"] == COIN and len(calls["bbo"]["bbo"]) == 2


def check_first_events(first: dict[str, dict[str, Any]]) -> None:
    """One event of each coin topic, shaped like the JSON channel's data."""
    l2 = first[f"orderbook.l2book.{COIN}"]["args"][0]
    assert l2["coin"] == COIN and all(
        set(level) == {"px", "sz", "n"} for side in l2["levels"] for level in side
    )
    trades = first[f"orderbook.trades.{COIN}"]["args"][0]
    assert trades and all(t["coin"] == COIN and len(t["users"]) == 2 for t in trades)
    assert first[f"orderbook.bbo.{COIN}"]["args"][0]["coin"] == COIN
    for coin, topic in (("BTC", "orderbook.l4book.BTC"), ("@107", "orderbook.l4book.%40107")):
        updates = first[topic]["args"][0]
        assert updates["coin"] == coin and {"height", "time", "book_diffs"} <= updates.keys()


def aggregate(levels: list[list[dict[str, Any]]], depth: int = 20) -> list[list[tuple]]:
    """L4 orders (queue order, best first) -> L2 levels (px, sz, n), exact decimals."""
    sides = []
    for side in levels:
        out: list[list[Any]] = []
        for order in side:
            px = Decimal(order["limitPx"])
            if out and out[-1][0] == px:
                out[-1][1] += Decimal(order["sz"])
                out[-1][2] += 1
            else:
                out.append([px, Decimal(order["sz"]), 1])
        sides.append([tuple(level) for level in out[:depth]])
    return sides


def l2_tuples(data: dict[str, Any]) -> list[list[tuple]]:
    return [
        [(Decimal(lv["px"]), Decimal(lv["sz"]), lv["n"]) for lv in side] for side in data["levels"]
    ]


def assert_books_equal(ours: dict[str, list], theirs: dict[str, list], height: int) -> None:
    for coin in L4_COINS:
        mine, sim = comparable(ours[coin]), comparable(theirs[coin])
        assert mine, f"{coin}: empty book at {height}"
        assert mine == sim, (coin, height, describe_difference(mine, sim))


def compare_height(
    stack: Stack, book_at: Callable[[int], dict[str, Any]], snapshots: dict[str, int]
) -> tuple[int, dict[str, list], dict[str, Any]]:
    """A simulator snapshot height H a few blocks past the client's snapshot calls (so
    updates are applied), the simulator's books at H and the client's answer at H.

    ``book_at(H)`` answers ``{"books": ...}`` or ``{"ahead": ...}`` when a book of the
    client is already past H (it resynchronised): then ask the simulator again.
    """
    deadline = time.monotonic() + 30
    while True:
        height, simulated = request_snapshot(stack.info_url, stack.tmp / "sim-snapshot.json")
        if height > max(snapshots.values()) + 3:
            answer = book_at(height)
            if "books" in answer:
                return height, simulated, answer
        assert time.monotonic() < deadline, f"no comparable height: {height} {snapshots}"


# -- 1. Autobahn|JS in Node ------------------------------------------------------------------


class NodeClient:
    """tests/js/wamp_e2e_client.mjs as a child: JSON lines out, {"at": H} requests in."""

    def __init__(self, stack: Stack) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        if not (JS / "node_modules" / "autobahn").is_dir():
            pytest.skip("npm package autobahn missing in tests/js (run scripts/install-test-tools)")
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(stack.certificate))
        args = [node, "--experimental-websocket", "--no-warnings", "wamp_e2e_client.mjs"]
        self.popen = subprocess.Popen(
            [*args, stack.url, REALM, COIN, *L4_COINS],
            cwd=JS,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.first: dict[str, dict[str, Any]] = {}
        threading.Thread(target=self._read, name="node-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)  # EOF

    def next(self, want: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """The next line ``want`` accepts ("first" lines are kept aside); fail on exit."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"node client: nothing wanted within {timeout}s") from None
            if line is None:
                raise AssertionError(f"node client exited {self.popen.wait()}: {self.stderr()}")
            if "first" in line:
                self.first[line["first"]["topic"]] = line["first"]
            if want(line):
                return line

    def book_at(self, height: int) -> dict[str, Any]:
        """The client's answer for ``height``: its books there, or how far ahead it is."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps({"at": height}) + "\n")
        self.popen.stdin.flush()
        return self.next(lambda line: line.get("at") == height)

    def stderr(self) -> str:
        assert self.popen.stderr is not None
        return self.popen.stderr.read() if self.popen.poll() is not None else ""

    def finish(self) -> int:
        """End of stdin: the client leaves and exits (killed after 10 s)."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            self.popen.stdin.close()
        try:
            return self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def test_autobahn_js_rebuilds_the_simulator_l4_book(stack: Stack) -> None:
    """Autobahn|JS over wss: events of every coin topic, every procedure answers, and its
    L4 books (snapshot call + held updates) equal the simulator's books at one height;
    again after a lost block, from the server's Snapshot events."""
    client = NodeClient(stack)
    try:
        ready = client.next(lambda line: "ready" in line)["ready"]
        check_calls(ready["calls"])
        assert ready["calls"]["l2kw"]["levels"] and len(ready["calls"]["l2kw"]["levels"][0]) <= 5
        assert ready["calls"]["badCoin"] == "wamp.error.invalid_argument"
        height, simulated, answer = compare_height(stack, client.book_at, ready["snapshots"])
        assert_books_equal(answer["books"], simulated, height)
        assert answer["l2"] is not None and answer["l2"]["height"] <= height
        assert l2_tuples(answer["l2"]) == aggregate(answer["books"][COIN])

        # A lost block: the server resynchronises and sends each L4 topic a Snapshot event.
        post_json(stack.info_url.rsplit("/", 1)[0] + "/control", {"fault": "gap"})
        resyncs: dict[str, int] = {}
        while resyncs.keys() != set(L4_COINS):
            resync = client.next(lambda line: "resync" in line)["resync"]
            resyncs[resync["coin"]] = resync["height"]
        later, simulated, answer = compare_height(stack, client.book_at, resyncs)
        assert later > height
        assert_books_equal(answer["books"], simulated, later)
        topics = 3 + len(L4_COINS)
        if len(client.first) < topics:  # trades come only with trades: read until each had one
            client.next(lambda line: len(client.first) == topics, timeout=30)
        check_first_events(client.first)
    finally:
        code = client.finish()
    assert code == 0, client.stderr()


# -- 2. the autobahn-browser bundle in headless Chromium ---------------------------------------


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves the test page and the bundle, nothing else."""

    files = {
        "/wamp_e2e_page.html": (JS / "wamp_e2e_page.html", "text/html; charset=utf-8"),
        "/autobahn.min.js": (BUNDLE, "text/javascript"),
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path, kind = self.files.get(self.path.split("?")[0], (None, ""))
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[str]:
    """The page's base URL on a plain HTTP port (a thread), shut down after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_browser_bundle_receives_events_and_calls(stack: Stack, page_server: str) -> None:
    """Chromium running the autobahn-browser bundle joins over wss, receives events of
    every coin topic, calls every procedure, and reports no JavaScript error."""
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    if not BUNDLE.exists():
        pytest.skip(
            "npm package autobahn-browser missing in tests/js (run scripts/install-test-tools)"
        )
    query = f"url={stack.url}&realm={REALM}&coin={COIN}"
    with Browser.launch() as browser:
        browser.navigate(f"{page_server}/wamp_e2e_page.html?{query}")
        joined = browser.wait_for(
            "window.results.joined || window.results.closed || window.results.errors.length",
            20,
            "the page to join",
        )
        results = browser.evaluate("window.results")
        assert joined is True, results
        browser.wait_for(
            "window.results.counts", 30, "an event on every topic", check=lambda c: len(c) == 4
        )
        results = browser.evaluate("window.results")
        assert results["closed"] is None and results["errors"] == [], results
        check_calls(results["calls"])
        assert len(results["calls"]["l2"]["levels"][0]) <= 3
        snapshot = results["calls"]["snapshot"]
        assert snapshot["coin"] == COIN and snapshot["levels"][0] and snapshot["levels"][1]
        events = results["events"]
        for topic, received in events.items():
            assert len(received) == min(results["counts"][topic], 5), (topic, results["counts"])
        assert events[f"orderbook.l2book.{COIN}"][0]["coin"] == COIN
        assert all(trade["coin"] == COIN for trade in events[f"orderbook.trades.{COIN}"][0])
        assert events[f"orderbook.bbo.{COIN}"][0]["coin"] == COIN
        l4 = events[f"orderbook.l4book.{COIN}"]
        assert all(updates["coin"] == COIN for updates in l4)
        heights = [updates["height"] for updates in l4]
        assert heights == list(range(heights[0], heights[0] + len(heights)))  # no gap
        assert browser.js_errors() == []


# -- 3. autobahn-python ------------------------------------------------------------------------


async def join(reactor: Any, stack: Stack) -> Probe:
    """An autobahn-python session over wss that checks the server's certificate."""
    probe = Probe(ComponentConfig(REALM))
    factory = WampWebSocketClientFactory(
        lambda: probe, url=stack.url, serializers=[JsonSerializer()]
    )
    trust = ssl.Certificate.loadPEM(stack.certificate.read_bytes())
    tls = ssl.optionsForClientTLS("127.0.0.1", trustRoot=trust)
    await SSL4ClientEndpoint(reactor, "127.0.0.1", stack.port, tls).connect(factory)
    return await probe.joined


@pytest_twisted.ensureDeferred
async def test_autobahn_python_session_rebuilds_the_simulator_l4_book(
    reactor: Any, stack: Stack
) -> None:
    """An ApplicationSession over wss: events of every coin topic, every procedure, and an
    L4 book (snapshot call + updates up to one height) equal to the simulator's."""
    session = await join(reactor, stack)
    try:
        topics = [f"orderbook.{name}.{COIN}" for name in ("l2book", "trades", "bbo")]
        topics += [l4_topic(coin) for coin in L4_COINS]
        for topic in topics:
            await session.listen(topic)
        books = {
            coin: L4Book(await session.call("orderbook.l4book.snapshot", coin)) for coin in L4_COINS
        }
        calls = {
            "coins": await session.call("orderbook.coins"),
            "status": await session.call("orderbook.status"),
            "l2": await session.call("orderbook.l2book.get", coin=COIN),
            "bbo": await session.call("orderbook.bbo.get", COIN),
        }
        check_calls(calls)
        with pytest.raises(ApplicationError) as caught:
            await session.call("orderbook.l4book.snapshot", "NO-SUCH-COIN")
        assert caught.value.error == "wamp.error.invalid_argument"

        def book_at(height: int) -> dict[str, Any]:
            """Called in a thread: wait for updates up to ``height`` (the reactor delivers)."""
            wait_until(
                lambda: all(latest_height(session, c) >= height for c in L4_COINS),
                30,
                f"updates to {height}",
            )
            return {"books": {}}

        snapshots = {coin: book.height for coin, book in books.items()}
        height, simulated, _ = await threads.deferToThread(
            compare_height, stack, book_at, snapshots
        )
        for coin, book in books.items():
            for args, kwargs in list(session.events[l4_topic(coin)]):
                assert kwargs == {}, kwargs  # no resync Snapshot in a healthy run
                if book.height < args[0]["height"] <= height:
                    book.apply(args[0])
            assert book.height == height
        assert_books_equal({coin: book.levels() for coin, book in books.items()}, simulated, height)
        await until(reactor, lambda: all(session.events[topic] for topic in topics), timeout=30)
        check_first_events(
            {topic: {"args": list(events[0][0])} for topic, events in session.events.items()}
        )
    finally:
        session.leave()
        await session.left.addTimeout(10, reactor)


def l4_topic(coin: str) -> str:
    """``orderbook.l4book.<coin>``, the coin written as in the docs (%XX outside [A-Za-z0-9_-])."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    encoded = "".join(chr(b) if b in safe else f"%{b:02X}" for b in coin.encode())
    return f"orderbook.l4book.{encoded}"


def latest_height(session: Probe, coin: str) -> int:
    """The height of the last l4book event ``session`` received for ``coin`` (-1: none)."""
    events = session.events[l4_topic(coin)]
    return events[-1][0][0]["height"] if events else -1

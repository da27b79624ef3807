"""Autobahn|JS (npm ``autobahn``, Node) against the real server over wss.

The server runs in-process (real TLS on 127.0.0.1); the client is
tests/js/wamp_client.mjs. Skips when node or the npm packages are absent
(run scripts/install-test-tools).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol

from orderbook.book.books import BlockResult, Books, CoinUpdate
from orderbook.book.events import StatusOrder
from orderbook.feed import messages
from tests.e2e.procs import REPO
from tests.server.harness import small_books, until
from tests.server.test_wamp_protocol import TRADE, WampHarness

JS = REPO / "tests" / "js"
NODE = shutil.which("node")
# Node's built-in WebSocket (undici) refuses a compressed message inflating past this.
NODE_INFLATE_LIMIT = 4 * 1024 * 1024
DEEP_ORDERS = 16_000  # ~5 MB of L4 snapshot: past Node's limit, quick to build


def deep_books(orders: int = DEEP_ORDERS, height: int = 100) -> Books:
    """Books with a BTC of ``orders`` mainnet-shaped orders (~315 bytes each in the
    snapshot: 42-character users, a cloid on every third) and the small ETH."""
    books = small_books(height=None)
    half = orders // 2
    for side, sign, first_oid in (("B", -1, 10**10), ("A", 1, 10**10 + half)):
        books.load_orders("BTC", side, _deep_side(side, sign, first_oid, half))
    books.set_height(height, 1_700_000_000_000)
    return books


def _deep_side(side: str, sign: int, first_oid: int, count: int) -> Any:
    for index in range(count):
        cloid = f"0x{index:032x}" if index % 3 == 0 else None
        order = StatusOrder(
            coin="BTC",
            side=side,
            limitPx=f"{100_000 + sign * (2 + index // 8)}.0",
            sz="0.00123",
            oid=first_oid + index,
            timestamp=1_700_000_000_000 + index,
            tif="Alo",
            cloid=cloid,
        )
        yield f"0x{index:040x}", order


def need_node() -> str:
    if NODE is None:
        pytest.skip("node is not installed")
    if not (JS / "node_modules" / "autobahn").is_dir():
        pytest.skip("npm package autobahn missing in tests/js (run scripts/install-test-tools)")
    return NODE


class Lines(protocol.ProcessProtocol):
    """Collects a child's stdout JSON lines and stderr; ``ended`` fires with the exit code."""

    def __init__(self) -> None:
        self.lines: list[Any] = []
        self.stderr = b""
        self._buffer = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        self.lines.extend(json.loads(line) for line in complete if line.strip())

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


def run_node(
    reactor: Any, args: list[str], ca: Path | None = None, script: str = "wamp_client.mjs"
) -> Lines:
    lines = Lines()
    env = dict(os.environ)
    if ca is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca)
    command = [
        need_node(),
        "--experimental-websocket",
        "--no-warnings",
        str(JS / script),
    ]
    reactor.spawnProcess(lines, command[0], command + args, env=env, path=str(JS))
    return lines


async def wait_subscribed(reactor: Any, node: Lines) -> None:
    """The Node client has subscribed to its topics (and is still running)."""
    await until(
        reactor,
        lambda: any("subscribed" in line for line in node.lines) or node.ended.called,
        30,
    )
    assert not node.ended.called, node.stderr.decode()


async def deliver_block(node: Lines, listener: Any) -> dict[str, Any]:
    """Hand ``listener`` block 101 (a BTC trade, an ETH l4 update); the client gets both
    events and exits 0. Returns its calls' results."""
    listener.block_applied(BlockResult(height=101, time_ms=9, updates={"ETH": CoinUpdate()}))
    listener.trades_paired({"BTC": [TRADE]})
    code = await node.ended
    assert code == 0, (node.stderr.decode(), node.lines)
    events = {line["topic"]: line for line in node.lines if "topic" in line}
    assert events["orderbook.trades.BTC"]["args"] == [[TRADE]]
    assert events["orderbook.l4book.ETH"]["args"][0]["height"] == 101
    return node.lines[-1]["calls"]


@pytest_twisted.ensureDeferred
async def test_autobahn_js_subscribes_calls_and_rebuilds_l4(reactor: Any, tmp_path: Path) -> None:
    """Autobahn|JS joins over wss, gets l2book/trades/bbo/l4book events, calls every procedure."""
    need_node()
    harness = WampHarness(reactor, tmp_path)
    await harness.start()
    try:
        url = f"wss://localhost:{harness.port_number}/ws"
        node = run_node(reactor, [url, "orderbook", "BTC", "ETH", "2"], ca=tmp_path / "cert.pem")
        await wait_subscribed(reactor, node)
        calls = await deliver_block(node, harness.registry)
        snapshot = next(line["snapshot"] for line in node.lines if "subscribed" in line)
        assert snapshot["height"] == 100
        assert calls["coins"] == ["BTC", "ETH"]
        assert len(calls["l2"]["levels"][0]) == 2
        assert calls["bbo"]["bbo"][0]["px"] == "100.0"
        assert calls["status"] == harness.status
        assert calls["bad"] == "wamp.error.invalid_argument"
        assert calls["nope"] == "wamp.error.no_such_procedure"
        assert calls["publish"] == calls["register"] == "wamp.error.not_authorized"
    finally:
        await harness.stop()


def snapshot_oids(books: Books, coin: str) -> list[list[int]]:
    """The oids of ``coin``'s L4 snapshot, bids then asks, in queue order."""
    return [[order["oid"] for order in side] for side in books.l4_snapshot(coin)["levels"]]


async def take_snapshot(reactor: Any, url: str, mode: str, ca: Path | None, *extra: str) -> Any:
    """Run wamp_snapshot.mjs to its end: (exit code, its one JSON line)."""
    node = run_node(reactor, [url, "orderbook", "BTC", mode, *extra], ca, "wamp_snapshot.mjs")
    code = await node.ended
    assert node.lines, node.stderr.decode()
    return code, node.lines[-1]


def check_parts(books: Books, result: dict[str, Any]) -> None:
    """Every part is of one block, within 1 MiB, and together they are the snapshot."""
    assert {part["height"] for part in result["parts"]} == {books.height}
    assert all(part["chars"] <= 1024 * 1024 for part in result["parts"])
    assert result["oids"] == snapshot_oids(books, "BTC")


@pytest_twisted.ensureDeferred
async def test_autobahn_js_takes_a_deep_snapshot_in_parts(reactor: Any, tmp_path: Path) -> None:
    """Node's own WebSocket cannot take a >4 MB snapshot in one result (it closes the
    connection); with receive_progress it gets parts of <= 1 MiB from one block."""
    need_node()
    books = deep_books()
    whole = len(messages.encode(books.l4_snapshot("BTC")))
    assert whole > NODE_INFLATE_LIMIT
    harness = WampHarness(reactor, tmp_path, books=books)
    await harness.start()
    try:
        url = f"wss://localhost:{harness.port_number}/ws"
        code, refused = await take_snapshot(reactor, url, "whole", tmp_path / "cert.pem")
        assert code == 2, refused  # the connection closed under the client
        assert refused["socket"]["code"] == 1006, refused
        assert "Max decompressed message size exceeded" in refused["socket"]["error"], refused
        code, result = await take_snapshot(reactor, url, "progress", tmp_path / "cert.pem")
        assert code == 0, result
        assert len(result["parts"]) >= whole / (1024 * 1024) > 4
        check_parts(books, result)
    finally:
        await harness.stop()


class Tokens:
    """A fake access token store."""

    enabled = True

    def accepts(self, token: str | None) -> bool:
        return token == "t0ken"

    def hold(self, token: str, holder: Any, via: str) -> None:
        """Nothing is revoked here (tests/server/test_access_wamp.py revokes)."""


@pytest_twisted.ensureDeferred
async def test_autobahn_js_joins_with_a_ticket(reactor: Any, tmp_path: Path) -> None:
    """Access control on: Autobahn|JS with the right ticket joins (authmethod ticket);
    with a wrong one the session is aborted with authentication_failed."""
    need_node()
    harness = WampHarness(reactor, tmp_path, tokens=Tokens())
    await harness.start()
    try:
        url = f"wss://localhost:{harness.port_number}/ws"
        ca = tmp_path / "cert.pem"
        code, result = await take_snapshot(reactor, url, "progress", ca, "t0ken")
        assert code == 0, result
        assert result["authmethod"] == "ticket"
        assert result["oids"] == snapshot_oids(harness.books, "BTC")
        code, refused = await take_snapshot(reactor, url, "progress", ca, "guess")
        assert code == 2, refused
        assert refused["details"]["reason"] == "wamp.error.authentication_failed", refused
    finally:
        await harness.stop()

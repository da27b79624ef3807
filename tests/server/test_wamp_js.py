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

from orderbook.book.books import BlockResult, CoinUpdate
from tests.e2e.procs import REPO
from tests.server.harness import until
from tests.server.test_wamp_protocol import TRADE, WampHarness

JS = REPO / "tests" / "js"
NODE = shutil.which("node")


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


def run_node(reactor: Any, args: list[str], ca: Path | None = None) -> Lines:
    lines = Lines()
    env = dict(os.environ)
    if ca is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca)
    command = [
        need_node(),
        "--experimental-websocket",
        "--no-warnings",
        str(JS / "wamp_client.mjs"),
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
    listener.block_applied(
        BlockResult(height=101, time_ms=9, trades={"BTC": [TRADE]}, updates={"ETH": CoinUpdate()})
    )
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

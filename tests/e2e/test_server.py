"""End to end: the real ``twistd -n orderbook``, the real simulator, real clients.

- the server listens, answers /health and exits cleanly on SIGTERM;
- the demo config (simulator in-process, TLS) streams every channel to a
  client that speaks only the official API;
- a client's L4 book, rebuilt from Snapshot + Updates, equals the simulator's
  own book at the same height, and converges again after injected faults (a
  gap, a garbage line, a failing snapshot) without reconnecting.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import WebSocketClient
from tests.e2e.l4client import L4Book, comparable, request_snapshot
from tests.e2e.procs import (
    REPO,
    Proc,
    free_port,
    spawn_simulator,
    spawn_twistd,
    twistd_command,
    wait_until,
)

pytestmark = pytest.mark.e2e

# workers = 1: these tests are about the protocol and ingest;
# the process layout is tested in tests/e2e/test_workers.py.
SERVER_INI = """\
[node]
data_dir = {data_dir}
mode = {mode}
info_url = {info_url}
snapshot_path = {tmp}/snapshot.json
snapshot_timeout_s = 10
stall_timeout_s = 3
validate_interval_s = 0

[server]
listen = tcp:{port}:interface=127.0.0.1
path = /ws
workers = 1
"""


def http_get(url: str) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post_json(url: str, value: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(value).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Client:
    """A WebSocket client that sorts what it receives by channel."""

    def __init__(self, url: str) -> None:
        self.ws = WebSocketClient.connect(url)
        self.messages: list[dict[str, Any]] = []

    def send(self, value: dict[str, Any]) -> None:
        self.ws.send_json(value)

    def subscribe(self, subscription: dict[str, Any]) -> None:
        self.send({"method": "subscribe", "subscription": subscription})

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        message = self.ws.receive_json(timeout)
        if message is None:
            raise AssertionError(f"no message within {timeout}s")
        return message

    def close(self) -> None:
        self.ws.close()


def nodeless_config(tmp_path: Path, port: int) -> Path:
    """A server config on ``port`` with an empty data dir and no node answering."""
    data_dir = tmp_path / "hl" / "data"
    data_dir.mkdir(parents=True)
    config = tmp_path / "server.ini"
    info_url = f"http://127.0.0.1:{free_port()}/info"
    config.write_text(
        SERVER_INI.format(
            data_dir=data_dir, mode="by_block", info_url=info_url, tmp=tmp_path, port=port
        )
    )
    return config


def test_twistd_listens_and_stops_on_sigterm(tmp_path):
    """twistd listens on the tcp endpoint, /health says not ready, SIGTERM shuts it down.

    twistd re-raises the signal after a clean shutdown, so the exit status is
    "terminated by SIGTERM" (-15), as service managers expect.
    """
    port = free_port()
    config = nodeless_config(tmp_path, port)
    server = spawn_twistd(config, tmp_path)
    try:
        server.wait_for(rf"listening on 127\.0\.0\.1:{port} \(plaintext\)")
        code, body = http_get(f"http://127.0.0.1:{port}/health")
        assert code == 503
        assert json.loads(body)["state"] in ("initializing", "bootstrapping", "resyncing")
    finally:
        exit_code = server.stop()
    assert exit_code in (0, -15), server.output()[-3000:]
    assert "Server Shut Down." in server.output()
    assert "Traceback" not in server.output()


def test_demo_streams_every_channel_to_an_official_api_client(tmp_path):
    """etc/demo.ini as shipped (ports moved): l2Book, trades, bbo, l4Book flow over TLS,
    to a plain client and to the official Python SDK."""
    port, info_port = free_port(), free_port()
    config = tmp_path / "demo.ini"
    demo = (REPO / "etc" / "demo.ini").read_text()
    assert "ssl:8000:" in demo and "3001" in demo
    config.write_text(demo.replace("ssl:8000:", f"ssl:{port}:").replace("3001", str(info_port)))
    server = spawn_twistd(config, tmp_path)
    try:
        server.wait_for(rf"listening on 127\.0\.0\.1:{port} \(tls\)", timeout=60)
        wait_until(lambda: http_get(f"https://127.0.0.1:{port}/health")[0] == 200, 60, "ready")
        assert tls_version(port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert tls_version(port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            tls_version(port, ssl.TLSVersion.TLSv1_1)  # TLS 1.2 is the minimum
        client = Client(f"wss://127.0.0.1:{port}/ws")
        subscriptions = [
            {"type": "l2Book", "coin": "BTC"},
            {"type": "trades", "coin": "BTC"},
            {"type": "bbo", "coin": "BTC"},
            {"type": "l4Book", "coin": "BTC"},
        ]
        for subscription in subscriptions:
            client.subscribe(subscription)
        client.send({"method": "ping"})
        seen = collect_channels(client, {"l2Book", "trades", "bbo", "l4Book", "pong"}, 60)
        assert seen["subscriptionResponse"] == 4
        client.close()
        certificate = tmp_path / "demo-data" / "tls" / "cert.pem"
        assert official_sdk_channels(port, certificate) == {"l2Book", "trades", "bbo", "allMids"}
    finally:
        assert server.stop() in (0, -15)


def official_sdk_channels(port: int, certificate: Path, timeout: float = 60) -> set[str]:
    """The channels Hyperliquid's own Python SDK receives from us, set up as
    docs/examples/sdk_client.py shows (``Info`` with the coins' metadata given) and
    trusting the demo's certificate as docs/client-api.rst says."""
    info_module = pytest.importorskip(
        "hyperliquid.info", reason="pip install '.[test]' brings the official SDK"
    )
    os.environ["WEBSOCKET_CLIENT_CA_BUNDLE"] = str(certificate)
    seen: set[str] = set()
    info = info_module.Info(
        f"https://127.0.0.1:{port}",
        meta={"universe": [{"name": "BTC", "szDecimals": 5}]},
        spot_meta={"universe": [], "tokens": []},
    )
    try:
        for subscription in (
            {"type": "l2Book", "coin": "BTC"},
            {"type": "trades", "coin": "BTC"},
            {"type": "bbo", "coin": "BTC"},
            {"type": "allMids"},
        ):
            info.subscribe(subscription, lambda message: seen.add(message["channel"]))
        wait_until(lambda: len(seen) == 4, timeout, "the SDK's four channels")
    finally:
        info.disconnect_websocket()
        del os.environ["WEBSOCKET_CLIENT_CA_BUNDLE"]
    return seen


def tls_version(port: int, version: ssl.TLSVersion) -> str | None:
    """Handshake with exactly ``version``; the negotiated protocol name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.version()


def collect_channels(client: Client, wanted: set[str], timeout: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while not wanted <= counts.keys():
        assert time.monotonic() < deadline, f"only saw {counts}"
        message = client.next()
        assert message["channel"] != "error", message
        counts[message["channel"]] = counts.get(message["channel"], 0) + 1
        check_shape(message)
    return counts


def check_shape(message: dict[str, Any]) -> None:
    channel, data = message["channel"], message.get("data")
    if channel == "l2Book":
        assert data["coin"] == "BTC" and isinstance(data["time"], int)
        assert all(set(level) == {"px", "sz", "n"} for side in data["levels"] for level in side)
    elif channel == "trades":
        assert all(trade["side"] in ("A", "B") and len(trade["users"]) == 2 for trade in data)
    elif channel == "bbo":
        assert len(data["bbo"]) == 2


class SimulatedNode:
    """The simulator as a separate process, like a real node beside the server."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        self.data_dir = tmp_path / "hl" / "data"
        self.proc = spawn_simulator(
            tmp_path,
            "--data-dir", str(self.data_dir), "--info-port", "0", "--seed", "11",
            "--mode", mode, "--scale", "0.05", "--blocks-per-second", "20",
        )  # fmt: skip
        match = self.proc.wait_for(r"simulator ready: .* info=(\S+)", timeout=30)
        self.info_url = match.group(1)
        self.control_url = self.info_url.rsplit("/", 1)[0] + "/control"

    def fault(self, **spec: Any) -> None:
        assert post_json(self.control_url, spec)["ok"] is True


class L4Watcher:
    """Keeps the client's L4 books of some coins from Snapshot + Updates.

    Updates are held per coin and applied up to a height limit, so several
    books can be stopped at exactly the same height for comparison.
    """

    def __init__(self, client: Client, coins: list[str]) -> None:
        self.client = client
        self.coins = coins
        self.books: dict[str, L4Book] = {}
        self.pending: dict[str, list[dict[str, Any]]] = {coin: [] for coin in coins}
        self.snapshots = 0
        for coin in coins:
            client.subscribe({"type": "l4Book", "coin": coin})

    def step(self, limit: float = float("inf")) -> None:
        """Receive one message, then apply what is pending up to ``limit``."""
        message = self.client.next()
        if message["channel"] == "l4Book":
            self._take(message["data"])
        else:
            assert message["channel"] in ("subscriptionResponse", "pong"), message
        self._advance(limit)

    def _take(self, data: dict[str, Any]) -> None:
        if "Snapshot" in data:
            coin = data["Snapshot"]["coin"]
            self.books[coin] = L4Book(data["Snapshot"])
            self.pending[coin] = []
            self.snapshots += 1
        else:
            self.pending[data["Updates"]["coin"]].append(data["Updates"])

    def _advance(self, limit: float) -> None:
        for coin, book in self.books.items():
            queue = self.pending[coin]
            while queue and queue[0]["height"] <= limit:
                update = queue.pop(0)
                if update["height"] > book.height:
                    book.apply(update)

    def height(self) -> int:
        if len(self.books) < len(self.coins):
            return -1
        return min(book.height for book in self.books.values())

    def converge(self, node: SimulatedNode, tmp_path: Path, timeout: float = 60) -> int:
        """Step until every book equals the simulator's at one height; return it.

        A fresh server Snapshot may land above the simulator's snapshot height
        (the server resynced meanwhile): then ask the simulator again.
        """
        deadline = time.monotonic() + timeout
        while self.height() < 0:
            assert time.monotonic() < deadline, "no l4Book snapshots"
            self.step()
        while True:
            height, snapshot = request_snapshot(node.info_url, tmp_path / "sim-snapshot.json")
            while self.height() < height:
                assert time.monotonic() < deadline, f"client stuck at {self.height()} < {height}"
                self.step(limit=height)
            if all(book.height == height for book in self.books.values()):
                break
        for coin, book in self.books.items():
            ours, theirs = comparable(book.levels()), comparable(snapshot[coin])
            assert ours == theirs, (coin, height, describe_difference(ours, theirs))
        return height


def describe_difference(ours: list[list[dict]], theirs: list[list[dict]]) -> list[str]:
    """The first few differing positions of two books, for a readable failure."""
    lines = []
    for side, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for index in range(max(len(a), len(b))):
            left = a[index] if index < len(a) else None
            right = b[index] if index < len(b) else None
            if left != right:
                lines.append(f"side {side} #{index}: client {left} != simulator {right}")
            if len(lines) >= 4:
                return lines
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_client_l4_book_equals_simulator_book_through_faults(tmp_path, mode):
    """Snapshot + Updates rebuild the simulator's book exactly, again after each fault."""
    node = SimulatedNode(tmp_path, mode)
    port = free_port()
    config = tmp_path / "server.ini"
    config.write_text(
        SERVER_INI.format(
            data_dir=node.data_dir, mode=mode, info_url=node.info_url, tmp=tmp_path, port=port
        )
    )
    server = spawn_twistd(config, tmp_path)
    try:
        server.wait_for(rf"listening on 127\.0\.0\.1:{port}")
        client = Client(f"ws://127.0.0.1:{port}/ws")
        watcher = L4Watcher(client, ["BTC", "@107"])
        first = watcher.converge(node, tmp_path)
        for fault in ({"fault": "gap"}, {"fault": "garbage", "stream": "diffs"}):
            snapshots = watcher.snapshots
            node.fault(**fault)
            wait_until(
                lambda s=snapshots: watcher.step() or watcher.snapshots >= s + 2, 60, "resync"
            )
            later = watcher.converge(node, tmp_path)
            assert later > first
        node.fault(fault="snapshot_error", status=500, count=1)
        node.fault(fault="gap")
        snapshots = watcher.snapshots
        wait_until(lambda: watcher.step() or watcher.snapshots >= snapshots + 2, 90, "retry")
        watcher.converge(node, tmp_path)
        client.close()
        assert "Traceback" not in server.output()
    finally:
        server.stop()
        node.proc.stop()


def test_daemon_mode_logs_to_twistd_log(tmp_path):
    """Without -n twistd daemonizes; our log lines go to twistd.log, the pidfile stops it."""
    port = free_port()
    config = nodeless_config(tmp_path, port)
    launcher = Proc(
        twistd_command() + ["orderbook", "--config", str(config)], tmp_path / "out", tmp_path
    )
    assert launcher.popen.wait(30) == 0
    log, pidfile = tmp_path / "twistd.log", tmp_path / "twistd.pid"
    try:
        wait_until(
            lambda: log.exists() and f"listening on 127.0.0.1:{port}" in log.read_text(), 30, "log"
        )
    finally:
        pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid"))
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pidfile.exists(), 30, "the daemon to exit")
    assert "Server Shut Down." in log.read_text()

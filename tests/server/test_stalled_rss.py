"""A client that stops reading costs bounded server memory, given back when it goes.

A real server process (tests/server/rss_server.py: a 51k-order BTC, ~16 MB
of L4 snapshot JSON, TLS on 127.0.0.1, blocks every 70 ms) and real TLS
clients that negotiate permessage-deflate, subscribe to l4Book and trades of
BTC, and never read. The server's resident set (VmRSS, VmHWM of
/proc/PID/status) is read from outside.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import REPO, child_env, wait_until

ORDERS = 51_000
PEAK_BOUND_KB = 64 * 1024  # the bar: a stalled l4Book client costs < 64 MB
RETURNED_BOUND_KB = 8 * 1024  # "given back": within 8 MB of the baseline
SNAPSHOT_LIFETIME_BLOCKS = 40  # past the shared snapshot's MAX_AGE_BLOCKS
SERVER_OPTIONS = os.environ.get("RSS_SERVER_OPTIONS", "").split()  # for measurements
RECEIVE_BUFFER = 64 * 1024  # the kernel takes little of the snapshot: the server holds it


class ServerProcess:
    """tests/server/rss_server.py as a child; its per-block JSON lines."""

    def __init__(self, tmp: Path, *options: str) -> None:
        self.log = (tmp / "server.log").open("w+")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.server.rss_server", str(tmp), *options],
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=REPO,
            env=child_env(),
            text=True,
        )
        self.port = self.line(lambda line: "port" in line, 120)["port"]

    def line(self, condition: Any, timeout: float) -> dict[str, Any]:
        """The next stdout line for which ``condition`` holds (blocking, with a deadline)."""
        found: list[dict[str, Any]] = []

        def next_matching() -> bool:
            line = json.loads(self.popen.stdout.readline() or "null")  # type: ignore[union-attr]
            if line is None:
                raise AssertionError(f"server exited: {self.stderr()}")
            if condition(line):
                found.append(line)
            return bool(found)

        wait_until(next_matching, timeout, "a server line")
        return found[0]

    def blocks(self, count: int) -> dict[str, Any]:
        """Wait for ``count`` more blocks; the last one's line."""
        first = self.line(lambda line: "height" in line, 30)["height"]
        return self.line(lambda line: line.get("height", 0) >= first + count, 30)

    def status(self, field: str) -> int:
        with open(f"/proc/{self.popen.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{field} missing")

    def reset_peak(self) -> None:
        """Make VmHWM start again from the current RSS."""
        try:
            Path(f"/proc/{self.popen.pid}/clear_refs").write_text("5")
        except OSError as exc:
            pytest.skip(f"cannot reset the server's peak RSS (/proc/PID/clear_refs): {exc}")

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> None:
        self.popen.kill()
        self.popen.wait(10)
        self.log.close()


def stalled_client(port: int, deflate: bool) -> ssl.SSLSocket:
    """A TLS WebSocket (permessage-deflate or not) subscribed to l4Book and trades of BTC,
    never read."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    sock = context.wrap_socket(raw)
    key = base64.b64encode(os.urandom(16)).decode()
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{offer if deflate else ''}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (b"permessage-deflate" in head) == deflate, head
    for kind in ("l4Book", "trades"):
        request = {"method": "subscribe", "subscription": {"type": kind, "coin": "BTC"}}
        sock.sendall(masked_text(json.dumps(request).encode()))
    return sock


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + body


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module (building its book takes seconds): each test ends with
    its clients gone and the memory given back, and takes its own baseline."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc (Linux) to read the server's RSS")
    process = ServerProcess(
        tmp_path_factory.mktemp("rss"), "--orders", str(ORDERS), *SERVER_OPTIONS
    )
    yield process
    process.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("clients", "deflate"), [(1, True), (4, True), (1, False)])
def test_stalled_l4book_clients_cost_bounded_memory_given_back(server, clients, deflate):
    """Peak RSS growth < 64 MB while clients stall; back within 8 MB once they are closed."""
    server.blocks(SNAPSHOT_LIFETIME_BLOCKS)  # warmed up: views, frames, a memory release
    baseline = server.status("VmRSS")
    server.reset_peak()
    sockets = [stalled_client(server.port, deflate) for _ in range(clients)]
    server.line(lambda line: line.get("subscriptions") == 2 * clients, 60)
    server.blocks(SNAPSHOT_LIFETIME_BLOCKS)
    peak = server.status("VmHWM") - baseline
    print(
        f"\n{clients} stalled, deflate {deflate}: baseline {baseline} kB, peak +{peak} kB", end=" "
    )
    assert peak < PEAK_BOUND_KB, f"peak RSS growth {peak} kB"
    for sock in sockets:
        sock.close()
    server.line(lambda line: line.get("connections") == 0, 60)
    wait_until(
        lambda: server.status("VmRSS") - baseline < RETURNED_BOUND_KB,
        30,
        f"RSS back within {RETURNED_BOUND_KB} kB of its baseline {baseline} kB",
    )
    print(f"after close +{server.status('VmRSS') - baseline} kB")

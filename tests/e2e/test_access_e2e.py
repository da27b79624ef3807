"""End to end: ``twistd -n orderbook`` with a tokens file, SIGHUP and metrics_listen."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.procs import free_port, spawn_twistd, wait_until

pytestmark = pytest.mark.e2e

FIRST = "first-" + "f" * 26
SECOND = "second-" + "s" * 25
REVOKED = "orderbook.close.token_revoked"

CONFIG = """\
[node]
data_dir = {data_dir}
info_url = http://127.0.0.1:{dead}/info
snapshot_path = {tmp}/snapshot.json
validate_interval_s = 0

[server]
listen = tcp:{port}:interface=127.0.0.1
metrics_listen = tcp:{ops}:interface=127.0.0.1
path = /ws
page = no
workers = 2

[websocket]
max_connections_per_ip = 20
handshake_timeout_s = 5

[access]
tokens_file = {tokens}
protect_metrics = no
"""


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def upgrade(port: int, target: str) -> str:
    """The status line the server answers a WebSocket upgrade of ``target`` with."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


class RawWamp:
    """A blocking WebSocket client offering ``wamp.2.json``: enough to join with a
    ticket and read how the session ends."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wamp.2.json\r\n\r\n".encode()
        )
        head = self._until(lambda data: b"\r\n\r\n" in data)
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _until(self, done: Callable[[bytes], bool], data: bytes = b"") -> bytes:
        while not done(data):
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the TCP connection"
            data += chunk
        return data

    def send(self, message: list) -> None:
        payload, mask = json.dumps(message).encode(), os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        """The next frame (opcode, payload); server frames are small and unmasked."""
        self.buffer = self._until(lambda data: len(data) >= 4, self.buffer)
        opcode, length, at = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            (length,), at = struct.unpack_from("!H", self.buffer, 2), 4
        self.buffer = self._until(lambda data: len(data) >= at + length, self.buffer)
        payload, self.buffer = self.buffer[at : at + length], self.buffer[at + length :]
        return opcode, payload

    def join(self, ticket: str) -> None:
        self.send([1, "orderbook", {"roles": {"subscriber": {}}, "authmethods": ["ticket"]}])
        assert json.loads(self.receive()[1])[0] == 4  # CHALLENGE
        self.send([5, ticket, {}])
        assert json.loads(self.receive()[1])[0] == 2  # WELCOME


def write_config(tmp_path: Path, tokens: Path) -> tuple[Path, int, int]:
    data_dir = tmp_path / "hl" / "data"
    data_dir.mkdir(parents=True)
    port, ops = free_port(), free_port()
    config = tmp_path / "server.ini"
    config.write_text(
        CONFIG.format(
            data_dir=data_dir, dead=free_port(), tmp=tmp_path, port=port, ops=ops, tokens=tokens
        )
    )
    return config, port, ops


def server_total(text: str, sample: str, value: str) -> float:
    """A sample summed over the workers (``{worker="N",...}``), or the one process's."""
    pattern = re.escape(sample.format("WORKER", value)).replace("WORKER", r'(?:worker="\d+",)?')
    return sum(float(m.group(1)) for m in re.finditer(pattern + r" (\S+)", text))


def test_tokens_sighup_and_metrics_endpoint(tmp_path):
    """Upgrades need a token from the file; SIGHUP swaps the tokens and every worker ends
    the WAMP sessions whose ticket left the file; /health and /metrics live only on
    metrics_listen; no token reaches the log."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# test\n{FIRST}\n")
    config, port, ops = write_config(tmp_path, tokens)
    server = spawn_twistd(config, tmp_path)
    try:
        server.wait_for(rf"listening on 127\.0\.0\.1:{ops} \(plaintext\)")
        server.wait_for(rf"listening on 127\.0\.0\.1:{port} \(plaintext\)")
        assert http_get(f"http://127.0.0.1:{port}/health")[0] == 404
        code, body = http_get(f"http://127.0.0.1:{ops}/health")
        assert code == 503 and "state" in json.loads(body)
        assert upgrade(port, "/ws") == "HTTP/1.1 401 Unauthorized"
        assert upgrade(port, f"/ws?token={FIRST}") == "HTTP/1.1 101 Switching Protocols"
        sessions = [RawWamp(port) for _ in range(4)]  # WAMP ticket sessions, on any worker
        for session in sessions:
            session.join(FIRST)
        tokens.write_text(f"{SECOND}\n")
        server.popen.send_signal(signal.SIGHUP)
        server.wait_for(r"reloaded 1 tokens from")
        for session in sessions:  # each worker reloaded and ended its ticket sessions
            goodbye = json.loads(session.receive()[1])
            assert goodbye == [6, {"message": "access token revoked"}, REVOKED]
            opcode, payload = session.receive()
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1008)
            session.sock.close()
        assert upgrade(port, f"/ws?token={FIRST}") == "HTTP/1.1 401 Unauthorized"
        assert upgrade(port, f"/ws?token={SECOND}") == "HTTP/1.1 101 Switching Protocols"

        def counted() -> bool:  # workers report to the parent once a second
            text = http_get(f"http://127.0.0.1:{ops}/metrics")[1].decode()
            denied = 'orderbook_access_denied_total{{{}endpoint="ws",reason="{}"}}'
            revoked = 'orderbook_access_revoked_total{{{}via="{}"}}'
            reloaded = r'orderbook_access_reloads_total\{worker="\d",result="ok"\} 1'
            return (
                server_total(text, denied, "missing") == 1
                and server_total(text, denied, "invalid") == 1
                and len(re.findall(reloaded, text)) == 2  # each worker reloaded
                and server_total(text, revoked, "ticket") == 4
            )

        wait_until(counted, 10, "the refusals, the reload and the revocations counted")
    finally:
        assert server.stop() in (0, -15)
    assert "token=REDACTED" in server.output()
    assert FIRST not in server.output() and SECOND not in server.output()
    assert "Traceback" not in server.output()


def test_unreadable_tokens_file_fails_in_one_line(tmp_path):
    """A tokens file that cannot be read stops the start with exit 1 and one line."""
    config, _port, _ops = write_config(tmp_path, tmp_path / "absent")
    server = spawn_twistd(config, tmp_path)
    code = server.popen.wait(30)
    server.stop()
    assert code == 1
    wait_until(lambda: "tokens_file: cannot read" in server.output(), 5, "the error line")
    assert "Traceback" not in server.output()

"""End to end: ``twistd -n orderbook`` with a tokens file, SIGHUP and metrics_listen."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.procs import free_port, spawn_twistd, wait_until

pytestmark = pytest.mark.e2e

FIRST = "first-" + "f" * 26
SECOND = "second-" + "s" * 25

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
    """Upgrades need a token from the file; SIGHUP swaps the tokens; /health and /metrics
    live only on metrics_listen; no token reaches the log."""
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
        tokens.write_text(f"{SECOND}\n")
        server.popen.send_signal(signal.SIGHUP)
        server.wait_for(r"reloaded 1 tokens from")
        assert upgrade(port, f"/ws?token={FIRST}") == "HTTP/1.1 401 Unauthorized"
        assert upgrade(port, f"/ws?token={SECOND}") == "HTTP/1.1 101 Switching Protocols"

        def counted() -> bool:  # workers report to the parent once a second
            text = http_get(f"http://127.0.0.1:{ops}/metrics")[1].decode()
            denied = 'orderbook_access_denied_total{{{}endpoint="ws",reason="{}"}}'
            return (
                server_total(text, denied, "missing") == 1
                and server_total(text, denied, "invalid") == 1
                and server_total(text, 'orderbook_access_reloads_total{{{}result="{}"}}', "ok") >= 1
            )

        wait_until(counted, 10, "the refusals and the reload counted")
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

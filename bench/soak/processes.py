"""The two processes of a soak: the simulated node and ``twistd -n orderbook``.

The server's configuration is written as a user writes one (comments, TLS
with a self-signed certificate, production limits tightened so that a short
soak reaches them). Health, RSS and the log are read from outside, as an
operator would.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.procs import Proc, children, free_port, spawn_simulator, spawn_twistd, status_kb

TOKEN_NAMES = ("clients", "revoked")  # every client's token; one revoked mid-soak
START_TIME = "2026-05-05T22:00:00"  # the writer's clock: a date directory change comes soon

SERVER_INI = """\
; orderbook under soak: a production-like server beside a (simulated) node.
[node]
data_dir = {data_dir}
mode = {mode}
info_url = {info_url}
snapshot_path = {work}/snapshot.json
; the soak injects node faults all the time: short timeouts keep it moving
snapshot_timeout_s = 5
stall_timeout_s = {stall_timeout_s}
validate_interval_s = {validate_interval_s}

[tls]
certificate = {work}/tls/cert.pem
private_key = {work}/tls/key.pem
self_signed = yes

[server]
listen = ssl:{port}:interface=127.0.0.1
path = /ws
; health and metrics for the operator only, on loopback
metrics_listen = tcp:{metrics_port}:interface=127.0.0.1

[access]
tokens_file = {work}/tokens
protect_metrics = no

[websocket]
compression = on
max_connections = 400
; every soak client comes from 127.0.0.1
max_connections_per_ip = 100
handshake_timeout_s = {handshake_timeout_s}
max_subscriptions = 100
max_message_bytes = {max_message_bytes}
; low enough that flooding clients reach it within a second
messages_per_minute = {messages_per_minute}
; nothing sent for this long closes a connection (the official idle rule)
idle_timeout_s = {idle_timeout_s}
; a client that stops reading answers no ping: it is gone within interval + timeout
; (a third of idle_timeout_s each, so stalled clients go as fast as idle ones)
auto_ping_interval_s = {ping_s}
auto_ping_timeout_s = {ping_s}
max_queued_bytes = 4194304

[log]
format = text
level = info
"""


@dataclass
class Limits:
    """The [websocket] limits the clients are judged against."""

    max_message_bytes: int = 65536
    messages_per_minute: int = 600
    idle_timeout_s: int = 20
    stall_timeout_s: int = 2
    handshake_timeout_s: int = 5
    validate_interval_s: int = 20


class Node:
    """``python -m orderbook.sim`` as a separate process, with rotating hourly files."""

    def __init__(self, work: Path, options: dict[str, Any]) -> None:
        self.data_dir = work / "hl" / "data"
        self.proc = spawn_simulator(
            work,
            "--data-dir", str(self.data_dir), "--info-port", "0",
            "--seed", str(options["seed"]), "--mode", options["mode"],
            "--scale", str(options["scale"]),
            "--blocks-per-second", str(options["blocks_per_second"]),
            "--hour-seconds", str(options["hour_seconds"]), "--start-time", START_TIME,
            *(("--deep", options["deep"]) if options["deep"] else ()),
        )  # fmt: skip

    def ready(self) -> str:
        """Block until the simulator is ready; its info URL."""
        match = self.proc.wait_for(r"simulator ready: .* info=(\S+)", timeout=60)
        self.info_url = match.group(1)
        self.control_url = self.info_url.rsplit("/", 1)[0] + "/control"
        return self.info_url


class Server:
    """``twistd -n orderbook --config <work>/orderbook.ini`` over TLS."""

    def __init__(self, work: Path, node: Node, mode: str, limits: Limits) -> None:
        self.work = work
        self.port = free_port()
        self.metrics_port = free_port()
        self.config = work / "orderbook.ini"
        (work / "tls").mkdir(exist_ok=True)
        self.tokens_file = work / "tokens"
        self.tokens = {name: secrets.token_urlsafe(24) for name in TOKEN_NAMES}
        self.write_tokens(self.tokens.values())
        self.config.write_text(
            SERVER_INI.format(
                data_dir=node.data_dir,
                mode=mode,
                info_url=node.info_url,
                work=work,
                port=self.port,
                max_message_bytes=limits.max_message_bytes,
                messages_per_minute=limits.messages_per_minute,
                idle_timeout_s=limits.idle_timeout_s,
                ping_s=limits.idle_timeout_s / 3,
                stall_timeout_s=limits.stall_timeout_s,
                metrics_port=self.metrics_port,
                handshake_timeout_s=limits.handshake_timeout_s,
                validate_interval_s=limits.validate_interval_s,
            )  # fmt: skip
        )
        self.certificate = work / "tls" / "cert.pem"
        self.proc: Proc = spawn_twistd(self.config, work)

    @property
    def pid(self) -> int:
        return self.proc.popen.pid

    def listening(self) -> None:
        self.proc.wait_for(rf"listening on 127\.0\.0\.1:{self.port} \(tls\)", timeout=90)

    def write_tokens(self, tokens: Any) -> None:
        self.tokens_file.write_text("# soak clients\n" + "".join(f"{t}\n" for t in tokens))

    def revoke(self, name: str) -> None:
        """Drop one token from the file and tell the server (SIGHUP), as an operator does."""
        self.write_tokens(t for n, t in self.tokens.items() if n != name)
        self.proc.popen.send_signal(signal.SIGHUP)

    def health(self) -> dict[str, Any]:
        """GET /health on the metrics endpoint (any status); {} when it does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read() or b"{}")
        except (OSError, ValueError):
            return {}

    def metrics(self, prefixes: tuple[str, ...]) -> dict[str, float]:
        """The /metrics samples whose names start with one of ``prefixes``."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith(prefixes) and value:
                samples[name] = float(value)
        return samples

    def pids(self) -> list[int]:
        """The server's processes: twistd and its workers (children), if any."""
        return [self.pid, *children(self.pid)]

    def rss_mb(self) -> float:
        """Resident memory of every server process, summed."""
        return sum(status_kb(pid, "VmRSS") for pid in self.pids()) / 1024

    def rss_by_process_mb(self) -> list[float]:
        """Resident memory of twistd, then of each worker."""
        return [round(status_kb(pid, "VmRSS") / 1024, 1) for pid in self.pids()]

    def peak_rss_mb(self) -> float:
        """Every server process's own peak (VmHWM), summed: an upper bound of the peak."""
        return sum(status_kb(pid, "VmHWM") for pid in self.pids()) / 1024

    def log_problems(self) -> list[str]:
        """Lines around every ``Unhandled`` or ``Traceback`` in the server's log."""
        lines = self.proc.output().splitlines()
        found = []
        for index, line in enumerate(lines):
            if re.search(r"Unhandled|Traceback", line):
                found.append(" | ".join(lines[index : index + 6])[:600])
        return found


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples having ``labels`` (over workers, say)."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        value
        for sample, value in samples.items()
        if sample.split("{", 1)[0] == name and all(label in sample for label in wanted)
    )

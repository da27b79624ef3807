"""End to end: the real ``twistd orderbook``, the simulator, load clients and a probe.

Each run starts, in separate processes, the node simulator at mainnet pace, a
``twistd -n orderbook`` over TLS with permessage-deflate reading its files,
load clients (``bench.clients load``; l2Book, bbo and trades of BTC each) and
one probe client. After a warm-up it measures, over a window:

- delivered messages per second (load clients + probe),
- server CPU per delivered message (the twistd process and its workers),
- probe latency from the block's last node line written (its ``local_time``)
  to the frame received, p50 / p99 / max,
- connections per worker and slow-consumer closes (from ``/metrics``),
- every message delivered: no connection closed, the spread of per-connection
  frame counts over the window.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from calendar import timegm
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.e2e.procs import REPO, child_env, free_port

HEADER = re.compile(rb'\{"local_time":"([^"]+)","block_time":"([^"]+)","block_number":(\d+)')
CONNECTIONS_PER_LOAD_PROCESS = 500


@dataclass
class Result:
    """The figures of one end-to-end run."""

    clients: int
    workers: int
    seconds: float
    balance: str = "reuseport"
    blocks_per_s: float = 0.0
    delivered_per_s: float = 0.0
    server_cpu_us_per_msg: float = 0.0
    server_cpu_cores: float = 0.0
    latency_ms: dict = field(default_factory=dict)
    connections_per_worker: dict = field(default_factory=dict)
    slow_closed: float = 0.0
    client_closed: int = 0
    frames_per_connection: tuple[int, int] = (0, 0)


def node_ns(text: bytes) -> int:
    """Node time (naive UTC ISO, up to 9 fractional digits) -> epoch nanoseconds."""
    whole, _, fraction = text.decode().partition(".")
    seconds = timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


def last_line_written(data_dir: Path) -> dict[int, int]:
    """Block time (ms) -> when the block's last line was written (ns), over all streams."""
    written: dict[int, int] = {}
    for path in data_dir.glob("node_*/hourly/*/*"):
        for match in HEADER.finditer(path.read_bytes()):
            block_ms = node_ns(match.group(2)) // 1_000_000
            local = node_ns(match.group(1))
            if local > written.get(block_ms, 0):
                written[block_ms] = local
    return written


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"count": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1], 2)}


def process_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants (the workers), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total, parents = 0, {pid}
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    changed = True
    while changed:
        changed = False
        for child, (ppid, _) in stats.items():
            if ppid in parents and child not in parents:
                parents.add(child)
                changed = True
    for member in parents:
        total += stats.get(member, (0, 0))[1]
    return total / tick


class Child:
    """A line-oriented child process (``ready``, then commands on stdin)."""

    def __init__(self, args: list[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=child_env(),
            cwd=REPO,
        )

    def wait_for(self, prefix: str) -> str:
        line = self.proc.stdout.readline()
        while line and not line.startswith(prefix):
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited before saying {prefix!r}")
        return line.strip()

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def server_config(
    workdir: Path,
    data_dir: Path,
    info_url: str,
    port: int,
    clients: int,
    workers: int,
    balance: str = "reuseport",
) -> Path:
    from orderbook.config import ServerSettings

    workers_line = ""
    if "workers" in getattr(ServerSettings, "__dataclass_fields__", {}):
        workers_line = f"workers = {workers}\nbalance = {balance}\n"
    elif workers != 1:
        raise SystemExit("this checkout has no [server] workers: run with --workers 1")
    config = workdir / "bench.ini"
    config.write_text(
        f"[node]\ndata_dir = {data_dir}\nmode = by_block\ninfo_url = {info_url}\n"
        f"snapshot_path = {workdir / 'snapshot.json'}\n\n"
        f"[tls]\ncertificate = {workdir / 'cert.pem'}\nprivate_key = {workdir / 'key.pem'}\n"
        "self_signed = yes\n\n"
        f"[server]\nlisten = ssl:{port}:interface=127.0.0.1\n{workers_line}\n"
        f"[websocket]\ncompression = on\nmax_connections = {clients + 100}\n"
        # every load client is 127.0.0.1; a thousand TLS handshakes at once queue longer
        # than the production deadline (the clients connect at a steady pace anyway)
        "max_connections_per_ip = 0\nhandshake_timeout_s = 120\n\n"
        "[log]\nlevel = warn\n"
    )
    return config


def fetch(port: int, path: str) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=5) as r:
        return r.read()


def wait_ready(port: int, server: subprocess.Popen, deadline_s: float = 90) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"twistd exited with {server.returncode}")
        try:
            if json.loads(fetch(port, "/health")).get("state") == "ready":
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def metric_values(port: int, name: str) -> dict[str, float]:
    values = {}
    for line in fetch(port, "/metrics").decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            values[key[len(name) :] or "all"] = float(value)
    return values


def counts(children: list[Child]) -> tuple[float, list[int], int]:
    frames, closed, stamp = [], 0, 0.0
    for child in children:
        report = json.loads(child.ask("count"))
        frames.extend(report["frames"])
        closed += report["closed"]
        stamp = max(stamp, report["t"])
    return stamp, frames, closed


def run(
    clients: int,
    workers: int,
    seconds: float,
    scale: float,
    warmup_s: float = 5.0,
    balance: str = "reuseport",
) -> Result:
    """One measured run; every process it starts is stopped before it returns."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    data_dir = workdir / "hl" / "data"
    children: list[Child] = []
    server = None
    try:
        sim = Child(
            [
                sys.executable,
                "-m",
                "orderbook.sim",
                "--data-dir",
                str(data_dir),
                "--info-port",
                "0",
                "--scale",
                str(scale),
                "--split-probability",
                "0",
            ],
            "simulator",
        )
        children.append(sim)
        info_url = re.search(r"info=(\S+)", sim.wait_for("simulator ready")).group(1)
        port = free_port()
        config = server_config(workdir, data_dir, info_url, port, clients, workers, balance)
        with open(workdir / "twistd.log", "wb") as log:  # the child keeps its own descriptor
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("twistd")),
                    "-n",
                    "--pidfile",
                    str(workdir / "twistd.pid"),
                    "orderbook",
                    "--config",
                    str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=workdir,
            )
        wait_ready(port, server)
        loads = []
        for start in range(0, clients, CONNECTIONS_PER_LOAD_PROCESS):
            count = min(CONNECTIONS_PER_LOAD_PROCESS, clients - start)
            loads.append(
                Child(
                    [sys.executable, "-m", "bench.clients", "load", str(port), str(count)],
                    "load clients",
                )
            )
        children.extend(loads)
        for load in loads:
            load.wait_for("ready")
        probe = Child([sys.executable, "-m", "bench.clients", "probe", str(port)], "probe")
        children.append(probe)
        probe.wait_for("ready")
        time.sleep(warmup_s)  # a bench, not a test: a fixed warm-up window is the point
        height0 = max(metric_values(port, "orderbook_node_height").values(), default=0)
        cpu0, (t0, frames0, _) = process_cpu_s(server.pid), counts(loads + [probe])
        time.sleep(seconds)
        cpu1, (t1, frames1, closed) = process_cpu_s(server.pid), counts(loads + [probe])
        height1 = max(metric_values(port, "orderbook_node_height").values(), default=0)
        records = json.loads(probe.ask("dump"))
        result = Result(clients, workers, round(t1 - t0, 2), balance)
        delivered = sum(frames1) - sum(frames0)
        per_connection = [b - a for a, b in zip(frames0, frames1, strict=False)]
        result.blocks_per_s = round((height1 - height0) / (t1 - t0), 2)
        result.delivered_per_s = round(delivered / (t1 - t0))
        result.server_cpu_us_per_msg = round((cpu1 - cpu0) / max(delivered, 1) * 1e6, 2)
        result.server_cpu_cores = round((cpu1 - cpu0) / (t1 - t0), 2)
        result.client_closed = closed
        result.frames_per_connection = (min(per_connection), max(per_connection))
        result.connections_per_worker = metric_values(port, "orderbook_ws_connections")
        result.slow_closed = sum(
            metric_values(port, "orderbook_ws_slow_clients_closed_total").values()
        )
        written = last_line_written(data_dir)
        window = [
            (received - written[block_ms]) / 1e6
            for block_ms, channel, received in records
            if channel in ("l2Book", "bbo")
            and block_ms in written
            and t0 * 1e9 <= received <= t1 * 1e9
        ]
        result.latency_ms = percentiles(window)
        return result
    finally:
        for child in reversed(children):
            child.stop()
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


def as_dict(result: Result) -> dict:
    return asdict(result)

"""Connection churn: what a server keeps after thousands of clients came and went.

    PYTHONPATH=. python bench/bench_churn.py [--connections 3000] [--seconds 140] [--workers 1]

The real ``twistd orderbook`` (TLS + permessage-deflate) reads the simulator
(both separate processes, as in ``python -m bench``). Clients connect one
after another over ``--seconds`` (long enough to span the server's
once-a-minute ``gc.freeze()``), subscribe to l2Book and trades of BTC, read
one message and leave, half of them cleanly, half by dropping the socket.
Printed: the server's RSS (parent and workers) before, at the end of the churn
and ``--settle-s`` (10) later, and the growth per 1,000 connections. Numbers, never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.clients import open_feed, raise_open_files, read_frame  # noqa: E402
from bench.e2e import Child, server_config, wait_ready  # noqa: E402
from tests.e2e.procs import child_env, children, free_port, status_kb  # noqa: E402


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and its children (the workers), in kB."""
    return sum(status_kb(proc, "VmRSS") for proc in [pid, *children(pid)])


async def one_client(port: int, clean: bool) -> None:
    reader, writer = await open_feed(port, deflate=True)
    await read_frame(reader)
    if clean:
        writer.close()
        await writer.wait_closed()
    else:
        writer.transport.abort()


async def churn(port: int, connections: int, seconds: float) -> int:
    """``connections`` clients over ``seconds``; 0: the same time with none (the control)."""
    if connections == 0:
        await asyncio.sleep(seconds)
        return 0
    pause = seconds / connections
    failed = 0
    for index in range(connections):
        try:
            await asyncio.wait_for(one_client(port, clean=index % 2 == 0), 10)
        except (OSError, ConnectionError, asyncio.TimeoutError):
            failed += 1
        await asyncio.sleep(pause)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=140.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warmup-s", type=float, default=5.0, help="before the baseline RSS")
    parser.add_argument("--settle-s", type=float, default=10.0, help="after the churn")
    args = parser.parse_args()
    raise_open_files()
    import subprocess

    workdir = Path(tempfile.mkdtemp(prefix="bench-churn-"))
    data_dir = workdir / "hl" / "data"
    sim = Child(
        [sys.executable, "-m", "orderbook.sim", "--data-dir", str(data_dir), "--info-port", "0",
         "--scale", "0.1", "--split-probability", "0"],
        "simulator",
    )  # fmt: skip
    server = None
    try:
        info_url = re.search(r"info=(\S+)", sim.wait_for("simulator ready")).group(1)
        port = free_port()
        config = server_config(workdir, data_dir, info_url, port, 200, args.workers)
        with open(workdir / "twistd.log", "wb") as log:
            server = subprocess.Popen(
                [str(Path(sys.executable).with_name("twistd")), "-n", "--pidfile", "",
                 "orderbook", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=workdir,
            )  # fmt: skip
        wait_ready(port, server)
        time.sleep(args.warmup_s)  # a bench: let the first blocks settle before the baseline
        before = rss_kb(server.pid)
        failed = asyncio.run(churn(port, args.connections, args.seconds))
        after = rss_kb(server.pid)
        time.sleep(args.settle_s)
        settled = rss_kb(server.pid)
        grown = (settled - before) / 1024
        per_1000 = grown / args.connections * 1000 if args.connections else 0.0
        report = {
            "connections": args.connections,
            "failed": failed,
            "seconds": args.seconds,
            "workers": args.workers,
            "rss_before_mb": round(before / 1024, 1),
            "rss_after_churn_mb": round(after / 1024, 1),
            "rss_settled_mb": round(settled / 1024, 1),
            "growth_mb": round(grown, 1),
            "growth_mb_per_1000": round(per_1000, 2),
        }
        print(json.dumps(report))
    finally:
        sim.stop()
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()

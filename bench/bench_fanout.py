"""Fan-out cost: shared frames vs autobahn's per-client sendMessage, with and without TLS.

    PYTHONPATH=. python bench/bench_fanout.py [--clients 100,1000] [--seconds 5] [--json]
        [--modes shared,autobahn] [--tls on,off] [--baseline DIR] [--profile DIR]

The server (a subprocess: real Books, Registry, Site) publishes each block to N
real WebSocket clients on 127.0.0.1 that all offered permessage-deflate and
subscribed to l2Book, bbo and trades of BTC; every block changes all three
(3 messages per client per block). The clients run in another subprocess (a
minimal asyncio WebSocket reader that counts frames without decompressing).
Reported per run: server CPU (process time, including TLS and socket writes)
per delivered message, and delivered messages per second. "autobahn" replaces
the shared frames by ``sendMessage`` per client (autobahn compresses per
connection). ``--baseline DIR`` also runs every configuration against the
orderbook package of another checkout (e.g. a worktree of main), alternating,
so before/after are measured in the same run; ``--profile DIR`` writes a
py-spy (if installed, else cProfile) profile of each server. Numbers, never
pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.clients import answer_ping, masked_text, read_frame

SUBSCRIPTIONS = ("l2Book", "bbo", "trades")

# -- client subprocess ---------------------------------------------------------


async def _client(
    port: int, tls: ssl.SSLContext | None, total: list[int], opened: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    for channel in SUBSCRIPTIONS:
        request = {"method": "subscribe", "subscription": {"type": channel, "coin": "BTC"}}
        writer.write(masked_text(json.dumps(request).encode()))
    opened[0] += 1
    while True:
        opcode, payload = await read_frame(reader)
        if opcode in (1, 2):
            total[0] += 1
        elif opcode == 9:
            answer_ping(writer, payload)
        elif opcode == 8:
            return


async def _clients_main(port: int, count: int, use_tls: bool) -> None:
    tls = None
    if use_tls:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    total, opened = [0], [0]
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.ensure_future(_client(port, tls, total, opened)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.05)  # pace the TLS handshakes
    while opened[0] < count:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "reset":
            total[0] = 0
            print("ok", flush=True)
        elif command == "count":
            print(total[0], flush=True)
        else:
            return


# -- server (this process) ---------------------------------------------------------


def _books():
    from orderbook.book.books import Books
    from orderbook.book.events import StatusOrder

    books = Books()
    bids = [
        (f"0x{i:040x}", StatusOrder("BTC", "B", f"{80000 - i}.0", "0.5", i, 1))
        for i in range(1, 200)
    ]
    asks = [
        (f"0x{i:040x}", StatusOrder("BTC", "A", f"{80000 + i}.0", "0.5", 1000 + i, 1))
        for i in range(1, 200)
    ]
    books.load_orders("BTC", "B", bids)
    books.load_orders("BTC", "A", asks)
    books.set_height(1, 1_700_000_000_000)
    return books


def _block(height: int):
    """Alternately add and remove a new best bid (l2Book and bbo change every block)."""
    import msgspec

    from orderbook.book.events import Block, BookDiff, DiffBody, NewDiff, OrderStatus, StatusOrder

    oid = 10_000 + height // 2
    if height % 2 == 0:
        order = StatusOrder("BTC", "B", "79999.5", "0.1", oid, 1)
        status = OrderStatus("t", "0xd", "open", msgspec.Raw(msgspec.json.encode(order)))
        diff = BookDiff("0xd", oid, "BTC", "B", "79999.5", DiffBody(new=NewDiff(sz="0.1")))
        return Block(height, 1_700_000_000_000 + height, "t", [status], [diff], [])
    diff = BookDiff("0xd", oid - 1 if height > 1 else oid, "BTC", "B", "79999.5", "remove")
    return Block(height, 1_700_000_000_000 + height, "t", [], [diff], [])


def _trade(height: int) -> dict:
    """One BTC trade as the book reports it (the trades message of every block)."""
    return {
        "coin": "BTC",
        "side": "A",
        "px": "80000.0",
        "sz": "0.01",
        "time": 1_700_000_000_000 + height,
        "hash": "0x" + "ab" * 32,
        "tid": height,
        "users": ["0x" + "1" * 40, "0x" + "2" * 40],
    }


def run(
    clients: int,
    seconds: float,
    use_tls: bool,
    mode: str,
    rate: float,
    code: str | None = None,
    profile: Path | None = None,
) -> dict:
    """One measurement in a fresh server subprocess (``code``: another checkout's root)."""
    command = [sys.executable, __file__, "--server-process"]
    command += [str(clients), str(seconds), str(int(use_tls)), mode, str(rate)]
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = code
    if profile is not None:
        name = f"{'base' if code else 'this'}-{mode}-{clients}-{'tls' if use_tls else 'tcp'}"
        command = _profiled(command, profile / name)
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    lines = [line for line in output.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1])
    result["code"] = "baseline" if code else "this"
    return result


def _profiled(command: list[str], path: Path) -> list[str]:
    """``command`` under py-spy (raw, 200 Hz) when on PATH, else under cProfile."""
    spy = shutil.which("py-spy")
    if spy:
        return [spy, "record", "-r", "200", "-f", "raw", "-o", f"{path}.txt", "--", *command]
    return [command[0], "-m", "cProfile", "-o", f"{path}.prof", *command[1:]]


def serve_once(clients: int, seconds: float, use_tls: bool, mode: str, rate: float) -> dict:
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from twisted.internet import reactor, task, threads
    from twisted.internet.endpoints import serverFromString

    from orderbook.config import ServerSettings, WebSocketSettings
    from orderbook.feed.registry import Registry
    from orderbook.metrics import Metrics
    from orderbook.server.protocol import FeedProtocol
    from orderbook.server.site import make_site
    from orderbook.tls import make_self_signed

    books = _books()
    ws = WebSocketSettings(
        max_connections=clients + 10,
        max_connections_per_ip=0,  # every client is on 127.0.0.1
        idle_timeout_s=0,
        auto_ping_interval_s=0,
        max_message_bytes=1 << 20,
    )
    metrics = Metrics()
    registry = Registry(books, ws, metrics, reactor=reactor)
    site = make_site(ServerSettings(page=False), ws, books, registry, metrics, dict, reactor)
    if mode == "autobahn":

        def deliver(self, sub, message):
            WebSocketServerProtocol.sendMessage(self, message.payload)
            return len(message.payload)

        FeedProtocol.deliver = deliver
    workdir = Path(tempfile.mkdtemp())
    key, cert = make_self_signed(["localhost"])
    (workdir / "k.pem").write_bytes(key)
    (workdir / "c.pem").write_bytes(cert)
    spec = (
        f"ssl:0:interface=127.0.0.1:privateKey={workdir / 'k.pem'}:certKey={workdir / 'c.pem'}"
        if use_tls
        else "tcp:0:interface=127.0.0.1"
    )
    result: dict = {}

    async def main() -> None:
        port = await serverFromString(reactor, spec).listen(site)
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client-process",
                str(port.getHost().port),
                str(clients),
                str(int(use_tls)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def ask(line: str | None) -> str:
            if line is not None:
                child.stdin.write(line + "\n")
                child.stdin.flush()
            return child.stdout.readline().strip()

        assert await threads.deferToThread(ask, None) == "ready"
        await threads.deferToThread(ask, "reset")
        gc.disable()
        height = [1]

        def tick() -> None:
            height[0] += 1
            registry.block_applied(books.apply_block(_block(height[0])))
            registry.trades_paired({"BTC": [_trade(height[0])]})

        loop = task.LoopingCall(tick)
        cpu, wall = time.process_time(), time.perf_counter()
        loop.start(1 / rate)
        await task.deferLater(reactor, seconds, lambda: None)
        loop.stop()
        await task.deferLater(reactor, 0.5, lambda: None)  # drain
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        gc.enable()
        delivered = int(await threads.deferToThread(ask, "count"))
        child.stdin.write("quit\n")
        child.stdin.flush()
        child.kill()
        result.update(
            clients=clients,
            tls=use_tls,
            mode=mode,
            blocks=height[0] - 1,
            delivered=delivered,
            expected=(height[0] - 1) * clients * len(SUBSCRIPTIONS),
            server_cpu_us_per_msg=round(cpu / max(delivered, 1) * 1e6, 2),
            delivered_per_s=round(delivered / wall),
        )
        reactor.stop()

    task.deferLater(reactor, 0, lambda: None).addCallback(
        lambda _: __import__("twisted.internet.defer", fromlist=["x"]).ensureDeferred(main())
    )
    reactor.run()
    return result


def _print_row(r: dict) -> None:
    print(
        f"{r['code']:8s} N={r['clients']:5d} tls={'on ' if r['tls'] else 'off'} {r['mode']:8s} "
        f"delivered {r['delivered']}/{r['expected']} "
        f"{r['delivered_per_s']:7d} msg/s  server CPU {r['server_cpu_us_per_msg']:6.2f} us/msg",
        flush=True,
    )


def main() -> None:
    if sys.argv[1:2] == ["--client-process"]:
        port, count, use_tls = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
        asyncio.run(_clients_main(port, count, use_tls))
        return
    if sys.argv[1:2] == ["--server-process"]:
        clients, seconds, use_tls, mode, rate = sys.argv[2:7]
        print(
            json.dumps(serve_once(int(clients), float(seconds), use_tls == "1", mode, float(rate)))
        )
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--modes", default="shared,autobahn")
    parser.add_argument("--tls", default="on,off")
    parser.add_argument("--rate", type=float, default=5000, help="messages/s offered")
    parser.add_argument("--baseline", help="root of another checkout, run alternately")
    parser.add_argument("--profile", type=Path, help="directory for server profiles")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    codes = [None] if args.baseline is None else [args.baseline, None]
    rows = []
    for clients in [int(c) for c in args.clients.split(",")]:
        rate = args.rate / clients / len(SUBSCRIPTIONS)  # blocks/s
        for use_tls in [t == "on" for t in args.tls.split(",")]:
            for mode in args.modes.split(","):
                for code in codes:
                    rows.append(run(clients, args.seconds, use_tls, mode, rate, code, args.profile))
                    if not args.json:
                        _print_row(rows[-1])
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps({"meta": meta, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()

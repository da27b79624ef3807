"""A real server process for memory tests: a mainnet-sized BTC book over TLS.

``python -m tests.server.rss_server DIR --orders 51000`` builds Books with a
BTC of that many mainnet-shaped orders (the Books API, as a node snapshot
would; or ``--snapshot FILE`` loads a node snapshot such as the simulator's
``--deep BTC=51000 --dump-snapshot FILE``), serves the JSON API over TLS (a self-signed certificate written to
DIR) on an ephemeral port of 127.0.0.1 with the production settings, runs the
server's GC policy (``--trim-interval``: seconds between memory releases) and
applies a block touching BTC every ``--block-ms``. It prints one JSON line at
start (``port``) and one per block (``height``, ``connections``,
``subscriptions``, ``paused``: connections whose client stopped reading,
``rss_kb``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from twisted.internet import reactor, task
from twisted.internet.endpoints import serverFromString

from orderbook import tls
from orderbook.book.books import Books
from orderbook.book.events import Block
from orderbook.config import ServerSettings, WebSocketSettings
from orderbook.feed.registry import Registry
from orderbook.gc_policy import TRIM_INTERVAL_S, GcPolicy
from orderbook.metrics import Metrics
from orderbook.node.snapshot import load_snapshot
from orderbook.server.site import make_site
from tests.book.blocks import remove
from tests.e2e.procs import own_rss_kb
from tests.server.test_protocol import new_order_block
from tests.server.test_wamp_js import deep_books

MOVING_OID = 7


def block_at(height: int) -> Block:
    """Even heights add a BTC bid, odd ones remove it: the coin changes every block."""
    if height % 2 == 0:
        return new_order_block(height, MOVING_OID, "B", "90000.0", "1")
    gone = remove(MOVING_OID, "90000.0", "B", user="0xd")
    return Block(height, 1_700_000_000_000 + height, "t", [], [gone], [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--orders", type=int, default=51_000)
    parser.add_argument("--snapshot", type=Path, help="a node snapshot file to load instead")
    parser.add_argument("--block-ms", type=float, default=70.0)
    parser.add_argument("--trim-interval", type=float, default=TRIM_INTERVAL_S)
    args = parser.parse_args(argv)
    if args.snapshot is not None:
        load_snapshot(args.snapshot, Books).addCallback(serve, args)
    else:
        serve(deep_books(args.orders, height=100), args)
    reactor.run()


def serve(books: Books, args: argparse.Namespace) -> None:
    """Listen, release memory periodically, apply a block every ``--block-ms``."""
    ws = WebSocketSettings()
    metrics = Metrics()
    registry = Registry(books, ws, metrics, reactor)
    site = make_site(ServerSettings(), ws, books, registry, metrics, lambda: {"state": "ready"})
    key_pem, cert_pem = tls.make_self_signed(["127.0.0.1"])
    (args.dir / "key.pem").write_bytes(key_pem)
    (args.dir / "cert.pem").write_bytes(cert_pem)
    files = tls.TLSFiles(args.dir / "key.pem", args.dir / "cert.pem")
    certificate = tls.ServedCertificate(files)
    certificate.load()
    endpoint = tls.TLSEndpoint(serverFromString(reactor, "tcp:0:interface=127.0.0.1"), certificate)
    GcPolicy(trim_interval_s=args.trim_interval).startService()

    def started(port) -> None:
        print(json.dumps({"port": port.getHost().port}), flush=True)

    def tick() -> None:
        height = books.height + 1
        registry.block_applied(books.apply_block(block_at(height)))
        line = {
            "height": height,
            "connections": registry.connection_count(),
            "subscriptions": registry.subscription_count(),
            "paused": sum(1 for c in registry.connections if c.outbox and c.outbox.paused),
        }
        print(json.dumps({**line, "rss_kb": own_rss_kb()}), flush=True)

    endpoint.listen(site).addCallback(started)
    task.LoopingCall(tick).start(args.block_ms / 1000, now=False)


if __name__ == "__main__":
    main(sys.argv[1:])

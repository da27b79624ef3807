"""The node simulator: a small exchange that writes a Hyperliquid node's files.

It powers the one-command demo, the end-to-end tests and the benchmarks, and is
the independent reference the server is tested against, so it imports nothing
from ``orderbook.book``, ``.node``, ``.feed`` or ``.server``.

- ``exchange``: matching engine and node events (pure Python, no Twisted)
- ``writer``: hourly files in by-block or streaming layout, fault injection
- ``info``: ``POST /info`` fileSnapshot and ``POST /control``
- ``service``: ``SimulatorService``, the Twisted service
- ``generate``: N blocks to a directory, deterministically, as fast as possible

Run it with ``python -m orderbook.sim --help``.
"""

"""``[server] workers = N``: the parent process and its link to the workers.

Imports ``orderbook.node.snapshot``, ``config`` and ``metrics``, never the
book, feed or server; only ``orderbook.tap`` imports it (docs/architecture.rst).
"""

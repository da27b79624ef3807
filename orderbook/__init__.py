"""orderbook: serve a Hyperliquid node's order books over WebSocket."""

__version__ = "0.1.0"

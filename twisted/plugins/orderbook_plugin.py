"""twistd dropin: ``twistd orderbook --config FILE``."""

from twisted.application.service import ServiceMaker

orderbook = ServiceMaker(
    "orderbook",
    "orderbook.tap",
    "Hyperliquid node order book server (L2/L4 WebSocket feeds)",
    "orderbook",
)

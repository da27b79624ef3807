"""The official Python SDK (pip install hyperliquid-python-sdk), pointed at your server."""

import sys
import time

from hyperliquid.info import Info

BASE_URL = sys.argv[1] if len(sys.argv) > 1 else "https://book.example.com:8000"

# The SDK connects to BASE_URL + "/ws". It maps coin names through meta and
# spot_meta; given here, it does not ask BASE_URL's /info for them (this
# server has no /info). Name the coins you use, or pass the public API's
# Info(constants.MAINNET_API_URL, skip_ws=True).meta() and .spot_meta().
info = Info(
    BASE_URL,
    meta={"universe": [{"name": "BTC", "szDecimals": 5}, {"name": "ETH", "szDecimals": 4}]},
    spot_meta={"universe": [], "tokens": []},
)
info.subscribe(
    {"type": "l2Book", "coin": "BTC"}, lambda msg: print("l2Book", msg["data"]["height"])
)
info.subscribe({"type": "trades", "coin": "BTC"}, lambda msg: print("trades", msg["data"]))
info.subscribe({"type": "bbo", "coin": "ETH"}, lambda msg: print("bbo", msg["data"]["bbo"]))
time.sleep(10)
info.disconnect_websocket()

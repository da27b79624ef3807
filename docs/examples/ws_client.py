"""Follow BTC's L2 book and trades over the JSON API (pip install websockets)."""

import asyncio
import json
import ssl
import sys

import websockets

URL = sys.argv[1] if len(sys.argv) > 1 else "wss://book.example.com:8000/ws"


async def keepalive(ws):
    """The server closes connections that send nothing for 60 s."""
    while True:
        await asyncio.sleep(30)
        await ws.send(json.dumps({"method": "ping"}))


async def main(context):
    # max_size=None: l4Book snapshots are far bigger than websockets' 1 MiB default.
    tls = context if URL.startswith("wss:") else None
    async with websockets.connect(URL, ssl=tls, max_size=None) as ws:
        for sub in (
            {"type": "l2Book", "coin": "BTC", "nSigFigs": 5},
            {"type": "trades", "coin": "BTC"},
        ):
            await ws.send(json.dumps({"method": "subscribe", "subscription": sub}))
        pinger = asyncio.create_task(keepalive(ws))
        try:
            async for text in ws:
                msg = json.loads(text)
                if msg["channel"] == "l2Book":
                    bids, asks = msg["data"]["levels"]
                    best = [side[0]["px"] if side else None for side in (bids, asks)]
                    print(msg["data"]["height"], "bid", best[0], "ask", best[1])
                elif msg["channel"] == "trades":
                    for trade in msg["data"]:
                        print("trade", trade["side"], trade["px"], trade["sz"])
                elif msg["channel"] == "error":
                    print("server says:", msg["data"], file=sys.stderr)
        finally:
            pinger.cancel()


context = ssl.create_default_context()  # a certificate from a public CA needs nothing more
# context.load_verify_locations("demo-data/tls/cert.pem")  # the demo's self-signed one
asyncio.run(main(context))

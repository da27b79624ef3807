"""Client processes of the end-to-end bench: cheap load clients and one probe.

    python -m bench.clients load PORT COUNT   # COUNT connections, 3 subscriptions each
    python -m bench.clients probe PORT        # one connection that decodes and timestamps

Both speak TLS + WebSocket by hand (asyncio streams): the load clients offer
permessage-deflate and count frames without inflating them, so their cost per
frame stays small next to the server's; the probe offers no compression and
decodes every message, recording ``(block time ms, channel, receive time ns)``.
Each process prints ``ready`` once every connection is subscribed, then answers
commands on stdin: ``count`` (a JSON line of per-connection frame counts and
closed connections), ``dump`` (the probe's records), ``quit``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import ssl
import struct
import sys
import time

SUBSCRIPTIONS = (
    {"type": "l2Book", "coin": "BTC"},
    {"type": "bbo", "coin": "BTC"},
    {"type": "trades", "coin": "BTC"},
)
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def raise_open_files() -> None:
    """Thousands of sockets: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def masked_text(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame, text by default (clients must mask)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + mask + body


def answer_ping(writer: asyncio.StreamWriter, payload: bytes) -> None:
    """Pong, as every client must: the server drops a peer that does not answer."""
    writer.write(masked_text(payload, opcode=0xA))


async def open_feed(port: int, deflate: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TLS, the upgrade, and the three subscriptions."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls_context(), server_hostname="localhost", limit=1 << 24
    )
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{DEFLATE_OFFER if deflate else ''}\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    for subscription in SUBSCRIPTIONS:
        request = {"method": "subscribe", "subscription": subscription}
        writer.write(masked_text(json.dumps(request).encode()))
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame: (opcode, payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


class Load:
    """COUNT connections that count data frames."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.closed = 0

    async def connection(self, port: int, index: int, opened: asyncio.Event, total: int) -> None:
        try:
            reader, writer = await open_feed(port, deflate=True)
        except (OSError, ConnectionError) as exc:
            print(f"connection {index} failed: {exc}", file=sys.stderr, flush=True)
            self.closed += 1
            return
        self.frames.append(0)
        slot = len(self.frames) - 1
        if len(self.frames) + self.closed >= total:
            opened.set()
        try:
            while True:
                opcode, payload = await read_frame(reader)
                if opcode in (1, 2, 0):
                    self.frames[slot] += 1
                elif opcode == 9:
                    answer_ping(writer, payload)
                elif opcode == 8:
                    break
        except (OSError, asyncio.IncompleteReadError):
            pass
        self.closed += 1

    def report(self) -> dict:
        return {"t": time.time(), "frames": self.frames, "closed": self.closed}


class Probe:
    """One uncompressed connection that decodes and timestamps every message."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, int]] = []
        self.frames: list[int] = [0]
        self.closed = 0

    async def connection(self, port: int, opened: asyncio.Event) -> None:
        try:
            reader, writer = await open_feed(port, deflate=False)
        except (OSError, ConnectionError) as exc:
            print(f"probe: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        opened.set()
        try:
            while True:
                opcode, payload = await read_frame(reader)
                received = time.time_ns()
                if opcode == 8:
                    break
                if opcode == 9:
                    answer_ping(writer, payload)
                    continue
                self.frames[0] += 1
                self._record(payload, received)
        except (OSError, asyncio.IncompleteReadError):
            pass
        self.closed += 1

    def _record(self, payload: bytes, received: int) -> None:
        message = json.loads(payload)
        channel, data = message.get("channel"), message.get("data")
        if channel == "l2Book":
            self.records.append((data["time"], channel, received))
        elif channel == "trades" and isinstance(data, list) and data:
            self.records.append((data[-1]["time"], channel, received))
        elif channel == "bbo":
            self.records.append((data["time"], channel, received))

    def report(self) -> dict:
        return {"t": time.time(), "frames": self.frames, "closed": self.closed}


async def serve_commands(client: Load | Probe) -> None:
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "count":
            print(json.dumps(client.report()), flush=True)
        elif command == "dump" and isinstance(client, Probe):
            print(json.dumps(client.records), flush=True)
        else:
            return


async def run_load(port: int, count: int) -> None:
    load, opened = Load(), asyncio.Event()
    tasks = []
    for index in range(count):
        tasks.append(asyncio.ensure_future(load.connection(port, index, opened, count)))
        if index % 20 == 19:
            await asyncio.sleep(0.1)  # pace the TLS handshakes: 200 a second
    await opened.wait()
    await serve_commands(load)


async def run_probe(port: int) -> None:
    probe, opened = Probe(), asyncio.Event()
    task = asyncio.ensure_future(probe.connection(port, opened))
    await opened.wait()
    await serve_commands(probe)
    task.cancel()


def main(argv: list[str]) -> None:
    raise_open_files()
    if argv[0] == "load":
        asyncio.run(run_load(int(argv[1]), int(argv[2])))
    elif argv[0] == "probe":
        asyncio.run(run_probe(int(argv[1])))
    else:
        raise SystemExit(f"usage: {__doc__.splitlines()[2]}")


if __name__ == "__main__":
    main(sys.argv[1:])

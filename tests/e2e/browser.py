"""Headless Chromium driven over the DevTools protocol, for page tests.

Two small synchronous pieces, stdlib only:

- :class:`WebSocketClient`: a minimal RFC 6455 client (ws:// and wss://
  without certificate checks), for the DevTools socket and for tests that
  want to talk to the server directly (text frames, no compression).
- :class:`Browser`: launches Debian's ``chromium --headless=new`` on a
  throwaway profile, attaches to its first page and offers ``navigate``,
  ``evaluate``, ``wait_for``, ``screenshot`` and the JavaScript errors the
  page reported (exceptions, ``console.error``, error log entries).

Usage::

    with Browser.launch() as browser:   # pytest.skip()s when chromium is absent
        browser.navigate("https://127.0.0.1:8000/")
        browser.wait_for("document.querySelector('[data-test=bid-row]')", 20)
        browser.screenshot(tmp_path / "page.png")
        assert browser.js_errors() == []
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")


class WebSocketClosed(Exception):
    """The peer closed the WebSocket (or the TCP connection)."""


class WebSocketClient:
    """A blocking WebSocket client: text messages in and out, pings answered."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._parts: list[bytes] = []
        self.close_code: int | None = None

    @classmethod
    def connect(cls, url: str, timeout: float = 10.0, origin: str | None = None) -> WebSocketClient:
        """Open ``url`` (ws:// or wss://; certificates are not checked)."""
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        if secure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        client = cls(sock)
        client._handshake(parts.netloc, parts.path or "/", origin)
        return client

    def _handshake(self, host: str, path: str, origin: str | None) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append(f"Origin: {origin}")
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status + " ":
            raise ConnectionError(f"WebSocket handshake refused: {status}")

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise WebSocketClosed("connection closed by peer")
        self._buffer += data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        """Send one text message."""
        self._send_frame(0x1, text.encode())

    def send_json(self, value: Any) -> None:
        self.send(json.dumps(value))

    def _parse_frame(self) -> tuple[bool, int, bytes] | None:
        """Take one whole frame from the buffer, or None (nothing consumed) if incomplete."""
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            (length,), offset = struct.unpack("!H", buffer[2:4]), 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            (length,), offset = struct.unpack("!Q", buffer[2:10]), 10
        mask = b""
        if second & 0x80:
            mask, offset = buffer[offset : offset + 4], offset + 4
        if len(buffer) < offset + length:
            return None
        payload = buffer[offset : offset + length]
        self._buffer = buffer[offset + length :]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def receive(self, timeout: float | None = None) -> str | None:
        """The next text message, or None if none completes within ``timeout`` seconds.

        A timeout loses nothing: partial frames stay buffered for the next call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._parse_frame()
            if frame is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                self._sock.settimeout(None if remaining is None else max(remaining, 0.001))
                try:
                    self._fill()
                except (TimeoutError, ssl.SSLWantReadError):
                    return None
                continue
            final, opcode, payload = frame
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                raise WebSocketClosed(f"closed by peer with code {self.close_code}")
            elif opcode in (0x0, 0x1, 0x2):
                self._parts.append(payload)
                if final:
                    message, self._parts = b"".join(self._parts), []
                    return message.decode()

    def receive_json(self, timeout: float | None = None) -> Any:
        text = self.receive(timeout)
        return None if text is None else json.loads(text)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self._sock.close()


def find_chromium() -> str | None:
    """The path of a Chromium binary, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, process: subprocess.Popen[bytes], profile: Path, page_ws: str) -> None:
        self.process = process
        self.profile = profile
        self.socket = WebSocketClient.connect(page_ws)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    @classmethod
    def launch(cls, width: int = 1440, height: int = 900, timeout: float = 30.0) -> Browser:
        """Start chromium headless; pytest.skip() if it is not installed."""
        binary = find_chromium()
        if binary is None:
            import pytest

            pytest.skip("chromium is not installed (apt-get install -y chromium)")
        profile = Path(tempfile.mkdtemp(prefix="orderbook-chromium-"))
        args = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            browser_ws = _devtools_url(process, timeout)
            page_ws = _first_page(browser_ws, timeout)
            browser = cls(process, profile, page_ws)
            browser.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            return browser
        except BaseException:
            process.kill()
            process.wait()
            shutil.rmtree(profile, ignore_errors=True)
            raise

    # -- protocol -----------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Send one command and return its result; events seen meanwhile are recorded."""
        self._next_id += 1
        ident = self._next_id
        self.socket.send_json({"id": ident, "method": method, "params": params or {}})
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"DevTools {method} gave no answer in {timeout}s")
            message = self.socket.receive_json(remaining)
            if message is None:
                continue
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message.get("result", {})
            self._record(message)

    def pump(self, timeout: float) -> None:
        """Record the events that arrive within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.socket.receive_json(remaining)
            if message is None:
                return
            self._record(message)

    def _record(self, message: dict[str, Any]) -> None:
        method = message.get("method", "")
        params = message.get("params", {})
        self.events.append(message)
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append({"kind": "exception", "text": text})
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            text = " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])
            )
            self.errors.append({"kind": "console", "text": text})
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(
                {"kind": f"log:{entry.get('source')}", "text": entry.get("text", "")}
            )

    # -- page ---------------------------------------------------------------

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` and wait for its load event."""
        self.call("Page.navigate", {"url": url}, timeout)
        self.wait_for("document.readyState === 'complete'", timeout, what=f"{url} to load")

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression (promises awaited), by value."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"evaluating {expression!r}: {text}")
        return result.get("result", {}).get("value")

    def wait_for(
        self,
        expression: str,
        timeout: float,
        what: str | None = None,
        check: Callable[[Any], bool] = bool,
        interval: float = 0.05,
    ) -> Any:
        """Evaluate ``expression`` until ``check`` accepts its value; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if check(value):
                return value
            self.pump(interval)  # waits on the DevTools socket, recording events
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or expression}; last value: {value!r}"
        )

    def screenshot(self, path: Path) -> Path:
        """Save the viewport as a PNG."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def js_errors(self) -> list[dict[str, Any]]:
        """Errors from JavaScript: exceptions, console.error, log entries not from the network."""
        self.pump(0.01)
        return [e for e in self.errors if e["kind"] != "log:network"]

    def close(self) -> None:
        """Close the browser and remove its profile."""
        with contextlib.suppress(Exception):  # the browser may go before it answers
            self.call("Browser.close", timeout=5)
        self.socket.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _devtools_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The browser's DevTools URL from its stderr; stderr is drained afterwards."""
    found: list[str] = []
    seen: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            if not ready.is_set():
                seen.append(line)
                match = DEVTOOLS_LINE.search(line)
                if match:
                    found.append(match.group(1))
                    ready.set()
        ready.set()  # EOF: chromium exited

    threading.Thread(target=drain, name="chromium-stderr", daemon=True).start()
    if not ready.wait(timeout) or not found:
        raise RuntimeError("chromium did not start DevTools:\n" + "".join(seen[-20:]))
    return found[0]


def _first_page(browser_ws: str, timeout: float) -> str:
    """The DevTools URL of the browser's first page target."""
    parts = urlsplit(browser_ws)
    with urllib.request.urlopen(f"http://{parts.netloc}/json/list", timeout=timeout) as answer:
        targets = json.load(answer)
    for target in targets:
        if target.get("type") == "page":
            return target["webSocketDebuggerUrl"]
    raise RuntimeError(f"chromium has no page target: {targets}")

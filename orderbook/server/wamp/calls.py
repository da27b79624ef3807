"""A call result in parts (WAMP progressive call results), paced by the client.

The parts are encoded at once (so all come from one block), then go out one
at a time: the next part only when the connection is writable again (the
transport resumed its producer), so a 16 MB snapshot never sits in the
slow-consumer queue and a client that stops reading holds at most one part
in the socket buffer. Each part but the last is a RESULT with
``{"progress": true}``; the last is the final RESULT.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

from orderbook.feed.frames import OutgoingMessage

RESULT = 50
_PROGRESS = b'{"progress":true}'
_FINAL = b"{}"


class Link(Protocol):
    """What a session needs from its WebSocket connection (the Outbox's send API)."""

    def send(self, message: OutgoingMessage, key: Hashable = None, lossless: bool = True) -> int:
        """Write or hold ``message``; bytes written or held (0: dropped)."""

    def writable(self) -> bool:
        """True while the client is reading (the transport is not paused)."""

    def when_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transport resumes (or at once if never paused)."""


def result_message(request: int, part: bytes, final: bool) -> OutgoingMessage:
    """RESULT ``request`` with ``args = [part]`` (``part`` is encoded JSON)."""
    details = _FINAL if final else _PROGRESS
    return OutgoingMessage(b"[%d,%d,%s,[%s]]" % (RESULT, request, details, part))


class ResultInParts:
    """Sends one call's encoded parts as the link drains; ``done(self)`` when over."""

    def __init__(
        self,
        link: Link,
        request: int,
        parts: list[bytes],
        done: Callable[[ResultInParts], None],
    ) -> None:
        self.link = link
        self.request = request
        self.parts = parts
        self.sent = 0
        self.stopped = False
        self._done = done

    def pump(self) -> None:
        """Send parts while the link is writable; wait for it otherwise."""
        while not self.stopped and self.sent < len(self.parts):
            if not self.link.writable():
                self.link.when_writable(self.pump)
                return
            final = self.sent == len(self.parts) - 1
            self.link.send(result_message(self.request, self.parts[self.sent], final))
            self.sent += 1
        if not self.stopped:
            self.stop()

    def stop(self) -> None:
        """Send nothing more (cancelled, session closed, or done)."""
        if not self.stopped:
            self.stopped = True
            self.parts = []
            self._done(self)

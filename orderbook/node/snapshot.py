"""The node's fileSnapshot: request it, then load it in slices.

The node writes the whole L4 book to a file on request (``POST /info``)::

    [978995376, [["BTC", [[["0xabc…", {"coin":"BTC","side":"B","limitPx":"76450.0",
                                        "sz":"0.5","oid":405401002917, …}], …bids],
                          [["0xdef…", {…"side":"A"…}], …asks]]],
                 ["@107", [[], []]], …]]

On mainnet that is 100 MB+, so :func:`load_snapshot` never decodes it in one
go: it finds the coin entries and their order lists by scanning bytes and
decodes about ``slice_bytes`` of orders at a time, handing control back to the
reactor between slices (``twisted.internet.task.cooperate``). The byte scan
relies on the node's compact JSON: an order entry ends with ``}]`` followed by
``,`` (next entry) or ``]`` (end of its side list). If the layout is anything
else, the loader falls back to one full decode (slow but correct).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import msgspec
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from orderbook.book.books import Books
from orderbook.book.events import StatusOrder

DEFAULT_SLICE_BYTES = 128 * 1024
READ_CHUNK = 8 << 20
SIDES = ("B", "A")

_log = Logger()


class SnapshotError(Exception):
    """The node did not give us a usable snapshot (says what and why)."""


def request_body(out_path: Path) -> bytes:
    """The fileSnapshot request for ``out_path``."""
    return json.dumps(
        {
            "type": "fileSnapshot",
            "request": {"type": "l4Snapshots", "includeUsers": True, "includeTriggerOrders": False},
            "outPath": str(out_path),
            "includeHeightInOutput": True,
        }
    ).encode()


async def request_snapshot(reactor, info_url: str, out_path: Path, timeout_s: float) -> None:
    """Ask the node at ``info_url`` to write its snapshot to ``out_path``.

    Raises :class:`SnapshotError` on a non-200 answer, a connection failure or
    after ``timeout_s`` seconds.
    """

    agent = Agent(reactor)
    producer = FileBodyProducer(BytesIO(request_body(out_path)))
    headers = Headers({b"Content-Type": [b"application/json"]})
    deadline = reactor.seconds() + timeout_s

    def timed_out(result: object, timeout: float) -> None:
        raise SnapshotError(f"{info_url} gave no snapshot within {timeout_s:g} s")

    try:
        attempt = agent.request(b"POST", info_url.encode(), headers, producer)
        response = await attempt.addTimeout(timeout_s, reactor, onTimeoutCancel=timed_out)
        remaining = max(deadline - reactor.seconds(), 0.001)
        body = await _read_body(response).addTimeout(remaining, reactor, onTimeoutCancel=timed_out)
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"{info_url} request failed: {exc}") from None
    if response.code != 200:
        excerpt = body[:200].decode(errors="replace")
        raise SnapshotError(f"{info_url} answered {response.code}: {excerpt}")


class _Excerpt(Protocol):
    """Collects the first bytes of a response body (the node sends no data)."""

    limit = 4096

    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.data = b""
        self.transport = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        if len(self.data) < self.limit:
            self.data += data[: self.limit - len(self.data)]

    def connectionLost(self, reason=None) -> None:  # noqa: N802 (Twisted API)
        if not self.done.called:
            self.done.callback(self.data)


def _read_body(response) -> Deferred[bytes]:
    protocol = _Excerpt(
        Deferred(lambda d: protocol.transport and protocol.transport.stopProducing())
    )
    response.deliverBody(protocol)
    return protocol.done


# -- loading -------------------------------------------------------------------

_entries = msgspec.json.Decoder(list[tuple[str, StatusOrder]])
_whole = msgspec.json.Decoder(
    tuple[
        int, list[tuple[str, tuple[list[tuple[str, StatusOrder]], list[tuple[str, StatusOrder]]]]]
    ]
)
_HEAD = re.compile(rb"\s*\[\s*(\d+)\s*,\s*\[")
_COIN = re.compile(rb'\["((?:[^"\\]|\\.)*)",\[')


class _Layout(Exception):
    """The file is not in the compact layout the byte scanner expects."""


def load_snapshot(
    path: Path,
    new_books: Callable[[], Books],
    slice_bytes: int = DEFAULT_SLICE_BYTES,
) -> Deferred[Books]:
    """Load the snapshot file into a new Books, cooperatively.

    Fires with that Books (its ``height`` set to the snapshot's), or with a
    :class:`SnapshotError`. ``new_books`` makes the (staging) Books.
    """
    state: dict[str, Any] = {"books": new_books()}
    work = task.cooperate(_load_steps(path, new_books, slice_bytes, state))
    done = work.whenDone()

    def finished(_: object) -> Books:
        return state["books"]

    def failed(failure):
        if failure.check(SnapshotError):
            return failure
        raise SnapshotError(f"snapshot {path}: {failure.getErrorMessage()}")

    return done.addCallbacks(finished, failed)


def _load_steps(
    path: Path, new_books: Callable[[], Books], slice_bytes: int, state: dict[str, Any]
) -> Iterator[None]:
    buffer = bytearray()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                buffer += chunk
                yield None
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from None
    data = bytes(buffer)
    del buffer
    try:
        try:
            yield from _scan(data, state["books"], slice_bytes)
        except _Layout as exc:
            _log.warn(
                "snapshot {path}: {problem}; decoding it in one piece", path=path, problem=exc
            )
            state["books"] = new_books()  # drop what the scan loaded
            _load_whole(data, state["books"])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"snapshot {path} is not valid: {exc}") from None
    except ValueError as exc:  # from Books.load_orders
        raise SnapshotError(f"snapshot {path}: {exc}") from None


def _load_whole(data: bytes, books: Books) -> None:
    try:
        height, coins = _whole.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a valid snapshot: {exc}") from None
    for coin, sides in coins:
        for side, entries in zip(SIDES, sides, strict=True):
            books.load_orders(coin, side, entries)
    books.set_height(height, None)


def _scan(data: bytes, books: Books, slice_bytes: int) -> Iterator[None]:
    """Walk ``[height, [[coin, [bids, asks]], …]]`` loading slices of orders."""
    head = _HEAD.match(data)
    if head is None:
        raise _Layout("no [height, [ at the start")
    height = int(head.group(1))
    pos = head.end()
    if data[pos : pos + 1] == b"]":
        pos += 1
    else:
        while True:
            coin_match = _COIN.match(data, pos)
            if coin_match is None:
                raise _Layout(f"no coin entry at byte {pos}")
            coin = json.loads(b'"' + coin_match.group(1) + b'"')
            pos = coin_match.end()
            for index, side in enumerate(SIDES):
                if index:
                    pos = _expect(data, pos, b",")
                pos = yield from _side(data, pos, coin, side, books, slice_bytes)
            pos = _expect(data, pos, b"]]")
            if data[pos : pos + 1] != b",":
                break
            pos += 1
    pos = _expect(data, pos, b"]")
    if data[pos:].strip():
        raise _Layout(f"trailing bytes at {pos}")
    books.set_height(height, None)


def _expect(data: bytes, pos: int, token: bytes) -> int:
    if data[pos : pos + len(token)] != token:
        raise _Layout(f"expected {token!r} at byte {pos}, found {data[pos : pos + 20]!r}")
    return pos + len(token)


def _side(
    data: bytes, pos: int, coin: str, side: str, books: Books, slice_bytes: int
) -> Iterator[None]:
    """Load one side list starting at ``pos`` (its ``[``); return the position after it."""
    pos = _expect(data, pos, b"[")
    if data[pos : pos + 1] == b"]":
        return pos + 1
    end = data.find(b"}]]", pos)  # last entry's "}]" + the list's "]"
    if end < 0:
        raise _Layout(f"unterminated side list at byte {pos}")
    last = end + 2  # exclusive end of the entries
    while pos < last:
        cut = data.find(b"}],[", pos + slice_bytes, last) if pos + slice_bytes < last else -1
        stop = last if cut < 0 else cut + 2
        books.load_orders(coin, side, _entries.decode(b"[" + data[pos:stop] + b"]"))
        pos = stop + 1 if cut >= 0 else last
        yield None
    return last + 1

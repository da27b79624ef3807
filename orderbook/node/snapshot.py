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

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import msgspec
from twisted.internet import error, task
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    FileBodyProducer,
    HTTPConnectionPool,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from orderbook.book.books import Books
from orderbook.book.coin_book import dismantle
from orderbook.book.events import StatusOrder
from orderbook.gc_policy import freeze_old_objects

DEFAULT_SLICE_BYTES = 128 * 1024
SEARCH_MARGIN = 64 * 1024  # searched beyond a slice for the next entry boundary
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


NOT_BEFORE_HEADER = b"X-Orderbook-Not-Before"
"""A snapshot at this height or above will do (validation can catch up from its
retained lines): a worker's parent may then hand out one it already has. A node
ignores the header."""


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """TCP (TLS for https) to the URL's host; an IP address is connected to directly.

    Twisted's own endpoint resolves even ``127.0.0.1`` in a thread pool, whose
    idle thread holds its last job (a closure that refers to itself) until the
    next request: the load's ``gc.freeze()`` in between made that one cycle
    per validation permanent (issue 14). A host name still goes that way.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:  # noqa: N802 (Twisted API)
        host = uri.host.decode("ascii")
        endpoint: IStreamClientEndpoint
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self.reactor, host, uri.port)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self.reactor, host, uri.port)
        else:
            endpoint = HostnameEndpoint(self.reactor, uri.host, uri.port)
        if uri.scheme == b"https":
            tls = BrowserLikePolicyForHTTPS().creatorForNetloc(uri.host, uri.port)
            endpoint = wrapClientTLS(tls, endpoint)
        return endpoint


async def request_snapshot(
    reactor, info_url: str, out_path: Path, timeout_s: float, not_before: int | None = None
) -> None:
    """Ask the node at ``info_url`` to write its snapshot to ``out_path``.

    Raises :class:`SnapshotError` on a non-200 answer, a connection failure or
    after ``timeout_s`` seconds. ``not_before``: the oldest height that will do
    (sent as :data:`NOT_BEFORE_HEADER`); None asks for a fresh one.
    """

    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory.noisy = False  # no "Starting factory" lines for every snapshot request
    agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor), pool=pool)
    producer = FileBodyProducer(BytesIO(request_body(out_path)))
    headers = Headers({b"Content-Type": [b"application/json"]})
    if not_before is not None:
        headers.setRawHeaders(NOT_BEFORE_HEADER, [str(not_before).encode()])
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
        raise SnapshotError(f"{info_url} request failed: {exc}{_hint(exc)}") from None
    if response.code != 200:
        excerpt = body[:200].decode(errors="replace")
        raise SnapshotError(f"{info_url} answered {response.code}: {excerpt}")


def _hint(exc: Exception) -> str:
    """What a refused connection most likely means, for the log line."""
    if isinstance(exc, (error.ConnectionRefusedError, ConnectionRefusedError)):
        return " (is the node running with --serve-info, and does [node] info_url point at it?)"
    return ""


def remove_old(path: Path) -> None:
    """Delete a previous snapshot at ``path``, so a stale file is never loaded."""
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    except OSError as exc:
        raise SnapshotError(f"cannot remove the old snapshot {path}: {exc.strerror}") from None


def _written_state(path: Path) -> tuple[int | None, bool]:
    """(size or None when missing, whether it ends like a whole JSON array)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - 64))
            return size, handle.read().rstrip().endswith(b"]")
    except FileNotFoundError:
        return None, False
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from None


async def wait_until_written(
    reactor, path: Path, timeout_s: float, quiet_s: float = 1.0, poll_s: float = 0.05
) -> int:
    """Wait until the node has finished writing ``path``; return its size.

    Finished: it exists, ends with ``]`` and did not change between two
    polls. A file that is missing or incomplete and has not changed for
    ``quiet_s`` (the node gave up, or truncated it), or that is still not
    finished after ``timeout_s``, raises :class:`SnapshotError` naming it.
    """
    start = reactor.seconds()
    last_size: int | None = -1
    last_change = start
    while True:
        size, whole = _written_state(path)
        now = reactor.seconds()
        if size != last_size:
            last_size, last_change = size, now
        elif whole:
            return size or 0
        if now - last_change >= quiet_s:
            problem = "missing" if size is None else f"incomplete ({size} bytes, no final ']')"
            raise SnapshotError(
                f"snapshot {path} {problem} {now - last_change:.1f} s after the node answered"
            )
        if now - start >= timeout_s:
            raise SnapshotError(f"snapshot {path} still being written after {timeout_s:g} s")
        await task.deferLater(reactor, poll_s, lambda: None)


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
_SPACED = re.compile(rb"[\[\]{},:]\s|\s[\[\]{},:]")  # whitespace between JSON tokens


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
    result: Deferred[Books] = Deferred(lambda _: work.stop())  # cancel stops the slices

    def finished(_: object) -> None:
        if not result.called:
            result.callback(state["books"])

    def failed(failure) -> None:
        _drop(state["books"])
        if result.called or failure.check(task.TaskStopped):
            return  # cancelled: the canceller's CancelledError is the result
        if failure.check(SnapshotError):
            result.errback(failure)
        else:
            result.errback(SnapshotError(f"snapshot {path}: {failure.getErrorMessage()}"))

    work.whenDone().addCallbacks(finished, failed)
    return result


def _load_steps(
    path: Path, new_books: Callable[[], Books], slice_bytes: int, state: dict[str, Any]
) -> Iterator[None]:
    data = bytearray()
    try:
        yield from _read_into(path, data)
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from None
    if not data[-64:].rstrip().endswith(b"]"):
        raise SnapshotError(f"snapshot {path} is truncated ({len(data)} bytes, no final ']')")
    try:
        try:
            yield from _frozen_after_each(_scan(data, state["books"], slice_bytes))
        except _Layout as exc:
            if not _SPACED.search(data, 0, 4096):  # the node's compact layout, damaged
                raise SnapshotError(f"snapshot {path} is damaged: {exc}") from None
            _log.warn(
                "snapshot {path}: {problem}; decoding it in one piece", path=path, problem=exc
            )
            _drop(state["books"])  # what the scan loaded
            state["books"] = new_books()
            _load_whole(data, state["books"])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"snapshot {path} is not valid: {exc}") from None
    except ValueError as exc:  # from Books.load_orders
        raise SnapshotError(f"snapshot {path}: {exc}") from None


def _frozen_after_each(steps: Iterator[None]) -> Iterator[None]:
    """Collect and freeze after every slice (``gc_policy.freeze_old_objects``):
    the loaded orders are long-lived, and a full collection walking them
    mid-load stalls the reactor 150-200 ms on a mainnet-sized snapshot
    (measured), far past a slice's ~20 ms. Each collection walks only the
    last slice's objects; without it the garbage of the snapshot request
    that came just before was frozen for good (issue 14)."""
    for step in steps:
        freeze_old_objects()
        yield step


def _drop(books: Books) -> None:
    """A partial or abandoned load: cut its cycles apart, a slice per turn."""
    task.cooperate(dismantle(books.abandon()))


def _read_into(path: Path, data: bytearray) -> Iterator[None]:
    """Append the file to ``data`` a chunk per step (growing a bytearray reallocates
    in place; converting it to bytes would copy 100 MB in one go, so we never do)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            data += chunk
            yield None


def _load_whole(data: bytes | bytearray, books: Books) -> None:
    try:
        height, coins = _whole.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a valid snapshot: {exc}") from None
    for coin, sides in coins:
        for side, entries in zip(SIDES, sides, strict=True):
            books.load_orders(coin, side, entries)
    books.set_height(height, None)


def _scan(data: bytes | bytearray, books: Books, slice_bytes: int) -> Iterator[None]:
    """Walk ``[height, [[coin, [bids, asks]], …]]`` loading slices of orders."""
    head = _HEAD.match(data)
    if head is None:
        raise _Layout("no [height, [ at the start")
    height = int(head.group(1))
    pos = head.end()
    if data[pos : pos + 1] != b"]":  # not an empty coin list
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
    pos = _expect(data, pos, b"]]")  # the coin list, the whole document
    if data[pos:].strip():
        raise _Layout(f"trailing bytes at {pos}")
    books.set_height(height, None)


def _expect(data: bytes | bytearray, pos: int, token: bytes) -> int:
    if data[pos : pos + len(token)] != token:
        raise _Layout(f"expected {token!r} at byte {pos}, found {data[pos : pos + 20]!r}")
    return pos + len(token)


def _side(
    data: bytes | bytearray, pos: int, coin: str, side: str, books: Books, slice_bytes: int
) -> Iterator[None]:
    """Load one side list starting at ``pos`` (its ``[``); return the position after it."""
    pos = _expect(data, pos, b"[")
    if data[pos : pos + 1] == b"]":
        books.load_orders(coin, side, [])  # the coin exists, its side is empty
        return pos + 1
    while True:
        stop, last = _next_slice(data, pos, slice_bytes)
        books.load_orders(coin, side, _entries.decode(b"[" + data[pos:stop] + b"]"))
        yield None
        if last:
            return stop + 1  # after the list's "]"
        pos = stop + 1  # after the "," between two entries


def _next_slice(data: bytes | bytearray, pos: int, slice_bytes: int) -> tuple[int, bool]:
    """(exclusive end of the entries of the next slice from ``pos``, whether it ends
    the list). Only about ``slice_bytes`` are searched, not the rest of a big side."""
    window = slice_bytes + SEARCH_MARGIN
    while True:
        limit = pos + window
        end = data.find(b"}]]", pos, limit)  # last entry's "}]" + the list's "]"
        cut = data.find(b"}],[", pos + slice_bytes, limit)
        if end >= 0 and (cut < 0 or end < cut):
            return end + 2, True
        if cut >= 0:
            return cut + 2, False
        if limit >= len(data):
            raise _Layout(f"unterminated side list at byte {pos}")
        window *= 2  # an entry longer than the margin

"""One node snapshot for every worker: a coalescing ``POST /info`` in the parent.

The node writes 100+ MB per fileSnapshot; N workers asking for their own
would multiply that. Workers are pointed at this resource instead of the
node. Requests are gathered in rounds: a round collects requests for
``gather_s`` (workers that start or validate together) and then asks the node
once, into the parent's own ``snapshot_path``; a request arriving after its
round was sent waits for the next one (its blocks may begin after the node
took that snapshot). A request that says which height will do
(:data:`NOT_BEFORE_HEADER`: validation, which catches up from retained lines)
is served the last finished snapshot at once when it is high enough. Each
requester gets the file at the ``outPath`` it asked for as a hard link (a
copy across file systems) and the node's answer. Anything but a fileSnapshot
is refused: workers send nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from orderbook.node.snapshot import (
    NOT_BEFORE_HEADER,
    SnapshotError,
    request_snapshot,
    wait_until_written,
)


class SnapshotFanIn(Resource):
    """``POST /info`` for the workers: one node snapshot per round, rounds one at a time."""

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        info_url: str,
        snapshot_path: Path,
        timeout_s: float,
        gather_s: float = 0.25,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.info_url = info_url
        self.snapshot_path = snapshot_path
        self.timeout_s = timeout_s
        self.gather_s = gather_s
        self.node_requests = 0
        self._gathering: list[Deferred] | None = None  # the round not yet sent
        self._in_flight: Deferred | None = None
        self._height: int | None = None  # of the finished file at snapshot_path

    def render_POST(self, request: Request) -> Any:  # noqa: N802 (twisted.web API)
        try:
            body = json.loads(request.content.read())
            out_path = Path(body["outPath"])
            if body.get("type") != "fileSnapshot":
                raise ValueError("only fileSnapshot requests are served to workers")
            not_before = _height_header(request.getHeader(NOT_BEFORE_HEADER))
        except (ValueError, KeyError, TypeError) as exc:
            request.setResponseCode(400)
            return json.dumps({"error": f"bad snapshot request: {exc}"}).encode()
        defer.ensureDeferred(self._serve(request, out_path, not_before))
        return NOT_DONE_YET

    async def _serve(self, request: Request, out_path: Path, not_before: int | None) -> None:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        try:
            await self.snapshot(not_before)
            hand_out(self.snapshot_path, out_path)
            code, body = 200, b"null"
        except Exception as exc:  # the error boundary of one worker's request
            code, body = 502, json.dumps({"error": str(exc)}).encode()
        if not gone:
            request.setResponseCode(code)
            request.write(body)
            request.finish()

    def snapshot(self, not_before: int | None = None) -> Deferred:
        """Fires once a finished snapshot that will do is at ``snapshot_path``."""
        if not_before is not None and self._height is not None and self._height >= not_before:
            return defer.succeed(None)
        waiter: Deferred = Deferred()
        if self._gathering is None:
            self._gathering = []
            self.reactor.callLater(self.gather_s, self._round_closes)
        self._gathering.append(waiter)
        return waiter

    def _round_closes(self) -> None:
        if self._in_flight is not None:  # one node snapshot at a time: after the current one
            self._in_flight.addBoth(lambda result: self._round_closes())
            return
        waiters, self._gathering = self._gathering or [], None
        self._height = None  # the file is about to be replaced
        self._in_flight = defer.ensureDeferred(self._from_node())
        self._in_flight.addBoth(self._landed, waiters)

    async def _from_node(self) -> int:
        self.node_requests += 1
        self.snapshot_path.unlink(missing_ok=True)
        await request_snapshot(self.reactor, self.info_url, self.snapshot_path, self.timeout_s)
        await wait_until_written(self.reactor, self.snapshot_path, self.timeout_s)
        return snapshot_height(self.snapshot_path)

    def _landed(self, result: Any, waiters: list[Deferred]) -> None:
        self._in_flight = None
        failed = isinstance(result, Failure)
        self._height = None if failed else result
        if failed and not result.check(SnapshotError, OSError):
            self._log.failure("snapshot fan-in: the node request crashed", result)
        for waiter in waiters:
            if failed:
                waiter.errback(result)
            else:
                waiter.callback(None)


def _height_header(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def snapshot_height(path: Path) -> int:
    """The height a snapshot file starts with: ``[height, ...``."""
    with path.open("rb") as file:
        head = file.read(64)
    try:
        return int(head.lstrip(b"[ ").split(b",", 1)[0])
    except ValueError:
        raise SnapshotError(f"snapshot {path} does not start with [height, ...") from None


def hand_out(source: Path, target: Path) -> None:
    """Put ``source`` at ``target``: a hard link, or a copy across file systems."""
    if source.resolve() == target.resolve():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)

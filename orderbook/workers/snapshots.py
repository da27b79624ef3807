"""One node snapshot for every worker: a coalescing ``POST /info`` in the parent.

The node writes 100+ MB per fileSnapshot; N workers asking for their own
would multiply that. Workers are pointed at this resource instead of the
node. A ``fileSnapshot`` request joins the one in flight, or reuses the last
finished file while it is younger than ``reuse_s``; otherwise it asks the node
once (into the parent's own ``snapshot_path``). Each requester then gets the
file at the ``outPath`` it asked for as a hard link (a copy across file
systems) and the node's answer. Any other request is refused: workers send
nothing else.
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

from orderbook.node.snapshot import SnapshotError, request_snapshot, wait_until_written


class SnapshotFanIn(Resource):
    """``POST /info`` for the workers: at most one node snapshot at a time."""

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        info_url: str,
        snapshot_path: Path,
        timeout_s: float,
        reuse_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.info_url = info_url
        self.snapshot_path = snapshot_path
        self.timeout_s = timeout_s
        self.reuse_s = reuse_s
        self.node_requests = 0
        self._in_flight: Deferred | None = None
        self._waiters: list[Deferred] = []
        self._finished_at: float | None = None

    def render_POST(self, request: Request) -> Any:  # noqa: N802 (twisted.web API)
        try:
            body = json.loads(request.content.read())
            out_path = Path(body["outPath"])
            if body.get("type") != "fileSnapshot":
                raise ValueError("only fileSnapshot requests are served to workers")
        except (ValueError, KeyError, TypeError) as exc:
            request.setResponseCode(400)
            return json.dumps({"error": f"bad snapshot request: {exc}"}).encode()
        defer.ensureDeferred(self._serve(request, out_path))
        return NOT_DONE_YET

    async def _serve(self, request: Request, out_path: Path) -> None:
        try:
            await self.snapshot()
            hand_out(self.snapshot_path, out_path)
            request.setResponseCode(200)
            request.write(b"null")
        except (SnapshotError, OSError) as exc:
            request.setResponseCode(502)
            request.write(json.dumps({"error": str(exc)}).encode())
        if not request.finished and not request._disconnected:
            request.finish()

    def snapshot(self) -> Deferred:
        """Fires once a finished snapshot file is at ``snapshot_path``: shared, or fresh."""
        waiter: Deferred = Deferred()
        fresh = (
            self._finished_at is not None
            and self.reactor.seconds() - self._finished_at < self.reuse_s
        )
        if self._in_flight is None and fresh:
            waiter.callback(None)
            return waiter
        self._waiters.append(waiter)
        if self._in_flight is None:
            self._in_flight = defer.ensureDeferred(self._from_node())
            self._in_flight.addBoth(self._landed)
        return waiter

    async def _from_node(self) -> None:
        self.node_requests += 1
        self.snapshot_path.unlink(missing_ok=True)
        await request_snapshot(self.reactor, self.info_url, self.snapshot_path, self.timeout_s)
        await wait_until_written(self.reactor, self.snapshot_path, self.timeout_s)

    def _landed(self, result: Any) -> None:
        self._in_flight = None
        failed = isinstance(result, Failure)
        self._finished_at = None if failed else self.reactor.seconds()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if failed:
                waiter.errback(result)
            else:
                waiter.callback(None)


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

"""The node's local info server, as far as the order book server uses it.

``POST /info`` with::

    {"type":"fileSnapshot",
     "request":{"type":"l4Snapshots","includeUsers":true,"includeTriggerOrders":false},
     "outPath":"/abs/out.json","includeHeightInOutput":true}

writes the current book to ``outPath`` as ``[height, [[coin, [bids, asks]], …]]``
(``includeHeightInOutput: false`` drops the height) and then answers
``200`` with the body ``null``: the node's answer carries no data, clients
only check the status. Requests run on the reactor thread between two
blocks, so the file always describes a block boundary.

Errors, shaped like the node's (an axum server): unparsable JSON -> ``400``
"Failed to parse the request body as JSON: …"; valid JSON that is not a
known request (other ``type``, missing ``outPath``…) -> ``422`` "Failed to
deserialize the JSON body into the target type: …"; a relative ``outPath`` or
a failing write -> ``500``.

``POST /control`` takes a fault switch (see ``orderbook.sim.service``) and
answers ``200`` with a JSON object, or ``400`` with ``{"error": …}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from orderbook.sim.writer import write_snapshot


class RequestError(Exception):
    """A request the info server refuses: HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SnapshotFaults:
    """Pending snapshot faults: answer with ``error_status``, never answer, or cut the file."""

    error_status: int = 500
    errors: int = 0
    timeouts: int = 0
    truncated: int = 0
    held: list[Request] = field(default_factory=list)

    def release(self) -> None:
        """Drop the connections of requests held by ``snapshot_timeout``."""
        held, self.held = self.held, []
        for request in held:
            if request.channel is not None:
                request.channel.loseConnection()


def parse_snapshot_request(body: bytes) -> tuple[Path, bool, bool]:
    """Validate a fileSnapshot request: (outPath, includeHeight, includeUsers)."""
    try:
        payload = json.loads(body)
    except ValueError as e:
        raise RequestError(400, f"Failed to parse the request body as JSON: {e}") from None
    prefix = "Failed to deserialize the JSON body into the target type"
    if not isinstance(payload, dict) or payload.get("type") != "fileSnapshot":
        kind = payload.get("type") if isinstance(payload, dict) else None
        raise RequestError(422, f"{prefix}: unknown variant {kind!r}, expected `fileSnapshot`")
    inner = payload.get("request")
    if not isinstance(inner, dict) or inner.get("type") != "l4Snapshots":
        raise RequestError(422, f"{prefix}: request: expected l4Snapshots")
    for key in ("includeUsers", "includeTriggerOrders"):
        if not isinstance(inner.get(key), bool):
            raise RequestError(422, f"{prefix}: request: missing or non-boolean `{key}`")
    out_path = payload.get("outPath")
    if not isinstance(out_path, str):
        raise RequestError(422, f"{prefix}: missing field `outPath`")
    include_height = payload.get("includeHeightInOutput", False)
    if not isinstance(include_height, bool):
        raise RequestError(422, f"{prefix}: includeHeightInOutput: expected a boolean")
    path = Path(out_path)
    if not path.is_absolute():
        raise RequestError(500, f"outPath must be absolute: {out_path!r}")
    return path, include_height, inner["includeUsers"]


def without_users(snapshot: list[Any]) -> list[Any]:
    """The snapshot with bare order objects instead of ``[user, order]`` pairs."""
    height, coins = snapshot
    stripped = [[coin, [[o for _, o in side] for side in sides]] for coin, sides in coins]
    return [height, stripped]


def _cut_in_half(path: Path) -> None:
    """Truncate the file at ``path`` to half its size (a snapshot the node failed to finish)."""
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _fail(request: Request, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return message.encode()


class InfoResource(Resource):
    """``POST /info``: fileSnapshot of the simulator's book."""

    isLeaf = True
    _log = Logger()

    def __init__(self, snapshot: Callable[[], list[Any]], faults: SnapshotFaults) -> None:
        super().__init__()
        self._snapshot = snapshot
        self._faults = faults

    def render_POST(self, request: Request) -> bytes | int:
        try:
            path, include_height, include_users = parse_snapshot_request(request.content.read())
        except RequestError as e:
            return _fail(request, e.status, str(e))
        if self._faults.timeouts > 0:
            self._faults.timeouts -= 1
            self._faults.held.append(request)
            self._log.info("snapshot_timeout fault: not answering {path}", path=str(path))
            return NOT_DONE_YET
        if self._faults.errors > 0:
            self._faults.errors -= 1
            return _fail(request, self._faults.error_status, "snapshot_error fault")
        snapshot = self._snapshot()
        try:
            write_snapshot(
                snapshot if include_users else without_users(snapshot), path, include_height
            )
        except OSError as e:
            return _fail(request, 500, f"cannot write {path}: {e}")
        if self._faults.truncated > 0:
            self._faults.truncated -= 1
            _cut_in_half(path)
            self._log.info("snapshot_truncated fault: {path} cut short", path=str(path))
        self._log.info("snapshot at {height} written to {path}", height=snapshot[0], path=str(path))
        request.setHeader(b"content-type", b"application/json")
        return b"null"


class ControlResource(Resource):
    """``POST /control``: switch a fault on (``{"fault": name, ...}``)."""

    isLeaf = True

    def __init__(self, apply: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        super().__init__()
        self._apply = apply

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        try:
            spec = json.loads(request.content.read())
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
            result = self._apply(spec)
        except ValueError as e:
            request.setResponseCode(400)
            return json.dumps({"error": str(e)}).encode()
        return json.dumps(result).encode()


def make_site(
    snapshot: Callable[[], list[Any]],
    faults: SnapshotFaults,
    control: Callable[[dict[str, Any]], dict[str, Any]],
) -> Site:
    """The info server's Site: ``/info`` and ``/control``."""
    root = Resource()
    root.putChild(b"info", InfoResource(snapshot, faults))
    root.putChild(b"control", ControlResource(control))
    site = Site(root, logPath="/dev/null")  # no access log lines for every request
    site.noisy = False
    return site

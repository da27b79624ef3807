"""POST /info fileSnapshot and POST /control, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from orderbook.sim.exchange import Exchange
from orderbook.sim.info import SnapshotFaults, make_site
from tests.sim.httpclient import post, wait_for

REQUEST = {
    "type": "fileSnapshot",
    "request": {"type": "l4Snapshots", "includeUsers": True, "includeTriggerOrders": False},
    "outPath": "",
    "includeHeightInOutput": True,
}


class Server:
    """The info site on a free port, backed by a small exchange."""

    def __init__(self, reactor: Any) -> None:
        self.exchange = Exchange(seed=2, scale=0.01)
        self.faults = SnapshotFaults()
        self.controls: list[dict[str, Any]] = []
        site = make_site(self.exchange.snapshot, self.faults, self._control)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.info, self.control = f"{base}/info", f"{base}/control"

    def _control(self, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("fault") == "bad":
            raise ValueError("unknown fault 'bad'")
        self.controls.append(spec)
        return {"ok": True}


@pytest.fixture
def server(reactor: Any):
    s = Server(reactor)
    yield s
    s.faults.release()
    pytest_twisted.blockon(Deferred.fromCoroutine(_stop(s)))


async def _stop(s: Server) -> None:
    await s.port.stopListening()


def _request(path: Path, **changes: Any) -> dict[str, Any]:
    return {**REQUEST, "outPath": str(path), **changes}


@pytest_twisted.ensureDeferred
async def test_snapshot_writes_the_book_then_answers_200_null(
    reactor: Any, server: Server, tmp_path: Path
) -> None:
    """200 with body null, after the file holds [height, coins] exactly as the exchange's book."""
    out = tmp_path / "out.json"
    code, body = await post(reactor, server.info, _request(out))
    assert (code, body) == (200, b"null")
    assert json.loads(out.read_bytes()) == server.exchange.snapshot()


@pytest_twisted.ensureDeferred
async def test_snapshot_without_height_or_users(
    reactor: Any, server: Server, tmp_path: Path
) -> None:
    """includeHeightInOutput false drops the height; includeUsers false gives bare orders."""
    out = tmp_path / "out.json"
    await post(reactor, server.info, _request(out, includeHeightInOutput=False))
    assert json.loads(out.read_bytes()) == server.exchange.snapshot()[1]
    request = _request(out)
    request["request"] = {**REQUEST["request"], "includeUsers": False}
    await post(reactor, server.info, request)
    coins = json.loads(out.read_bytes())[1]
    first_bid = coins[0][1][0][0]
    assert isinstance(first_bid, dict) and first_bid["coin"] == "BTC"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"{not json", 400, b"Failed to parse the request body as JSON"),
        ({"type": "meta"}, 422, b"Failed to deserialize the JSON body"),
        ([1, 2], 422, b"Failed to deserialize the JSON body"),
        ({**REQUEST, "request": {"type": "referrerStates"}}, 422, b"l4Snapshots"),
        ({**REQUEST, "outPath": 5}, 422, b"outPath"),
        ({**REQUEST, "outPath": "relative.json"}, 500, b"absolute"),
        ({**REQUEST, "outPath": "/nonexistent-dir/x/out.json"}, 500, b"cannot write"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_requests(
    reactor: Any, server: Server, body: Any, code: int, message: bytes
) -> None:
    """Bad JSON: 400; unknown or malformed request: 422; unusable outPath: 500."""
    got_code, got_body = await post(reactor, server.info, body)
    assert got_code == code
    assert message in got_body


@pytest_twisted.ensureDeferred
async def test_snapshot_error_fault_answers_the_status_count_times(
    reactor: Any, server: Server, tmp_path: Path
) -> None:
    """snapshot_error: the next `count` requests get the status and no file; then it works again."""
    server.faults.error_status, server.faults.errors = 503, 2
    out = tmp_path / "out.json"
    assert (await post(reactor, server.info, _request(out)))[0] == 503
    assert (await post(reactor, server.info, _request(out)))[0] == 503
    assert not out.exists()
    assert (await post(reactor, server.info, _request(out)))[0] == 200


@pytest_twisted.ensureDeferred
async def test_snapshot_truncated_fault_answers_200_with_a_cut_file(
    reactor: Any, server: Server, tmp_path: Path
) -> None:
    """snapshot_truncated: 200 null, but the file is half written (unparsable); then whole again."""
    server.faults.truncated = 1
    out = tmp_path / "out.json"
    assert await post(reactor, server.info, _request(out)) == (200, b"null")
    whole = json.dumps(server.exchange.snapshot(), separators=(",", ":")).encode()
    cut = out.read_bytes()
    assert 0 < len(cut) == len(whole) // 2 and whole.startswith(cut)
    with pytest.raises(ValueError):
        json.loads(cut)
    assert await post(reactor, server.info, _request(out)) == (200, b"null")
    assert json.loads(out.read_bytes()) == server.exchange.snapshot()


@pytest_twisted.ensureDeferred
async def test_snapshot_timeout_fault_never_answers(
    reactor: Any, server: Server, tmp_path: Path
) -> None:
    """snapshot_timeout: the request hangs (others are served) until release drops it."""
    server.faults.timeouts = 1
    hung = Deferred.fromCoroutine(post(reactor, server.info, _request(tmp_path / "hung.json")))
    outcome: list[Any] = []
    hung.addBoth(outcome.append)
    # the fault takes the first request to arrive: make sure it is this one
    await wait_for(reactor, lambda: len(server.faults.held) == 1, what="the request held")
    assert (await post(reactor, server.info, _request(tmp_path / "ok.json")))[0] == 200
    assert outcome == [] and not (tmp_path / "hung.json").exists()
    assert len(server.faults.held) == 1
    server.faults.release()
    await _settle(reactor, hung)
    assert len(outcome) == 1 and isinstance(outcome[0], Failure)


async def _settle(reactor: Any, d: Deferred) -> None:
    await wait_for(reactor, lambda: d.called, what="the hung request to end")


@pytest_twisted.ensureDeferred
async def test_control_endpoint(reactor: Any, server: Server) -> None:
    """/control passes the JSON object on; errors and non-objects give 400 with a message."""
    code, body = await post(reactor, server.control, {"fault": "gap"})
    assert (code, json.loads(body)) == (200, {"ok": True})
    assert server.controls == [{"fault": "gap"}]
    code, body = await post(reactor, server.control, {"fault": "bad"})
    assert code == 400 and "unknown fault" in json.loads(body)["error"]
    assert (await post(reactor, server.control, b"[1]"))[0] == 400
    assert (await post(reactor, server.control, b"nope"))[0] == 400

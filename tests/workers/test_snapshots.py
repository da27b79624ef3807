"""One node snapshot for every worker: the parent's fileSnapshot fan-in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from orderbook.node.snapshot import SnapshotError, request_snapshot
from orderbook.workers.snapshots import SnapshotFanIn
from tests.polling import until


class FakeNode(Resource):
    """The node's info server: writes ``[height, []]`` to outPath after ``delay_s``."""

    isLeaf = True

    def __init__(self, reactor, delay_s: float = 0.2, status: int = 200) -> None:
        super().__init__()
        self.reactor = reactor
        self.delay_s = delay_s
        self.status = status
        self.requests = 0

    def render_POST(self, request):
        self.requests += 1
        out = Path(json.loads(request.content.read())["outPath"])

        def answer():
            if self.status == 200:
                out.write_text(f"[{self.requests}, []]")
            request.setResponseCode(self.status)
            request.write(b"null")
            request.finish()

        self.reactor.callLater(self.delay_s, answer)
        return NOT_DONE_YET


async def serve(reactor, resource) -> tuple[str, object]:
    root = Resource()
    root.putChild(b"info", resource)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    return f"http://127.0.0.1:{port.getHost().port}/info", port


@pytest_twisted.ensureDeferred
async def test_workers_starting_together_share_one_node_snapshot(reactor, tmp_path):
    node = FakeNode(reactor)
    node_url, node_port = await serve(reactor, node)
    fan_in = SnapshotFanIn(reactor, node_url, tmp_path / "parent.json", timeout_s=10)
    url, port = await serve(reactor, fan_in)
    try:
        outs = [tmp_path / f"worker{i}.json" for i in range(3)]
        await defer.gatherResults(
            [defer.ensureDeferred(request_snapshot(reactor, url, out, 10)) for out in outs]
        )
        assert node.requests == 1
        assert {out.read_text() for out in outs} == {"[1, []]"}
        assert os.stat(outs[0]).st_ino == os.stat(tmp_path / "parent.json").st_ino  # a link
    finally:
        await node_port.stopListening()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_request_after_its_round_was_sent_gets_a_fresh_snapshot(reactor, tmp_path):
    """Its blocks may begin after the node took the round's snapshot: it waits for the next."""
    node = FakeNode(reactor, delay_s=0.3)
    node_url, node_port = await serve(reactor, node)
    fan_in = SnapshotFanIn(reactor, node_url, tmp_path / "parent.json", timeout_s=10, gather_s=0.05)
    url, port = await serve(reactor, fan_in)
    try:
        first = defer.ensureDeferred(request_snapshot(reactor, url, tmp_path / "a.json", 10))
        await until(lambda: node.requests == 1, what="the first round sent")
        await request_snapshot(reactor, url, tmp_path / "b.json", 10)
        await first
        assert node.requests == 2
        assert (tmp_path / "a.json").read_text() == "[1, []]"
        assert (tmp_path / "b.json").read_text() == "[2, []]"
    finally:
        await node_port.stopListening()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_validation_takes_the_last_snapshot_when_it_is_high_enough(reactor, tmp_path):
    node = FakeNode(reactor, delay_s=0.01)
    node_url, node_port = await serve(reactor, node)
    fan_in = SnapshotFanIn(reactor, node_url, tmp_path / "parent.json", timeout_s=10, gather_s=0.01)
    url, port = await serve(reactor, fan_in)
    try:
        await request_snapshot(reactor, url, tmp_path / "a.json", 10)
        await request_snapshot(reactor, url, tmp_path / "v.json", 10, not_before=1)
        assert node.requests == 1 and (tmp_path / "v.json").read_text() == "[1, []]"
        await request_snapshot(reactor, url, tmp_path / "w.json", 10, not_before=2)
        assert node.requests == 2 and (tmp_path / "w.json").read_text() == "[2, []]"
    finally:
        await node_port.stopListening()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_node_failure_reaches_every_waiting_worker(reactor, tmp_path):
    node = FakeNode(reactor, status=500)
    node_url, node_port = await serve(reactor, node)
    fan_in = SnapshotFanIn(reactor, node_url, tmp_path / "parent.json", timeout_s=10)
    url, port = await serve(reactor, fan_in)
    try:
        attempts = [
            defer.ensureDeferred(request_snapshot(reactor, url, tmp_path / f"w{i}.json", 10))
            for i in range(2)
        ]
        for attempt in attempts:
            with pytest.raises(SnapshotError, match="502.*answered 500"):
                await attempt
        assert node.requests == 1
    finally:
        await node_port.stopListening()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_anything_but_a_file_snapshot_is_refused(reactor, tmp_path):
    fan_in = SnapshotFanIn(reactor, "http://127.0.0.1:1/info", tmp_path / "p.json", timeout_s=1)
    url, port = await serve(reactor, fan_in)
    try:
        from io import BytesIO

        from twisted.web.client import Agent, FileBodyProducer, readBody

        response = await Agent(reactor).request(
            b"POST", url.encode(), None, FileBodyProducer(BytesIO(b'{"type":"meta"}'))
        )
        assert response.code == 400
        assert b"bad snapshot request" in await readBody(response)
    finally:
        await port.stopListening()

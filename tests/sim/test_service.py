"""SimulatorService: the block loop, faults through fault() and /control, clean start/stop."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock

from orderbook.sim.service import InfoPortError, SimulatorService
from orderbook.sim.writer import STREAMS
from tests.sim.httpclient import post, wait_for
from tests.sim.nodefiles import read_lines, split_lines, stream_files

T0 = 1_777_582_003_304_461_819


def _service(tmp_path: Path, **kw: Any) -> tuple[SimulatorService, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    kw.setdefault("blocks_per_second", 10)
    service = SimulatorService(
        tmp_path,
        seed=4,
        scale=0.01,
        reactor=reactor,
        clock=lambda: T0 + int(reactor.seconds() * 1e9),
        **kw,
    )
    service.startService()
    return service, reactor


def _heights(tmp_path: Path, stream: str = "diffs") -> list[int]:
    return [line["block_number"] for line in read_lines(tmp_path, stream, "by_block")]


def test_blocks_come_at_the_configured_rate(tmp_path: Path) -> None:
    """10 blocks/s: one block at start, then one per 0.1 s of reactor time."""
    service, reactor = _service(tmp_path)
    start = service.height
    reactor.advance(0)
    assert service.height == start + 1
    for _ in range(10):
        reactor.advance(0.1)
    assert service.height == start + 11
    assert _heights(tmp_path) == list(range(start + 1, start + 12))
    service.stopService()


def test_blocks_limit_fires_done_and_max_speed_needs_no_time(tmp_path: Path) -> None:
    """max_speed makes blocks back to back; `blocks` stops the loop and fires done with the height."""
    service, reactor = _service(tmp_path, max_speed=True, blocks=5)
    done: list[int] = []
    service.done.addCallback(done.append)
    for _ in range(10):
        reactor.advance(0)
    assert done == [service.height] and service.blocks_produced == 5
    assert not reactor.getDelayedCalls()


def test_stall_pauses_blocks_and_clear_ends_it(tmp_path: Path) -> None:
    """stall: no blocks for `seconds`, then the loop resumes; clear ends a stall early."""
    service, reactor = _service(tmp_path)
    reactor.advance(0)
    result = service.fault({"fault": "stall", "seconds": 1})
    stalled_at = service.height
    assert result["height"] == stalled_at
    for _ in range(9):
        reactor.advance(0.1)
    assert service.height == stalled_at
    reactor.advance(0.15)
    assert service.height == stalled_at + 1
    service.fault({"fault": "stall", "seconds": 100})
    reactor.advance(5)
    assert service.height == stalled_at + 1
    service.fault({"fault": "clear"})
    reactor.advance(0)
    assert service.height == stalled_at + 2
    service.stopService()


def test_gap_garbage_truncated_through_fault(tmp_path: Path) -> None:
    """fault(gap) skips the next block in every stream; garbage/truncated break one line."""
    service, reactor = _service(tmp_path, split_probability=0)
    reactor.advance(0)
    assert service.fault({"fault": "gap"})["skipped"] == service.height + 1
    service.fault({"fault": "garbage", "stream": "fills"})
    service.fault({"fault": "truncated"})
    for _ in range(3):
        reactor.advance(0.1)
    service.stopService()
    h = service.height
    assert [line["block_number"] for line in read_lines(tmp_path, "statuses", "by_block")] == [
        h - 3,
        h - 1,
        h,
    ]
    fills = stream_files(tmp_path, "fills", "by_block")[0].read_bytes().splitlines()
    diffs = stream_files(tmp_path, "diffs", "by_block")[0].read_bytes().splitlines()
    assert len(fills) == 4 and len(diffs) == 3
    with pytest.raises(ValueError):
        json.loads(fills[1])
    with pytest.raises(ValueError):
        json.loads(diffs[1])


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_restart_dies_mid_line_pauses_then_appends_after_the_partial_line(
    tmp_path: Path, mode: str
) -> None:
    """restart: the next block is cut mid-line, files close, blocks pause `seconds`, then new lines
    are appended right after the partial one (one unparsable line); heights continue."""
    service, reactor = _service(tmp_path, mode=mode, split_probability=0)
    reactor.advance(0)
    before = service.height
    result = service.fault({"fault": "restart", "seconds": 0.5})
    assert result["cut_height"] == before + 1 == service.height
    assert service.writer.current_paths() == {}
    reactor.advance(0.3)
    assert service.height == before + 1
    for _ in range(4):
        reactor.advance(0.1)
    assert service.height > before + 1
    service.stopService()
    good, bad = split_lines(tmp_path, result["cut_stream"], mode)
    assert len(bad) == 1 and bad[0].startswith(b'{"')
    glued = bad[0].rindex(b'{"local_time":"')  # the restarted node's first line follows
    assert json.loads(bad[0][glued:])["block_number"] == before + 2
    heights = [line["block_number"] for line in good]
    if mode == "by_block":  # the cut block's line, then the next one glued to it, are lost
        assert before + 1 not in heights and before + 2 not in heights
    assert heights[-1] == service.height and service.height - 1 in heights


def test_delete_old_reports_deletions(tmp_path: Path) -> None:
    """delete_old through fault(): nothing old to delete yet, the current files stay."""
    service, reactor = _service(tmp_path)
    reactor.advance(0)
    assert service.fault({"fault": "delete_old"})["deleted"] == []
    assert set(service.writer.current_paths()) == set(STREAMS)
    service.stopService()


def test_absurd_height_gives_one_line_a_far_block_number(tmp_path: Path) -> None:
    """absurd_height: exactly one line of the stream names a block `ahead` too far; the rest is normal."""
    service, reactor = _service(tmp_path)
    reactor.advance(0)
    service.fault({"fault": "absurd_height", "stream": "fills", "ahead": 5_000_000})
    for _ in range(3):
        reactor.advance(0.1)
    service.stopService()
    fills = _heights(tmp_path, "fills")
    h = service.height
    assert fills == [h - 3, h - 2 + 5_000_000, h - 1, h]
    assert _heights(tmp_path, "diffs") == list(range(h - 3, h + 1))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"fault": "explode"}, "unknown fault 'explode'"),
        ({"fault": "stall", "seconds": -1}, "seconds must be a number"),
        ({"fault": "garbage", "stream": "trades"}, "stream must be"),
        ({"fault": "snapshot_error", "status": 200}, "status must be"),
        ({"fault": "absurd_height", "ahead": 0}, "ahead must be a non-zero integer"),
        ({"fault": "absurd_height", "ahead": 1.5}, "ahead must be a non-zero integer"),
        ({"fault": "snapshot_truncated", "count": 0}, "count must be"),
    ],
)
def test_bad_fault_specs_are_refused(tmp_path: Path, spec: dict[str, Any], message: str) -> None:
    """Bad fault switches raise ValueError naming the problem (400 over /control)."""
    service, _ = _service(tmp_path)
    with pytest.raises(ValueError, match=message):
        service.fault(spec)
    service.stopService()


def test_snapshot_faults_are_armed(tmp_path: Path) -> None:
    """snapshot_error / snapshot_timeout arm the info server's counters; clear disarms them."""
    service, _ = _service(tmp_path)
    service.fault({"fault": "snapshot_error", "status": 502, "count": 2})
    service.fault({"fault": "snapshot_timeout"})
    service.fault({"fault": "snapshot_truncated", "count": 3})
    faults = service.snapshot_faults
    assert (faults.error_status, faults.errors, faults.timeouts, faults.truncated) == (502, 2, 1, 3)
    service.fault({"fault": "clear"})
    assert (faults.errors, faults.timeouts, faults.truncated) == (0, 0, 0)
    service.stopService()


@pytest_twisted.ensureDeferred
async def test_real_service_serves_snapshots_at_block_boundaries(
    reactor: Any, tmp_path: Path
) -> None:
    """On the real reactor: files grow, /control works, the snapshot height's lines are all written."""
    service = SimulatorService(
        tmp_path / "data", info_port=0, seed=9, blocks_per_second=200, scale=0.01
    )
    service.startService()
    try:
        assert service.info_port != 0
        start = service.height
        await wait_for(reactor, lambda: service.height >= start + 5, what="5 blocks")
        base = service.info_url.rsplit("/", 1)[0]
        code, body = await post(reactor, f"{base}/control", {"fault": "gap"})
        assert code == 200 and json.loads(body)["ok"] is True
        await wait_for(reactor, lambda: service.writer.blocks_skipped, what="the gap")
        skipped = service.writer.blocks_skipped[0]
        # a snapshot taken right at the skipped block would name a height never written
        await wait_for(reactor, lambda: service.height > skipped, what="a block after the gap")
        out = tmp_path / "snap.json"
        request = {
            "type": "fileSnapshot",
            "request": {"type": "l4Snapshots", "includeUsers": True, "includeTriggerOrders": False},
            "outPath": str(out),
            "includeHeightInOutput": True,
        }
        assert await post(reactor, service.info_url, request) == (200, b"null")
        height = json.loads(out.read_bytes())[0]
        for stream in STREAMS:
            assert height in _heights(tmp_path / "data", stream)
        assert skipped not in _heights(tmp_path / "data")
        assert skipped - 1 in _heights(tmp_path / "data")
    finally:
        await service.stopService()
    height = service.height
    await wait_for(reactor, lambda: True)
    assert service.height == height


@pytest.fixture
def taken_port() -> Any:
    """A real TCP port on 127.0.0.1 that something else is listening on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("start", ["privilegedStartService", "startService"])
def test_taken_info_port_fails_at_start_naming_the_port(
    tmp_path: Path, taken_port: int, start: str
) -> None:
    """A taken info port raises InfoPortError (a CannotListenError) synchronously, in one line."""
    from twisted.internet import reactor

    service = SimulatorService(tmp_path, info_port=taken_port, scale=0.01, reactor=reactor)
    with pytest.raises(CannotListenError) as info:
        getattr(service, start)()
    assert isinstance(info.value, InfoPortError)
    assert info.value.port == taken_port
    message = str(info.value)
    assert f"127.0.0.1:{taken_port}" in message and "\n" not in message
    assert "in use" in message and "info_port" in message
    assert not reactor.getDelayedCalls() or all(
        c.func != service._tick for c in reactor.getDelayedCalls()
    )
    assert not service.running


CONTROL_SWITCHES = [
    {"fault": "stall", "seconds": 0.05},
    {"fault": "gap"},
    {"fault": "garbage", "stream": "fills"},
    {"fault": "truncated", "stream": "statuses"},
    {"fault": "absurd_height", "stream": "diffs", "ahead": 7_000_000},
    {"fault": "delete_old"},
    {"fault": "restart", "seconds": 0.05},
    {"fault": "snapshot_error", "status": 503},
    {"fault": "snapshot_truncated"},
    {"fault": "snapshot_timeout"},
    {"fault": "clear"},
]


@pytest_twisted.ensureDeferred
async def test_every_fault_switch_works_over_control(reactor: Any, tmp_path: Path) -> None:
    """Each soak fault goes through POST /control on a real service and leaves its mark."""
    from orderbook.sim.service import FAULTS

    assert {spec["fault"] for spec in CONTROL_SWITCHES} == set(FAULTS)
    data = tmp_path / "data"
    service = SimulatorService(data, info_port=0, seed=5, blocks_per_second=100, scale=0.01)
    service.startService()
    try:
        base = service.info_url.rsplit("/", 1)[0]
        for spec in CONTROL_SWITCHES:
            if spec["fault"] == "clear":  # a request held by snapshot_timeout is still open
                assert service.snapshot_faults.timeouts == 1
            code, body = await post(reactor, f"{base}/control", spec)
            assert code == 200 and json.loads(body)["fault"] == spec["fault"], body
            start = service.height
            await wait_for(reactor, lambda s=start: service.height >= s + 3, what="3 more blocks")
        assert service.writer.blocks_skipped and service.writer.absurd_lines
        assert service.writer.absurd_lines[0][2] == service.writer.absurd_lines[0][1] + 7_000_000
        _, bad_statuses = split_lines(data, "statuses", "by_block")
        _, bad_fills = split_lines(data, "fills", "by_block")
        assert bad_fills and bad_statuses  # garbage, truncated (and the restart's glued line)
        faults = service.snapshot_faults
        assert (faults.errors, faults.truncated, faults.timeouts) == (0, 0, 0)  # clear
        code, body = await post(reactor, f"{base}/control", {"fault": "nope"})
        assert code == 400 and "unknown fault 'nope'" in json.loads(body)["error"]
    finally:
        await service.stopService()

"""The statuses pre-filter process: rejections stripped on another core, order kept."""

from __future__ import annotations

import io
import os
import signal

import msgspec
import pytest
import pytest_twisted

from orderbook.node import prefilter
from orderbook.node.prefilter import StatusesPrefilter, serve, strip_rejections
from orderbook.node.schema import STATUSES, decode_line
from tests.node.support import wait_for

STATUSES_FILE = "node_order_statuses_by_block/hourly/20260430/20"


def statuses_lines(mainnet_data) -> list[bytes]:
    return (mainnet_data / STATUSES_FILE).read_bytes().splitlines()


def test_strip_keeps_everything_but_rejections(mainnet_data):
    """Every non-rejected status survives, in order, with its raw order; the envelope too."""
    kept_total = 0
    for raw in statuses_lines(mainnet_data):
        full, stripped = decode_line(STATUSES, raw), decode_line(STATUSES, strip_rejections(raw))
        wanted = [s for s in full.events if not s.status.endswith("Rejected")]
        assert stripped.events == wanted
        assert (stripped.block_number, stripped.block_time, stripped.local_time) == (
            full.block_number,
            full.block_time,
            full.local_time,
        )
        kept_total += len(wanted)
    assert 0 < kept_total < 300  # of 7,769: the capture is 95% badAloPxRejected


def test_unreadable_or_rejection_free_lines_come_back_unchanged():
    """The reactor's decoder must see a bad line as it was (to report it)."""
    bad = b'{"local_time": "x", "events": [garbage'
    assert strip_rejections(bad) is bad
    clean = msgspec.json.encode(
        {"local_time": "t", "block_time": "2026-04-30T20:46:43.3", "block_number": 1, "events": []}
    )
    assert strip_rejections(clean) is clean


def replies_of(out: bytes) -> list[tuple[int, bytes]]:
    source, replies = io.BytesIO(out), []
    while (reply := prefilter.read_frame(source)) is not None:
        replies.append(reply)
    return replies


def test_serve_answers_each_framed_line_in_order():
    """The child's loop: framed lines in, stripped lines out, until EOF."""
    lines = [b"not json", b"[]", b"{}"]
    sink = io.BytesIO()
    serve(io.BytesIO(b"".join(prefilter.frame(prefilter.LINE, x) for x in lines)), sink)
    assert replies_of(sink.getvalue()) == [(prefilter.STRIPPED, x) for x in lines]


def test_serve_reads_lines_from_the_node_file(tmp_path, mainnet_data):
    """READ: the child reads the line at its offset; a changed head or no file is UNREAD."""
    lines = statuses_lines(mainnet_data)[:3]
    node_file = tmp_path / "20"
    node_file.write_bytes(b"".join(line + b"\n" for line in lines))
    path = os.fsencode(node_file)
    offsets = [0, len(lines[0]) + 1, len(lines[0]) + len(lines[1]) + 2]
    requests = [
        prefilter.read_request(path, at, raw) for at, raw in zip(offsets, lines, strict=True)
    ]
    requests.append(prefilter.read_request(path, offsets[1], lines[2]))  # not what is there
    requests.append(prefilter.read_request(path + b".gone", 0, lines[0]))
    sink = io.BytesIO()
    serve(io.BytesIO(b"".join(prefilter.frame(prefilter.READ, r) for r in requests)), sink)
    assert replies_of(sink.getvalue()) == [
        *((prefilter.STRIPPED, strip_rejections(raw)) for raw in lines),
        (prefilter.UNREAD, b""),
        (prefilter.UNREAD, b""),
    ]


def test_the_child_keeps_only_two_node_files_open(tmp_path):
    """Old hourly files get deleted by the node: an open descriptor would keep their space."""
    files = prefilter._Files()
    try:
        for hour in range(4):
            node_file = tmp_path / str(hour)
            node_file.write_bytes(b"line\n")
            request = prefilter.read_request(os.fsencode(node_file), 0, b"line")
            assert files.read(request) == b"line"
        assert sorted(files._open) == [os.fsencode(tmp_path / "2"), os.fsencode(tmp_path / "3")]
    finally:
        files.close()


@pytest.fixture
def started(reactor):
    children: list[StatusesPrefilter] = []

    def start() -> StatusesPrefilter:
        process = StatusesPrefilter(reactor)
        process.start()
        children.append(process)
        return process

    yield start
    for process in children:
        process.stop()


@pytest_twisted.inlineCallbacks
def test_child_strips_lines_in_order(started, mainnet_data):
    """Lines submitted to the real child come back stripped, in submission order."""
    process = started()
    yield wait_for(lambda: process.alive, 10, "the child to start")
    lines = statuses_lines(mainnet_data)
    replies: list[bytes] = []
    for raw in lines:
        process.submit(raw, replies.append)
    yield wait_for(lambda: len(replies) == len(lines), 20, "every reply")
    assert replies == [strip_rejections(raw) for raw in lines]
    assert sum(map(len, replies)) < sum(map(len, lines)) / 10


@pytest_twisted.inlineCallbacks
def test_a_dying_child_hands_lines_back_and_restarts(started, mainnet_data, monkeypatch):
    """Killed with lines in flight: they come back unchanged, in order; a new child follows."""
    monkeypatch.setattr(prefilter, "RESTART_DELAY_S", 0.05)
    process = started()
    yield wait_for(lambda: process.alive, 10, "the child to start")
    lines = statuses_lines(mainnet_data)
    replies: list[bytes] = []
    os.kill(process.transport.pid, signal.SIGSTOP)  # nothing is answered before the kill
    for raw in lines[:5]:
        process.submit(raw, replies.append)
    os.kill(process.transport.pid, signal.SIGKILL)
    yield wait_for(lambda: len(replies) == 5, 10, "the lines in flight")
    assert replies == lines[:5]
    yield wait_for(lambda: process.alive, 10, "the restart")
    assert process.restarts == 1
    process.submit(lines[5], replies.append)
    yield wait_for(lambda: len(replies) == 6, 10, "an answer from the new child")
    assert replies[5] == strip_rejections(lines[5])


@pytest_twisted.inlineCallbacks
def test_child_reads_lines_the_reactor_points_at(started, mainnet_data, tmp_path):
    """With path and offset the child reads the node file; an unreadable line comes back as it was."""
    process = started()
    yield wait_for(lambda: process.alive, 10, "the child to start")
    lines = statuses_lines(mainnet_data)[:4]
    node_file = tmp_path / "20"
    node_file.write_bytes(b"".join(line + b"\n" for line in lines))
    replies: list[bytes] = []
    offset = 0
    for raw in lines:
        process.submit(raw, replies.append, node_file, offset)
        offset += len(raw) + 1
    process.submit(lines[0], replies.append, tmp_path / "missing", 0)
    yield wait_for(lambda: len(replies) == 5, 20, "every reply")
    assert replies == [*(strip_rejections(raw) for raw in lines), lines[0]]


def test_submit_without_a_child_answers_at_once(reactor):
    """Before start (or while restarting) a line is handed straight back."""
    process = StatusesPrefilter(reactor)
    replies: list[bytes] = []
    process.submit(b"line", replies.append)
    assert replies == [b"line"]


@pytest_twisted.inlineCallbacks
def test_a_stuck_child_misses_its_deadline_lines_decoded_in_process(reactor, mainnet_data):
    """A child that stops answering: after reply_deadline_s its lines come back unchanged,
    in order, it is killed, and a new child answers the next line."""
    prefilter.RESTART_DELAY_S, saved = 0.05, prefilter.RESTART_DELAY_S
    process = StatusesPrefilter(reactor, reply_deadline_s=0.2)
    try:
        process.start()
        yield wait_for(lambda: process.alive, 10, "the child to start")
        stuck_pid = process.transport.pid
        os.kill(stuck_pid, signal.SIGSTOP)  # alive, never answers
        lines = statuses_lines(mainnet_data)
        replies: list[bytes] = []
        for raw in lines[:3]:
            process.submit(raw, replies.append)
        yield wait_for(lambda: len(replies) == 3, 5, "the lines handed back")
        assert replies == lines[:3] and process.stuck == 1
        yield wait_for(lambda: process.alive and process.transport.pid != stuck_pid, 10, "restart")
        process.submit(lines[3], replies.append)
        yield wait_for(lambda: len(replies) == 4, 10, "an answer from the new child")
        assert replies[3] == strip_rejections(lines[3])
    finally:
        prefilter.RESTART_DELAY_S = saved
        process.stop()


@pytest_twisted.inlineCallbacks
def test_too_many_waiting_lines_restart_the_child(reactor, mainnet_data):
    """Past max_waiting lines the child is given up on: the waiting lines and the new one
    are decoded in process at once, in order (no waiting for the deadline)."""
    process = StatusesPrefilter(reactor, reply_deadline_s=60, max_waiting=2)
    try:
        process.start()
        yield wait_for(lambda: process.alive, 10, "the child to start")
        os.kill(process.transport.pid, signal.SIGSTOP)
        lines = statuses_lines(mainnet_data)
        replies: list[bytes] = []
        for raw in lines[:3]:
            process.submit(raw, replies.append)
        assert replies == lines[:3] and process.stuck == 1 and not process.alive
    finally:
        process.stop()

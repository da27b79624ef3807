"""Tailing hourly files with real inotify: rotation, pruning, partial lines."""

from __future__ import annotations

import os
import shutil

import pytest
import pytest_twisted

from orderbook.node.tail import NodeTailer, hourly_files
from tests.node.support import wait_for


class Collector:
    def __init__(self):
        self.lines: list[tuple[str, int, bytes | None]] = []
        self.problems: list[tuple[str, int, str]] = []

    def deliver(self, stream, path, batch):
        self.lines += [(path.name, offset, line) for offset, line in batch]

    def report(self, stream, path, offset, problem):
        self.problems.append((path.name, offset, problem))

    def texts(self):
        return [line for _, _, line in self.lines]


@pytest.fixture
def hourly(tmp_path):
    root = tmp_path / "node_order_statuses_by_block" / "hourly"
    (root / "20260430").mkdir(parents=True)
    return root


def _append(path, data: bytes):
    with open(path, "ab") as handle:
        handle.write(data)


@pytest.fixture
def tailer_of(reactor):
    made = []

    def make(root, collector, recheck=60.0, streams=None, **options):
        streams = streams or {"s": root}
        tailer = NodeTailer(
            streams, collector.deliver, collector.report, reactor, recheck, **options
        )
        made.append(tailer)
        tailer.start()
        return tailer

    yield make
    for tailer in made:
        tailer.stop()


def test_hourly_files_order_numerically(tmp_path):
    """Hours have no leading zero: 9 sorts before 10; dates before hours."""
    for day, hour in (("20260430", "10"), ("20260430", "9"), ("20260501", "0"), ("x", "1")):
        (tmp_path / day).mkdir(exist_ok=True)
        (tmp_path / day / hour).touch()
    (tmp_path / "20260430" / "junk").touch()
    assert [key for key, _ in hourly_files(tmp_path)] == [
        ("20260430", 9), ("20260430", 10), ("20260501", 0)
    ]  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_starts_at_end_mid_line_and_follows_chunks(hourly, tailer_of):
    """Startup skips old data and the partial line; appended chunks give whole lines once."""
    path = hourly / "20260430" / "20"
    path.write_bytes(b"old line\nhalf of a li")
    collector = Collector()
    tailer_of(hourly, collector)
    _append(path, b"ne\n")
    payload = b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i * 37 % 500)) for i in range(200))
    for start in range(0, len(payload), 777):
        _append(path, payload[start : start + 777])
    yield wait_for(lambda: len(collector.lines) == 200, what="200 lines")
    assert collector.texts() == payload.split(b"\n")[:-1]
    assert collector.lines[0][1] == len(b"old line\nhalf of a line\n")
    assert collector.problems == []


@pytest_twisted.inlineCallbacks
def test_rotation_across_hour_and_date_with_pruning(hourly, tailer_of):
    """Old file read to EOF before the next; 23 -> next day's 0; pruned files harmless."""
    first = hourly / "20260430" / "22"
    first.write_bytes(b"")
    collector = Collector()
    tailer = tailer_of(hourly, collector)
    _append(first, b"a1\na2\n")
    yield wait_for(lambda: len(collector.lines) == 2, what="a lines")
    second = hourly / "20260430" / "23"
    _append(second, b"b1\n")
    _append(first, b"a3\n")  # the writer's last flush of the finished file
    yield wait_for(lambda: len(collector.lines) == 4, what="b1")
    assert collector.texts() == [b"a1", b"a2", b"a3", b"b1"]
    first.unlink()  # pruned while we are on the next file
    (hourly / "20260501").mkdir()
    third = hourly / "20260501" / "0"
    _append(second, b"b2")
    _append(third, b"c1\n")
    yield wait_for(lambda: len(collector.lines) == 5, what="c1")
    shutil.rmtree(hourly / "20260430")  # prune a whole day
    _append(third, b"c2\n")
    yield wait_for(lambda: len(collector.lines) == 6, what="c2 after pruning a day")
    assert collector.texts()[-2:] == [b"c1", b"c2"]
    assert [(name, problem.split(" (")[0]) for name, _, problem in collector.problems] == [
        ("23", "file ended inside a line")
    ]
    assert tailer.tails["s"].path == third


@pytest_twisted.inlineCallbacks
def test_current_file_deleted_is_read_to_its_end(hourly, tailer_of):
    """Data appended just before the current file is pruned still arrives, then the next."""
    path = hourly / "20260430" / "5"
    path.write_bytes(b"")
    collector = Collector()
    tailer_of(hourly, collector)
    _append(path, b"x1\n")
    yield wait_for(lambda: len(collector.lines) == 1)
    # no reactor turn between these: the reader cannot have seen x2 before the unlink
    _append(path, b"x2\n")
    os.unlink(path)
    (hourly / "20260430" / "6").write_bytes(b"y1\n")
    yield wait_for(lambda: len(collector.lines) == 3)
    assert collector.texts() == [b"x1", b"x2", b"y1"]


@pytest_twisted.inlineCallbacks
def test_restart_in_the_middle_of_a_line(hourly, tailer_of, reactor):
    """A new reader started while a line is half written skips it and reads the next."""
    path = hourly / "20260430" / "1"
    path.write_bytes(b'{"done":1}\n{"half":')
    collector = Collector()
    tailer_of(hourly, collector)
    _append(path, b'2}\n{"next":3}\n')
    yield wait_for(lambda: collector.lines)
    assert collector.texts() == [b'{"next":3}']


@pytest_twisted.inlineCallbacks
def test_recheck_finds_data_without_inotify(hourly, tailer_of):
    """With the notifier dead, the periodic re-check restarts it and reads on."""
    path = hourly / "20260430" / "2"
    path.write_bytes(b"")
    collector = Collector()
    tailer = tailer_of(hourly, collector, recheck=0.05)
    tailer._notifier.loseConnection()
    _append(path, b"z1\n")
    yield wait_for(lambda: collector.texts() == [b"z1"])
    yield wait_for(lambda: tailer.notifier_restarts >= 1 and tailer._notifier is not None)
    assert tailer._notifier.connected


@pytest_twisted.inlineCallbacks
def test_stream_appears_later(tmp_path, tailer_of):
    """A stream directory created after startup is picked up from its first byte."""
    root = tmp_path / "late" / "hourly"
    collector = Collector()
    tailer_of(root, collector, recheck=0.05)
    (root / "20260430").mkdir(parents=True)
    (root / "20260430" / "3").write_bytes(b"first\n")
    yield wait_for(lambda: collector.texts() == [b"first"])


class StepTimer:
    """A clock that advances one unit per reading: 'time' is a count of checks."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1
        return self.now


@pytest_twisted.inlineCallbacks
def test_burst_is_spread_over_turns_in_order(tmp_path, tailer_of):
    """A big burst in two streams: bounded lines per reactor turn, both streams served
    from the first turns on, every line exactly once and in file order."""
    roots = {}
    for name in ("a", "b"):
        roots[name] = tmp_path / name / "hourly"
        (roots[name] / "20260430").mkdir(parents=True)
        (roots[name] / "20260430" / "7").write_bytes(b"")
    seen: list[tuple[str, int, bytes]] = []
    per_turn: dict[int, int] = {}

    def deliver(stream, path, batch):
        turn = tailer.turns
        per_turn[turn] = per_turn.get(turn, 0) + len(batch)
        seen.extend((stream, turn, line) for _, line in batch)

    collector = Collector()
    collector.deliver = deliver
    tailer = tailer_of(None, collector, streams=roots, turn_budget_s=5, timer=StepTimer())
    payload = {n: [b"%s%05d" % (n.encode(), i) + b"x" * 900 for i in range(3000)] for n in roots}
    for name, lines in payload.items():  # ~2.7 MB each, landing at once
        (roots[name] / "20260430" / "7").write_bytes(b"\n".join(lines) + b"\n")
    yield wait_for(lambda: len(seen) == 6000, what="6000 lines")
    for name, lines in payload.items():
        assert [line for stream, _, line in seen if stream == name] == lines
    assert max(per_turn.values()) <= 8 and len(per_turn) > 700
    first_turns = {stream for stream, turn, _ in seen if turn <= min(per_turn) + 1}
    assert first_turns == {"a", "b"}
    assert collector.problems == []


@pytest_twisted.inlineCallbacks
def test_rotation_waits_for_burst_delivery(hourly, tailer_of):
    """A file finished mid-burst: its remaining lines come before the next file's."""
    first = hourly / "20260430" / "10"
    first.write_bytes(b"")
    collector = Collector()
    tailer_of(hourly, collector, turn_budget_s=3, timer=StepTimer())
    first.write_bytes(b"".join(b"a%03d\n" % i for i in range(300)))
    (hourly / "20260430" / "11").write_bytes(b"".join(b"b%03d\n" % i for i in range(300)))
    yield wait_for(lambda: len(collector.lines) == 600, what="600 lines")
    assert collector.texts() == [b"a%03d" % i for i in range(300)] + [
        b"b%03d" % i for i in range(300)
    ]


@pytest_twisted.inlineCallbacks
def test_behind_names_the_streams_with_data_still_to_read(tmp_path, tailer_of):
    """While one stream's lines are delivered, the streams with data not yet read this
    turn, and the one being read, are behind; once everything is read, none is."""
    roots = {name: tmp_path / name / "hourly" for name in ("a", "b")}
    for root in roots.values():
        (root / "20260430").mkdir(parents=True)
        (root / "20260430" / "7").write_bytes(b"")
    seen: list[tuple[str, set[str]]] = []
    collector = Collector()
    tailer = None

    def deliver(stream, path, batch):
        seen.append((stream, tailer.behind()))

    collector.deliver = deliver
    tailer = tailer_of(None, collector, streams=roots, turn_budget_s=5, timer=StepTimer())
    for root in roots.values():
        (root / "20260430" / "7").write_bytes(b"".join(b"%05d\n" % i for i in range(40)))
    yield wait_for(lambda: len(seen) == 80, what="80 lines")
    first = seen[0][0]
    other = "b" if first == "a" else "a"
    assert seen[0][1] == {"a", "b"}  # the other has data waiting too
    last_of_other = max(i for i, (stream, _) in enumerate(seen) if stream == other)
    assert seen[last_of_other][1] >= {other}  # being read
    yield wait_for(lambda: tailer.behind() == set(), what="nothing behind")


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"one\ntwo\n", b"two"), (b"one\ntw", None), (b"", None), (b"only\n", b"only")],
)
def test_line_before_start_is_the_last_whole_line(hourly, tailer_of, content, expected):
    """Where reading begins, the file's last whole line (None inside a line, or empty)."""
    (hourly / "20260430" / "7").write_bytes(content)
    tailer = tailer_of(hourly, Collector())
    assert tailer.lines_before_start() == {"s": expected}

"""generate(): deterministic files, and replaying them reproduces the simulator's book."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orderbook.sim.generate import generate
from orderbook.sim.writer import STREAMS, stream_root
from tests.sim.nodefiles import Replayer, block_times_ms, events_by_height

BLOCKS = 40


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_from_any_snapshot_reproduces_every_later_block(
    tmp_path: Path, mode: str, seed: int
) -> None:
    """Snapshot at height h + the files' diffs/statuses == the simulator's own book at every later height."""
    result = generate(tmp_path, BLOCKS, seed=seed, mode=mode, scale=0.05, snapshot_every=1)
    blocks = events_by_height(tmp_path, mode)
    times = block_times_ms(tmp_path, mode)
    assert sorted(blocks) == list(range(result.first_height, result.last_height + 1))
    expected = {h: json.loads(p.read_bytes()) for h, p in result.snapshots.items()}
    kinds = {"new": 0, "update": 0, "remove": 0, "insertBefore": 0}
    for start in (result.first_height - 1, result.first_height + 6, result.first_height + 23):
        replayer = Replayer(expected[start])
        for height in range(start + 1, result.last_height + 1):
            replayer.replay(blocks, times, height)
            assert replayer.snapshot() == expected[height], (
                f"seed {seed} {mode}: from {start}, at {height}"
            )
    for events in blocks.values():
        for diff in events["diffs"]:
            body = diff["raw_book_diff"]
            kind = body if isinstance(body, str) else next(iter(body))
            kinds[kind] += 1
            kinds["insertBefore"] += isinstance(body, dict) and "insertBefore" in body.get(
                "new", {}
            )
    assert all(kinds.values()), kinds


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    """A seed reproduces identical files (and snapshots); another seed does not."""
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate(tmp_path / name, 15, seed=seed, scale=0.05, snapshot_at=(0, 15))
    a, b, c = (_tree(tmp_path / n) for n in "abc")
    assert a == b
    assert len(a) == 5
    assert a != c


def test_streaming_and_by_block_carry_the_same_events(tmp_path: Path) -> None:
    """The two layouts of one seed hold the same events per block, stream by stream."""
    generate(tmp_path / "b", 12, seed=5, scale=0.05, mode="by_block")
    generate(tmp_path / "s", 12, seed=5, scale=0.05, mode="streaming")
    assert events_by_height(tmp_path / "b", "by_block") == events_by_height(
        tmp_path / "s", "streaming"
    )
    for stream in STREAMS:
        assert stream_root(tmp_path / "s", stream, "streaming").is_dir()


def test_zero_blocks_writes_only_the_snapshot(tmp_path: Path) -> None:
    """generate(blocks=0) writes no lines; snapshot_at=(0,) still gives the starting book."""
    result = generate(tmp_path, 0, snapshot_at=(0,), scale=0.05)
    assert list(result.snapshots) == [result.first_height - 1]
    assert not any(stream_root(tmp_path, s, "by_block").exists() for s in STREAMS)
    with pytest.raises(ValueError, match="blocks must be"):
        generate(tmp_path, -1)

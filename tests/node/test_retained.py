"""Line positions kept for validation: bounded, and rebuilding the same blocks."""

from __future__ import annotations

import shutil

import msgspec

from orderbook.node.blocks import BlockAssembler
from orderbook.node.retained import RetainedLines
from orderbook.node.schema import DIRECTORIES, decode_line

HOUR = "hourly/20260430/20"


def _noted(root, max_blocks: int = 2000, streaming: bool = False) -> RetainedLines:
    retained = RetainedLines(max_blocks, streaming=streaming)
    mode = "streaming" if streaming else "by_block"
    for kind, directory in DIRECTORIES[mode].items():
        path = root / directory / HOUR
        if not path.exists():
            continue
        offset = 0
        for raw in path.read_bytes().splitlines(keepends=True):
            line = raw.rstrip(b"\n")
            height = msgspec.json.decode(line)["block_number"]
            retained.note(kind, height, path, offset, len(line))
            offset += len(raw)
    return retained


def test_rebuilt_blocks_equal_the_assembled_ones(mainnet_data):
    """Blocks read back from the node's files equal what the assembler made of them."""
    assembler, made = BlockAssembler(), {}
    lines = {k: (mainnet_data / d / HOUR).read_bytes().splitlines()
             for k, d in DIRECTORIES["by_block"].items()}  # fmt: skip
    for index in range(40):
        for kind in ("fills", "diffs", "statuses"):
            for block in assembler.add(kind, decode_line(kind, lines[kind][index])):
                made[block.height] = block
    retained = _noted(mainnet_data)
    rebuilt = retained.blocks(978995380, 978995390)
    assert [b.height for b in rebuilt] == list(range(978995381, 978995391))
    assert rebuilt == [made[b.height] for b in rebuilt]
    assert len(retained) == 3 * 40  # one span per stream and block


def test_streaming_rows_of_a_block_share_one_span(mainnet_data):
    """Adjacent rows of one block in a stream are one span: memory per block, not per row."""
    retained = _noted(mainnet_data, streaming=True)
    diffs_rows = (mainnet_data / DIRECTORIES["streaming"]["diffs"] / HOUR).read_bytes().count(b"\n")
    assert diffs_rows > 100 and len(retained) <= 2 * 40


def test_the_window_is_bounded_and_says_when_it_does_not_reach_back(mainnet_data):
    retained = _noted(mainnet_data, max_blocks=10)
    assert len(retained) == 3 * 10
    assert retained.blocks(978995400, 978995416) is None  # 978995401.. evicted
    assert len(retained.blocks(978995407, 978995416)) == 9


def test_a_pruned_file_fails_the_rebuild(mainnet_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(mainnet_data, root)
    retained = _noted(root)
    (root / DIRECTORIES["by_block"]["diffs"] / HOUR).unlink()
    assert retained.blocks(978995380, 978995385) is None

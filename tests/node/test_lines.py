"""LineSplitter: complete lines only, partial tails kept, offsets exact."""

from __future__ import annotations

from orderbook.node.lines import LineSplitter

TEXT = b'{"a":1}\n{"block_number":2,"events":[]}\n\n{"x":"\xc3\xa9"}\n'


def _expected(text: bytes, base: int = 0) -> list[tuple[int, bytes]]:
    out, start = [], 0
    for line in text.split(b"\n")[:-1]:
        out.append((base + start, line))
        start += len(line) + 1
    return out


def test_split_at_every_byte_position():
    """Whatever two chunks the bytes arrive in, the same lines and offsets come out."""
    for cut in range(len(TEXT) + 1):
        splitter = LineSplitter()
        got = splitter.feed(TEXT[:cut]) + splitter.feed(TEXT[cut:])
        assert got == _expected(TEXT), cut
        assert splitter.pending == 0


def test_byte_by_byte_and_partial_tail_kept():
    """Fed one byte at a time, a line appears only with its newline; the tail waits."""
    splitter = LineSplitter(offset=100)
    got = []
    for index in range(len(TEXT) - 3):
        got += splitter.feed(TEXT[index : index + 1])
    assert got == _expected(TEXT[: TEXT.rfind(b"\n", 0, len(TEXT) - 3) + 1], 100)
    assert splitter.pending > 0
    got += splitter.feed(TEXT[len(TEXT) - 3 :])
    assert got == _expected(TEXT, 100)


def test_large_line_in_many_chunks():
    """A multi-MB line arriving in 64 KiB pieces comes out whole."""
    line = b"[" + b"1," * 2_000_000 + b"1]"
    splitter = LineSplitter()
    got = []
    data = line + b"\nnext\n"
    for start in range(0, len(data), 65536):
        got += splitter.feed(data[start : start + 65536])
    assert got == [(0, line), (len(line) + 1, b"next")]


def test_skip_first_partial_line():
    """Starting mid-line, bytes up to the first newline are ignored."""
    splitter = LineSplitter(offset=5, skip_first=True)
    assert splitter.feed(b"tail of old") == []
    assert splitter.feed(b" line\nfull\n") == [(22, b"full")]


def test_line_over_cap_reported_and_skipped():
    """A line beyond the cap is reported as (offset, None); reading resumes after it."""
    splitter = LineSplitter(max_line_bytes=10)
    assert splitter.feed(b"ok\n0123456789abc") == [(0, b"ok"), (3, None)]
    assert splitter.pending == 0
    assert splitter.feed(b"def\nnext\n") == [(20, b"next")]

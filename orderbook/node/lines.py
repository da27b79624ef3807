"""Bytes -> complete lines, keeping the partial tail until its newline arrives.

The node appends to its files while we read them, so any read may end in the
middle of a line. A :class:`LineSplitter` remembers that tail (as a list of
chunks, so a line of many MB costs one join, not a quadratic copy) and hands
out each line with the file offset of its first byte, for error reports.
"""

from __future__ import annotations

DEFAULT_MAX_LINE_BYTES = 256 * 1024 * 1024


class LineSplitter:
    """Split appended bytes into ``(offset, line)`` pairs (line without ``\\n``).

    ``offset`` is the position of the next byte to be fed. With ``skip_first``
    the bytes up to the first newline are discarded: reading started in the
    middle of a line.
    """

    def __init__(
        self,
        offset: int = 0,
        skip_first: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.offset = offset
        self.max_line_bytes = max_line_bytes
        self._skipping = skip_first
        self._chunks: list[bytes] = []
        self._pending = 0

    @property
    def pending(self) -> int:
        """Bytes held for a line whose newline has not arrived yet."""
        return self._pending

    @property
    def line_start(self) -> int:
        """File offset of the first byte of the pending partial line."""
        return self.offset - self._pending

    def feed(self, data: bytes) -> list[tuple[int, bytes | None]]:
        """Take the next bytes of the file; return the lines they complete.

        A line longer than ``max_line_bytes`` is dropped and reported as
        ``(offset, None)``; reading resumes after its newline.
        """
        start = self.offset
        self.offset += len(data)
        position = 0
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            self._skipping = False
            position = newline + 1
        lines: list[tuple[int, bytes | None]] = []
        newline = data.find(b"\n", position)
        while newline >= 0:
            if self._chunks:
                self._chunks.append(data[position:newline])
                lines.append((start + position - self._pending, b"".join(self._chunks)))
                self._chunks = []
                self._pending = 0
            else:
                lines.append((start + position, data[position:newline]))
            position = newline + 1
            newline = data.find(b"\n", position)
        if position < len(data):
            self._chunks.append(data[position:])
            self._pending += len(data) - position
            if self._pending > self.max_line_bytes:
                lines.append((self.line_start, None))
                self.drop_partial(skip_to_newline=True)
        return lines

    def drop_partial(self, skip_to_newline: bool = False) -> int:
        """Forget the pending partial line; return how many bytes it had."""
        dropped = self._pending
        self._chunks = []
        self._pending = 0
        self._skipping = skip_to_newline
        return dropped

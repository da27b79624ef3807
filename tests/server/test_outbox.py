"""The send path of one connection (orderbook.server.outbox), on a StringTransport."""

from __future__ import annotations

from orderbook.feed.frames import OutgoingMessage, Round
from orderbook.server.outbox import CHUNK_BYTES, Outbox
from tests.server.memory import WriteLog


def outbox(
    limit: int = 1 << 20, transport: WriteLog | None = None
) -> tuple[Outbox, WriteLog, Round, list[int]]:
    transport = transport if transport is not None else WriteLog()
    publishing, overflows = Round(), []
    box = Outbox(transport, publishing, limit, overflows.append, None, now=lambda: 0.0)
    box.attach()
    return box, transport, publishing, overflows


def test_round_writes_each_connection_once_in_order():
    """Frames sent during a round go out in one write when the outermost round ends."""
    box, transport, publishing, _ = outbox()
    with publishing:
        for n in range(3):
            with publishing:
                box.send(OutgoingMessage(b"m%d" % n))
        assert transport.writes == []
    assert len(transport.writes) == 1
    assert transport.writes[0] == b"".join(OutgoingMessage(b"m%d" % n).plain() for n in range(3))
    box.send(OutgoingMessage(b"later"))  # outside a round: at once
    assert len(transport.writes) == 2


class FullAfterEachWrite(WriteLog):
    """A socket whose buffer is full after every write (the reader is slow)."""

    def write(self, data: bytes) -> None:
        super().write(data)
        self.producer.pauseProducing()


def test_big_frame_in_chunks_and_control_frames_wait_for_its_end():
    """A frame over CHUNK_BYTES goes in chunks as the transport accepts them; its unsent
    rest counts as queued; a ping arriving mid-frame is written after the frame."""
    box, transport, _, _ = outbox(transport=FullAfterEachWrite())
    big = OutgoingMessage(b"x" * (3 * CHUNK_BYTES))
    box.send(big)
    assert transport.writes == [big.plain()[:CHUNK_BYTES]]
    assert box.queued_bytes == len(big.plain()) - CHUNK_BYTES
    box.control(b"PING")
    while box.queued_bytes:
        box.resumeProducing()
    box.resumeProducing()
    assert [len(w) for w in transport.writes] == [CHUNK_BYTES] * 3 + [10, 4]
    assert transport.value() == big.plain() + b"PING"


def test_stop_finishes_the_frame_in_progress_then_the_close_frame():
    """Closing mid-frame drops the queue but completes the frame, so the close frame is valid."""
    box, transport, _, _ = outbox(transport=FullAfterEachWrite())
    big = OutgoingMessage(b"y" * (2 * CHUNK_BYTES))
    box.send(big)
    box.send(OutgoingMessage(b"dropped"))
    box.stop()
    box.control(b"CLOSE")
    for _ in range(5):
        box.resumeProducing()
    assert transport.value() == big.plain() + b"CLOSE"
    assert box.send(OutgoingMessage(b"after")) == 0


def test_overflow_counts_lossless_frames_and_calls_back_once():
    """Paused: lossless frames queue up to the bound, then on_overflow once; snapshots keep
    only the latest per key and do not count."""
    box, _, _, overflows = outbox(limit=100)
    box.pauseProducing()
    for _ in range(5):
        box.send(OutgoingMessage(b"s" * 40), key="l2", lossless=False)
    assert box.held == 1 and box.replaced == 4 and box.queued_bytes == 0
    box.send(OutgoingMessage(b"t" * 40))
    box.send(OutgoingMessage(b"t" * 40))
    assert overflows == []
    box.send(OutgoingMessage(b"t" * 40))
    box.send(OutgoingMessage(b"t" * 40))
    assert overflows == [126]
    assert box.held == 0 and box.closed


def test_close_lets_go_of_everything():
    """After close the outbox references no transport or callback."""
    box, _, _, _ = outbox()
    box.close()
    assert (box.transport, box.on_overflow, box.now) == (None, None, None)


def test_a_big_frame_in_a_round_is_shared_not_copied():
    """A round holding a big frame queues the frames themselves: the big one stays the
    same bytes object every client of it shares."""
    box, transport, publishing, _ = outbox(transport=FullAfterEachWrite())
    big = OutgoingMessage(b"z" * (2 * CHUNK_BYTES))
    with publishing:
        box.send(OutgoingMessage(b"small"))
        box.send(big)
    box.resumeProducing()  # the small frame went first; now the big one, in chunks
    assert box._partial is big.plain()
    while box.queued_bytes:
        box.resumeProducing()
    assert transport.value() == OutgoingMessage(b"small").plain() + big.plain()

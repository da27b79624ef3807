"""Frames built once: valid RFC 6455 headers, permessage-deflate decodable per window."""

from __future__ import annotations

import zlib

from orderbook.feed.frames import OutgoingMessage, compress, frame_header


def test_frame_header_lengths():
    """7-bit, 16-bit and 64-bit payload lengths; FIN, RSV1 and opcode bits."""
    assert frame_header(1, 5) == b"\x81\x05"
    assert frame_header(1, 300) == b"\x81\x7e\x01\x2c"
    assert frame_header(2, 70000, rsv1=True)[:2] == b"\xc2\x7f"


def test_compressed_decodes_with_the_clients_window():
    """A message compressed alone decodes with a fresh decompressor of that window size."""
    payload = b'{"channel":"l2Book","data":' + b"[1,2,3]," * 2000 + b"0}"
    for bits in (9, 12, 15):
        body = compress(payload, bits)
        assert zlib.decompressobj(-bits).decompress(body + b"\x00\x00\xff\xff") == payload


def test_variants_are_cached():
    """Each variant is built once and the same bytes object is returned."""
    message = OutgoingMessage(b"x" * 1000)
    assert message.frame(15) is message.frame(15)
    assert message.frame(None) is message.plain()
    assert message.frame(15)[0] == 0xC1 and message.plain()[0] == 0x81
    assert OutgoingMessage(b"tiny").frame(15)[0] == 0x81  # small: sent uncompressed

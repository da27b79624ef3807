"""Order helpers: cloid packing, metadata interning."""

from __future__ import annotations

import pytest

from orderbook.book.order import (
    DEFAULT_META,
    decode_cloid,
    encode_cloid,
    intern_meta,
)


@pytest.mark.parametrize(
    "cloid",
    [
        None,
        "0x14904991131967010000000003807292",
        "0x00000000000000000000000000000000",
        "0xffffffffffffffffffffffffffffffff",
        "0xABCDEF00000000000000000000000000",  # uppercase: kept as a string
        "0x123",  # short: kept as a string
        "not-hex-but-thirty-four-chars-long",
    ],
)
def test_cloid_round_trips(cloid):
    """Every cloid comes back exactly as the node wrote it."""
    assert decode_cloid(encode_cloid(cloid)) == cloid


def test_canonical_cloid_is_stored_as_int():
    """A canonical 128-bit cloid is packed into an int."""
    assert encode_cloid("0x0000000000000000000000000000002a") == 42


def test_meta_interned():
    """Equal metadata tuples share one object."""
    meta = ("N/A", False, "0.0", False, False, "Limit", "".join(["A", "lo"]))
    assert intern_meta(meta) is intern_meta(tuple(meta))
    assert intern_meta(("N/A", False, "0.0", False, False, "Limit", None)) is DEFAULT_META

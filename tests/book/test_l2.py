"""L2 aggregation: official nSigFigs/mantissa bucketing, nLevels, formatting, mids."""

from __future__ import annotations

import pytest

from orderbook import fixed
from orderbook.book import l2
from orderbook.book.books import Books
from tests.book.blocks import block, new


def book_with(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> Books:
    books = Books()
    diffs = [new(i, px, sz, "B") for i, (px, sz) in enumerate(bids)]
    diffs += [new(1000 + i, px, sz, "A") for i, (px, sz) in enumerate(asks)]
    books.apply_block(block(1, diffs=diffs))
    return books


def levels(books: Books, *args, **kwargs) -> list[list[tuple[str, str, int]]]:
    view = books.l2_view("BTC", *args, **kwargs)
    return [[(lv["px"], lv["sz"], lv["n"]) for lv in side] for side in view["levels"]]


@pytest.mark.parametrize(
    ("px", "is_bid", "sig", "mantissa", "expected"),
    [
        ("106217.0", True, 5, 1, "106210.0"),  # the official example
        ("106217.0", False, 5, 1, "106220.0"),
        ("106210.0", False, 5, 1, "106210.0"),  # already on a boundary: unchanged
        ("106217.0", True, 5, 2, "106200.0"),
        ("106217.0", False, 5, 2, "106220.0"),
        ("106217.0", True, 5, 5, "106200.0"),
        ("106217.0", False, 5, 5, "106250.0"),
        ("106217.0", True, 2, 1, "100000.0"),
        ("106217.0", False, 2, 1, "110000.0"),
        ("99999.0", False, 4, 1, "100000.0"),  # rounding up crosses a power of ten
        ("0.0012345", True, 2, 1, "0.0012"),
        ("0.0012345", False, 2, 1, "0.0013"),
        ("0.0012345", True, 4, 1, "0.001234"),
        ("0.0012345", False, 4, 1, "0.001235"),
        ("0.0012345", False, 5, 1, "0.0012345"),
        ("1.2", True, 5, 1, "1.2"),  # fewer digits than nSigFigs: bucket of 1 unit
        ("0.00000003", False, 2, 1, "0.00000003"),
    ],
)
def test_bucket_price(px, is_bid, sig, mantissa, expected):
    """Bucket = mantissa * 10^(digits - nSigFigs) units; bids down, asks up."""
    assert fixed.format(l2.bucket_price(fixed.parse(px), is_bid, sig, mantissa)) == expected


def test_full_precision_levels_and_n_levels():
    """nSigFigs None: one level per price, best first, cut at nLevels."""
    books = book_with(
        [("100.0", "1.0"), ("99.5", "2.0"), ("100.0", "0.5"), ("98.0", "1.0")],
        [("101.0", "0.1"), ("102.0", "0.2"), ("101.0", "0.3")],
    )
    assert levels(books) == [
        [("100.0", "1.5", 2), ("99.5", "2.0", 1), ("98.0", "1.0", 1)],
        [("101.0", "0.4", 2), ("102.0", "0.2", 1)],
    ]
    assert levels(books, n_levels=1) == [[("100.0", "1.5", 2)], [("101.0", "0.4", 2)]]


def test_buckets_sum_size_and_count_across_power_of_ten():
    """A bid bucket below 100 is finer than one above; sums are exact."""
    books = book_with(
        [("100.5", "0.1"), ("100.2", "0.2"), ("99.97", "0.3"), ("99.91", "0.4"), ("99.8", "1")],
        [("100.01", "0.00000001"), ("100.9", "0.00000002"), ("101.0", "0.3"), ("101.1", "1")],
    )
    assert levels(books, 3) == [
        [("100.0", "0.3", 2), ("99.9", "0.7", 2), ("99.8", "1.0", 1)],
        [("101.0", "0.30000003", 3), ("102.0", "1.0", 1)],
    ]
    assert levels(books, 3, n_levels=2) == [
        [("100.0", "0.3", 2), ("99.9", "0.7", 2)],
        [("101.0", "0.30000003", 3), ("102.0", "1.0", 1)],
    ]


def test_mantissa_2_and_5():
    """mantissa widens nSigFigs-5 buckets to 2 or 5 units of the 5th digit."""
    books = book_with(
        [("81307.0", "1"), ("81306.0", "2"), ("81305.0", "3"), ("81304.0", "4")],
        [("81308.0", "1"), ("81309.0", "2"), ("81310.0", "3"), ("81311.0", "4")],
    )
    assert levels(books, 5, 2) == [
        [("81306.0", "3.0", 2), ("81304.0", "7.0", 2)],
        [("81308.0", "1.0", 1), ("81310.0", "5.0", 2), ("81312.0", "4.0", 1)],
    ]
    assert levels(books, 5, 5) == [
        [("81305.0", "6.0", 3), ("81300.0", "4.0", 1)],
        [("81310.0", "6.0", 3), ("81315.0", "4.0", 1)],
    ]
    assert levels(books, 5, 1) == levels(books, 5)


def test_sub_one_prices():
    """Significant figures count from the first non-zero digit below 1."""
    books = book_with(
        [("0.0012345", "100"), ("0.0012301", "50"), ("0.0011999", "1")],
        [("0.0012346", "7"), ("0.0012999", "3")],
    )
    assert levels(books, 2) == [
        [("0.0012", "150.0", 2), ("0.0011", "1.0", 1)],
        [("0.0013", "10.0", 2)],
    ]
    assert levels(books, 4) == [
        [("0.001234", "100.0", 1), ("0.00123", "50.0", 1), ("0.001199", "1.0", 1)],
        [("0.001235", "7.0", 1), ("0.0013", "3.0", 1)],
    ]


def test_format_mid():
    """Mids are exact and canonical; an odd sum keeps its 9th decimal."""
    assert l2.format_mid(fixed.parse("100.0"), fixed.parse("101.0")) == "100.5"
    assert l2.format_mid(fixed.parse("100.0"), fixed.parse("100.0")) == "100.0"
    assert l2.format_mid(1, 2) == "0.000000015"
    assert l2.format_mid(fixed.parse("81307.00000001"), fixed.parse("81308.0")) == "81307.500000005"


def test_check_params():
    """Only nSigFigs 2-5/None, mantissa 1/2/5 (2, 5 need nSigFigs 5), nLevels 1-100."""
    l2.check_params(None, None, 1)
    l2.check_params(5, 5, 100)
    l2.check_params(3, 1, 20)
    for bad in [(1, None, 20), (6, None, 20), (5, 3, 20), (4, 2, 20), (None, 5, 20), (5, 1, 0)]:
        with pytest.raises(ValueError):
            l2.check_params(*bad)

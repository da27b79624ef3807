"""Exact fixed point: parse and format in units of 1e-8, the canonical form, the memo."""

from __future__ import annotations

import pytest

from orderbook import fixed


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("81307.0", 8_130_700_000_000),
        ("0.15823", 15_823_000),
        ("-0.00351", -351_000),
        ("0.00000001", 1),
        ("3", 300_000_000),
        ("12345678.12345678", 1_234_567_812_345_678),  # a float would be off in the 8th decimal
        ("0", 0),
    ],
)
def test_parse_is_exact(text, units):
    """Decimal strings become integers of 1e-8 units with no rounding anywhere."""
    assert fixed.parse(text) == units


@pytest.mark.parametrize(
    "text", ["", "-", ".5", "1.", "1.123456789", "1e5", " 1", "1,5", "0x10", "--1", "١"]
)
def test_parse_refuses_what_is_not_such_a_decimal(text):
    """Anything else is a FixedError (a ValueError) quoting the text."""
    with pytest.raises(ValueError, match="at most 8 decimals") as info:
        fixed.parse(text)
    assert isinstance(info.value, fixed.FixedError)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (8_130_700_000_000, "81307.0"),
        (15_823_000, "0.15823"),
        (0, "0.0"),
        (-351_000, "-0.00351"),
        (1, "0.00000001"),
        (-100_000_000, "-1.0"),
        (10**30, "10000000000000000000000.0"),
    ],
)
def test_format_is_canonical(units, text):
    """At least one decimal, no trailing zeros beyond it, no exponent, exact."""
    assert fixed.format(units) == text
    assert fixed.parse(text) == units


def test_canonical_rewrites_node_strings():
    """The node's variants come back in the exchange's form."""
    assert [fixed.canonical(t) for t in ("1.50", "3", "0.000", "-2.10", "007.5")] == [
        "1.5",
        "3.0",
        "0.0",
        "-2.1",
        "7.5",
    ]


def test_parse_cached_remembers_good_text_only_and_stays_bounded(monkeypatch):
    """The memo answers repeats, never keeps bad text, and empties itself when full."""
    monkeypatch.setattr(fixed, "MEMO", {})
    monkeypatch.setattr(fixed, "MEMO_MAX", 4)
    assert fixed.parse_cached("1.5") == 150_000_000
    assert fixed.MEMO == {"1.5": 150_000_000}
    with pytest.raises(fixed.FixedError):
        fixed.parse_cached("1.5.0")
    assert "1.5.0" not in fixed.MEMO
    for text in ("2.0", "3.0", "4.0", "5.0", "6.0"):
        fixed.parse_cached(text)
    assert len(fixed.MEMO) <= 4 and fixed.MEMO["6.0"] == 600_000_000

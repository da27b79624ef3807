"""Node ISO times -> epoch ms: exact, truncated, and clear about bad input."""

from __future__ import annotations

import calendar

import pytest

from orderbook.book.times import iso_to_ms


def test_fraction_digits_truncate_to_milliseconds():
    """0-9 fractional digits become epoch ms, truncated (never rounded)."""
    assert iso_to_ms("2026-04-30T20:46:43.304461819") == 1777582003304
    assert iso_to_ms("2026-04-30T20:46:43.3") == 1777582003300
    assert iso_to_ms("2026-04-30T20:46:43.9999") == 1777582003999
    assert iso_to_ms("2026-04-30T20:46:43") == 1777582003000


def test_agrees_with_calendar_across_month_and_year_ends():
    """The cached per-minute base gives the same as calendar.timegm at boundaries."""
    for text, parts in [
        ("2024-02-29T23:59:59.5", (2024, 2, 29, 23, 59, 59)),
        ("2025-12-31T23:59:59", (2025, 12, 31, 23, 59, 59)),
        ("2026-01-01T00:00:00.001", (2026, 1, 1, 0, 0, 0)),
    ]:
        base = calendar.timegm((*parts, 0, 0, 0)) * 1000
        assert iso_to_ms(text) == base + int((text.split(".") + ["0"])[1].ljust(3, "0")[:3])


@pytest.mark.parametrize(
    "text",
    [
        "20:46",
        "2026-04-30 20:46:43",  # space, not T
        "2026-04-30T20:46:43Z",  # a zone: the node's times are naive
        "2026-04-30T20:46:43.1234567890",  # ten fractional digits
        "2026-13-01T00:00:00",
        "2026-04-30T24:00:00",
        "",
    ],
)
def test_bad_times_raise_naming_the_text(text):
    """Anything else is a ValueError that quotes the text."""
    with pytest.raises(ValueError, match="not a naive ISO-8601 time") as info:
        iso_to_ms(text)
    assert repr(text) in str(info.value)

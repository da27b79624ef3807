"""Exact fixed point: prices and sizes as integers in units of 1e-8.

The node writes decimal strings ("81307.0", "0.15823"); clients expect them
back in the exchange's canonical form: at least one decimal place, no exponent,
no trailing zeros beyond the first decimal. Floats never appear: f64 scaling is
wrong in the 8th decimal above 1e7.
"""

from __future__ import annotations

SCALE = 100_000_000
DECIMALS = 8
_DIGITS = frozenset("0123456789")
MEMO: dict[str, int] = {}  # text -> parse(text), see parse_cached
MEMO_MAX = 1 << 18


class FixedError(ValueError):
    """A string that is not a decimal with at most 8 fractional digits."""


def parse(text: str) -> int:
    """Parse a decimal string into units of 1e-8, exactly.

    >>> parse("81307.0"), parse("0.15823"), parse("-0.00351")
    (8130700000000, 15823000, -351000)
    """
    negative = text.startswith("-")
    body = text[1:] if negative else text
    whole, dot, frac = body.partition(".")
    if (
        not whole
        or len(frac) > DECIMALS
        or (dot and not frac)
        or not _DIGITS.issuperset(whole)
        or not _DIGITS.issuperset(frac)
    ):
        raise FixedError(f"not a decimal with at most {DECIMALS} decimals: {text!r}")
    value = int(whole) * SCALE + (int(frac) * 10 ** (DECIMALS - len(frac)) if frac else 0)
    return -value if negative else value


def parse_cached(text: str) -> int:
    """:func:`parse` with a bounded memo: the node repeats prices and sizes a lot.

    Hot loops may look in :data:`MEMO` first and call this only on a miss.
    The memo is emptied when it reaches ``MEMO_MAX`` entries; bad text is
    never kept.
    """
    value = MEMO.get(text)
    if value is None:
        value = parse(text)
        if len(MEMO) >= MEMO_MAX:
            MEMO.clear()
        MEMO[text] = value
    return value


def format(value: int) -> str:  # noqa: A001 - mirrors parse()
    """Format units of 1e-8 in canonical form.

    >>> format(8130700000000), format(15823000), format(0), format(-351000)
    ('81307.0', '0.15823', '0.0', '-0.00351')
    """
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), SCALE)
    if not frac:
        return f"{sign}{whole}.0"
    return f"{sign}{whole}.{frac:08d}".rstrip("0")


def canonical(text: str) -> str:
    """Re-format a decimal string canonically ("1.50" -> "1.5", "3" -> "3.0")."""
    return format(parse(text))

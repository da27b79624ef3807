"""Node times: naive UTC ISO-8601 strings -> epoch milliseconds, exactly.

The node writes block times and status times as ``"2026-04-30T20:46:43.304461819"``
(no zone, up to nine fractional digits). Clients get epoch milliseconds,
truncated, computed with integers only.
"""

from __future__ import annotations

import calendar
import re
from functools import lru_cache

_ISO_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\Z")


@lru_cache(maxsize=64)
def _minute_ms(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)) * 1000


def iso_to_ms(text: str) -> int:
    """Epoch ms of a node time: naive UTC ISO-8601, up to 9 fractional digits, truncated.

    Integer arithmetic only: ``"2026-04-30T20:46:43.304461819"`` is exactly
    ``1777582003304``. Block times and status times both come through here.
    Raises ValueError naming the text when it is not such a time.
    """
    match = _ISO_TIME.match(text)
    if match is None:
        raise ValueError(f"not a naive ISO-8601 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"not a naive ISO-8601 time: {text!r}")
    fraction = match.group(7) or ""
    millis = int((fraction + "000")[:3])
    return _minute_ms(year, month, day, hour, minute) + second * 1000 + millis

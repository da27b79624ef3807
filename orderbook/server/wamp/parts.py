"""An L4 snapshot split into parts for WAMP progressive call results.

Every part is a whole Snapshot object of the same block (``coin``, ``time``,
``height``) whose ``levels`` hold a run of the orders: concatenating every
part's bids, then asks, in order gives the full levels in queue order. A part
is encoded once and kept small enough that the RESULT carrying it stays within
:data:`MAX_MESSAGE_BYTES` (Node's built-in WebSocket refuses a compressed
message that inflates past 4 MB; Python's ``websockets`` refuses 1 MiB).
"""

from __future__ import annotations

from typing import Any

import msgspec

MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: the largest RESULT a part goes out in
# Room for the RESULT (or YIELD) around a part: [50,<id up to 2^53>,{"progress":true},[...]]
MESSAGE_OVERHEAD = 64
MAX_PART_BYTES = MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD
_encoder = msgspec.json.Encoder()


def snapshot_parts(snapshot: dict[str, Any], limit: int = MAX_PART_BYTES) -> list[bytes]:
    """``snapshot`` as encoded parts of at most ``limit`` bytes each (at least one part).

    An order larger than ``limit`` on its own (never seen: orders are ~300
    bytes) still goes out, alone in its part.
    """
    head = _encoder.encode({key: snapshot[key] for key in ("coin", "time", "height")})
    head = head[:-1] + b',"levels":[['
    empty = len(head) + len(b"],[]]}")
    parts: list[bytes] = []
    current: tuple[list[bytes], list[bytes]] = ([], [])
    size = empty
    for index, side in enumerate(snapshot["levels"]):
        for order in _encoded_orders(side):
            cost = len(order) + 1  # and its comma
            if size + cost - 1 > limit and (current[0] or current[1]):
                parts.append(_part(head, current))
                current, size = ([], []), empty
            current[index].append(order)
            size += cost
    parts.append(_part(head, current))
    return parts


def _encoded_orders(orders: list[Any]) -> list[bytes]:
    """Each order's JSON (one C call: JSON never holds a raw newline)."""
    if not orders:
        return []
    return _encoder.encode_lines(orders).split(b"\n")[:-1]


def _part(head: bytes, levels: tuple[list[bytes], list[bytes]]) -> bytes:
    return head + b",".join(levels[0]) + b"],[" + b",".join(levels[1]) + b"]]}"

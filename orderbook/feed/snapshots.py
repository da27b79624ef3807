"""Shared L4 snapshots: built once, replayed with the Updates since.

An L4 snapshot of a big coin is MBs (BTC: ~16 MB, 51k orders) and costs
~100 ms to encode and compress. A new l4Book subscriber does not need one of
the current height: a snapshot of height H0 followed by the Updates of
H0+1 … H is the same stream. So a coin's snapshot is built once and kept for
``MAX_AGE_BLOCKS`` blocks together with the encoded Updates of every block
since; every subscriber in that time gets the same messages (encoded and
compressed once per envelope and window size). A subscribe/unsubscribe loop
costs at most one build per coin every ``MAX_AGE_BLOCKS`` blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.subscriptions import Subscription

MAX_AGE_BLOCKS = 30  # ~2 s at mainnet's 14.5 blocks/s


class Wrapper(Protocol):
    """An Envelope (see orderbook.feed.registry)."""

    def wrap(self, sub: Subscription, data: bytes, part: str | None) -> OutgoingMessage | None: ...


class SharedSnapshot:
    """One coin's snapshot (inner ``data`` bytes) and the Updates data since."""

    __slots__ = ("sub", "height", "snapshot", "updates", "_messages")

    def __init__(self, sub: Subscription, height: int, snapshot: bytes) -> None:
        self.sub = sub
        self.height = height
        self.snapshot = snapshot
        self.updates: list[bytes] = []
        self._messages: dict[Any, list[OutgoingMessage]] = {}

    def messages(self, envelope: Wrapper) -> list[OutgoingMessage]:
        """Snapshot then every Updates since, wrapped by ``envelope`` (each once)."""
        built = self._messages.setdefault(envelope, [])
        if not built:
            first = envelope.wrap(self.sub, self.snapshot, "Snapshot")
            if first is None:
                return []
            built.append(first)
        for data in self.updates[len(built) - 1 :]:
            message = envelope.wrap(self.sub, data, "Updates")
            if message is not None:
                built.append(message)
        return built


class Snapshots:
    """The shared snapshots of the coins l4Book subscribers asked for lately."""

    def __init__(self, build: Callable[[Subscription], bytes]) -> None:
        self._build = build
        self._by_coin: dict[str, SharedSnapshot] = {}

    def get(self, sub: Subscription, height: int) -> SharedSnapshot:
        """The shared snapshot of ``sub.coin`` (built now when none is fresh)."""
        shared = self._by_coin.get(sub.coin or "")
        if shared is None or shared.height + len(shared.updates) != height:
            shared = SharedSnapshot(sub, height, self._build(sub))
            self._by_coin[sub.coin or ""] = shared
        return shared

    def coins(self) -> list[str]:
        return list(self._by_coin)

    def block_applied(self, height: int, update: Callable[[str], bytes]) -> None:
        """Record each kept coin's Updates data of block ``height`` (``update(coin)``)."""
        for coin, shared in list(self._by_coin.items()):
            if height - shared.height >= MAX_AGE_BLOCKS:
                del self._by_coin[coin]
            else:
                shared.updates.append(update(coin))

    def forget(self, coins: set[str] | None = None) -> None:
        """Drop the snapshots of ``coins`` (all when None): their books were replaced."""
        if coins is None:
            self._by_coin.clear()
        else:
            for coin in coins:
                self._by_coin.pop(coin, None)

"""The server's callable procedures (the dealer role), for our own WAMP sessions
and for the Crossbar publisher's registrations."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from orderbook.feed import messages
from orderbook.feed.subscriptions import Subscription, SubscriptionError, parse_l2
from orderbook.server.wamp.errors import INVALID_ARGUMENT, NO_SUCH_PROCEDURE, WampError
from orderbook.server.wamp.parts import snapshot_parts

SNAPSHOT = "orderbook.l4book.snapshot"


class Procedures:
    """The server's callable procedures (the dealer role).

    Each takes positional or keyword arguments as documented in ws-api.md and
    returns the JSON-ready value; bad arguments raise WampError invalid_argument.
    """

    def __init__(
        self, books: Any, status: Callable[[], dict[str, Any]], known_coin: Callable[[str], bool]
    ) -> None:
        self.books = books
        self.status = status
        self.known_coin = known_coin
        self.table: dict[str, Callable[..., Any]] = {
            "orderbook.l2book.get": self.l2book_get,
            "orderbook.bbo.get": self.bbo_get,
            SNAPSHOT: self.l4book_snapshot,
            "orderbook.coins": self.coins,
            "orderbook.status": self.server_status,
        }
        # The last snapshot split into parts, shared by every caller at that block.
        self._parts: tuple[tuple[str, int, int], list[bytes]] | None = None

    def call(self, procedure: str, args: list[Any] | None, kwargs: dict[str, Any] | None) -> Any:
        """Run ``procedure``; WampError for unknown procedures and bad arguments."""
        function = self.table.get(procedure)
        if function is None:
            raise WampError(NO_SUCH_PROCEDURE, f"no procedure {procedure!r}")
        try:
            inspect.signature(function).bind(*(args or ()), **(kwargs or {}))
        except TypeError as exc:
            raise WampError(INVALID_ARGUMENT, f"{procedure}: {exc}") from None
        return function(*(args or ()), **(kwargs or {}))

    def call_in_parts(
        self, procedure: str, args: list[Any] | None, kwargs: dict[str, Any] | None
    ) -> list[bytes] | None:
        """Encoded result parts for a caller that asked ``receive_progress`` (the last
        is the final result); None for a procedure that answers in one result."""
        if procedure != SNAPSHOT:
            return None
        snapshot = self.call(procedure, args, kwargs)
        key = (snapshot["coin"], snapshot["height"], id(snapshot["levels"]))
        if self._parts is None or self._parts[0] != key:
            self._parts = (key, snapshot_parts(snapshot))
        return self._parts[1]

    def _ready_coin(self, coin: Any) -> str:
        if not isinstance(coin, str) or not coin:
            raise WampError(INVALID_ARGUMENT, f"coin must be a non-empty string, got {coin!r}")
        if self.books.height is None:
            raise WampError(INVALID_ARGUMENT, "the book is not ready yet (see orderbook.status)")
        if not self.known_coin(coin):
            raise WampError(INVALID_ARGUMENT, f"unknown coin {coin!r}")
        return coin

    def l2book_get(
        self, coin: Any, nSigFigs: Any = None, mantissa: Any = None, nLevels: Any = None
    ) -> Any:
        """``orderbook.l2book.get(coin, nSigFigs=None, mantissa=None, nLevels=20)``."""
        request = {"type": "l2Book", "coin": coin, "nSigFigs": nSigFigs}
        request.update(mantissa=mantissa, nLevels=nLevels)
        try:
            sub = parse_l2(request)
        except SubscriptionError as exc:
            raise WampError(
                INVALID_ARGUMENT, str(exc).replace("subscription", "arguments")
            ) from None
        self._ready_coin(sub.coin)
        return messages.view_data(self.books, sub)

    def bbo_get(self, coin: Any) -> Any:
        """``orderbook.bbo.get(coin)``."""
        return messages.view_data(self.books, Subscription("bbo", self._ready_coin(coin)))

    def l4book_snapshot(self, coin: Any) -> Any:
        """``orderbook.l4book.snapshot(coin)``: the Snapshot object (with height)."""
        return self.books.l4_snapshot(self._ready_coin(coin))

    def coins(self) -> list[str]:
        """``orderbook.coins()``."""
        return sorted(self.books.coins()) if self.books.height is not None else []

    def server_status(self) -> dict[str, Any]:
        """``orderbook.status()``: the health document."""
        return self.status()

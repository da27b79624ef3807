"""Who hears about the live book: the listener interface and its fan-out."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.logger import Logger

from orderbook.book.books import BlockResult


class BookListener(Protocol):
    """Who hears about the live book (the feed, the Crossbar publisher)."""

    def block_applied(self, result: BlockResult) -> None: ...

    def trades_paired(self, trades: dict[str, list[dict]]) -> None: ...  # coin -> trades

    def books_reset(self, coins: set[str]) -> None: ...  # fresh state for these coins

    def state_changed(self, status: dict) -> None: ...  # the status() document


class BookListeners:
    """Hand each ingest event to every listener in turn; one failing never starves the rest."""

    _log = Logger()

    def __init__(self, listeners: list[Any]) -> None:
        self.listeners = list(listeners)

    def add(self, listener: Any) -> None:
        self.listeners.append(listener)

    def block_applied(self, result: Any) -> None:
        self._each("block_applied", result)

    def trades_paired(self, trades: dict[str, list[dict[str, Any]]]) -> None:
        self._each("trades_paired", trades)

    def books_reset(self, coins: set[str]) -> None:
        self._each("books_reset", coins)

    def state_changed(self, status: dict[str, Any]) -> None:
        self._each("state_changed", status)

    def _each(self, method: str, argument: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, method)(argument)
            except Exception:
                self._log.failure("{listener}.{method} failed", listener=listener, method=method)

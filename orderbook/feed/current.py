"""The current content of each subscribed view, encoded once per height.

:class:`CurrentViews` answers "what does this view hold now" for subscribes
and for the registry's fan-out: the channel ``data`` bytes (one encode per
view and height), the wrapped message per envelope kind (shared by every
subscriber of that view in that height), and whether a block changed what a
subscriber of a snapshot-type view sees (l2Book levels, bbo, mids; not its
time or height).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orderbook.book.books import BlockResult, Books
from orderbook.feed import messages
from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.subscriptions import Subscription

if TYPE_CHECKING:
    from orderbook.feed.subscribers import Envelope


class CurrentViews:
    """Per-height caches of the views' data and messages; last published content."""

    def __init__(self, books: Books, status: Callable[[], dict[str, Any]]) -> None:
        self.books = books
        self.status = status  # the ingest status document (``status`` channel)
        self._data: dict[tuple[Subscription, str | None], bytes] = {}  # this height's bytes
        self._messages: dict[tuple[Subscription, Envelope], OutgoingMessage | None] = {}
        self._height: int | None = None
        self._last: dict[Subscription, Any] = {}  # last published view content

    def message(self, sub: Subscription, envelope: Envelope) -> OutgoingMessage | None:
        """The current view of ``sub`` wrapped by ``envelope``, shared within a height."""
        self._check_height()
        key = (sub, envelope)
        if key in self._messages:
            return self._messages[key]
        part = "Snapshot" if sub.channel == "l4Book" else None
        message = envelope.wrap(sub, self.data(sub), part)
        if sub.channel != "status" and getattr(envelope, "shareable", False):
            self._messages[key] = message
        return message

    def data(self, sub: Subscription) -> bytes:
        """The encoded current ``data`` of a snapshot-type view (inner for l4Book)."""
        self._check_height()
        key = (sub, None)
        data = self._data.get(key)
        if data is None:
            if sub.channel == "status":
                return messages.encode(self.status())
            view = messages.view_data(self.books, sub)
            if sub.channel == "l4Book":
                view = view["Snapshot"]
            else:
                self._last[sub] = _content(sub, view)
            data = self._data[key] = messages.encode(view)
        return data

    def changed(self, sub: Subscription, result: BlockResult) -> bool:
        """True when ``result`` changed what subscribers of l2Book/bbo/allMids ``sub`` see."""
        channel = sub.channel
        if channel == "l2Book":
            touched = sub.coin in result.changed
        elif channel == "bbo":
            touched = sub.coin in result.bbo_changed or sub.coin in result.changed
        elif channel == "allMids":
            touched = result.mids_changed
        else:
            return False
        if not touched:
            return False
        before = self._last.get(sub)
        return before is None or _content(sub, messages.view_data(self.books, sub)) != before

    def forget(self, sub: Subscription) -> None:
        """The next content of ``sub`` counts as changed (no subscribers, or a reset)."""
        self._last.pop(sub, None)

    def clear(self) -> None:
        """Drop this height's caches (the book was reset)."""
        self._data.clear()
        self._messages.clear()

    def _check_height(self) -> None:
        if self._height != self.books.height:
            self.clear()
            self._height = self.books.height


def _content(sub: Subscription, view: dict[str, Any]) -> Any:
    """The part of a view whose change is worth a message (not its time/height)."""
    if sub.channel == "l2Book":
        return view["levels"]
    if sub.channel == "bbo":
        return view["bbo"]
    return view.get("mids", view)

"""The listener fan-out: every listener hears every event, failures isolated."""

from __future__ import annotations

from orderbook.node.listeners import BookListeners


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail = fail

    def block_applied(self, result):
        self.calls.append(("block", result))
        if self.fail:
            raise RuntimeError("boom")

    def trades_paired(self, trades):
        self.calls.append(("trades", trades))

    def books_reset(self, coins):
        self.calls.append(("reset", coins))

    def state_changed(self, status):
        self.calls.append(("state", status))


def test_book_listeners_isolate_failures():
    """A listener that raises is logged; the next one still hears the event."""
    first, second = Recorder(fail=True), Recorder()
    listeners = BookListeners([first])
    listeners.add(second)
    listeners.block_applied("r")
    listeners.trades_paired({"BTC": []})
    listeners.books_reset({"BTC"})
    listeners.state_changed({"state": "ready"})
    assert second.calls == [
        ("block", "r"),
        ("trades", {"BTC": []}),
        ("reset", {"BTC"}),
        ("state", {"state": "ready"}),
    ]

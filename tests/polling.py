"""Waiting on the reactor for a condition, with a deadline (never a fixed sleep)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import task


async def until(
    condition: Callable[[], Any],
    timeout: float = 5.0,
    what: str = "condition",
    reactor: Any = None,
) -> None:
    """Poll ``condition`` every 10 ms on the reactor; fail after ``timeout`` seconds."""
    if reactor is None:
        from twisted.internet import reactor
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)

"""The server's /health over the soak: time per state, and stale stretches while the node writes.

``stale`` means no block for ``stall_timeout_s``. The only node stall the soak
injects lasts a few seconds, so a longer stale stretch while the simulator
keeps writing means the server stopped reading or assembling blocks; the
health documents of such a stretch (stream heights, reason) are kept for the
report.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HealthWatch:
    """Samples of /health: (monotonic time, document)."""

    stale_limit_s: float
    seconds_in: Counter = field(default_factory=Counter)
    stretches: list[dict[str, Any]] = field(default_factory=list)  # long stale ones
    _last: float | None = None
    _stale_since: float | None = None
    _stale_docs: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, document: dict[str, Any]) -> None:
        now = time.monotonic()
        state = document.get("state", "no answer")
        if self._last is not None:
            self.seconds_in[state] += now - self._last
        self._last = now
        if state == "stale":
            if self._stale_since is None:
                self._stale_since, self._stale_docs = now, []
            if len(self._stale_docs) < 3:
                self._stale_docs.append(document)
        elif self._stale_since is not None:
            self._end_stretch(now, document)

    def _end_stretch(self, now: float, document: dict[str, Any]) -> None:
        lasted = now - self._stale_since
        if lasted > self.stale_limit_s:
            self.stretches.append(
                {"seconds": round(lasted, 1), "stale": self._stale_docs, "then": document}
            )
        self._stale_since = None

    def finish(self) -> None:
        if self._stale_since is not None:
            self._end_stretch(time.monotonic(), {"state": "still stale at the end"})

    def summary(self) -> dict[str, Any]:
        return {state: round(seconds, 1) for state, seconds in self.seconds_in.most_common()}

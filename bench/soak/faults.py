"""The node faults of a soak, switched on through the simulator's ``POST /control``.

The schedule names every fault the issue asks for. A fault the running
simulator does not know (answer 400 ``unknown fault``) is recorded as
missing, so one soak runs against whatever simulator exists.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def schedule(stall_s: float, restart_s: float) -> list[list[dict[str, Any]]]:
    """One round of faults; each step is switched on at once (a failing snapshot + a gap)."""
    return [
        [{"fault": "gap"}],
        [{"fault": "garbage", "stream": "diffs"}],
        [{"fault": "truncated", "stream": "statuses"}],
        [{"fault": "garbage", "stream": "fills"}],
        [{"fault": "stall", "seconds": stall_s}],
        [{"fault": "absurd_height", "stream": "diffs", "ahead": 1_000_000}],
        [{"fault": "delete_old"}],
        [{"fault": "truncated", "stream": "fills"}],
        [{"fault": "snapshot_error", "status": 500, "count": 1}, {"fault": "gap"}],
        [{"fault": "restart", "seconds": restart_s}],
        [{"fault": "absurd_height", "stream": "statuses", "ahead": -1_000_000}],
        [{"fault": "snapshot_timeout", "count": 1}, {"fault": "gap"}],
        [{"fault": "truncated", "stream": "diffs"}],
        [{"fault": "snapshot_truncated", "count": 1}, {"fault": "gap"}],
        [{"fault": "absurd_height", "stream": "fills", "ahead": 1_000_000}],
        [{"fault": "garbage", "stream": "statuses"}],
    ]


def label(spec: dict[str, Any]) -> str:
    """``truncated:fills``, ``gap``, …"""
    stream = spec.get("stream")
    return f"{spec['fault']}:{stream}" if stream else spec["fault"]


@dataclass
class Faults:
    """Switches faults on and remembers which worked and which the simulator lacks."""

    control_url: str
    injected: Counter = field(default_factory=Counter)
    missing: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def inject(self, step: list[dict[str, Any]]) -> None:
        """Blocking (run it in a thread): switch on every fault of one step."""
        for spec in step:
            if spec["fault"] in self.missing:
                continue
            status, answer = _post(self.control_url, spec)
            if status == 200 and answer.get("ok") is True:
                self.injected[label(spec)] += 1
            elif status == 400 and "unknown fault" in str(answer.get("error")):
                self.missing.add(spec["fault"])
            else:
                self.errors.append(f"{spec}: HTTP {status} {answer}")

    def clear(self) -> None:
        _post(self.control_url, {"fault": "clear"})


def _post(url: str, value: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, json.dumps(value).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")

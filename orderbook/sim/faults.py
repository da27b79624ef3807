"""The simulator's fault switchboard: what a spec sent to ``POST /control`` switches on.

Fault switches (:meth:`FaultSwitchboard.switch`, the service's ``fault``)::

    {"fault": "stall", "seconds": 3}          no blocks for 3 s (the node hangs)
    {"fault": "gap"}                          block N+1 is made but never written
    {"fault": "garbage", "stream": "diffs"}   a non-JSON line before the next line
    {"fault": "truncated", "stream": "statuses"}  the next line is cut short
    {"fault": "absurd_height", "stream": "diffs", "ahead": 1000000}
                                              the next line's block number is far off
    {"fault": "delete_old"}                   delete all hourly files but the current ones
    {"fault": "restart", "seconds": 0}        the node dies mid-line while writing the
                                              next block, pauses, then appends after
                                              the partial line; book and heights go on
    {"fault": "snapshot_error", "status": 500, "count": 1}
    {"fault": "snapshot_timeout", "count": 1} the next snapshot request never gets an answer
    {"fault": "snapshot_truncated", "count": 1}  the snapshot file is cut short, answer 200
    {"fault": "clear"}                        drop pending faults, end a stall

``stream`` is one of statuses, diffs, fills (default diffs). A bad spec is a
ValueError naming the fault, the key and the value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from orderbook.sim.writer import ABSURD_AHEAD, STREAMS

if TYPE_CHECKING:
    from orderbook.sim.service import SimulatorService

FAULTS = (
    "stall",
    "gap",
    "garbage",
    "truncated",
    "absurd_height",
    "delete_old",
    "restart",
    "snapshot_error",
    "snapshot_timeout",
    "snapshot_truncated",
    "clear",
)


class FaultSwitchboard:
    """Switches one fault on in the service's block loop, writer or info server."""

    _log = Logger()

    def __init__(self, service: SimulatorService) -> None:
        self.service = service

    def switch(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Switch on one fault (see the module docstring); raises ValueError if bad."""
        name = spec.get("fault")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (expected one of {', '.join(FAULTS)})")
        result: dict[str, Any] = {"ok": True, "fault": name, "height": self.service.height}
        getattr(self, f"_fault_{name}")(spec, result)
        self._log.info("fault {fault} at height {height}", fault=name, height=self.service.height)
        return result

    def _fault_stall(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.service.stall(_number(spec, "seconds", 3.0))

    def _fault_gap(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.service.writer.gap()
        result["skipped"] = self.service.height + 1

    def _fault_garbage(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.service.writer.garbage(_stream(spec))

    def _fault_truncated(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.service.writer.truncate(_stream(spec))

    def _fault_delete_old(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        result["deleted"] = [str(p) for p in self.service.writer.delete_old()]

    def _fault_absurd_height(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        ahead = spec.get("ahead", ABSURD_AHEAD)
        if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead == 0:
            raise ValueError(
                f"fault 'absurd_height': ahead must be a non-zero integer, got {ahead!r}"
            )
        self.service.writer.absurd_height(_stream(spec), ahead)

    def _fault_restart(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        """Die mid-line while writing the next block, pause ``seconds``, then append again."""
        seconds = _number(spec, "seconds", 0.0)
        block, cut = self.service.crash_next_block()
        result["cut_height"] = block.height
        result["cut_stream"] = cut[0] if cut else None
        result["height"] = self.service.height
        if seconds:
            self.service.stall(seconds)

    def _fault_snapshot_error(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        faults = self.service.snapshot_faults
        faults.error_status = int(_number(spec, "status", 500, low=400))
        faults.errors = int(_number(spec, "count", 1, low=1))

    def _fault_snapshot_timeout(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.service.snapshot_faults.timeouts = int(_number(spec, "count", 1, low=1))

    def _fault_snapshot_truncated(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.service.snapshot_faults.truncated = int(_number(spec, "count", 1, low=1))

    def _fault_clear(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self.service.resume()
        faults = self.service.snapshot_faults
        faults.errors = faults.timeouts = faults.truncated = 0
        faults.release()
        self.service.writer.clear_faults()


def _number(spec: dict[str, Any], key: str, default: float, low: float = 0) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ValueError(
            f"fault {spec.get('fault')!r}: {key} must be a number >= {low}, got {value!r}"
        )
    return value


def _stream(spec: dict[str, Any]) -> str:
    stream = spec.get("stream", "diffs")
    if stream not in STREAMS:
        raise ValueError(
            f"fault {spec['fault']!r}: stream must be statuses, diffs or fills, got {stream!r}"
        )
    return stream

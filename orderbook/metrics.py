"""A small in-process metrics registry rendered as Prometheus text.

Counters and gauges are plain attributes updated from the reactor thread
(ingestion, fan-out); ``/metrics`` renders them on request. Writing the ~80
lines here beats a dependency: prometheus_client serves from a thread pool,
which would force locking around every hot-path increment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

LabelValues = tuple[str, ...]


def escape_label(value: str) -> str:
    """A label value as Prometheus text quotes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metric:
    """One metric family: a name, a help line, label names and values per label set."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.help_text = help_text
        self.labels = tuple(labels)
        self.values: dict[LabelValues, float] = {} if self.labels else {(): 0}

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} {self.kind}"]
        for label_values, value in sorted(self.values.items()):
            lines.append(f"{self.name}{self._labels(label_values)} {render_number(value)}")
        return lines

    def _labels(self, values: LabelValues) -> str:
        if not values:
            return ""
        pairs = ",".join(
            f'{k}="{escape_label(v)}"' for k, v in zip(self.labels, values, strict=True)
        )
        return "{" + pairs + "}"

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0)


class Counter(Metric):
    """A monotonically increasing count."""

    kind = "counter"

    def inc(self, amount: float = 1, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount


class Gauge(Metric):
    """A value that goes up and down, or is computed when scraped."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Iterable[str] = (),
        read: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.read = read

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def refresh(self) -> None:
        """Read a computed gauge's value now."""
        if self.read is not None:
            self.values[()] = self.read()

    def render(self) -> list[str]:
        self.refresh()
        return super().render()


def render_number(value: float) -> str:
    """A sample value: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


M = TypeVar("M", bound=Metric)


class Metrics:
    """Every metric of one server, in registration order."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Iterable[str] = (),
        read: Callable[[], float] | None = None,
    ) -> Gauge:
        return self._add(Gauge(name, help_text, labels, read))

    def _add(self, metric: M) -> M:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self.metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        lines: list[str] = []
        for metric in self.metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"

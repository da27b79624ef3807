"""One server, several processes: the workers' health and metrics combined.

Every worker reports its health document and its metric samples to the
parent once a second; the parent combines them and sends the whole-server
view back, so ``/health`` and ``/metrics`` describe the server whichever
worker answers. Metrics keep one family per name with a ``worker`` label on
every sample; health is the worst worker's state, with a row per worker.
"""

from __future__ import annotations

from typing import Any

from orderbook.metrics import Gauge, Metrics, escape_label, render_number

Family = dict[str, Any]  # {"name", "kind", "help", "labels": [...], "samples": [[values, v]]}

STATE_RANK = {"ready": 0, "stale": 1, "resyncing": 2, "bootstrapping": 3, "initializing": 4}


def families(metrics: Metrics) -> list[Family]:
    """A worker's metric samples, ready to send as JSON."""
    out = []
    for metric in metrics.metrics.values():
        if isinstance(metric, Gauge):
            metric.refresh()  # computed gauges are read on scrape
        out.append(
            {
                "name": metric.name,
                "kind": metric.kind,
                "help": metric.help_text,
                "labels": list(metric.labels),
                "samples": [[list(k), v] for k, v in sorted(metric.values.items())],
            }
        )
    return out


def merged_exposition(reports: dict[int, list[Family]], own: Metrics | None = None) -> str:
    """Prometheus text for every worker: each family once, samples labelled by worker."""
    order: list[str] = []
    merged: dict[str, tuple[Family, list[str]]] = {}
    for worker in sorted(reports):
        for family in reports[worker]:
            name = family["name"]
            if name not in merged:
                order.append(name)
                merged[name] = (family, [])
            labels = ["worker", *family["labels"]]
            for values, value in family["samples"]:
                pairs = ",".join(
                    f'{k}="{escape_label(str(v))}"'
                    for k, v in zip(labels, [str(worker), *values], strict=True)
                )
                merged[name][1].append(f"{name}{{{pairs}}} {render_number(value)}")
    lines: list[str] = []
    for name in order:
        family, samples = merged[name]
        lines += [f"# HELP {name} {family['help']}", f"# TYPE {name} {family['kind']}", *samples]
    text = "\n".join(lines) + "\n" if lines else ""
    return text + (own.render() if own is not None else "")


def combined_health(reports: dict[int, dict[str, Any]], expected: int) -> dict[str, Any]:
    """The worst worker's document, with connection totals and a row per worker."""
    if not reports:
        return {"state": "initializing", "reason": "no worker has reported yet", "workers": []}
    worst = max(reports, key=lambda w: STATE_RANK.get(reports[w].get("state"), 5))
    document = dict(reports[worst])
    document.pop("pid", None)
    if len(reports) < expected:
        document["state"] = "initializing" if document["state"] == "ready" else document["state"]
        document["reason"] = f"{len(reports)} of {expected} workers reporting"
    document["connections"] = sum(r.get("connections", 0) for r in reports.values())
    document["subscriptions"] = sum(r.get("subscriptions", 0) for r in reports.values())
    document["workers"] = [
        {
            "worker": worker,
            "pid": reports[worker].get("pid"),
            "state": reports[worker].get("state"),
            "height": reports[worker].get("height"),
            "connections": reports[worker].get("connections", 0),
        }
        for worker in sorted(reports)
    ]
    return document

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
    """Prometheus text for every worker: each family once, samples labelled by worker.

    The parent's own families follow unlabelled; one the workers also have
    (the access reloads: every process reads the tokens file) joins theirs
    with ``worker="parent"``, so no family is declared twice.
    """
    sources: list[tuple[str, list[Family]]] = [(str(w), reports[w]) for w in sorted(reports)]
    known = {family["name"] for _, found in sources for family in found}
    parents = families(own) if own is not None else []
    sources.append(("parent", [f for f in parents if f["name"] in known]))
    order: list[str] = []
    merged: dict[str, tuple[Family, list[str]]] = {}
    for worker, found in sources:
        for family in found:
            name = family["name"]
            if name not in merged:
                order.append(name)
                merged[name] = (family, [])
            merged[name][1].extend(_labelled_samples(family, worker))
    lines: list[str] = []
    for name in order:
        family, samples = merged[name]
        lines += [f"# HELP {name} {family['help']}", f"# TYPE {name} {family['kind']}", *samples]
    for family in parents:
        if family["name"] not in known:
            lines += own.metrics[family["name"]].render()  # type: ignore[union-attr]
    return "\n".join(lines) + "\n" if lines else ""


def _labelled_samples(family: Family, worker: str) -> list[str]:
    labels = ["worker", *family["labels"]]
    samples = []
    for values, value in family["samples"]:
        pairs = ",".join(
            f'{k}="{escape_label(str(v))}"' for k, v in zip(labels, [worker, *values], strict=True)
        )
        samples.append(f"{family['name']}{{{pairs}}} {render_number(value)}")
    return samples


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

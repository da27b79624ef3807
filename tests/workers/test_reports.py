"""The whole server's /health and /metrics from the workers' reports."""

from __future__ import annotations

from orderbook.metrics import Metrics
from orderbook.workers.reports import combined_health, families, merged_exposition


def worker_metrics(connections: int, errors: dict[str, int]) -> Metrics:
    metrics = Metrics()
    metrics.gauge("orderbook_ws_connections", "Open connections", read=lambda: connections)
    counter = metrics.counter("orderbook_errors_total", "Errors by kind", ["kind"])
    for kind, count in errors.items():
        counter.inc(count, kind)
    return metrics


def test_every_family_once_with_a_worker_label_on_each_sample():
    text = merged_exposition(
        {
            0: families(worker_metrics(3, {"bad": 1})),
            1: families(worker_metrics(5, {"bad": 2, "late": 1})),
        }
    )
    lines = text.splitlines()
    assert lines.count("# TYPE orderbook_ws_connections gauge") == 1
    assert 'orderbook_ws_connections{worker="0"} 3' in lines
    assert 'orderbook_ws_connections{worker="1"} 5' in lines
    assert 'orderbook_errors_total{worker="1",kind="late"} 1' in lines
    # a family's samples follow its TYPE line, never another family's
    first, second = (
        lines.index("# TYPE orderbook_errors_total counter"),
        lines.index("# TYPE orderbook_ws_connections gauge"),
    )
    samples = [i for i, line in enumerate(lines) if line.startswith("orderbook_ws_connections{")]
    assert all(second < i and (i < first or first < second) for i in samples)


def test_the_parents_own_metrics_follow_unlabelled():
    own = Metrics()
    own.counter("orderbook_worker_restarts_total", "Restarts").inc()
    text = merged_exposition({0: families(worker_metrics(1, {}))}, own=own)
    assert "orderbook_worker_restarts_total 1" in text.splitlines()


def test_health_is_the_worst_workers_state_with_totals():
    reports = {
        0: {"state": "ready", "height": 10, "connections": 2, "subscriptions": 4, "pid": 11},
        1: {"state": "resyncing", "height": 9, "connections": 3, "subscriptions": 1, "pid": 12},
    }
    health = combined_health(reports, expected=2)
    assert health["state"] == "resyncing" and health["height"] == 9
    assert health["connections"] == 5 and health["subscriptions"] == 5
    assert [row["pid"] for row in health["workers"]] == [11, 12]


def test_a_missing_worker_keeps_the_server_from_reporting_ready():
    reports = {0: {"state": "ready", "height": 10}}
    health = combined_health(reports, expected=2)
    assert health["state"] == "initializing"
    assert "1 of 2 workers" in health["reason"]
    assert combined_health({}, expected=2)["state"] == "initializing"


def test_a_family_the_parent_shares_with_the_workers_is_declared_once():
    def reloads() -> Metrics:
        metrics = Metrics()
        metrics.counter("orderbook_access_reloads_total", "Reloads", ["result"]).inc(1, "ok")
        return metrics

    text = merged_exposition({0: families(reloads()), 1: families(reloads())}, own=reloads())
    lines = text.splitlines()
    assert lines.count("# TYPE orderbook_access_reloads_total counter") == 1
    assert lines.count("# HELP orderbook_access_reloads_total Reloads") == 1
    assert 'orderbook_access_reloads_total{worker="parent",result="ok"} 1' in lines
    assert 'orderbook_access_reloads_total{worker="1",result="ok"} 1' in lines

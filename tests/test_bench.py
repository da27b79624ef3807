"""The benchmarks still run (tiny sizes): numbers are theirs to print, not ours to judge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SMOKE = {
    "bench_book.py": ["--coins", "10", "--orders", "5000", "--blocks", "24", "--passes", "2"],
    "bench_decode.py": [
        "--orders",
        "2000",
        "--coins",
        "10",
        "--burst-blocks",
        "4",
        "--scale",
        "0.05",
    ],
    "bench_churn.py": [
        "--connections",
        "20",
        "--seconds",
        "2",
        "--warmup-s",
        "0.5",
        "--settle-s",
        "0.5",
    ],
    "bench_fanout.py": ["--clients", "5", "--seconds", "0.5", "--json"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_and_prints_its_numbers(script, tmp_path):
    """Each bench exits 0 and ends with its JSON metadata."""
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *SMOKE[script]],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    tail = run.stdout[run.stdout.rindex("\n{") + 1 :] if "\n{" in run.stdout else run.stdout
    assert isinstance(json.loads(tail), dict)


GUARD_SIZES = ["--coins", "10", "--orders", "20000", "--blocks", "24", "--passes", "2"]


def run_book_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_book.py"), *args],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_committed_book_baseline_is_complete():
    """bench/baseline.json names its workload and holds the guarded figures within limits."""
    baseline = json.loads((REPO / "bench" / "baseline.json").read_text())
    assert set(baseline["args"]) >= {"source", "coins", "orders", "blocks", "passes"}
    assert baseline["normalised"] == pytest.approx(
        baseline["cpu_blocks_per_s"] * baseline["reference_ms"] / 1e3
    )
    assert 0 < baseline["bytes_per_order"] <= 250


@pytest.mark.slow
def test_book_regression_guard_passes_and_fails_loudly(tmp_path):
    """--write-baseline records a workload; --guard re-runs it and exits 0 with PASS, or
    1 with a loud FAIL when normalised blocks/s fell more than 20% below the baseline."""
    path = tmp_path / "baseline.json"
    written = run_book_bench(tmp_path, *GUARD_SIZES, "--write-baseline", "--baseline", str(path))
    assert written.returncode == 0, written.stdout[-2000:] + written.stderr[-2000:]
    baseline = json.loads(path.read_text())
    assert baseline["args"]["orders"] == 20000 and baseline["bytes_per_order"] <= 250
    # Margins wide enough that a noisy neighbour cannot flip the verdict.
    for factor, code, verdict in [
        (0.5, 0, "REGRESSION GUARD: PASS"),
        (10, 1, "REGRESSION GUARD: FAIL"),
    ]:
        path.write_text(json.dumps({**baseline, "normalised": baseline["normalised"] * factor}))
        run = run_book_bench(tmp_path, "--guard", "--baseline", str(path))
        assert run.returncode == code, run.stdout[-2000:] + run.stderr[-2000:]
        assert verdict in run.stdout
        assert json.loads(run.stdout.splitlines()[-1])["guard"] == verdict.split()[-1].lower()
    assert "dropped" in run.stdout and "B per resting order" in run.stdout


@pytest.mark.slow
def test_end_to_end_bench_measures_every_figure(tmp_path):
    """``python -m bench``: a real twistd, simulator and clients; every figure present."""
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--clients",
            "4",
            "--workers",
            "1",
            "--seconds",
            "2",
            "--warmup-s",
            "0.5",
            "--scale",
            "0.02",
            "--json",
            str(out),
        ],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    (e2e,) = report["e2e"]
    assert e2e["delivered_per_s"] > 0 and e2e["client_closed"] == 0
    assert e2e["latency_ms"]["count"] > 0 and e2e["latency_ms"]["p50"] >= 0
    assert report["baseline"][0]["clients"] == 4
    assert "ratio" in run.stdout

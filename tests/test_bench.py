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
    "bench_fanout.py": ["--clients", "5", "--seconds", "0.5", "--json"],
}


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

"""The soak's short variant: ``python -m bench.soak`` for ~17 s; its checks must pass.

The real ``twistd -n orderbook`` (TLS, permessage-deflate, access tokens, its
config written as a user writes it) reads a separate simulator process that
is driven through every fault it has, while well-behaved clients keep L4
books and trades and others churn, stall, flood, leave handshakes half open,
come without a token and send hypothesis-generated garbage. The checks are
described in ``bench/soak/run.py``; one soak run serves every test here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.soak.faults import label, schedule
from bench.soak.reference import FillsReference
from orderbook.sim.generate import generate
from tests.e2e.procs import REPO, child_env

# The 16 fault steps at 1 s intervals fit in the 16.5 s, so every fault kind is
# injected (test_short_soak_passes_its_checks asserts it). Not closer: the 3 s
# stall (step 5) must end before the gap of step 9, or the simulator has not
# written the skipped block yet and refuses the restart of step 10.
SHORT = [
    "--seconds", "16.5", "--fault-every-s", "1.0", "--idle-timeout-s", "6",
    "--hour-seconds", "4", "--keepers", "3", "--churners", "2", "--stallers", "1",
    "--half-open", "9", "--fuzz-examples", "400", "--rss-wait-s", "10",
]  # fmt: skip
CHECKS = {
    "books",
    "trades",
    "keepers",
    "liveness",
    "fuzz",
    "abuse",
    "rss",
    "counters",
    "workers",
    "log",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work: Path = tmp_path_factory.mktemp("soak")
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", *SHORT, "--workdir", str(work), "--json"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.stdout.strip(), run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def failed(report: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {c["name"]: c["detail"] for c in report["checks"] if c["name"] in names and not c["ok"]}


@pytest.mark.e2e
@pytest.mark.slow
def test_short_soak_passes_its_checks(report):
    """Books equal, liveness, keepers undisturbed, fuzz answered, abusers closed, RSS back, clean log."""
    names = {check["name"] for check in report["checks"]}
    assert names >= CHECKS, report["checks"]
    assert "soak" not in names, failed(report, {"soak"})
    every_kind = {label(spec) for step in schedule(3.0, 1.0) for spec in step}
    assert set(report["faults"]["injected"]) == every_kind, (
        report["faults"],
        failed(report, {"faults"}),
    )
    assert "faults" not in names, failed(report, {"faults"})
    clients = report["clients"]
    assert all(clients[kind]["connects"] > 0 for kind in ("churn", "stall", "flood", "intruder"))
    assert report["fuzz"]["cases"] > 0
    problems = failed(report, CHECKS)
    assert not problems, json.dumps(problems, indent=1, default=str)


@pytest.mark.e2e
@pytest.mark.slow
def test_no_trade_is_lost_across_resyncs(report):
    """Every trade of every block after a keeper's first Snapshot arrived exactly once."""
    problems = failed(report, {"trades"})
    assert not problems, json.dumps(problems, indent=1, default=str)


@pytest.mark.e2e
@pytest.mark.slow
def test_rate_limited_connections_are_counted_once(report):
    """orderbook_ws_connections_rejected_total{reason="rate"} <= connections opened."""
    problems = failed(report, {"counters"})
    assert not problems, json.dumps(problems, indent=1, default=str)


def test_fills_reference_reads_each_whole_line_once(tmp_path):
    """The trades reference: every tid of the fills files once; broken and partial lines skipped."""
    generated = generate(tmp_path, 30, seed=3, scale=0.05, split_probability=0.0)
    written = {
        pair[1]["tid"]: (line["block_number"], pair[1]["coin"])
        for path in (tmp_path / "node_fills_by_block").rglob("*")
        if path.is_file()
        for line in map(json.loads, path.read_text().splitlines())
        for pair in line["events"]
    }
    reference = FillsReference(tmp_path)
    reference.poll()
    assert reference.trades == written and written
    fills = next(p for p in (tmp_path / "node_fills_by_block").rglob("*") if p.is_file())
    late = '{"local_time":"x","block_time":"x","block_number":%d,"events":[["0xa",{"coin":"BTC","tid":7}]]}'
    with fills.open("a") as file:
        file.write("garbage\n" + late % (generated.last_height + 1))  # no newline yet
    reference.poll()
    assert 7 not in reference.trades and reference.bad_lines == 1
    with fills.open("a") as file:
        file.write("\n")
    reference.poll()
    assert reference.trades[7] == (generated.last_height + 1, "BTC")
    assert reference.expected("BTC", generated.last_height, generated.last_height + 1) == {7}

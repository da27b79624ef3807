"""The soak's short variant: ``python -m bench.soak`` for ~20 s, every check must pass.

The real ``twistd -n orderbook`` (TLS, permessage-deflate, its config written
as a user writes it) reads a separate simulator process that is driven
through every fault it has, while well-behaved clients keep L4 books and
trades and others churn, stall, flood, leave handshakes half open and send
hypothesis-generated garbage. See ``bench/soak/run.py`` for the checks.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.procs import REPO, child_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHORT = [
    "--seconds", "20", "--fault-every-s", "1.2", "--idle-timeout-s", "6",
    "--hour-seconds", "4", "--keepers", "3", "--churners", "2", "--stallers", "1",
    "--half-open", "10", "--fuzz-examples", "400", "--rss-wait-s", "10",
]  # fmt: skip


def test_short_soak_passes_every_check(tmp_path):
    """Books equal, no trade lost or doubled, RSS back, clean log, abusers closed, fuzz answered."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", *SHORT, "--workdir", str(tmp_path), "--json"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.stdout.strip(), run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    checks = {check["name"]: check for check in report["checks"]}
    assert {"books", "trades", "keepers", "fuzz", "abuse", "rss", "log"} <= checks.keys(), checks
    assert report["faults"]["injected"], report["faults"]
    assert report["clients"]["churn"]["opened"] > 0 and report["fuzz"]["cases"] > 0
    failed = {name: check["detail"] for name, check in checks.items() if not check["ok"]}
    assert not failed, json.dumps(failed, indent=1, default=str)
    assert run.returncode == 0

"""RFC 6455 / 7692 conformance: the Autobahn|Testsuite against our own send path.

Runs ``scripts/conformance 1-10`` (fuzzing client, Python 2.7) against the
echo endpoint of the real Site over ws:// and over wss:// (one test each);
every reply goes through the shared-frame path the feeds use. Cases 12 and 13 (permessage-deflate,
~30 minutes) are run by hand: ``scripts/conformance 12-13``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "conformance"
PYTHON27 = Path.home() / ".pyenv/versions/2.7.18/bin/python2.7"
WSTEST = REPO / ".tools" / "wstest" / "bin" / "wstest"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_autobahn_testsuite_cases_1_to_10_pass(tmp_path, scheme):
    """No case of 1-10 is FAILED, over ws:// and over wss:// (one test each, so that
    parallel test workers run the two agents at once)."""
    if not WSTEST.exists():
        reason = "Python 2.7 is absent" if not PYTHON27.exists() else "wstest is not installed"
        pytest.skip(f"conformance cases 1-10 not run: {reason} (run scripts/install-test-tools)")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "1-10", "--agent", scheme, "--outdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    report = run.stdout + run.stderr
    agents = re.findall(r"^(orderbook-wss?): (\d+) cases: (.*)$", report, re.MULTILINE)
    assert [name for name, _, _ in agents] == [f"orderbook-{scheme}"], report
    for name, count, grades in agents:
        assert int(count) > 250, (name, count)
        assert "FAILED" not in grades.replace("close FAILED 0", ""), (name, grades)
    assert run.returncode == 0, report

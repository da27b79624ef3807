"""The code stays ruff clean (lint and format), checked with the pinned config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def ruff() -> list[str]:
    script = Path(sys.executable).with_name("ruff")
    if script.exists():
        return [str(script)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.skip("ruff is not installed (pip install '.[test]' brings it)")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    """`ruff check` and `ruff format --check` find nothing in the repository."""
    run = subprocess.run(
        ruff() + command + ["."], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr

"""``python -m orderbook.sim``: readiness line, live files, SIGTERM, offline generation."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from orderbook.sim.__main__ import parser
from tests.sim.nodefiles import read_lines

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(
    r"^simulator ready: data_dir=(\S+) info=(http://127\.0\.0\.1:\d+/info) height=(\d+) mode=(\w+)$"
)


def _run(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "orderbook.sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no readiness line in time"
    return proc.stdout.readline().strip()  # type: ignore[union-attr]


def test_live_run_prints_ready_serves_info_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """One readiness line; /info answers; SIGTERM stops it with exit code 0 and writes --dump-snapshot."""
    dump = tmp_path / "final.json"
    proc = _run(
        "--data-dir", str(tmp_path / "d"), "--info-port", "0", "--light", "--blocks-per-second", "100",
        "--mode", "streaming", "--dump-snapshot", str(dump),
    )  # fmt: skip
    try:
        match = READY.match(_line(proc))
        assert match, "bad readiness line"
        assert match.group(1) == str(tmp_path / "d") and match.group(4) == "streaming"
        out = tmp_path / "snap.json"
        body = json.dumps(
            {
                "type": "fileSnapshot",
                "request": {
                    "type": "l4Snapshots",
                    "includeUsers": True,
                    "includeTriggerOrders": False,
                },
                "outPath": str(out),
                "includeHeightInOutput": True,
            }
        ).encode()
        with urllib.request.urlopen(
            urllib.request.Request(match.group(2), data=body), timeout=10
        ) as resp:
            assert (resp.status, resp.read()) == (200, b"null")
        assert json.loads(out.read_bytes())[0] >= int(match.group(3))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert json.loads(dump.read_bytes())[0] >= json.loads(out.read_bytes())[0]
    assert read_lines(tmp_path / "d", "statuses", "streaming")


def test_blocks_limit_exits_by_itself(tmp_path: Path) -> None:
    """--max-speed --blocks N writes N blocks and exits 0."""
    proc = _run(
        "--data-dir",
        str(tmp_path),
        "--info-port",
        "0",
        "--scale",
        "0.01",
        "--max-speed",
        "--blocks",
        "7",
    )
    assert READY.match(_line(proc))
    assert proc.wait(timeout=30) == 0
    assert len(read_lines(tmp_path, "fills", "by_block")) == 7


def test_offline_generation(tmp_path: Path) -> None:
    """--offline --blocks N writes N blocks with snapshots, deterministically, and exits."""
    for name in ("a", "b"):
        proc = _run(
            "--data-dir", str(tmp_path / name), "--offline", "--blocks", "6", "--scale", "0.01",
            "--snapshot-every", "3", "--seed", "5", "--start-time", "2026-05-05T23:59:59.9",
        )  # fmt: skip
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read().startswith("simulator generated: ")  # type: ignore[union-attr]
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(p) for p in a if "snapshots" in str(p)] == [
        "snapshots/1000000000.json",
        "snapshots/1000000003.json",
        "snapshots/1000000006.json",
    ]
    assert (tmp_path / "a/node_fills_by_block/hourly/20260506/0").is_file()
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in a)


def test_options_parse_and_validate() -> None:
    """Defaults are mainnet-like; bad values are refused by the parser."""
    args = parser().parse_args(["--data-dir", "/d"])
    assert (args.info_port, args.blocks_per_second, args.mode, args.scale) == (
        3001,
        14.5,
        "by_block",
        1.0,
    )
    proc = _run("--data-dir", "/d", "--blocks-per-second", "0")
    assert proc.wait(timeout=30) == 2
    assert "must be positive" in proc.stderr.read()  # type: ignore[union-attr]

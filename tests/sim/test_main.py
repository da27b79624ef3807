"""``python -m orderbook.sim``: readiness line, live files, SIGTERM, offline generation."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
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


def test_deep_quiet_and_spread_options() -> None:
    """--deep COIN=N (repeatable), --quiet (trade share 0.1), --streaming-spread-ms parse; bad ones exit 2."""
    args = parser().parse_args(["--data-dir", "/d", "--deep", "BTC=51000", "--deep", "ETH=900"])
    assert args.deep == [("BTC", 51000), ("ETH", 900)] and args.trade_share == 1.0
    assert parser().parse_args(["--data-dir", "/d"]).streaming_spread_ms == 25.0
    for bad, message in (("--deep=BTC", "COIN=ORDERS"), ("--trade-share=2", "within 0..1")):
        proc = _run("--data-dir", "/d", bad)
        assert proc.wait(timeout=30) == 2
        assert message in proc.stderr.read()  # type: ignore[union-attr]


def test_offline_deep_quiet_run(tmp_path: Path) -> None:
    """--deep BTC=3000 --quiet: the dumped BTC book is that deep; most blocks have no fills line."""
    dump = tmp_path / "final.json"
    proc = _run(
        "--data-dir", str(tmp_path / "d"), "--offline", "--blocks", "60", "--scale", "0.02",
        "--mode", "streaming", "--quiet", "--deep", "BTC=3000", "--dump-snapshot", str(dump),
    )  # fmt: skip
    assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
    btc = next(entry for entry in json.loads(dump.read_bytes())[1] if entry[0] == "BTC")
    assert 2_900 <= len(btc[1][0]) + len(btc[1][1]) <= 3_100
    fill_blocks = {
        line["block_number"] for line in read_lines(tmp_path / "d", "fills", "streaming")
    }
    assert len(fill_blocks) < 60 / 4


def test_taken_info_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A taken --info-port: one line on stderr naming the port, exit code 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _run("--data-dir", str(tmp_path), "--info-port", str(port), "--light")
        assert proc.wait(timeout=30) == 1
    err = proc.stderr.read()  # type: ignore[union-attr]
    lines = [line for line in err.splitlines() if "orderbook.sim" in line or "Traceback" in line]
    assert lines == [
        f"python -m orderbook.sim: simulator info server: cannot listen on 127.0.0.1:{port}: "
        "Address already in use (is a node with --serve-info running? change [simulator] info_port)"
    ], err
    assert proc.stdout.read() == ""  # type: ignore[union-attr]

"""The [simulator] config keys that reach the simulator (the demo's twistd plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderbook import config
from orderbook.config import ConfigError
from orderbook.sim.exchange import QUIET_TRADE_SHARE
from orderbook.tap import _simulator_service


def _ini(tmp_path: Path, simulator: str) -> Path:
    path = tmp_path / "demo.ini"
    path.write_text(
        f"[simulator]\nenabled = yes\ninfo_port = 0\n{simulator}\n"
        f"[node]\ndata_dir = {tmp_path / 'data'}\n[server]\nlisten = tcp:0\n"
    )
    return path


def test_trade_share_reaches_the_exchange(tmp_path: Path) -> None:
    """[simulator] trade_share = 0.1 makes the demo's simulator a quiet market (default 1.0)."""
    quiet = config.load(_ini(tmp_path, f"trade_share = {QUIET_TRADE_SHARE}"))
    assert _simulator_service(quiet).exchange.trade_share == QUIET_TRADE_SHARE
    assert config.load(_ini(tmp_path, "")).simulator.trade_share == 1.0


@pytest.mark.parametrize("value", ["1.5", "-0.1", "lots"])
def test_bad_trade_share_is_a_config_error(tmp_path: Path, value: str) -> None:
    """Outside 0..1 or not a number: one ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"\[simulator\] trade_share"):
        config.load(_ini(tmp_path, f"trade_share = {value}"))

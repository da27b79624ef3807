"""The systemd unit files in etc/: they verify, and they match the config they run."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orderbook.config import WebSocketSettings
from orderbook.process import RESERVED_FILES

ETC = Path(__file__).resolve().parent.parent / "etc"
UNITS = ("orderbook.service", "orderbook.socket", "orderbook-socket.service")
INSTALLED_TWISTD = "/opt/orderbook/venv/bin/twistd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((ETC / name).read_text())
    return parser


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed here (apt-get install systemd provides it)",
)
def test_unit_files_verify(tmp_path):
    """systemd-analyze verify: no unknown keys, bad values or missing units.

    verify also checks that ExecStart's program exists, so the copies point
    at this interpreter's twistd instead of the documented /opt/orderbook path.
    """
    twistd = Path(sys.executable).with_name("twistd")
    for name in UNITS:
        text = (ETC / name).read_text()
        (tmp_path / name).write_text(text.replace(INSTALLED_TWISTD, str(twistd)))
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize("name", ["orderbook.service", "orderbook-socket.service"])
def test_services_run_twistd_in_the_foreground_unprivileged(name):
    """twistd -n as user orderbook, restarted on failure, SIGHUP on reload."""
    service = unit(name)["Service"]
    command = service["ExecStart"].split()
    assert command[0] == INSTALLED_TWISTD and "--nodaemon" in command
    assert command[command.index("orderbook") + 1 :][:2] == [
        "--config",
        "/etc/orderbook/orderbook.ini",
    ]
    assert service["User"] == "orderbook" and service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"


@pytest.mark.parametrize("name", ["orderbook.service", "orderbook-socket.service"])
def test_file_limit_covers_the_default_max_connections(name):
    """LimitNOFILE >= max_connections + what ingest and sockets need (as FileLimit checks)."""
    limit = int(unit(name)["Service"]["LimitNOFILE"])
    assert limit >= WebSocketSettings().max_connections + RESERVED_FILES


def test_socket_activation_needs_no_capability():
    """The socket unit binds 443 (IPv4, matching domain=INET) for a service with no capability."""
    socket = unit("orderbook.socket")["Socket"]
    assert socket["ListenStream"] == "0.0.0.0:443"
    assert socket["Service"] == "orderbook-socket.service"
    service = unit("orderbook-socket.service")
    assert service["Service"]["CapabilityBoundingSet"] == ""
    assert "AmbientCapabilities" not in service["Service"]
    assert "orderbook.socket" in service["Unit"]["Requires"]
    assert "systemd:domain=INET:index=0" in (ETC / "orderbook-socket.service").read_text()

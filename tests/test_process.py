"""The process: one-line fatal errors without a stale pidfile, SIGHUP hooks, file limits."""

from __future__ import annotations

import os
import resource

import pytest
from twisted.internet.testing import MemoryReactorClock

from orderbook import process


def test_fail_is_one_line_exit_1_and_removes_our_pidfile(tmp_path, monkeypatch, capsys):
    """fail() removes twistd's pidfile when it holds this pid (twistd would not)."""
    pidfile = tmp_path / "twistd.pid"
    pidfile.write_text(str(os.getpid()))
    monkeypatch.setattr(process, "_twistd", {"pidfile": str(pidfile)})
    with pytest.raises(SystemExit) as exited:
        process.fail("cannot listen on tcp:1: Permission denied")
    assert exited.value.code == 1
    assert capsys.readouterr().err == "orderbook: cannot listen on tcp:1: Permission denied\n"
    assert not pidfile.exists()


def test_fail_keeps_a_pidfile_of_another_process(tmp_path, monkeypatch):
    """Another instance's pidfile (a different pid) is not ours to remove."""
    pidfile = tmp_path / "twistd.pid"
    pidfile.write_text("1")
    monkeypatch.setattr(process, "_twistd", {"pidfile": str(pidfile)})
    with pytest.raises(SystemExit):
        process.fail("x")
    assert pidfile.read_text() == "1"


def test_reload_runs_every_hook_even_after_one_fails():
    """A hook that raises is logged; the others still run, in order."""
    reload = process.HangupReload(MemoryReactorClock())
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise OSError("token file vanished")

    reload.add(broken)
    reload.add(lambda: calls.append("certificates"))
    reload.reload()
    assert calls == ["broken", "certificates"]


def test_sighup_handler_is_installed_and_restored():
    """startService installs the SIGHUP handler; stopService puts the previous one back."""
    import signal

    before = signal.getsignal(signal.SIGHUP)
    reactor = MemoryReactorClock()
    reload = process.HangupReload(reactor)
    reload.startService()
    try:
        assert signal.getsignal(signal.SIGHUP) == reload._signalled
    finally:
        reload.stopService()
    assert signal.getsignal(signal.SIGHUP) == before


@pytest.mark.parametrize(
    ("soft", "hard", "needed", "target", "warned"),
    [
        (1024, 65536, 10256, 65536, False),  # raised to the hard limit: enough
        (1024, 4096, 10256, 4096, True),  # raised, still short: say so
        (20000, 20000, 10256, 20000, False),  # already fine
        (1024, resource.RLIM_INFINITY, 10256, 10256, False),  # no hard cap: what is needed
    ],
)
def test_open_files_plan(soft, hard, needed, target, warned):
    """The soft limit goes to the hard one; the warning names the numbers and the fix."""
    limit, warning = process.open_files_plan(soft, hard, needed)
    assert limit == target
    assert (warning is not None) == warned
    if warning:
        assert f"LimitNOFILE={needed}" in warning and f"ulimit -n {needed}" in warning

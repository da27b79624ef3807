"""Real processes for end-to-end tests: ``twistd -n orderbook`` and the simulator.

Each process writes its output to a file; tests wait for a line matching a
pattern (with a deadline), never for a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def twistd_command() -> list[str]:
    """The twistd of this interpreter (the installed script, or ``python -m twisted``)."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "twisted"]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for children: this repo importable, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A child process whose combined output goes to ``log_path``.

    It leads its own process group, so stopping it also ends whatever it
    forked (crossbar's router workers), even when the leader must be killed.
    """

    def __init__(
        self, args: list[str], log_path: Path, cwd: Path | None = None, **popen: Any
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        popen.setdefault("env", child_env())
        self.popen = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            **popen,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in the output; fail if the process dies first."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            match = regex.search(self.output())
            if match is None and self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.args[0]} exited {self.popen.returncode} before {pattern!r}:\n"
                    + self.output()[-4000:]
                )
            return match

        return wait_until(found, timeout, f"{pattern!r} in {self.log_path}")  # type: ignore[return-value]

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time; then SIGKILL its group."""
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self._log.close()
        return self.popen.returncode


def spawn_twistd(config: Path, workdir: Path) -> Proc:
    """``twistd -n orderbook --config CONFIG`` in ``workdir`` (pidfile there too)."""
    args = twistd_command() + [
        "-n",
        "--pidfile",
        str(workdir / "twistd.pid"),
        "orderbook",
        "--config",
        str(config),
    ]
    return Proc(args, workdir / "twistd.log", cwd=workdir)


def spawn_simulator(workdir: Path, *options: str) -> Proc:
    """``python -m orderbook.sim`` writing under ``workdir``."""
    args = [sys.executable, "-m", "orderbook.sim", *options]
    return Proc(args, workdir / "sim.log", cwd=workdir)


def have(program: str) -> bool:
    return shutil.which(program) is not None


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc/*/stat)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` value in kB (0 once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def own_rss_kb() -> int:
    """This process's VmRSS in kB (0 where /proc has none)."""
    return status_kb(os.getpid(), "VmRSS")

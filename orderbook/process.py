"""The server process: one-line fatal start errors, SIGHUP reload hooks, the open-files limit.

- :func:`fail` ends a start that cannot go on: one line on stderr, exit
  code 1, and no twistd.pid left behind (twistd removes its pidfile only for
  exceptions, not for ``SystemExit``).
- :class:`HangupReload` runs registered hooks on SIGHUP (``systemctl reload``):
  the TLS certificates, and anything else that re-reads a file
  (``reload.add(hook)`` in tap.makeService).
- :class:`FileLimit` raises the soft ``RLIMIT_NOFILE`` to the hard limit at
  start and says in one line when it is still below what the config needs.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from twisted.application.service import Service
from twisted.logger import Logger

_log = Logger(namespace="orderbook.process")

RESERVED_FILES = 256
"""Descriptors besides client connections: node files and their watches, the
snapshot, the decode worker's pipes, listening sockets, logs, the router."""

_twistd: Mapping[str, Any] = {}


def use_twistd_options(options: Mapping[str, Any]) -> None:
    """Remember twistd's own options (for its pidfile, made absolute after ours parse)."""
    global _twistd
    _twistd = options


def twistd_logfile(twistd: Mapping[str, Any]) -> str:
    """Where twistd would log: --logfile, else stdout in the foreground, else twistd.log."""
    logfile = twistd.get("logfile")
    if logfile:
        return logfile
    return "-" if twistd.get("nodaemon") else "twistd.log"


def fail(line: str) -> NoReturn:
    """One line on stderr, no pidfile left, exit code 1."""
    sys.stderr.write(f"orderbook: {line}\n")
    sys.stderr.flush()
    _remove_own_pidfile(_twistd.get("pidfile"))
    raise SystemExit(1)


def _remove_own_pidfile(pidfile: str | None) -> None:
    """Remove twistd's pidfile if it is this process's."""
    if not pidfile:
        return
    path = Path(pidfile)
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except (OSError, ValueError):
        pass  # absent or not ours: leave it


class HangupReload(Service):
    """Run every registered hook on SIGHUP; one that fails never stops the rest."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.hooks: list[Callable[[], object]] = []
        self._previous: Any = None

    def add(self, hook: Callable[[], object]) -> None:
        """Call ``hook()`` (in the reactor thread) on every SIGHUP."""
        self.hooks.append(hook)

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _signalled(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def reload(self) -> None:
        """Run every hook now."""
        _log.info("SIGHUP: reloading ({count} hooks)", count=len(self.hooks))
        for hook in self.hooks:
            try:
                hook()
            except Exception:
                _log.failure("reload hook {hook} failed", hook=hook)


def open_files_plan(soft: int, hard: int, needed: int) -> tuple[int, str | None]:
    """The soft limit to set (the hard one) and a warning if it is still below ``needed``."""
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    target = max(target, soft)
    if target >= needed:
        return target, None
    return target, (
        f"open files limit is {target} (hard limit {hard}) but the config needs about "
        f"{needed} (max_connections + {RESERVED_FILES}): clients beyond ~{target - RESERVED_FILES}"
        f" will fail; set LimitNOFILE={needed} in the systemd unit (or ulimit -n {needed})"
    )


class FileLimit(Service):
    """Raise the soft open-files limit at start: one line, a warning if it is still short."""

    def __init__(self, max_connections: int) -> None:
        self.needed = max_connections + RESERVED_FILES
        self.limit = 0

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.limit, warning = open_files_plan(soft, hard, self.needed)
        if self.limit != soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.limit, hard))
        if warning is not None:
            _log.warn("{warning}", warning=warning)
            return
        _log.info(
            "open files limit {limit} (was {soft}, hard {hard}; needed {needed})",
            limit=self.limit,
            soft=soft,
            hard=hard,
            needed=self.needed,
        )

"""Log observers for ``[log] format = text|json`` and ``level``.

twistd's ``logger`` option names a factory of the process's observer (a
dotted name: twistd resolves it after our Options ran). tap.py calls
:func:`use_config` with the config's [log] section and names
:func:`configured_observer`, so the config file, not the command line,
decides the format. JSON is plain newline-delimited (one event per line).
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)

from orderbook.config import LogSettings

FACTORY_NAME = "orderbook.logs.configured_observer"
_configured: tuple[LogSettings, str | None] = (LogSettings(), None)


def use_config(log: LogSettings, logfile: str | None) -> str:
    """Remember the [log] settings; return the factory's name for twistd."""
    global _configured
    _configured = (log, logfile)
    return FACTORY_NAME


def configured_observer() -> ILogObserver:
    """The factory twistd calls once to get the process's log observer."""
    log, logfile = _configured
    return make_observer(log, _open(logfile))


def make_observer(log: LogSettings, stream: IO[str]) -> ILogObserver:
    """An observer writing ``stream`` in the configured format, filtered by level."""
    if log.format == "json":
        observer = jsonFileLogObserver(stream, recordSeparator="")
    else:
        observer = textFileLogObserver(stream)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(log.level))
    return FilteringLogObserver(observer, [predicate])


def _open(logfile: str | None) -> IO[str]:
    if not logfile or logfile == "-":
        return sys.stdout
    return open(logfile, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives with the process

"""How a worker learns it is one: environment variables set by the parent.

``ORDERBOOK_WORKER`` (its index), ``ORDERBOOK_WORKER_LINK`` (the socketpair
descriptor to the parent), ``ORDERBOOK_WORKER_SOCKETS`` (one listening
descriptor per ``[server] listen`` endpoint, in order) and
``ORDERBOOK_WORKER_INFO_URL`` (the parent's snapshot fan-in, used instead of
``[node] info_url``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

INDEX = "ORDERBOOK_WORKER"
LINK = "ORDERBOOK_WORKER_LINK"
SOCKETS = "ORDERBOOK_WORKER_SOCKETS"
INFO_URL = "ORDERBOOK_WORKER_INFO_URL"
FIRST_LISTEN_FD = 4


@dataclass(frozen=True)
class WorkerRole:
    """This process is worker ``index`` of a parent."""

    index: int
    link_fd: int
    listen_fds: tuple[int, ...]
    info_url: str


def for_worker(index: int, link_fd: int, endpoints: int) -> dict[str, str]:
    """The variables of worker ``index`` (the info URL is added by the parent)."""
    fds = ",".join(str(FIRST_LISTEN_FD + offset) for offset in range(endpoints))
    return {INDEX: str(index), LINK: str(link_fd), SOCKETS: fds}


def role(environ: Mapping[str, str] = os.environ) -> WorkerRole | None:
    """This process's role: None for a single server or the parent."""
    if INDEX not in environ:
        return None
    fds = tuple(int(fd) for fd in environ.get(SOCKETS, "").split(",") if fd)
    return WorkerRole(int(environ[INDEX]), int(environ[LINK]), fds, environ.get(INFO_URL, ""))

"""Listening sockets made once by the parent and handed to every worker.

The parent binds each ``[server] listen`` endpoint before it drops privileges
(port 443 needs no root in the workers) and passes the descriptors to the
workers, which accept on them: the kernel spreads connections over the
processes. Two ways, chosen by ``[server] balance``:

- ``shared``: one socket per endpoint, inherited by every worker (all wait
  on one accept queue; also the only way with a socket from systemd);
- ``reuseport``: one ``SO_REUSEPORT`` socket per endpoint and worker, bound
  to the same address; the kernel hashes each connection to one of them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from twisted.internet.endpoints import _parse, serverFromString

from orderbook.config import PORT_ENDPOINTS


class ListenError(Exception):
    """A listen endpoint that cannot be bound (named, with the reason)."""


class NotPassed(ListenError):
    """A ``systemd:`` endpoint whose socket systemd did not pass (a config mistake)."""


@dataclass(frozen=True)
class Address:
    """Where a TCP listen endpoint binds: from ``tcp:``/``ssl:`` strings."""

    port: int
    interface: str
    backlog: int


def split_endpoint(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """Twisted's endpoint syntax, as Twisted parses it: (kind, arguments, keywords)."""
    args, kwargs = _parse(spec)
    return args[0], args[1:], kwargs


def address_of(spec: str) -> Address | None:
    """The bind address of a ``tcp:``/``ssl:`` endpoint; None for ``systemd:``."""
    kind, args, kwargs = split_endpoint(spec)
    if kind == "systemd":
        return None
    port = kwargs.get("port", args[0] if args else None)
    if kind not in PORT_ENDPOINTS or port is None:
        raise ListenError(
            f"cannot listen on {spec} with [server] workers > 1: workers support tcp:, ssl: "
            "and systemd: endpoints (set workers = 1)"
        )
    return Address(int(port), kwargs.get("interface", ""), int(kwargs.get("backlog", 50)))


def activated_descriptor(spec: str, transport: str) -> int:
    """The descriptor systemd passed for a ``systemd:`` endpoint (index= or name=).

    Twisted's endpoint parser read (and cleared) LISTEN_FDS when it was
    imported: ask it, not the environment.
    """
    from twisted.internet import reactor

    try:
        endpoint = serverFromString(reactor, transport)
    except (IndexError, KeyError):
        raise NotPassed(
            f"[server] listen = {spec}: no such socket was passed "
            "(LISTEN_FDS/LISTEN_PID from systemd: start it through its .socket unit)"
        ) from None
    return endpoint.fileno


def bind(address: Address, reuse_port: bool) -> socket.socket:
    """A listening TCP socket (IPv6 when the interface is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in address.interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((address.interface, address.port))
        sock.listen(address.backlog)
    except (OSError, OverflowError):  # OverflowError: a port past 65535
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class ListeningSockets:
    """Every listen endpoint's socket(s); ``per_worker[i]`` are worker i's descriptors.

    ``endpoints`` are (listen line, bare transport endpoint) pairs: the line
    names the endpoint in errors, the transport says what to bind.
    """

    def __init__(self, endpoints: list[tuple[str, str]], workers: int, balance: str) -> None:
        self.endpoints = endpoints
        self.per_worker: list[list[int]] = [[] for _ in range(workers)]
        self._sockets: list[socket.socket] = []
        reuse_port = balance == "reuseport"
        for spec, transport in endpoints:
            self._open(spec, transport, workers, reuse_port)

    def _open(self, spec: str, transport: str, workers: int, reuse_port: bool) -> None:
        address = address_of(transport)
        if address is None:  # socket activation: one inherited socket, shared
            fd = activated_descriptor(spec, transport)
            os.set_inheritable(fd, True)
            for fds in self.per_worker:
                fds.append(fd)
            return
        count = workers if reuse_port else 1
        made: list[socket.socket] = []
        try:
            for _ in range(count):
                made.append(bind(address, reuse_port))
                if address.port == 0:  # the others join the port the first one got
                    address = Address(made[0].getsockname()[1], address.interface, address.backlog)
        except (OSError, OverflowError) as exc:
            for sock in made:
                sock.close()
            self.close()
            reason = getattr(exc, "strerror", None) or exc
            raise ListenError(f"cannot listen on {spec}: {reason}") from None
        self._sockets.extend(made)
        for index, fds in enumerate(self.per_worker):
            fds.append(made[index % count].fileno())

    def port(self, index: int) -> int:
        """The bound port of endpoint ``index`` (useful with port 0)."""
        fd = self.per_worker[0][index]
        with socket.socket(fileno=os.dup(fd)) as sock:
            return sock.getsockname()[1]

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()


def family_of(fd: int) -> socket.AddressFamily:
    with socket.socket(fileno=os.dup(fd)) as sock:
        return sock.family

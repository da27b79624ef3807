"""Listening sockets made once by the parent, for the workers."""

from __future__ import annotations

import os
import socket

import pytest

from orderbook.workers.sockets import (
    ListenError,
    ListeningSockets,
    NotPassed,
    address_of,
    split_endpoint,
)


def test_endpoint_strings_split_like_twisteds():
    kind, args, kwargs = split_endpoint(r"ssl:8443:interface=127.0.0.1:privateKey=/a\:b.pem")
    assert (kind, args) == ("ssl", ["8443"])
    assert kwargs == {"interface": "127.0.0.1", "privateKey": "/a:b.pem"}
    assert address_of("tcp:0:interface=::1:backlog=7").backlog == 7
    assert address_of("systemd:domain=INET:index=0") is None
    with pytest.raises(ListenError, match="unix:/tmp/s with .* workers > 1"):
        address_of("unix:/tmp/s")


def test_shared_balance_hands_every_worker_the_same_socket():
    sockets = ListeningSockets(
        [("tcp:0", "tcp:0:interface=127.0.0.1")], workers=3, balance="shared"
    )
    try:
        assert len({fds[0] for fds in sockets.per_worker}) == 1
        with socket.create_connection(("127.0.0.1", sockets.port(0)), timeout=5):
            pass  # the kernel queues it: the socket listens
    finally:
        sockets.close()


def test_reuseport_balance_binds_one_socket_per_worker_on_one_port():
    sockets = ListeningSockets(
        [("tcp:0", "tcp:0:interface=127.0.0.1")], workers=2, balance="reuseport"
    )
    try:
        fds = [worker[0] for worker in sockets.per_worker]
        assert len(set(fds)) == 2
        assert len({bound_port(fd) for fd in fds}) == 1
    finally:
        sockets.close()


def test_a_busy_port_is_one_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on tcp:{port}: .*in use"):
            ListeningSockets(
                [(f"tcp:{port}", f"tcp:{port}:interface=127.0.0.1")], workers=2, balance="shared"
            )


def test_a_port_past_65535_is_one_clear_error():
    """(The config refuses it first; the parent's own bind says so too.)"""
    with pytest.raises(ListenError, match="cannot listen on ssl:118000: .*0-65535"):
        ListeningSockets([("ssl:118000", "tcp:118000")], workers=2, balance="reuseport")


def bound_port(fd: int) -> int:
    with socket.socket(fileno=os.dup(fd)) as sock:
        return sock.getsockname()[1]


def test_a_systemd_endpoint_without_a_passed_socket_says_so():
    spec = "systemd:domain=INET:index=7"
    with pytest.raises(NotPassed, match=f"listen = {spec}: no such socket was passed"):
        ListeningSockets([(spec, spec)], workers=2, balance="shared")

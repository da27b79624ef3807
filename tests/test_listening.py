"""Listening at start: one-line listen failures, the Startup service, endpoint errors."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock

from orderbook import tls
from orderbook.config import TLSSettings
from orderbook.listening import ListeningService, Startup, listen_failure, listening_service

TAKEN = OSError(errno.EADDRINUSE, "Address already in use")


class InfoPortError(CannotListenError):
    def __str__(self) -> str:
        return "simulator info server: cannot listen on 127.0.0.1:3001: taken"


def test_a_listen_failure_with_its_own_message_keeps_it():
    """A CannotListenError subclass that phrases itself (the simulator's) is printed as is."""
    plain = CannotListenError("127.0.0.1", 3001, TAKEN)
    assert listen_failure(InfoPortError("127.0.0.1", 3001, TAKEN), "sim") == (
        "simulator info server: cannot listen on 127.0.0.1:3001: taken"
    )
    assert listen_failure(plain, "the simulator's info server") == (
        "cannot listen on 127.0.0.1:3001 (the simulator's info server): Address already in use"
    )
    assert listen_failure(CannotListenError(None, 80, TAKEN), None) == (
        "cannot listen on 0.0.0.0:80: Address already in use"
    )


class CannotBind(Service):
    def __init__(self, at: str) -> None:
        self.at = at

    def privilegedStartService(self) -> None:
        if self.at == "privileged":
            raise CannotListenError("127.0.0.1", 3001, TAKEN)

    def startService(self) -> None:
        if self.at == "start":
            raise CannotListenError("127.0.0.1", 3001, TAKEN)


@pytest.mark.parametrize("at", ["privileged", "start"])
def test_startup_ends_a_child_that_cannot_bind_in_one_line(at, capsys):
    """A child raising CannotListenError at either start step is exit 1 and one line."""
    top = Startup()
    child = CannotBind(at)
    child.setName("the simulator's info server")
    child.setServiceParent(top)
    with pytest.raises(SystemExit) as exit_:
        top.privilegedStartService()
        top.startService()
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        "orderbook: cannot listen on 127.0.0.1:3001 (the simulator's info server):"
        " Address already in use\n"
    )


def test_a_listen_line_becomes_a_listening_service():
    """A plaintext tcp line is a ListeningService on that endpoint, naming the line."""
    listen = tls.parse_listen("tcp:0:interface=127.0.0.1", TLSSettings())
    certificates = tls.Certificates(TLSSettings(), Path("orderbook.ini"))
    service = listening_service(listen, object(), certificates, MemoryReactorClock(), "x.ini")
    assert isinstance(service, ListeningService) and service.listen is listen


def test_a_bad_endpoint_string_is_one_line(capsys):
    """An endpoint the parser refuses ends the start naming the config file and line."""
    listen = tls.parse_listen("tcp:notaport", TLSSettings())
    certificates = tls.Certificates(TLSSettings(), Path("orderbook.ini"))
    with pytest.raises(SystemExit):
        listening_service(listen, object(), certificates, MemoryReactorClock(), "x.ini")
    err = capsys.readouterr().err
    assert err.startswith("orderbook: x.ini: [server] listen = tcp:notaport: ")
    assert err.count("\n") == 1

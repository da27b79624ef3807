"""Listening at start: one service per listen line, and start failures in one line.

- :func:`listening_service` makes the service for one ``listen`` line (a bad
  endpoint string, or a systemd socket that was not passed, is one line
  naming the config file and the line);
- :class:`ListeningService` binds in ``privilegedStartService`` and logs the
  bound address; a port it cannot bind ends the start in one line;
- :class:`Startup` is the top service: a child that raises
  ``CannotListenError`` at start (e.g. the simulator's info server) ends the
  start in one line (:func:`listen_failure`), not a traceback.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from orderbook import process, tls

_log = Logger(namespace="orderbook.listening")


def listening_service(
    listen: tls.Listen,
    factory: IProtocolFactory,
    certificates: tls.Certificates,
    reactor: Any,
    source: str,
    fd: int | None = None,
) -> ListeningService:
    """The service for one listen line of the config file ``source``.

    A worker accepts on the descriptor ``fd`` its parent bound for this line.
    """
    if listen.files is None and tls.is_plaintext(listen.spec) and fd is None:
        _log.warn("listening on {spec}: plaintext, no TLS", spec=listen.spec)
    served = None if listen.files is None else certificates.serve(listen.files)
    try:
        endpoint = tls.endpoint(reactor, listen, served, adopt_fd=fd)
    except IndexError:
        process.fail(
            f"{source}: [server] listen = {listen.spec}: no such socket was passed "
            "(LISTEN_FDS/LISTEN_PID from systemd: start it through its .socket unit)"
        )
    except (ValueError, TypeError, KeyError, OSError) as exc:
        process.fail(f"{source}: [server] listen = {listen.spec}: {exc}")
    return ListeningService(listen, endpoint, factory)


class ListeningService(StreamServerEndpointService):
    """Listen on one endpoint; log the bound address; fail startup in one line."""

    def __init__(self, listen: tls.Listen, endpoint: Any, factory: IProtocolFactory) -> None:
        super().__init__(endpoint, factory)
        self.listen = listen
        self.port: Any = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._waitingForPort = self.endpoint.listen(self.factory)
        failures: list[Failure] = []
        self._waitingForPort.addCallbacks(self._listening, failures.append)
        if failures:  # TCP/TLS listen errors are synchronous: stop before the reactor runs
            process.fail(f"cannot listen on {self.listen.spec}: {failures[0].getErrorMessage()}")

    def _listening(self, port: Any) -> Any:
        self.port = port
        address = port.getHost()
        _log.info(
            "listening on {host}:{port} ({scheme})",
            host=address.host,
            port=address.port,
            scheme=self.listen.scheme,
        )
        return port


class Startup(MultiService):
    """The top service: a child that cannot bind its port at start is one line, exit 1.

    (The simulator's info port binds in ``privilegedStartService``, or in
    ``startService`` when started without it: twistd would print a traceback
    and keep its pidfile.)
    """

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._start_each("privilegedStartService")

    def startService(self) -> None:
        Service.startService(self)
        self._start_each("startService")

    def _start_each(self, step: str) -> None:
        for service in self:
            try:
                getattr(service, step)()
            except CannotListenError as exc:
                process.fail(listen_failure(exc, service.name))


def listen_failure(exc: CannotListenError, name: str | None) -> str:
    """The service's own one-line message if it has one, else address, service and reason."""
    if type(exc).__str__ is not CannotListenError.__str__:
        return str(exc)  # e.g. the simulator's InfoPortError
    where = f" ({name})" if name else ""
    return f"cannot listen on {_address(exc)}{where}: {_reason(exc)}"


def _address(exc: CannotListenError) -> str:
    return f"{exc.interface or '0.0.0.0'}:{exc.port}"


def _reason(exc: CannotListenError) -> str:
    socket_error = exc.socketError
    return getattr(socket_error, "strerror", None) or str(socket_error)

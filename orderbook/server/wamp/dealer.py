"""The dealer side of one WAMP session: CALLs to the server's procedures.

A CALL is answered with one RESULT, or (``receive_progress`` and a procedure
that answers in parts, e.g. ``orderbook.l4book.snapshot``) with RESULTs paced
by the client's reading (:class:`~orderbook.server.wamp.calls.ResultInParts`),
at most :data:`MAX_CALLS_IN_PARTS` at once; CANCEL stops one of those.
Clients may not register procedures here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autobahn.wamp import message
from twisted.logger import Logger

from orderbook.server.wamp.calls import Link, ResultInParts
from orderbook.server.wamp.errors import (
    CANCELED,
    INTERNAL_ERROR,
    NO_SUCH_REGISTRATION,
    NOT_AUTHORIZED,
    PROTOCOL_VIOLATION,
    TOO_MANY_CALLS,
    SessionAbort,
    WampError,
)

if TYPE_CHECKING:
    from orderbook.server.wamp.session import WampHub

# Calls answering in parts at once per session: each holds its encoded parts
# (a 16 MB snapshot) until the client has read them.
MAX_CALLS_IN_PARTS = 4


class Dealer:
    """One session's calls; ``calls`` holds the results still going out in parts."""

    _log = Logger()

    def __init__(self, hub: WampHub, link: Link, send: Callable[[message.Message], None]) -> None:
        self.hub = hub
        self.link = link
        self._send = send  # a WAMP reply to this session
        self.calls: dict[int, ResultInParts] = {}  # request id -> result going out in parts

    def call(self, msg: message.Call) -> None:
        """RESULT, or the first part of a result in parts."""
        procedures = self.hub.procedures
        parts = self._run(procedures.call_in_parts, msg) if msg.receive_progress else None
        if parts is None:
            value = self._run(procedures.call, msg)
            self.hub.metrics.calls.inc(1, msg.procedure)
            self._send(message.Result(msg.request, args=[value]))
            return
        self._check_calls(msg.request)
        self.hub.metrics.calls.inc(1, msg.procedure)
        sender = ResultInParts(self.link, msg.request, parts, self._call_over)
        self.calls[msg.request] = sender
        sender.pump()

    def _run(self, function: Callable[..., Any], msg: message.Call) -> Any:
        """``function(procedure, args, kwargs)``; an unexpected failure is logged and
        answered ERROR orderbook.error.internal."""
        try:
            return function(msg.procedure, msg.args, msg.kwargs)
        except WampError:
            raise
        except Exception:
            self._log.failure("WAMP call {procedure} failed", procedure=msg.procedure)
            raise WampError(INTERNAL_ERROR, f"{msg.procedure} failed on the server") from None

    def _check_calls(self, request: int) -> None:
        if request in self.calls:
            raise SessionAbort(PROTOCOL_VIOLATION, f"request id {request} is still in progress")
        if len(self.calls) >= MAX_CALLS_IN_PARTS:
            raise WampError(
                TOO_MANY_CALLS,
                f"at most {MAX_CALLS_IN_PARTS} calls returning in parts at once per session",
            )

    def _call_over(self, sender: ResultInParts) -> None:
        if self.calls.get(sender.request) is sender:
            del self.calls[sender.request]

    def cancel(self, msg: message.Cancel) -> None:
        """Stop a result still going out in parts (others are answered at once)."""
        sender = self.calls.get(msg.request)
        if sender is None:
            return
        sender.stop()
        text = f"call cancelled after {sender.sent} parts"
        self._send(message.Error(message.Call.MESSAGE_TYPE, msg.request, CANCELED, args=[text]))

    def register(self, msg: message.Register) -> None:
        """Refused: clients may not register procedures."""
        raise WampError(NOT_AUTHORIZED, "clients may not register procedures here")

    def unregister(self, msg: message.Unregister) -> None:
        """Refused: there are no client registrations."""
        raise WampError(NO_SUCH_REGISTRATION, f"no registration {msg.registration}")

    def stop_all(self) -> None:
        """Stop every result still going out in parts (the session is over)."""
        for sender in list(self.calls.values()):
            sender.stop()

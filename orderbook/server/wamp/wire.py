"""WAMP messages on the wire (``wamp.2.json``): what a client may send, parsed with
autobahn's message classes, and our replies encoded."""

from __future__ import annotations

from typing import Any

from autobahn.wamp import message
from autobahn.wamp.exception import ProtocolError
from autobahn.wamp.serializer import JsonObjectSerializer, JsonSerializer

from orderbook.feed import messages
from orderbook.server.wamp.errors import PROTOCOL_VIOLATION, SessionAbort

_CLIENT_MESSAGES = {
    cls.MESSAGE_TYPE: cls
    for cls in (
        message.Hello,
        message.Abort,
        message.Authenticate,
        message.Goodbye,
        message.Error,
        message.Publish,
        message.Subscribe,
        message.Unsubscribe,
        message.Call,
        message.Cancel,
        message.Register,
        message.Unregister,
        message.Yield,
    )
}
# Request messages whose URI we answer with ERROR invalid_uri instead of ABORT.
_URI_REQUESTS = {
    message.Subscribe.MESSAGE_TYPE: 3,
    message.Call.MESSAGE_TYPE: 3,
    message.Publish.MESSAGE_TYPE: 3,
    message.Register.MESSAGE_TYPE: 3,
}
_decoder = JsonObjectSerializer()
_MAX_ID = 2**53


class InvalidRequestUri(Exception):
    """A request in an open session names an invalid URI: answer ERROR invalid_uri."""

    def __init__(self, message_type: int, request: int, text: str) -> None:
        super().__init__(text)
        self.message_type = message_type
        self.request = request


def encode(msg: message.Message) -> bytes:
    """One WAMP message as JSON bytes (msgspec: views may hold msgspec structs)."""
    return messages.encode(msg.marshal())


def decode(payload: bytes) -> list[Any]:
    """The WAMP messages in one WebSocket message (SessionAbort if not JSON)."""
    try:
        return _decoder.unserialize(payload)
    except Exception as exc:
        raise SessionAbort(PROTOCOL_VIOLATION, f"invalid JSON: {exc}") from None


def parse(raw: Any, in_session: bool) -> message.Message:
    """The WAMP message in ``raw`` (SessionAbort if it is not one a client may send;
    InvalidRequestUri for a request with a bad URI ``in_session``)."""
    if not isinstance(raw, list) or not raw or type(raw[0]) is not int:
        raise SessionAbort(
            PROTOCOL_VIOLATION, "a WAMP message is a list starting with its type code"
        )
    cls = _CLIENT_MESSAGES.get(raw[0])
    if cls is None:
        known = JsonSerializer.MESSAGE_TYPE_MAP.get(raw[0])
        what = f"{known.__name__.upper()} is not sent by clients" if known else "unknown"
        raise SessionAbort(PROTOCOL_VIOLATION, f"message type {raw[0]}: {what}")
    try:
        return cls.parse(raw)
    except ProtocolError as exc:
        raise SessionAbort(PROTOCOL_VIOLATION, str(exc)) from None
    except Exception as exc:  # InvalidUriError and friends
        request = raw[1] if len(raw) > 1 else None
        if (
            in_session
            and raw[0] in _URI_REQUESTS
            and type(request) is int
            and 0 < request < _MAX_ID
        ):
            raise InvalidRequestUri(raw[0], request, str(exc)) from None
        raise SessionAbort(PROTOCOL_VIOLATION, str(exc)) from None

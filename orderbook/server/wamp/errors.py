"""WAMP error and close URIs, and the two exceptions a session turns into replies."""

from __future__ import annotations

NOT_AUTHORIZED = "wamp.error.not_authorized"
INVALID_URI = "wamp.error.invalid_uri"
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
INVALID_ARGUMENT = "wamp.error.invalid_argument"
NO_SUCH_SUBSCRIPTION = "wamp.error.no_such_subscription"
NO_SUCH_REGISTRATION = "wamp.error.no_such_registration"
NO_SUCH_REALM = "wamp.error.no_such_realm"
NO_AUTH_METHOD = "wamp.error.no_auth_method"
AUTHENTICATION_FAILED = "wamp.error.authentication_failed"
CANCELED = "wamp.error.canceled"
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"
TOO_MANY_SUBSCRIPTIONS = "orderbook.error.too_many_subscriptions"
TOO_MANY_CALLS = "orderbook.error.too_many_calls"
INTERNAL_ERROR = "orderbook.error.internal"
GOODBYE_AND_OUT = "wamp.close.goodbye_and_out"
SYSTEM_SHUTDOWN = "wamp.close.system_shutdown"
TOKEN_REVOKED = "orderbook.close.token_revoked"  # GOODBYE/ABORT: the access token was revoked

CLOSE_NORMAL = 1000  # autobahn lets applications close with 1000 or 3000-4999 only


class WampError(Exception):
    """A request to answer with ERROR ``uri``; ``str()`` becomes args[0]."""

    def __init__(self, uri: str, text: str) -> None:
        super().__init__(text)
        self.uri = uri


class SessionAbort(Exception):
    """The session must end with ABORT ``reason``; ``str()`` is the message."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason

"""Who may join: anonymous, or WAMP-Ticket against the server's access tokens.

With access control off (the default) clients join anonymously, as before.
With it on, a client must offer ``ticket`` in HELLO's ``authmethods``; the
server answers CHALLENGE ``ticket`` and the client's AUTHENTICATE signature
(the token) is checked by the injected :class:`TokenChecker`::

    HELLO {authmethods: ["ticket"]} --> CHALLENGE "ticket" {}
    AUTHENTICATE token -------------> WELCOME (authmethod ticket)
                                      | ABORT wamp.error.authentication_failed
    HELLO without "ticket" ---------> ABORT wamp.error.no_auth_method
"""

from __future__ import annotations

from typing import Protocol

from autobahn.wamp import message

from orderbook.server.wamp.errors import AUTHENTICATION_FAILED, NO_AUTH_METHOD, SessionAbort


class TokenChecker(Protocol):
    """The server's access tokens (orderbook.server.access builds the real one)."""

    enabled: bool

    def accepts(self, token: str | None) -> bool:
        """True if ``token`` grants access (constant-time comparison)."""


class AuthDisabled:
    """No access control: everyone joins anonymously."""

    enabled = False

    def accepts(self, token: str | None) -> bool:
        return True


AUTH_DISABLED = AuthDisabled()


def method_for(hello: message.Hello, tokens: TokenChecker) -> str:
    """The authmethod a HELLO gets (``anonymous`` or ``ticket``), or SessionAbort."""
    offered = hello.authmethods or ["anonymous"]
    if tokens.enabled:
        if "ticket" not in offered:
            raise SessionAbort(
                NO_AUTH_METHOD,
                'this server requires ticket authentication: offer authmethods ["ticket"] '
                "and answer the challenge with your access token",
            )
        return "ticket"
    if "anonymous" not in offered:
        raise SessionAbort(NO_AUTH_METHOD, "only anonymous authentication is offered")
    return "anonymous"


def check_ticket(reply: message.Authenticate, tokens: TokenChecker) -> None:
    """SessionAbort unless the AUTHENTICATE ``reply`` carries an accepted token."""
    if not tokens.accepts(reply.signature):
        raise SessionAbort(AUTHENTICATION_FAILED, "invalid ticket: the access token is not valid")

"""Who may join: anonymous, or WAMP-Ticket against the server's access tokens.

With access control off (the default) clients join anonymously, as before.
With it on, a client must offer ``ticket`` in HELLO's ``authmethods``; the
server answers CHALLENGE ``ticket`` and the client's AUTHENTICATE signature
(the token) is checked by the injected :class:`TokenChecker`::

    HELLO {authmethods: ["ticket"]} --> CHALLENGE "ticket" {}
    AUTHENTICATE token -------------> WELCOME (authmethod ticket)
                                      | ABORT wamp.error.authentication_failed
    HELLO without "ticket" ---------> ABORT wamp.error.no_auth_method

A connection whose WebSocket upgrade already carried a valid token (query
``?token=`` or ``Authorization: Bearer``, as for the JSON API) may also join
anonymously. The checker holds every session admitted by a ticket: when the
ticket is revoked, the checker calls the session's ``revoke`` (GOODBYE
``orderbook.close.token_revoked``, then close 1008), as it closes connections
whose upgrade token is revoked.
"""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.wamp import message

from orderbook.server.wamp.errors import AUTHENTICATION_FAILED, NO_AUTH_METHOD, SessionAbort


class TokenChecker(Protocol):
    """The server's access tokens (orderbook.server.access builds the real one)."""

    enabled: bool

    def accepts(self, token: str | None) -> bool:
        """True if ``token`` grants access (constant-time comparison)."""

    def hold(self, token: str, holder: Any, via: str) -> None:
        """Call ``holder.revoke(code, reason)`` once ``token`` is revoked."""


class AuthDisabled:
    """No access control: everyone joins anonymously."""

    enabled = False

    def accepts(self, token: str | None) -> bool:
        return True

    def hold(self, token: str, holder: Any, via: str) -> None:
        """Nothing is ever revoked."""


AUTH_DISABLED = AuthDisabled()


def method_for(hello: message.Hello, tokens: TokenChecker, upgrade_token: str | None) -> str:
    """The authmethod a HELLO gets (``anonymous`` or ``ticket``), or SessionAbort.

    ``upgrade_token``: the token the WebSocket upgrade carried, if any.
    """
    offered = hello.authmethods or ["anonymous"]
    upgraded = tokens.enabled and _accepted(tokens, upgrade_token)
    if tokens.enabled and "ticket" in offered and not (upgraded and "anonymous" in offered):
        return "ticket"
    if tokens.enabled and not upgraded:
        raise SessionAbort(
            NO_AUTH_METHOD,
            'this server requires ticket authentication: offer authmethods ["ticket"] '
            "and answer the challenge with your access token",
        )
    if "anonymous" not in offered:
        raise SessionAbort(NO_AUTH_METHOD, "only anonymous authentication is offered")
    return "anonymous"


def _accepted(tokens: TokenChecker, token: str | None) -> bool:
    return token is not None and tokens.accepts(token)


def upgrade_token(headers: dict[str, str], params: dict[str, list[str]]) -> str | None:
    """The access token of a WebSocket upgrade: ``Authorization: Bearer`` or ``?token=``."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return (params.get("token") or [None])[0]


def check_ticket(reply: message.Authenticate, tokens: TokenChecker) -> None:
    """SessionAbort unless the AUTHENTICATE ``reply`` carries an accepted token."""
    if not tokens.accepts(reply.signature):
        raise SessionAbort(AUTHENTICATION_FAILED, "invalid ticket: the access token is not valid")

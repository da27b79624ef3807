"""Access control: bearer tokens from a file, checked on every WebSocket upgrade.

Tokens file (``[access] tokens_file``): one token per line; blank lines and
lines starting with ``#`` are ignored, and `` #`` starts a comment after a
token. A token is 16 to 512 characters of ``A-Z a-z 0-9 - . _ ~`` (safe in a
URL as it is), e.g. from ``python -c "import secrets; print(secrets.token_urlsafe(32))"``.

A client passes its token as ``Authorization: Bearer <token>`` or, where it
cannot set headers (browsers), as the query parameter ``?token=<token>``; a
WAMP client may instead send it as its WAMP-ticket (the WAMP session checks
it through :meth:`TokenStore.accepts`). A refused upgrade gets HTTP 401 with
the reason in the body and a ``WWW-Authenticate: Bearer`` header.

Comparison is constant-time over every token. ``SIGHUP`` re-reads the file
(:meth:`TokenStore.reload` is one of the process's SIGHUP hooks); a file that
became unreadable or invalid keeps the tokens in force, logs why and counts the
failure. Every open WebSocket and WAMP session that came in with a token the new
file no longer holds (its upgrade token, its WAMP ticket: either one) is closed
with 1008 ``access token revoked``, a WAMP session after a GOODBYE saying so.
"""

from __future__ import annotations

import hmac
import re
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request

from orderbook.config import ConfigError
from orderbook.metrics import Metrics

TOKEN = re.compile(r"[A-Za-z0-9\-._~]{16,512}")
_COMMENT = re.compile(r"\s#")
_QUERY_TOKEN = re.compile(r"([?&]token=)[^&\s\"]*")
_log = Logger(namespace="orderbook.access")
CLOSE_POLICY = 1008
REVOKED = "access token revoked"


def parse_tokens(text: str, source: str) -> list[bytes]:
    """The tokens of a tokens file (ConfigError naming ``source:line`` on a bad line)."""
    tokens = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.split(raw, 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if not TOKEN.fullmatch(line):
            raise ConfigError(
                f"{source}:{number}: not a token (16-512 characters of A-Z a-z 0-9 - . _ ~,"
                " one per line)"
            )
        tokens.append(line.encode())
    return tokens


def read_tokens(path: Path) -> list[bytes]:
    """Read and parse the tokens file at ``path`` (ConfigError saying what is wrong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"[access] tokens_file: cannot read {str(path)!r}: {reason}") from None
    return parse_tokens(text, str(path))


class TokenStore:
    """The tokens in force. ``enabled`` is False when no tokens file is configured."""

    def __init__(self, path: Path | None, metrics: Metrics | None = None) -> None:
        self.path = path
        self._tokens: list[bytes] = read_tokens(path) if path is not None else []
        self._holders: weakref.WeakKeyDictionary[Any, dict[str, bytes]] = (
            weakref.WeakKeyDictionary()
        )
        metrics = metrics if metrics is not None else Metrics()
        metrics.gauge("orderbook_access_tokens", "Tokens in force", read=lambda: len(self._tokens))
        self.reloads = metrics.counter(
            "orderbook_access_reloads_total", "Tokens file reloads (SIGHUP), by result", ["result"]
        )
        self.denied = metrics.counter(
            "orderbook_access_denied_total",
            "Requests refused with HTTP 401, by endpoint and reason",
            ["endpoint", "reason"],
        )
        self.revoked = metrics.counter(
            "orderbook_access_revoked_total",
            "Connections and WAMP sessions closed because their token was revoked,"
            " by how they gave it (upgrade or ticket)",
            ["via"],
        )
        if path is not None and not self._tokens:
            _log.warn("{path} holds no token: every client will be refused", path=str(path))

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def accepts(self, token: str | None) -> bool:
        """True when access control is off, or ``token`` is one of the tokens in force."""
        if self.path is None:
            return True
        if token is None:
            return False
        return self._known(token.encode("utf-8", "replace"))

    def _known(self, candidate: bytes) -> bool:
        found = False
        for known in self._tokens:  # every token, so the time does not say which matched
            found |= hmac.compare_digest(candidate, known)
        return found

    def reload(self) -> bool:
        """Re-read the file; on any problem keep the tokens in force (False)."""
        if self.path is None:
            return True
        try:
            tokens = read_tokens(self.path)
        except ConfigError as exc:
            self.reloads.inc(1, "error")
            _log.error("tokens not reloaded, the previous ones stay: {reason}", reason=str(exc))
            return False
        self._tokens = tokens
        self.reloads.inc(1, "ok")
        _log.info("reloaded {count} tokens from {path}", count=len(tokens), path=str(self.path))
        self._close_revoked()
        return True

    def hold(self, token: str, holder: Any, via: str = "upgrade") -> None:
        """Remember that open ``holder`` came in with ``token`` (closed if it is revoked).

        ``holder``: a WebSocket connection (``via`` its upgrade) or a WAMP session
        (``via`` its ticket); its ``revoke(code, reason)`` ends it (False if it
        had ended already).
        """
        self._holders.setdefault(holder, {})[via] = token.encode("utf-8", "replace")

    def _close_revoked(self) -> None:
        closed = 0
        for holder, held in list(self._holders.items()):
            gone = [via for via, token in held.items() if not self._known(token)]
            if not gone:
                continue
            del self._holders[holder]
            if holder.revoke(CLOSE_POLICY, REVOKED):
                self.revoked.inc(1, gone[0])
                closed += 1
        if closed:
            _log.info("closed {count} connections whose token was revoked", count=closed)


def bearer_token(authorization: str | None, query_tokens: Iterable[str]) -> str | None:
    """The token a client offers: ``Authorization: Bearer`` first, else ``?token=``."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for token in query_tokens:
        return token
    return None


def request_token(request: Request) -> str | None:
    """The token offered with a twisted.web request (see :func:`bearer_token`)."""
    header = request.getHeader(b"authorization")
    queried = request.args.get(b"token", []) if request.args else []
    return bearer_token(
        header.decode("latin-1") if isinstance(header, bytes) else header,
        [value.decode("utf-8", "replace") for value in queried],
    )


class Guarded(Resource):
    """A leaf resource served only to requests with a token the store accepts.

    ``allow_missing``: a request without any token passes (WAMP, whose session
    then asks for a ticket); a wrong token is still refused.
    """

    isLeaf = True

    def __init__(
        self, resource: Resource, tokens: TokenStore, endpoint: str, allow_missing: bool = False
    ) -> None:
        super().__init__()
        self.resource = resource
        self.tokens = tokens
        self.endpoint = endpoint
        self.allow_missing = allow_missing

    def render(self, request: Request) -> Any:
        token = request_token(request)
        if self.tokens.accepts(token) or (token is None and self.allow_missing):
            return self._render(request, token)
        reason = "missing" if token is None else "invalid"
        self.tokens.denied.inc(1, self.endpoint, reason)
        return unauthorized(request, reason)

    def _render(self, request: Request, token: str | None) -> Any:
        """Render; after a WebSocket upgrade remember its token (to close it if revoked)."""
        channel = request.channel
        below = channel.transport
        result = self.resource.render(request)
        if token is not None and self.tokens.enabled and channel.transport is None:
            connection = getattr(below, "wrappedProtocol", None)
            if connection is not None:
                self.tokens.hold(token, connection)
        return result


def unauthorized(request: Request, reason: str) -> bytes:
    """HTTP 401 with the reason in the body and a Bearer challenge (RFC 6750)."""
    if reason == "missing":
        text = "token required: send Authorization: Bearer <token> or ?token=<token>"
        challenge = b'Bearer realm="orderbook"'
    else:
        text = "invalid token"
        challenge = b'Bearer realm="orderbook", error="invalid_token"'
    request.setResponseCode(401)
    request.setHeader(b"www-authenticate", challenge)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return text.encode() + b"\n"


def redacting_log_formatter(timestamp: str, request: Request) -> str:
    """twisted.web's combined log line with every ``token=`` value hidden (URI and Referer)."""
    return _QUERY_TOKEN.sub(r"\1REDACTED", combinedLogFormatter(timestamp, request))

"""The Crossbar publisher's session on the external router: joins (anonymous, ticket
or cryptosign), registers each procedure on its own, follows the router's
subscriptions, and answers invocations (``orderbook.l4book.snapshot`` in parts
when the caller asked ``receive_progress``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import msgspec
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, RegisterOptions
from twisted.logger import Logger

from orderbook.config import WampSettings
from orderbook.feed import messages
from orderbook.server.wamp.errors import WampError
from orderbook.server.wamp.procedures import SNAPSHOT, Procedures

if TYPE_CHECKING:
    from orderbook.server.wamp.publisher import CrossbarPublisher

_DETAILS = "orderbook_call_details"  # our callee's CallDetails keyword (receive_progress)
_decode = msgspec.json.decode


def plaintext_ticket_refusal(settings: WampSettings) -> str:
    """Why the ticket must not go to ``router_url`` ('' when it may, or is not used)."""
    uses_ticket = bool(settings.router_ticket) and settings.router_cryptosign_key is None
    plain = urlparse(settings.router_url).scheme == "ws"
    if uses_ticket and plain and not settings.allow_plaintext_ticket:
        return (
            "router_ticket would travel unencrypted over ws:// "
            "(use wss://, or set [wamp] allow_plaintext_ticket = yes on a trusted network)"
        )
    return ""


class CrossbarSession(ApplicationSession):
    """Our session on the external router."""

    _log = Logger()

    def __init__(self, config: ComponentConfig, publisher: CrossbarPublisher) -> None:
        super().__init__(config)
        self.publisher = publisher
        settings = publisher.settings
        self._ticket = settings.router_ticket
        self._key: Any = None
        if settings.router_cryptosign_key is not None:
            from autobahn.wamp.cryptosign import CryptosignKey

            self._key = CryptosignKey.from_keyfile(str(settings.router_cryptosign_key))

    def onConnect(self) -> None:
        settings = self.publisher.settings
        methods = ["anonymous"]
        extra = None
        if self._key is not None:
            methods = ["cryptosign"]
            extra = {"pubkey": self._key.public_key()}
        elif self._ticket:
            methods = ["ticket"]
        self.join(
            settings.router_realm,
            authmethods=methods,
            authid=settings.router_authid or None,
            authextra=extra,
        )

    def onChallenge(self, challenge: Any) -> Any:
        if challenge.method == "ticket":
            refused = plaintext_ticket_refusal(self.publisher.settings)
            if refused:
                raise ApplicationError("orderbook.error.auth", refused)
            return self._ticket
        if challenge.method == "cryptosign" and self._key is not None:
            return self._key.sign_challenge(challenge)
        raise ApplicationError("orderbook.error.auth", f"unexpected challenge {challenge.method}")

    async def onJoin(self, details: Any) -> None:
        publisher = self.publisher
        publisher.joined(self)
        try:
            await self._register_procedures()
            await self._watch_subscriptions()
        except Exception:
            self._log.failure("setting up the router session failed")

    async def _register_procedures(self) -> None:
        """Register each procedure on its own: one refusal stops none of the others."""
        procedures = self.publisher.procedures
        errors = {}
        for name in procedures.table:
            options = RegisterOptions(details_arg=_DETAILS) if name == SNAPSHOT else None
            try:
                await self.register(_callee(procedures, name), name, options=options)
            except ApplicationError as exc:
                errors[name] = exc.error
        self.publisher.registered(len(procedures.table) - len(errors), errors)

    async def _watch_subscriptions(self) -> None:
        publisher = self.publisher
        old = publisher.resync_started()
        try:
            await self.subscribe(
                lambda session_id, details: publisher.watch(details["id"], details["uri"]),
                "wamp.subscription.on_create",
            )
            await self.subscribe(
                lambda session_id, sub_id: publisher.unwatch(sub_id), "wamp.subscription.on_delete"
            )
            listing = await self.call("wamp.subscription.list")
            for sub_id in listing.get("exact", []):
                details = await self.call("wamp.subscription.get", sub_id)
                if details:
                    publisher.watch(sub_id, details["uri"])
        except ApplicationError as exc:
            self._log.warn(
                "router meta API unavailable ({error}): publishing the fixed topic set",
                error=exc.error,
            )
            publisher.use_fallback()
        publisher.resync_done(old)

    def onLeave(self, details: Any) -> None:
        self.publisher.left()
        if details.reason not in ("wamp.close.normal", "wamp.close.goodbye_and_out"):
            self._log.warn(
                "router session ended: {reason} {message}",
                reason=details.reason,
                message=details.message or "",
            )
        self.disconnect()

    def onDisconnect(self) -> None:
        self.publisher.left()


def _callee(procedures: Procedures, name: str) -> Any:
    def invoke(*args: Any, **kwargs: Any) -> Any:
        details = kwargs.pop(_DETAILS, None)
        try:
            if details is not None and details.progress is not None:
                return _in_parts(procedures, name, list(args), kwargs, details.progress)
            value = procedures.call(name, list(args), kwargs)
        except WampError as exc:
            raise ApplicationError(exc.uri, str(exc)) from None
        return _decode(messages.encode(value))  # plain JSON types for autobahn's serializer

    return invoke


def _in_parts(
    procedures: Procedures, name: str, args: list[Any], kwargs: dict[str, Any], progress: Any
) -> Any:
    """Send all parts but the last as progressive YIELDs; the last is the result."""
    parts = procedures.call_in_parts(name, args, kwargs)
    if parts is None:  # a procedure that answers in one result
        parts = [messages.encode(procedures.call(name, args, kwargs))]
    for part in parts[:-1]:
        progress(_decode(part))
    return _decode(parts[-1])

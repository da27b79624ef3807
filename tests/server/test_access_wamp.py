"""Revoked tokens end WAMP sessions: in memory, a real TokenStore (tokens file in a
tmp dir) and the real WampFactory on a StringTransport (tests/server/memory.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orderbook.server.access import TokenStore
from orderbook.server.protocol import FeedFactory
from orderbook.server.wamp.protocol import make_wamp_factory
from orderbook.server.wamp.session import WampHub
from tests.server.memory import MemoryClient, MemoryServer

GOOD = "tok-" + "a" * 28
OTHER = "tok-" + "b" * 28
HELLO = [1, "orderbook", {"roles": {"subscriber": {}}, "authmethods": ["ticket"]}]
WELCOME, ABORT, CHALLENGE, GOODBYE = 2, 3, 4, 6
REVOKED_URI = "orderbook.close.token_revoked"


class WampMemoryServer(MemoryServer):
    """The in-memory server with the WAMP factory, its hub checking the tokens file."""

    def __init__(self, tokens: Path) -> None:
        self.tokens = tokens
        super().__init__()

    def make_factory(self) -> FeedFactory:
        self.store = TokenStore(self.tokens, self.metrics)
        self.hub = WampHub("orderbook", self.registry, self.books, self.metrics, tokens=self.store)
        return make_wamp_factory(self.hub, self.ws, self.clock)

    def wamp(self, path: str = "/ws") -> MemoryClient:
        return self.connect(subprotocol="wamp.2.json", path=path)

    def revoked(self, via: str) -> float:
        return self.store.revoked.get(via)


def wamp_messages(client: MemoryClient) -> list[list[Any]]:
    return [json.loads(payload) for opcode, payload in client.read() if opcode == 0x1]


def join_with_ticket(client: MemoryClient, ticket: str) -> None:
    client.send(HELLO)
    assert wamp_messages(client)[-1][0] == CHALLENGE
    client.send([5, ticket, {}])
    assert wamp_messages(client)[-1][0] == WELCOME


def write_tokens(path: Path, *tokens: str) -> None:
    path.write_text("".join(f"{token}\n" for token in tokens) or "# nobody\n")


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    write_tokens(path, GOOD, OTHER)
    return path


@pytest.fixture
def server(tokens: Path) -> WampMemoryServer:
    return WampMemoryServer(tokens)


def assert_revoked(client: MemoryClient, goodbye: int = GOODBYE) -> None:
    """The session ended with GOODBYE (ABORT) token_revoked, then WebSocket close 1008."""
    ending = [m for m in wamp_messages(client) if m[0] in (ABORT, GOODBYE)]
    assert ending == [[goodbye, {"message": "access token revoked"}, REVOKED_URI]]
    assert client.close_frame() == (1008, "access token revoked")


def test_a_revoked_ticket_ends_its_session_the_others_stay(server, tokens):
    """SIGHUP dropped GOOD: its ticket session gets GOODBYE token_revoked and close
    1008, counted; the session with OTHER stays joined and keeps being answered."""
    revoked, kept = server.wamp(), server.wamp()
    join_with_ticket(revoked, GOOD)
    join_with_ticket(kept, OTHER)
    write_tokens(tokens, OTHER)
    assert server.store.reload()
    assert_revoked(revoked)
    assert server.revoked("ticket") == 1
    assert len(server.hub.sessions) == 1
    kept.send([32, 1, {}, "orderbook.status"])  # SUBSCRIBE: still served
    assert wamp_messages(kept)[-1][0] == 33
    assert kept.close_frame() is None
    assert server.store.reload()  # OTHER still there: nothing more to close
    assert kept.close_frame() is None and server.revoked("ticket") == 1
    assert 'orderbook_access_revoked_total{via="ticket"} 1' in server.metrics.render()


def test_the_client_reply_and_a_second_reload_change_nothing(server, tokens):
    """The client's GOODBYE reply after the revocation is ignored; a closed session is
    neither closed nor counted again (the store forgot it)."""
    client = server.wamp()
    join_with_ticket(client, GOOD)
    write_tokens(tokens, OTHER)
    assert server.store.reload()
    assert_revoked(client)
    client.send([GOODBYE, {}, "wamp.close.goodbye_and_out"])
    client.lose()
    write_tokens(tokens)
    assert server.store.reload()
    assert server.revoked("ticket") == 1 and not server.hub.sessions


@pytest.mark.parametrize(
    ("upgrade", "ticket", "remaining", "via"),
    [
        (GOOD, OTHER, (OTHER,), "upgrade"),  # the upgrade token revoked, the ticket kept
        (OTHER, GOOD, (OTHER,), "ticket"),  # the ticket revoked, the upgrade token kept
        (GOOD, GOOD, (OTHER,), "upgrade"),  # the same token both ways: closed once
    ],
)
def test_upgrade_token_and_ticket_either_revoked_ends_the_session(
    server, tokens, upgrade, ticket, remaining, via
):
    """A session that came in with an upgrade token AND a ticket ends when either is
    revoked (one GOODBYE, one close, counted once)."""
    client = server.wamp(f"/ws?token={upgrade}")
    server.store.hold(upgrade, client.protocol)  # what Guarded does after the upgrade
    join_with_ticket(client, ticket)
    write_tokens(tokens, *remaining)
    assert server.store.reload()
    assert_revoked(client)
    assert (server.revoked("upgrade"), server.revoked("ticket")) == (
        float(via == "upgrade"),
        float(via == "ticket"),
    )


def test_both_tokens_kept_keeps_the_session(server, tokens):
    client = server.wamp(f"/ws?token={GOOD}")
    server.store.hold(GOOD, client.protocol)
    join_with_ticket(client, OTHER)
    write_tokens(tokens, OTHER, GOOD, "tok-" + "n" * 28)
    assert server.store.reload()
    assert client.close_frame() is None and len(server.hub.sessions) == 1


def test_an_upgrade_token_session_gets_goodbye_too(server, tokens):
    """A session that joined anonymously on its upgrade token also hears why (GOODBYE)
    before the 1008 close, so Autobahn clients stop instead of reconnecting."""
    client = server.wamp(f"/ws?token={GOOD}")
    server.store.hold(GOOD, client.protocol)
    client.send([1, "orderbook", {"roles": {"subscriber": {}}}])
    assert wamp_messages(client)[-1][0] == WELCOME
    write_tokens(tokens, OTHER)
    assert server.store.reload()
    assert_revoked(client)
    assert server.revoked("upgrade") == 1


def test_before_joining_the_revocation_is_an_abort(server, tokens):
    """Revoked while its session still waits for the ticket: ABORT token_revoked, 1008."""
    client = server.wamp(f"/ws?token={GOOD}")
    server.store.hold(GOOD, client.protocol)
    client.send(HELLO)
    assert wamp_messages(client)[-1][0] == CHALLENGE
    write_tokens(tokens, OTHER)
    assert server.store.reload()
    assert_revoked(client, goodbye=ABORT)


def test_a_broken_file_on_reload_closes_nothing(server, tokens):
    client = server.wamp()
    join_with_ticket(client, GOOD)
    tokens.write_text("not a token\n")
    assert not server.store.reload()
    assert client.close_frame() is None and server.revoked("ticket") == 0

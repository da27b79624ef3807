"""Access control: the tokens file, the store, SIGHUP reload, and 401s on a real TLS server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.endpoints import SSL4ClientEndpoint
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from orderbook.config import ConfigError, ServerSettings
from orderbook.metrics import Metrics
from orderbook.server import access
from orderbook.server.access import (
    TokenStore,
    bearer_token,
    parse_tokens,
    redacting_log_formatter,
)
from orderbook.server.health import health_document, make_ops_site
from orderbook.server.site import make_site
from tests.server.harness import Client, Harness
from tests.server.test_site import _Trust

GOOD = "tok-" + "a" * 28
OTHER = "tok-" + "b" * 28


def tokens_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the file and the store ----------------------------------------------------------


def test_parse_tokens_skips_comments_and_blank_lines():
    """One token per line; # lines, blank lines and ' # ...' tails are not tokens."""
    text = f"# ops team\n\n{GOOD}   # dashboard\n  {OTHER}\t# ci\n"
    assert parse_tokens(text, "tokens") == [GOOD.encode(), OTHER.encode()]


@pytest.mark.parametrize("bad", ["short", "has space in it 123456789", "x" * 513, "tök" * 8])
def test_bad_token_line_names_file_and_line(bad):
    """A line that is not a token is a ConfigError naming file:line; nothing is loaded."""
    with pytest.raises(ConfigError, match=r"^tokens:3: not a token"):
        parse_tokens(f"# c\n{GOOD}\n{bad}\n", "tokens")


def test_unreadable_tokens_file_is_a_config_error(tmp_path):
    """A missing file fails the start with the key and the path."""
    with pytest.raises(ConfigError, match=r"\[access\] tokens_file: cannot read .*missing"):
        TokenStore(tmp_path / "missing")


def test_store_off_accepts_everyone_on_accepts_only_its_tokens(tmp_path):
    """No file: enabled False and every client accepted; with a file: only its tokens."""
    off = TokenStore(None)
    assert not off.enabled and off.accepts(None) and off.accepts("anything")
    on = TokenStore(tokens_file(tmp_path, GOOD, OTHER))
    assert on.enabled
    assert on.accepts(GOOD) and on.accepts(OTHER)
    assert not on.accepts(None)
    assert not on.accepts("")
    assert not on.accepts(GOOD[:-1])
    assert not on.accepts(GOOD + "x")
    assert not on.accepts("tök-" + "a" * 28)  # non-ASCII does not raise


def test_every_token_is_compared_in_constant_time(tmp_path, monkeypatch):
    """accepts() runs hmac.compare_digest against every token, also after a match."""
    store = TokenStore(tokens_file(tmp_path, GOOD, OTHER, "tok-" + "c" * 28))
    calls: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(access.hmac, "compare_digest", compare)
    assert store.accepts(GOOD)
    assert [known for _, known in calls] == [GOOD.encode(), OTHER.encode(), b"tok-" + b"c" * 28]


def test_reload_replaces_tokens_and_keeps_them_when_the_file_breaks(tmp_path):
    """reload() reads the file again; a bad or missing file keeps the tokens in force."""
    metrics = Metrics()
    path = tokens_file(tmp_path, GOOD)
    store = TokenStore(path, metrics)
    tokens_file(tmp_path, OTHER)
    assert store.reload()
    assert store.accepts(OTHER) and not store.accepts(GOOD)
    path.write_text(f"{GOOD}\nnot a token\n")
    assert not store.reload()
    assert store.accepts(OTHER) and not store.accepts(GOOD)
    path.unlink()
    assert not store.reload()
    assert store.accepts(OTHER)
    text = metrics.render()
    assert 'orderbook_access_reloads_total{result="ok"} 1' in text
    assert 'orderbook_access_reloads_total{result="error"} 2' in text
    assert "orderbook_access_tokens 1" in text


def test_bearer_header_first_then_query():
    """Authorization: Bearer wins over ?token=; the scheme is case-insensitive."""
    assert bearer_token("Bearer abc", ["q"]) == "abc"
    assert bearer_token("bearer   abc ", []) == "abc"
    assert bearer_token("Basic abc", ["q"]) == "q"
    assert bearer_token("Bearer ", ["q"]) == "q"
    assert bearer_token(None, []) is None


def test_access_log_hides_tokens():
    """The access log line keeps the path and hides every token= value (Referer too)."""
    request = DummyRequest([b"ws"])
    request.uri = f"/ws?coin=BTC&token={GOOD}&x=1".encode()
    request.method = b"GET"
    request.clientproto = b"HTTP/1.1"
    request.code = 200
    request.sentLength = 0
    request.requestHeaders.setRawHeaders(b"referer", [f"https://h/?token={OTHER}".encode()])
    line = redacting_log_formatter("[t]", request)
    assert GOOD not in line and OTHER not in line
    assert "/ws?coin=BTC&token=REDACTED&x=1" in line
    assert '"https://h/?token=REDACTED"' in line


# -- a real TLS server with tokens ---------------------------------------------------


class TokenHarness(Harness):
    """The feed harness with a tokens file (and optionally a separate metrics site)."""

    def __init__(self, reactor: Any, tmp_path: Path, **ws: Any) -> None:
        self.tokens_path = tokens_file(tmp_path, GOOD, OTHER)
        self.metrics_listen = ws.pop("metrics_listen", ())
        self.protect_metrics = ws.pop("protect_metrics", True)
        super().__init__(reactor, tmp_path, **ws)

    def make_site(self, reactor: Any, wamp_factory: Any = None) -> Any:
        if not hasattr(self, "store"):
            self.store = TokenStore(self.tokens_path, self.metrics)
        server = ServerSettings(
            listen=("ssl:0",), path="/ws", page=False, metrics_listen=self.metrics_listen
        )
        return make_site(
            server,
            self.ws,
            self.books,
            self.registry,
            self.metrics,
            lambda: self.status,
            reactor,
            wamp_factory=wamp_factory,
            tokens=self.store,
            protect_metrics=self.protect_metrics,
        )

    async def open(self, path: str = "/ws", headers: dict[str, str] | None = None) -> Client:
        url = f"wss://localhost:{self.port_number}{path}"
        factory = WebSocketClientFactory(url, headers=headers or {})
        factory.protocol = Client
        endpoint = SSL4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number, self.tls())
        client = await endpoint.connect(factory)
        self.clients.append(client)
        return client

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any, bytes]:
        agent = Agent(self.reactor, contextFactory=_Trust(self.tls()))
        headers = Headers({b"authorization": [f"Bearer {token}".encode()]} if token else {})
        response = await agent.request(
            b"GET", f"https://localhost:{self.port_number}{path}".encode(), headers
        )
        return response.code, response.headers, await readBody(response)


@pytest_twisted.async_yield_fixture
async def token_server(reactor, tmp_path):
    made: list[TokenHarness] = []

    async def make(**kwargs: Any) -> TokenHarness:
        harness = await TokenHarness(reactor, tmp_path, **kwargs).start()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.stop()


def denied(harness: TokenHarness, endpoint: str, reason: str) -> float:
    return harness.store.denied.get(endpoint, reason)


@pytest_twisted.ensureDeferred
async def test_websocket_needs_a_token(token_server):
    """No token: HTTP 401 naming both ways to pass one; a wrong token: 401 invalid token."""
    harness = await token_server()
    missing = await harness.open()
    with pytest.raises(ConnectionError, match="401"):
        await missing.opened
    wrong = await harness.open(f"/ws?token={GOOD}x")
    with pytest.raises(ConnectionError, match="401"):
        await wrong.opened
    assert denied(harness, "ws", "missing") == 1
    assert denied(harness, "ws", "invalid") == 1
    assert not harness.registry.connections


@pytest_twisted.ensureDeferred
async def test_401_body_says_why(token_server):
    """The 401 carries a Bearer challenge and the reason as text (what a client shows)."""
    harness = await token_server()
    code, headers, body = await harness.get("/ws")
    assert code == 401
    assert headers.getRawHeaders(b"www-authenticate") == [b'Bearer realm="orderbook"']
    assert body == b"token required: send Authorization: Bearer <token> or ?token=<token>\n"
    code, headers, body = await harness.get("/ws", token="wrong-token-0123456789")
    assert (code, body) == (401, b"invalid token\n")
    assert b'error="invalid_token"' in headers.getRawHeaders(b"www-authenticate")[0]


@pytest_twisted.ensureDeferred
async def test_token_in_query_or_header_opens_the_feed(token_server):
    """?token= (browsers) and Authorization: Bearer (others) both get the JSON API."""
    harness = await token_server()
    by_query = await harness.open(f"/ws?token={GOOD}")
    by_header = await harness.open(headers={"Authorization": f"Bearer {OTHER}"})
    for client in (by_query, by_header):
        await client.opened
        client.send({"method": "ping"})
        await client.channel("pong")
    assert len(harness.registry.connections) == 2


@pytest_twisted.ensureDeferred
async def test_reload_applies_to_new_upgrades(token_server, tmp_path):
    """After a reload a removed token is refused and a new one accepted."""
    harness = await token_server()
    new = "tok-" + "n" * 28
    tokens_file(tmp_path, new)
    assert harness.store.reload()
    old = await harness.open(f"/ws?token={GOOD}")
    with pytest.raises(ConnectionError, match="401"):
        await old.opened
    fresh = await harness.open(f"/ws?token={new}")
    await fresh.opened


@pytest_twisted.ensureDeferred
async def test_reload_closes_connections_whose_token_was_revoked(token_server, tmp_path):
    """An open WebSocket whose token left the file is closed 1008; the others stay."""
    harness = await token_server()
    revoked = await harness.open(f"/ws?token={GOOD}")
    kept = await harness.open(headers={"Authorization": f"Bearer {OTHER}"})
    await revoked.opened
    await kept.opened
    tokens_file(tmp_path, OTHER)
    assert harness.store.reload()
    assert await revoked.closed == (1008, "access token revoked")
    kept.send({"method": "ping"})
    await kept.channel("pong")
    tokens_file(tmp_path, "# nobody")
    assert harness.store.reload()
    assert await kept.closed == (1008, "access token revoked")


@pytest_twisted.ensureDeferred
async def test_health_and_metrics_protected_by_default(token_server):
    """With tokens on, /health and /metrics answer 401 without one and 200 with one."""
    harness = await token_server()
    assert (await harness.get("/metrics"))[0] == 401
    assert (await harness.get("/health"))[0] == 401
    code, _headers, body = await harness.get("/metrics", token=GOOD)
    assert code == 200
    assert 'orderbook_access_denied_total{endpoint="metrics",reason="missing"} 1' in body.decode()
    code, _headers, body = await harness.get("/health", token=GOOD)
    assert code == 200 and json.loads(body)["state"] == "ready"


@pytest_twisted.ensureDeferred
async def test_protect_metrics_off_leaves_them_open(token_server):
    """protect_metrics = no: /health and /metrics without a token; the feed still needs one."""
    harness = await token_server(protect_metrics=False)
    assert (await harness.get("/metrics"))[0] == 200
    assert (await harness.get("/health"))[0] == 200
    assert (await harness.get("/ws"))[0] == 401


@pytest_twisted.ensureDeferred
async def test_metrics_listen_moves_health_and_metrics_off_the_public_site(reactor, token_server):
    """With metrics_listen set, the public site answers 404; the ops site serves both."""
    from twisted.internet.endpoints import serverFromString

    harness = await token_server(metrics_listen=("tcp:0:interface=127.0.0.1",))
    assert (await harness.get("/metrics", token=GOOD))[0] == 404
    assert (await harness.get("/health", token=GOOD))[0] == 404
    ops = make_ops_site(health_document(lambda: harness.status, harness.registry), harness.metrics)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(ops)
    try:
        number = port.getHost().port
        agent = Agent(reactor)
        response = await agent.request(b"GET", f"http://127.0.0.1:{number}/metrics".encode())
        body = await readBody(response)
        assert response.code == 200 and b"orderbook_ws_connections 0" in body
        response = await agent.request(b"GET", f"http://127.0.0.1:{number}/health".encode())
        assert response.code == 200 and json.loads(await readBody(response))["state"] == "ready"
    finally:
        await port.stopListening()


# -- WAMP on the same path -----------------------------------------------------------


class WampTokenHarness(TokenHarness):
    """Tokens on, WAMP beside the JSON API; ``ticket_auth``: its sessions get the tokens
    (and ask for a ticket), else they are anonymous and the upgrade needs a token."""

    def __init__(self, reactor: Any, tmp_path: Path, ticket_auth: bool, **ws: Any) -> None:
        self.ticket_auth = ticket_auth
        super().__init__(reactor, tmp_path, **ws)

    def make_site(self, reactor: Any, wamp_factory: Any = None) -> Any:
        from orderbook.server.wamp.protocol import make_wamp_factory
        from orderbook.server.wamp.session import WampHub

        self.store = TokenStore(self.tokens_path, self.metrics)
        tokens = {"tokens": self.store} if self.ticket_auth else {}
        hub = WampHub("orderbook", self.registry, self.books, self.metrics, **tokens)
        factory = make_wamp_factory(hub, self.ws, reactor)
        assert factory.ticket_auth is self.ticket_auth
        return super().make_site(reactor, factory)

    async def open_wamp(self, path: str = "/ws") -> Client:
        url = f"wss://localhost:{self.port_number}{path}"
        factory = WebSocketClientFactory(url, protocols=["wamp.2.json"])
        factory.protocol = Client
        endpoint = SSL4ClientEndpoint(self.reactor, "127.0.0.1", self.port_number, self.tls())
        client = await endpoint.connect(factory)
        self.clients.append(client)
        return client


@pytest.mark.parametrize("ticket_auth", [False, True])
@pytest_twisted.ensureDeferred
async def test_wamp_upgrade_token_or_ticket(reactor, tmp_path, ticket_auth):
    """WAMP upgrades: a wrong token is always 401; a missing one is 401 unless the WAMP
    sessions ask for a ticket; a good ?token= always opens."""
    harness = await WampTokenHarness(reactor, tmp_path, ticket_auth).start()
    try:
        wrong = await harness.open_wamp("/ws?token=wrong-token-0123456789")
        with pytest.raises(ConnectionError, match="401"):
            await wrong.opened
        missing = await harness.open_wamp()
        if ticket_auth:
            await missing.opened
        else:
            with pytest.raises(ConnectionError, match="401"):
                await missing.opened
        good = await harness.open_wamp(f"/ws?token={GOOD}")
        await good.opened
        assert denied(harness, "wamp", "invalid") == 1
        assert denied(harness, "wamp", "missing") == (0 if ticket_auth else 1)
    finally:
        await harness.stop()


class TicketClient:
    """An autobahn-python WAMP session that joins with WAMP-Ticket ``ticket``."""

    @staticmethod
    async def join(harness: WampTokenHarness, ticket: str) -> Any:
        """("joined", authmethod), then it leaves; or ("left", the refusal's reason)."""
        from twisted.internet import defer

        client = JoinedClient()
        await client.connect(harness, ticket=ticket)
        value, first = await defer.DeferredList(
            [client.joined, client.left], fireOnOneCallback=True, consumeErrors=True
        )
        if first == 0:
            client.session.leave()
            return ("joined", value)
        return ("left", value[0])


@pytest_twisted.ensureDeferred
async def test_wamp_ticket_is_checked_against_the_same_tokens(reactor, tmp_path):
    """A WAMP client without an upgrade token joins with a token from the file as its
    ticket; a ticket that is not in the file is refused; a reload applies to tickets."""
    harness = await WampTokenHarness(reactor, tmp_path, True).start()
    try:
        assert await TicketClient.join(harness, GOOD) == ("joined", "ticket")
        refused = await TicketClient.join(harness, "not-a-token-0123456789")
        assert refused == ("left", "wamp.error.authentication_failed")
        tokens_file(tmp_path, OTHER)
        assert harness.store.reload()
        assert (await TicketClient.join(harness, GOOD))[0] == "left"
        assert await TicketClient.join(harness, OTHER) == ("joined", "ticket")
    finally:
        await harness.stop()


class JoinedClient:
    """An autobahn-python WAMP session that stays joined (with a ticket, or anonymously
    on a ``?token=`` upgrade), and what it sees at the end: onLeave's reason and
    message, the WebSocket close code."""

    def __init__(self) -> None:
        from twisted.internet import defer

        self.joined: defer.Deferred[str] = defer.Deferred()
        self.left: defer.Deferred[tuple[str, str]] = defer.Deferred()
        self.closed: defer.Deferred[int | None] = defer.Deferred()
        self.session: Any = None

    async def join(
        self, harness: WampTokenHarness, ticket: str = "", query: str = ""
    ) -> JoinedClient:
        await self.connect(harness, ticket, query)
        assert await self.joined == ("ticket" if ticket else "anonymous")
        return self

    async def connect(self, harness: WampTokenHarness, ticket: str = "", query: str = "") -> None:
        from autobahn.twisted.wamp import ApplicationSession
        from autobahn.twisted.websocket import (
            WampWebSocketClientFactory,
            WampWebSocketClientProtocol,
        )
        from autobahn.wamp.serializer import JsonSerializer
        from autobahn.wamp.types import ComponentConfig

        client = self

        class Session(ApplicationSession):
            def onConnect(self) -> None:
                self.join("orderbook", authmethods=["ticket" if ticket else "anonymous"])

            def onChallenge(self, challenge: Any) -> str:
                return ticket

            def onJoin(self, details: Any) -> None:
                client.session = self
                client.joined.callback(details.authmethod)

            def onLeave(self, details: Any) -> None:
                client.left.callback((details.reason, details.message))
                self.disconnect()

        class Protocol(WampWebSocketClientProtocol):
            def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
                super().onClose(wasClean, code, reason)
                if not client.closed.called:
                    client.closed.callback(code)

        factory = WampWebSocketClientFactory(
            lambda: Session(ComponentConfig("orderbook")),
            url=f"wss://localhost:{harness.port_number}/ws{query}",
            serializers=[JsonSerializer()],
        )
        factory.protocol = Protocol
        endpoint = SSL4ClientEndpoint(
            harness.reactor, "127.0.0.1", harness.port_number, harness.tls()
        )
        await endpoint.connect(factory)


@pytest_twisted.ensureDeferred
async def test_reload_ends_wamp_sessions_whose_ticket_was_revoked(reactor, tmp_path):
    """What autobahn-python sees when its ticket (or upgrade token) leaves the file:
    onLeave with orderbook.close.token_revoked and the reason, then the WebSocket close
    1008. The session whose ticket stays keeps working; /metrics counts both."""
    harness = await WampTokenHarness(reactor, tmp_path, True).start()
    try:
        by_ticket = await JoinedClient().join(harness, ticket=GOOD)
        by_upgrade = await JoinedClient().join(harness, query=f"?token={GOOD}")
        kept = await JoinedClient().join(harness, ticket=OTHER)
        tokens_file(tmp_path, OTHER)
        assert harness.store.reload()
        for revoked in (by_ticket, by_upgrade):
            assert await revoked.left == ("orderbook.close.token_revoked", "access token revoked")
            assert await revoked.closed == 1008
        assert await kept.session.call("orderbook.coins") == ["BTC", "ETH"]
        _code, _headers, body = await harness.get("/metrics", token=OTHER)
        assert 'orderbook_access_revoked_total{via="ticket"} 1' in body.decode()
        assert 'orderbook_access_revoked_total{via="upgrade"} 1' in body.decode()
        kept.session.leave()
        assert (await kept.left)[0] == "wamp.close.goodbye_and_out"  # it left itself
    finally:
        await harness.stop()

"""Tests for orderbook.server.wamp.session: the router-side WAMP session, in memory.

Sessions run against the real Books, feed Registry and metrics; their link
is a list that records every OutgoingMessage, decoded with autobahn's own
JSON serializer, so what is checked is what an Autobahn client would parse.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from autobahn.wamp import message
from autobahn.wamp.serializer import JsonSerializer
from twisted.logger import LogLevel, capturedLogs

from orderbook.book.books import BlockResult, CoinUpdate
from orderbook.config import WebSocketSettings
from orderbook.feed.frames import OutgoingMessage
from orderbook.feed.registry import Registry
from orderbook.metrics import Metrics
from orderbook.server.wamp.auth import upgrade_token
from orderbook.server.wamp.parts import MAX_MESSAGE_BYTES
from orderbook.server.wamp.session import WampHub, WampSession
from tests.server.harness import order, small_books
from tests.server.test_wamp_js import deep_books

_serializer = JsonSerializer()
TRADE = {"coin": "BTC", "side": "A", "px": "100.0", "sz": "0.5", "time": 1, "hash": "0x1", "tid": 7}


class Link:
    """Records what a session sends; ``close`` records the close code.

    ``paused`` plays the transport's flow control (``slow``: every send fills the
    socket buffer and pauses); ``resume()`` runs what waits.
    """

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.closed: tuple[int, str] | None = None
        self.paused = False
        self.slow = False
        self.waiting: list[Any] = []

    def writable(self) -> bool:
        return not self.paused

    def when_writable(self, callback: Any) -> None:
        self.waiting.append(callback)

    def resume(self) -> None:
        self.paused = False
        waiting, self.waiting = self.waiting, []
        for callback in waiting:
            callback()

    def send(self, msg: OutgoingMessage, key: Any = None, lossless: bool = True) -> int:
        self.sent.append(msg)
        self.paused = self.paused or self.slow
        return len(msg.payload)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def messages(self) -> list[Any]:
        return [_serializer.unserialize(m.payload)[0] for m in self.sent]

    def last(self) -> Any:
        return self.messages()[-1]


class Tokens:
    """A fake of the access token store: ``enabled``, ``accepts(token)``, ``hold``."""

    def __init__(self, *tokens: str, enabled: bool = True) -> None:
        self.tokens = set(tokens)
        self.enabled = enabled
        self.asked: list[str | None] = []
        self.held: list[tuple[str, str]] = []

    def accepts(self, token: str | None) -> bool:
        self.asked.append(token)
        return token in self.tokens

    def hold(self, token: str, holder: Any, via: str) -> None:
        self.held.append((token, via))


class World:
    """A hub over small real books, and helpers to open sessions."""

    def __init__(self, books: Any = None, tokens: Any = None, **ws: Any) -> None:
        self.books = books if books is not None else small_books()
        self.metrics = Metrics()
        self.ws = WebSocketSettings(**ws)
        self.status = {"state": "ready", "height": 100}
        self.registry = Registry(
            self.books, self.ws, self.metrics, status_provider=lambda: self.status
        )
        auth = {"tokens": tokens} if tokens is not None else {}
        self.hub = WampHub("orderbook", self.registry, self.books, self.metrics, **auth)

    def session(self, join: bool = True, token: str | None = None) -> tuple[WampSession, Link]:
        link = Link()
        session = self.hub.open(link, link.close, "test", upgrade_token=token)
        if join:
            send(session, [1, "orderbook", {"roles": {"subscriber": {}, "caller": {}}}])
            assert isinstance(link.last(), message.Welcome)
        return session, link


def send(session: WampSession, raw: Any) -> None:
    session.on_message(json.dumps(raw).encode(), False)


def subscribe(
    session: WampSession, link: Link, topic: str, request: int = 1, **options: Any
) -> Any:
    send(session, [32, request, options, topic])
    return link.last()


def call(session: WampSession, link: Link, procedure: str, *args: Any, **kwargs: Any) -> Any:
    send(session, [48, 9, {}, procedure, list(args), kwargs])
    return link.last()


@pytest.fixture
def world() -> World:
    return World()


# -- session establishment ----------------------------------------------------------


def test_hello_gets_welcome_with_broker_and_dealer_roles(world: World) -> None:
    """HELLO for the configured realm is answered WELCOME: anonymous, broker + dealer."""
    session, link = world.session(join=False)
    send(session, [1, "orderbook", {"roles": {"subscriber": {}}, "authmethods": ["anonymous"]}])
    welcome = link.last()
    assert isinstance(welcome, message.Welcome)
    assert welcome.session == session.session_id > 0
    assert welcome.realm == "orderbook"
    assert (welcome.authrole, welcome.authmethod) == ("anonymous", "anonymous")
    assert set(welcome.roles) == {"broker", "dealer"}
    assert session in world.hub.sessions


def test_wrong_realm_is_aborted(world: World) -> None:
    """HELLO for another realm gets ABORT no_such_realm and the connection closes."""
    session, link = world.session(join=False)
    send(session, [1, "other", {"roles": {"subscriber": {}}}])
    abort = link.last()
    assert isinstance(abort, message.Abort)
    assert abort.reason == "wamp.error.no_such_realm"
    assert link.closed == (1000, "wamp.error.no_such_realm")
    assert session.state == "closed"


def test_only_anonymous_authentication(world: World) -> None:
    """A client that offers only ticket authentication gets ABORT no_auth_method."""
    session, link = world.session(join=False)
    send(session, [1, "orderbook", {"roles": {"caller": {}}, "authmethods": ["ticket"]}])
    assert link.last().reason == "wamp.error.no_auth_method"


@pytest.mark.parametrize(
    "raw",
    [
        [32, 1, {}, "orderbook.status"],  # SUBSCRIBE before HELLO
        [2, 1, {"roles": {"broker": {}}}],  # WELCOME is router -> client
        [1, "orderbook", {}],  # HELLO without roles
    ],
)
def test_anything_but_a_valid_hello_first_is_a_protocol_violation(world: World, raw: Any) -> None:
    """Before the session is open only a valid HELLO is accepted: ABORT, close 1000."""
    session, link = world.session(join=False)
    send(session, raw)
    assert link.last().reason == "wamp.error.protocol_violation"
    assert link.closed is not None and link.closed[0] == 1000


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"a": 1}',
        b"[]",
        b'["1"]',
        b"[99, 1]",
        b"[36, 1, 2, {}]",  # EVENT is router -> client
        b'[1, "orderbook", {"roles": {}}]',  # HELLO again in an open session
        b'[32, "x", {}, "orderbook.status"]',  # request id of the wrong type
        b'[48, 1, {}, "orderbook.coins", {}]',  # args must be a list
        b"[70, 1, {}, [1]]",  # YIELD for an invocation we never sent
    ],
)
def test_malformed_or_out_of_place_messages_abort_without_traceback(
    world: World, payload: bytes
) -> None:
    """Bad JSON, wrong shapes and types, unknown codes: ABORT protocol_violation, no traceback."""
    session, link = world.session()
    with capturedLogs() as events:
        session.on_message(payload, False)
    abort = link.last()
    assert isinstance(abort, message.Abort)
    assert abort.reason == "wamp.error.protocol_violation"
    assert link.closed is not None and link.closed[0] == 1000
    assert not [e for e in events if e.get("log_failure") or e["log_level"] >= LogLevel.error]


def test_binary_messages_abort(world: World) -> None:
    """wamp.2.json is text only: a binary message ends the session."""
    session, link = world.session()
    session.on_message(b'[6, {}, "x"]', True)
    assert link.last().reason == "wamp.error.protocol_violation"


def test_goodbye_is_answered_and_leaves_every_topic(world: World) -> None:
    """GOODBYE gets GOODBYE goodbye_and_out; the session's subscriptions are released."""
    session, link = world.session()
    subscribe(session, link, "orderbook.trades.BTC")
    send(session, [6, {}, "wamp.close.close_realm"])
    assert isinstance(link.last(), message.Goodbye)
    assert link.last().reason == "wamp.close.goodbye_and_out"
    assert link.closed == (1000, "goodbye")
    assert world.registry.subscription_count() == 0
    assert session not in world.hub.sessions


# -- broker -----------------------------------------------------------------------------


def test_every_subscriber_of_a_topic_gets_the_same_subscription_id(world: World) -> None:
    """Subscription ids are per topic, shared by all sessions; re-subscribing returns it again."""
    (a, link_a), (b, link_b) = world.session(), world.session()
    first = subscribe(a, link_a, "orderbook.l2book.BTC", request=5)
    second = subscribe(b, link_b, "orderbook.l2book.BTC")
    again = subscribe(a, link_a, "orderbook.l2book.BTC", request=6)
    other = subscribe(a, link_a, "orderbook.l2book.BTC.sig5", request=7)
    assert isinstance(first, message.Subscribed) and first.request == 5
    assert first.subscription == second.subscription == again.subscription
    assert other.subscription != first.subscription
    assert world.registry.subscription_count() == 3


def test_unsubscribe_and_unknown_subscription(world: World) -> None:
    """UNSUBSCRIBE releases the topic; an unknown id gets ERROR no_such_subscription."""
    session, link = world.session()
    sub_id = subscribe(session, link, "orderbook.bbo.ETH").subscription
    send(session, [34, 2, sub_id])
    assert isinstance(link.last(), message.Unsubscribed) and link.last().request == 2
    assert world.registry.subscription_count() == 0
    send(session, [34, 3, sub_id])
    error = link.last()
    assert isinstance(error, message.Error)
    assert (error.request_type, error.request, error.error) == (
        34,
        3,
        "wamp.error.no_such_subscription",
    )


@pytest.mark.parametrize(
    "topic",
    [
        "orderbook.l2book.DOGE",  # unknown coin
        "orderbook.candles.BTC",  # unknown topic
        "orderbook.l2book.BTC.sig9",  # bad option
        "orderbook..BTC",  # not a WAMP URI
        "orderbook.bbo.a b",  # not a WAMP URI
        5,  # not even a string
    ],
)
def test_unknown_topics_get_invalid_uri(world: World, topic: Any) -> None:
    """Topics that are not ours get ERROR invalid_uri and the session stays open."""
    session, link = world.session()
    error = subscribe(session, link, topic, request=4)
    assert isinstance(error, message.Error)
    assert (error.request_type, error.request, error.error) == (32, 4, "wamp.error.invalid_uri")
    assert session.state == "open"


def test_pattern_subscriptions_are_refused(world: World) -> None:
    """Only exact matching is offered."""
    session, link = world.session()
    error = subscribe(session, link, "orderbook.l2book", match="prefix")
    assert error.error == "wamp.error.invalid_argument"


def test_subscription_limit_applies(world: World) -> None:
    """Past [websocket] max_subscriptions a SUBSCRIBE gets an ERROR."""
    small = World(max_subscriptions=2)
    session, link = small.session()
    subscribe(session, link, "orderbook.bbo.BTC")
    subscribe(session, link, "orderbook.bbo.ETH")
    error = subscribe(session, link, "orderbook.trades.BTC")
    assert error.error == "orderbook.error.too_many_subscriptions"


def test_one_event_is_built_per_topic_per_block(world: World) -> None:
    """Three subscribers of trades.BTC: ONE EVENT message built, the same object sent to all."""
    sessions = [world.session() for _ in range(3)]
    ids = {subscribe(s, link, "orderbook.trades.BTC").subscription for s, link in sessions}
    built = world.hub.envelope.events_built
    world.registry.trades_paired({"BTC": [TRADE]})
    assert world.hub.envelope.events_built == built + 1
    events = [link.sent[-1] for _, link in sessions]
    assert events[0] is events[1] is events[2]
    event = sessions[0][1].last()
    assert isinstance(event, message.Event)
    assert event.subscription == ids.pop()
    assert event.args == [[TRADE]]


def test_l2_event_carries_exactly_the_channel_data(world: World) -> None:
    """An l2book EVENT's args[0] is the l2Book channel's data object after the block."""
    session, link = world.session()
    subscribe(session, link, "orderbook.l2book.BTC")
    world.books.load_orders("BTC", "B", [("0xd", order(9, "B", "98.0", "4"))])
    world.books.set_height(101, 1_700_000_000_500)
    world.registry.block_applied(
        BlockResult(height=101, time_ms=1_700_000_000_500, changed={"BTC"})
    )
    event = link.last()
    assert isinstance(event, message.Event)
    assert event.args == [json.loads(json.dumps(world.books.l2_view("BTC") | {"height": 101}))]
    assert [level["px"] for level in event.args[0]["levels"][0]] == ["100.0", "99.0", "98.0"]


def test_l4_topic_carries_updates_and_a_snapshot_after_reset(world: World) -> None:
    """l4book EVENTs carry the inner Updates object; after a resync one Snapshot (kwargs part)."""
    session, link = world.session()
    subscribe(session, link, "orderbook.l4book.ETH")
    world.registry.block_applied(BlockResult(height=101, time_ms=7, updates={"ETH": CoinUpdate()}))
    update = link.last()
    assert update.args == [
        {"coin": "ETH", "time": 7, "height": 101, "order_statuses": [], "book_diffs": []}
    ]
    world.registry.books_reset({"ETH"})
    snapshot = link.last()
    assert snapshot.kwargs == {"part": "Snapshot"}
    assert snapshot.args[0]["height"] == 100
    assert [o["oid"] for side in snapshot.args[0]["levels"] for o in side] == [4, 5]


def test_get_retained_sends_the_current_view(world: World) -> None:
    """A subscriber asking get_retained gets the current view right after SUBSCRIBED."""
    session, link = world.session()
    subscribe(session, link, "orderbook.bbo.BTC", get_retained=True)
    subscribed, event = link.messages()[-2:]
    assert isinstance(subscribed, message.Subscribed) and isinstance(event, message.Event)
    assert event.subscription == subscribed.subscription
    assert event.retained is True
    assert event.args[0]["bbo"][0]["px"] == "100.0"
    subscribe(session, link, "orderbook.status", request=2, get_retained=True)
    assert link.last().args == [world.status]


def test_status_topic_follows_state_changes(world: World) -> None:
    """orderbook.status gets the health document on every state change."""
    session, link = world.session()
    subscribe(session, link, "orderbook.status")
    world.registry.state_changed({"state": "stale", "height": 100})
    assert link.last().args == [{"state": "stale", "height": 100}]


def test_revoked_subscriptions_are_announced(world: World) -> None:
    """When the registry drops a topic (coin gone), the session gets UNSUBSCRIBED with a reason."""
    session, link = world.session()
    sub_id = subscribe(session, link, "orderbook.bbo.BTC").subscription
    world.books.replace_all(small_books().__class__())
    world.registry.books_reset({"BTC"})
    revoked = link.last()
    assert isinstance(revoked, message.Unsubscribed)
    assert (revoked.request, revoked.subscription) == (0, sub_id)
    assert revoked.reason == "wamp.error.invalid_uri"
    assert session.topics == {}


def test_closing_the_connection_releases_subscriptions(world: World) -> None:
    """A lost connection leaves all its topics; the shared id is freed with the last one."""
    (a, link_a), (b, link_b) = world.session(), world.session()
    subscribe(a, link_a, "orderbook.trades.BTC")
    subscribe(b, link_b, "orderbook.trades.BTC")
    a.connection_lost()
    assert world.registry.subscription_count() == 1
    b.connection_lost()
    assert world.registry.subscription_count() == 0
    assert world.hub.envelope._ids == {}


# -- refused requests -----------------------------------------------------------------


def test_publish_is_refused(world: World) -> None:
    """An acknowledged PUBLISH gets ERROR not_authorized; an unacknowledged one gets nothing."""
    session, link = world.session()
    before = len(link.sent)
    send(session, [16, 3, {}, "orderbook.trades.BTC", [1]])
    assert len(link.sent) == before
    send(session, [16, 4, {"acknowledge": True}, "orderbook.trades.BTC", [1]])
    error = link.last()
    assert (error.request_type, error.request, error.error) == (16, 4, "wamp.error.not_authorized")
    assert session.state == "open"


def test_register_is_refused(world: World) -> None:
    """REGISTER gets ERROR not_authorized; UNREGISTER gets no_such_registration."""
    session, link = world.session()
    send(session, [64, 5, {}, "com.example.add"])
    assert (link.last().request_type, link.last().error) == (64, "wamp.error.not_authorized")
    send(session, [66, 6, 123])
    assert link.last().error == "wamp.error.no_such_registration"


# -- dealer --------------------------------------------------------------------------------


def test_every_procedure_positional_and_keyword(world: World) -> None:
    """Each procedure answers RESULT args[0] with the documented value, args or kwargs alike."""
    session, link = world.session()
    l2 = call(session, link, "orderbook.l2book.get", "BTC", None, None, 1)
    assert isinstance(l2, message.Result) and l2.request == 9
    assert l2.args[0]["levels"] == [
        [{"px": "100.0", "sz": "1.5", "n": 1}],
        [{"px": "101.0", "sz": "1.0", "n": 1}],
    ]
    assert call(session, link, "orderbook.l2book.get", coin="BTC", nLevels=1).args == l2.args
    coarse = call(session, link, "orderbook.l2book.get", "BTC", nSigFigs=2)
    assert coarse.args[0]["levels"][0][0]["px"] == "100.0"
    bbo = call(session, link, "orderbook.bbo.get", coin="ETH").args[0]
    assert [q["px"] for q in bbo["bbo"]] == ["10.0", "11.0"]
    snapshot = call(session, link, "orderbook.l4book.snapshot", "ETH").args[0]
    assert snapshot["height"] == 100 and snapshot["coin"] == "ETH"
    assert call(session, link, "orderbook.coins").args == [["BTC", "ETH"]]
    assert call(session, link, "orderbook.status").args == [world.status]
    assert world.metrics.metrics["orderbook_wamp_calls_total"].get("orderbook.coins") == 1


@pytest.mark.parametrize(
    ("procedure", "args", "kwargs", "error"),
    [
        ("orderbook.nope", [], {}, "wamp.error.no_such_procedure"),
        ("orderbook.bbo.get", [], {}, "wamp.error.invalid_argument"),
        ("orderbook.bbo.get", ["BTC", 1], {}, "wamp.error.invalid_argument"),
        ("orderbook.bbo.get", [5], {}, "wamp.error.invalid_argument"),
        ("orderbook.bbo.get", ["DOGE"], {}, "wamp.error.invalid_argument"),
        ("orderbook.bbo.get", [], {"symbol": "BTC"}, "wamp.error.invalid_argument"),
        ("orderbook.l2book.get", ["BTC", 7], {}, "wamp.error.invalid_argument"),
        ("orderbook.l2book.get", ["BTC"], {"nLevels": "5"}, "wamp.error.invalid_argument"),
        ("orderbook.l2book.get", ["BTC", 4, 2], {}, "wamp.error.invalid_argument"),
        ("orderbook.coins", [1], {}, "wamp.error.invalid_argument"),
        ("orderbook.l4book.snapshot", [["BTC"]], {}, "wamp.error.invalid_argument"),
    ],
)
def test_bad_calls_get_an_error_and_the_session_stays_open(
    world: World, procedure: str, args: list[Any], kwargs: dict[str, Any], error: str
) -> None:
    """Unknown procedures and bad arguments get ERROR with a readable args[0]."""
    session, link = world.session()
    with capturedLogs() as events:
        reply = call(session, link, procedure, *args, **kwargs)
    assert isinstance(reply, message.Error)
    assert (reply.request_type, reply.request, reply.error) == (48, 9, error)
    assert isinstance(reply.args[0], str) and reply.args[0]
    assert session.state == "open"
    assert not [e for e in events if e.get("log_failure")]


def test_calls_before_the_book_is_ready(world: World) -> None:
    """Before the first snapshot, views are refused clearly; coins() is empty."""
    world.books.height = None
    session, link = world.session()
    assert call(session, link, "orderbook.coins").args == [[]]
    reply = call(session, link, "orderbook.bbo.get", "BTC")
    assert reply.error == "wamp.error.invalid_argument"
    assert "not ready" in reply.args[0]


def test_shutdown_says_goodbye(world: World) -> None:
    """hub.shutdown() sends GOODBYE system_shutdown to open sessions and closes them."""
    session, link = world.session()
    world.hub.shutdown()
    assert link.last().reason == "wamp.close.system_shutdown"
    assert link.closed is not None and session.state == "closed"


# -- progressive call results --------------------------------------------------------


def call_in_parts(session: WampSession, request: int = 9, coin: str = "BTC") -> None:
    send(session, [48, request, {"receive_progress": True}, "orderbook.l4book.snapshot", [coin]])


def results(link: Link, request: int = 9) -> list[message.Result]:
    return [m for m in link.messages() if isinstance(m, message.Result) and m.request == request]


def rebuilt(parts: list[message.Result]) -> dict[str, Any]:
    """The snapshot the parts add up to (every part must be of one block)."""
    assert len({(p.args[0]["coin"], p.args[0]["height"], p.args[0]["time"]) for p in parts}) == 1
    levels = [[o for p in parts for o in p.args[0]["levels"][side]] for side in (0, 1)]
    return {**parts[0].args[0], "levels": levels}


@pytest.fixture
def deep() -> World:
    return World(books=deep_books(16_000))


def test_receive_progress_gets_the_snapshot_in_parts_of_one_block(deep: World) -> None:
    """Progress RESULTs then one final RESULT, each message <= 1 MiB, adding up to the
    snapshot the plain call returns."""
    session, link = deep.session()
    call_in_parts(session)
    parts = results(link)
    assert len(parts) == 5
    assert [p.progress for p in parts] == [True] * 4 + [None]
    assert all(len(m.payload) <= MAX_MESSAGE_BYTES for m in link.sent[1:])
    whole = call(session, link, "orderbook.l4book.snapshot", "BTC")
    assert isinstance(whole, message.Result) and whole.progress is None
    assert rebuilt(parts) == whole.args[0]
    assert session.calls == {}
    assert deep.metrics.metrics["orderbook_wamp_calls_total"].get("orderbook.l4book.snapshot") == 2


def test_parts_wait_for_the_client_to_read(deep: World) -> None:
    """One part per resume: a client that stops reading holds one part, not the snapshot;
    the parts keep their block even when the book moves on meanwhile."""
    session, link = deep.session()
    link.slow = link.paused = True
    call_in_parts(session)
    assert results(link) == [] and session.calls
    for sent in range(1, 6):
        link.resume()
        assert len(results(link)) == sent
        deep.books.set_height(100 + sent, 1_700_000_000_000 + sent)
    assert session.calls == {}
    assert {p.args[0]["height"] for p in results(link)} == {100}


def test_small_snapshots_and_other_procedures_answer_in_one_result(world: World) -> None:
    """receive_progress on a small snapshot: only the final RESULT; elsewhere ignored."""
    session, link = world.session()
    call_in_parts(session, coin="ETH")
    assert [p.progress for p in results(link)] == [None]
    assert results(link)[0].args[0]["levels"][0][0]["oid"] == 4
    send(session, [48, 10, {"receive_progress": True}, "orderbook.coins", []])
    assert results(link, 10)[0].args == [["BTC", "ETH"]]


def test_bad_arguments_with_receive_progress_get_an_error(world: World) -> None:
    session, link = world.session()
    call_in_parts(session, coin="DOGE")
    assert isinstance(link.last(), message.Error)
    assert link.last().error == "wamp.error.invalid_argument"
    assert session.calls == {}


def test_cancel_stops_the_parts(deep: World) -> None:
    """CANCEL of a result still in parts: ERROR canceled, nothing more is sent."""
    session, link = deep.session()
    link.slow = True
    call_in_parts(session)
    send(session, [49, 9, {}])
    error = link.last()
    assert isinstance(error, message.Error) and error.error == "wamp.error.canceled"
    link.resume()
    assert len(results(link)) == 1 and session.calls == {}
    sent = len(link.sent)
    send(session, [49, 9, {}])  # nothing left to cancel: no reply
    assert len(link.sent) == sent


def test_calls_in_parts_are_capped_per_session(deep: World) -> None:
    """At most 4 results in parts at once; the fifth gets an error; a reused request id
    while its result is going out is a protocol violation."""
    session, link = deep.session()
    link.paused = True
    for request in range(1, 5):
        call_in_parts(session, request)
    call_in_parts(session, 5)
    assert link.last().error == "orderbook.error.too_many_calls"
    call_in_parts(session, 1)
    assert link.last().reason == "wamp.error.protocol_violation"


def test_closing_stops_the_parts(deep: World) -> None:
    session, link = deep.session()
    link.paused = True
    call_in_parts(session)
    session.connection_lost()
    link.resume()
    assert results(link) == [] and session.calls == {}


# -- ticket authentication -------------------------------------------------------------


def hello(session: WampSession, *methods: str, authid: str | None = None) -> None:
    details: dict[str, Any] = {"roles": {"caller": {}}, "authmethods": list(methods)}
    if authid is not None:
        details["authid"] = authid
    send(session, [1, "orderbook", details])


def test_ticket_is_challenged_and_a_valid_token_joins() -> None:
    world = World(tokens=Tokens("t0ken"))
    session, link = world.session(join=False)
    hello(session, "ticket", authid="alice")
    challenge = link.last()
    assert isinstance(challenge, message.Challenge) and challenge.method == "ticket"
    assert session not in world.hub.sessions
    send(session, [5, "t0ken", {}])
    welcome = link.last()
    assert isinstance(welcome, message.Welcome)
    assert (welcome.authid, welcome.authmethod, welcome.authrole) == ("alice", "ticket", "client")
    assert world.hub.tokens.asked == ["t0ken"]
    assert world.hub.tokens.held == [("t0ken", "ticket")]  # closed if it is revoked
    assert call(session, link, "orderbook.coins").args == [["BTC", "ETH"]]


def test_a_wrong_ticket_is_aborted() -> None:
    world = World(tokens=Tokens("t0ken"))
    session, link = world.session(join=False)
    hello(session, "anonymous", "ticket")
    send(session, [5, "guess", {}])
    abort = link.last()
    assert isinstance(abort, message.Abort)
    assert abort.reason == "wamp.error.authentication_failed"
    assert "invalid ticket" in abort.message
    assert link.closed == (1000, "wamp.error.authentication_failed")


def test_without_a_ticket_access_control_aborts() -> None:
    """Access control on: HELLO without "ticket" gets ABORT no_auth_method saying why."""
    world = World(tokens=Tokens("t0ken"))
    session, link = world.session(join=False)
    hello(session)
    assert link.last().reason == "wamp.error.no_auth_method"
    assert "requires ticket authentication" in link.last().message
    assert world.hub.tokens.asked == []


def test_anything_but_authenticate_after_the_challenge_aborts() -> None:
    world = World(tokens=Tokens("t0ken"))
    session, link = world.session(join=False)
    hello(session, "ticket")
    send(session, [48, 1, {}, "orderbook.coins", []])
    assert link.last().reason == "wamp.error.protocol_violation"
    assert "expected AUTHENTICATE" in link.last().message


def test_access_control_off_joins_anonymously_without_asking() -> None:
    tokens = Tokens(enabled=False)
    session, link = World(tokens=tokens).session(join=False)
    hello(session, "anonymous")
    assert link.last().authmethod == "anonymous" and tokens.asked == []


@pytest.mark.parametrize(
    ("token", "methods", "reply"),
    [
        ("t0ken", [], "anonymous"),  # the upgrade carried a valid token
        ("t0ken", ["anonymous", "ticket"], "anonymous"),
        ("t0ken", ["ticket"], "ticket"),  # a ticket-only client is still challenged
        ("guess", [], "wamp.error.no_auth_method"),
        (None, ["anonymous", "ticket"], "ticket"),
    ],
)
def test_a_token_on_the_websocket_upgrade_admits_anonymous(
    token: str | None, methods: list[str], reply: str
) -> None:
    """Access control on: a valid ?token= / Bearer token on the upgrade (as the JSON API
    takes) lets the client join anonymously; otherwise the ticket rules apply."""
    session, link = World(tokens=Tokens("t0ken")).session(join=False, token=token)
    hello(session, *methods)
    answer = link.last()
    if isinstance(answer, message.Welcome):
        assert answer.authmethod == reply
    elif isinstance(answer, message.Challenge):
        assert answer.method == reply
    else:
        assert answer.reason == reply


def test_the_upgrade_token_comes_from_bearer_or_the_query() -> None:
    assert upgrade_token({"authorization": "Bearer abc "}, {"token": ["q"]}) == "abc"
    assert upgrade_token({"authorization": "bearer abc"}, {}) == "abc"
    assert upgrade_token({"authorization": "Basic eA=="}, {"token": ["q", "r"]}) == "q"
    assert upgrade_token({}, {}) is None

"""One soak: start node and server, run every client and fault, then check.

The checks (each a :class:`Check` in the report):

- ``books``: every well-behaved client's L4 book of every coin equals the
  simulator's at one height;
- ``trades``: for every well-behaved client and coin, every trade of every
  block after its first Snapshot (through that height) arrived exactly once,
  compared by ``tid`` with the simulator's fills files;
- ``keepers``: well-behaved clients were never closed and saw no error,
  gap or l2Book/bbo inconsistency;
- ``fuzz``: every hypothesis case got the answer the API promises;
- ``abuse``: stalled and flooding clients and half-open sockets were closed
  by the server;
- ``liveness``: the server was never ``stale`` for long while the simulator
  wrote blocks (see :mod:`bench.soak.watch`);
- ``rss``: the server's RSS came back within ``rss_bound_mb`` of its
  client-less figure after every client left;
- ``counters``: the server's ``connections_rejected_total{reason="rate"}``
  counts connections (at most one per connection opened);
- ``workers``: no server process died (and was replaced) during the soak;
- ``log``: no ``Unhandled`` or ``Traceback`` in the server's log, and the
  server exits cleanly on SIGTERM.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, DeferredList

from bench.soak.abuse import Abuse, Pacer
from bench.soak.connect import Connector, Tally
from bench.soak.faults import Faults, schedule
from bench.soak.fuzz import Fuzzer
from bench.soak.keeper import KeeperProtocol, KeeperState
from bench.soak.processes import Limits, Node, Server, total
from bench.soak.reference import FillsReference
from bench.soak.watch import HealthWatch
from tests.e2e.l4client import comparable, request_snapshot
from tests.polling import until

CLOSING_S = 10  # autobahn's closing handshake (5 s) and then some
METRICS = (  # what the server counted of the abuse, for the report
    "orderbook_ws_slow_clients_closed_total",
    "orderbook_ws_connections_rejected_total",
    "orderbook_ws_client_errors_total",
    "orderbook_access_denied_total",
    "orderbook_node_bad_lines_total",
    "orderbook_node_resyncs_total",
    "orderbook_sockets_open",
)
STALL_TIMEOUT_S = 2  # the server's [node] stall_timeout_s
STALL_FAULT_S = 3.0  # a node stall longer than that


@dataclass
class Options:
    """Sizes of one soak (the CLI's flags)."""

    seconds: float = 600.0
    coins: tuple[str, ...] = ("BTC", "ETH", "@107", "xyz:TSLA")
    keepers: int = 4
    churners: int = 3
    stallers: int = 2
    flooders: int = 1
    half_open: int = 20
    fuzz_examples: int = 100_000
    fuzz_pace_s: float = 0.05
    fault_every_s: float = 8.0
    idle_timeout_s: int = 20  # the server's; stalled clients must be gone after it
    validate_interval_s: int = 20  # the server's [node] key (0: no validation)
    scale: float = 0.05
    blocks_per_second: float = 14.5
    hour_seconds: float = 30.0
    mode: str = "by_block"
    seed: int = 7
    deep: str = ""  # e.g. "ETH=5000": the simulator's --deep (where it has it)
    rss_bound_mb: float = 48.0
    rss_wait_s: float = 60.0  # how long RSS may take to come back after the clients left
    workdir: str | None = None


@dataclass
class Check:
    name: str
    ok: bool
    detail: Any


@dataclass
class Soak:
    """The running soak: processes, clients, figures."""

    options: Options
    reactor: Any
    work: Path
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    rss_peak_mb: float = 0.0
    rss_phases: dict[str, float] = field(default_factory=dict)
    processes: set[int] = field(default_factory=set)  # every server pid seen
    started: float = 0.0

    def check(self, name: str, ok: bool, detail: Any) -> None:
        self.checks.append(Check(name, bool(ok), detail))


async def run(reactor: Any, options: Options) -> dict[str, Any]:
    """Run one soak; the report (figures and checks)."""
    work = Path(options.workdir or tempfile.mkdtemp(prefix="orderbook-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    soak = Soak(options, reactor, work)
    limits = Limits(
        idle_timeout_s=options.idle_timeout_s,
        stall_timeout_s=STALL_TIMEOUT_S,
        validate_interval_s=options.validate_interval_s,
    )
    node = Node(work, asdict(options))
    server: Server | None = None
    try:
        await threads.deferToThread(node.ready)
        server = Server(work, node, options.mode, limits)
        await threads.deferToThread(server.listening)
        await _until(reactor, lambda: _ready(server), 120, "the server's first snapshot")
        await _drive(soak, node, server, limits)
    except Exception as exc:  # the soak itself could not go on: a failed check, not a crash
        soak.check("soak", False, f"{type(exc).__name__}: {exc}")
    finally:
        if server is not None:
            exit_code = server.proc.stop(timeout=30)
            problems = server.log_problems()
            soak.check(
                "log",
                not problems and exit_code in (0, -15),
                {
                    "exit_code": exit_code,
                    "problems": problems[:5],
                    "log": str(server.proc.log_path),
                },
            )
        node.proc.stop()
    return report(soak)


@dataclass
class Monitors:
    """What runs beside the clients: RSS samples, the fills reference, the /health watch."""

    reference: FillsReference
    watch: HealthWatch
    loops: list[task.LoopingCall]
    start_height: int
    rss_start: float

    def stop(self) -> None:
        for loop in self.loops:
            if loop.running:
                loop.stop()
        self.watch.finish()


async def _monitors(soak: Soak, node: Node, server: Server) -> Monitors:
    start = await threads.deferToThread(server.health)
    reference = FillsReference(node.data_dir)
    watch = HealthWatch(stale_limit_s=STALL_FAULT_S + 2 * STALL_TIMEOUT_S + 2)
    calls = [
        (0.5, lambda: _sample_rss(soak, server)),
        (1.0, reference.poll),
        (1.0, lambda: _watch_health(server, watch)),
    ]
    loops = []
    for interval, call in calls:
        loop = task.LoopingCall(call)
        loop.clock = soak.reactor
        loop.start(interval)
        loops.append(loop)
    return Monitors(reference, watch, loops, start.get("height") or 0, server.rss_mb())


async def _drive(soak: Soak, node: Node, server: Server, limits: Limits) -> None:
    """Clients and faults for ``options.seconds``, then every check."""
    monitors = await _monitors(soak, node, server)
    try:
        connector = Connector(
            soak.reactor, server.port, server.certificate, server.tokens["clients"]
        )
        keepers = await _start_keepers(soak, connector)
        soak.rss_phases["keepers subscribed"] = server.rss_mb()
        abuse, fuzzer, revoked = await _abuse(soak, node, server, limits, connector, monitors)
        await _until(soak.reactor, lambda: _ready(server), 120, "the server ready after faults")
        await _phase(soak, "books", _check_books_and_trades(soak, node, keepers, monitors))
        _check_keepers(soak, keepers)
        _check_abuse(soak, abuse, fuzzer, revoked)
        await _phase(soak, "rss", _leave(soak, server, keepers, monitors.rss_start))
    finally:
        monitors.stop()
        soak.figures["health_seconds"] = monitors.watch.summary()
        soak.check(
            "liveness",
            not monitors.watch.stretches,
            {"stale_while_node_writes": monitors.watch.stretches[:3]},
        )
        soak.figures["metrics"] = await threads.deferToThread(server.metrics, METRICS)
        _check_counters(soak)
        alive = set(server.pids())
        soak.check(
            "workers",
            soak.processes <= alive,
            {"processes": len(alive), "gone_meanwhile": sorted(soak.processes - alive)},
        )
        end = await threads.deferToThread(server.health)
        soak.figures.update(
            duration_s=round(time.monotonic() - soak.started, 1),
            blocks=(end.get("height") or 0) - monitors.start_height,
            blocks_in_fills_files=len(monitors.reference.heights),
            server_resyncs=total(soak.figures["metrics"], "orderbook_node_resyncs_total"),
            server_processes_seen=len(soak.processes),
        )


def _check_counters(soak: Soak) -> None:
    """The server counts a rate-limited connection once, not once per message past the limit."""
    metrics = soak.figures["metrics"]
    rejected = total(metrics, "orderbook_ws_connections_rejected_total", reason="rate")
    tallies = soak.figures.get("tallies", {})
    connections = sum(t.opened for t in tallies.values()) + soak.figures.get("fuzz", {}).get(
        "connections", 0
    )
    soak.check(
        "counters",
        rejected <= connections,
        {"rate_rejections_counted": rejected, "connections_opened": connections},
    )


async def _phase(soak: Soak, name: str, work: Any) -> None:
    """Await ``work``; if it cannot finish, check ``name`` fails saying why."""
    try:
        await work
    except Exception as exc:
        soak.check(name, False, f"{type(exc).__name__}: {exc}")


async def _abuse(
    soak: Soak,
    node: Node,
    server: Server,
    limits: Limits,
    connector: Connector,
    monitors: Monitors,
) -> tuple[Abuse, Fuzzer, Any]:
    """Every other kind of client, and the faults, for ``options.seconds``."""
    options, reactor = soak.options, soak.reactor
    pacer = Pacer(reactor)
    abuse = Abuse(connector, pacer, list(options.coins), limits.messages_per_minute, options.seed)
    token = server.tokens["clients"]
    fuzzer = Fuzzer(
        server.port, token, limits.max_message_bytes, options.fuzz_examples, options.fuzz_pace_s
    )
    loops = _start_abuse(soak, abuse, limits)
    if options.fuzz_examples:
        loops.append(threads.deferToThread(fuzzer.run))
    revoked = await abuse.revoked_client(server.tokens["revoked"], options.idle_timeout_s / 3)
    faults = Faults(node.control_url)
    soak.started = time.monotonic()
    await _inject_faults(soak, faults, monitors.reference, pacer, lambda: _revoke(soak, server))
    pacer.stop()
    fuzzer.stop_event.set()
    soak.rss_phases["end of abuse"] = server.rss_mb()
    await _settle(reactor, loops)
    soak.rss_phases["abusers gone"] = server.rss_mb()
    await threads.deferToThread(faults.clear)
    soak.figures["faults"] = {"injected": dict(faults.injected), "missing": sorted(faults.missing)}
    if faults.errors:
        soak.check("faults", False, faults.errors[:5])
    return abuse, fuzzer, revoked


async def _check_books_and_trades(
    soak: Soak, node: Node, keepers: list, monitors: Monitors
) -> None:
    height = await _check_books(soak, node, keepers)
    await _check_trades(soak, monitors.reference, keepers, height)


def _watch_health(server: Server, watch: HealthWatch) -> Deferred:
    """One /health sample (in a thread: the request blocks)."""
    return threads.deferToThread(server.health).addCallback(watch.sample)


def _ready(server: Server) -> bool:
    return server.health().get("state") == "ready"


async def _until(reactor: Any, condition: Any, timeout: float, what: str) -> None:
    """Wait for a blocking condition (run in a thread) with a deadline."""
    deadline = reactor.seconds() + timeout
    while not await threads.deferToThread(condition):
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.25, lambda: None)


def _sample_rss(soak: Soak, server: Server) -> None:
    soak.rss_peak_mb = max(soak.rss_peak_mb, server.rss_mb())
    soak.processes.update(server.pids())


async def _start_keepers(soak: Soak, connector: Connector) -> list[tuple[KeeperState, Any]]:
    tally = Tally()
    soak.figures.setdefault("tallies", {})["keepers"] = tally
    keepers = []
    for index in range(soak.options.keepers):
        state = KeeperState(f"keeper-{index}", list(soak.options.coins))
        ping_s = soak.options.idle_timeout_s / 3
        proto = await connector.open(KeeperProtocol, tally, keeper=state, ping_s=ping_s)
        keepers.append((state, proto))
    await until(
        lambda: all(state.height() >= 0 for state, _ in keepers),
        60,
        "every keeper's first l4Book Snapshots",
        soak.reactor,
    )
    return keepers


def _revoke(soak: Soak, server: Server) -> None:
    server.revoke("revoked")
    soak.figures["token_revoked_at_s"] = round(time.monotonic() - soak.started, 1)


def _start_abuse(soak: Soak, abuse: Abuse, limits: Limits) -> list[Deferred]:
    options = soak.options
    rounds = 100_000  # bounded; the soak's end stops them long before
    loops = [Deferred.fromCoroutine(abuse.churn(n, rounds)) for n in range(options.churners)]
    loops += [
        Deferred.fromCoroutine(abuse.stall(n, rounds, options.idle_timeout_s + CLOSING_S))
        for n in range(options.stallers)
    ]
    loops += [Deferred.fromCoroutine(abuse.flood(n, rounds)) for n in range(options.flooders)]
    loops.append(Deferred.fromCoroutine(abuse.intrude(rounds)))
    if options.half_open:
        loops.append(
            Deferred.fromCoroutine(abuse.half_open(options.half_open, limits.handshake_timeout_s))
        )
    soak.figures.setdefault("tallies", {}).update(abuse.tallies)
    return loops


async def _inject_faults(
    soak: Soak,
    faults: Faults,
    reference: FillsReference,
    pacer: Pacer,
    halfway: Callable[[], None],
) -> None:
    """Switch on the schedule's faults in turn; call ``halfway`` once, half-way through."""
    options = soak.options
    steps = schedule(stall_s=STALL_FAULT_S, restart_s=1.0)
    index = 0
    next_fault = options.fault_every_s
    half = options.seconds / 2
    while (now := time.monotonic() - soak.started) < options.seconds:
        if half is not None and now >= half:
            halfway()
            half = None
        if now >= next_fault:
            reference.poll()  # before delete_old removes what was not read yet
            await threads.deferToThread(faults.inject, steps[index % len(steps)])
            index += 1
            next_fault += options.fault_every_s
        upcoming = min(next_fault, options.seconds, half if half is not None else options.seconds)
        await pacer.pause(max(0.0, upcoming - (time.monotonic() - soak.started)))


async def _settle(reactor: Any, loops: list[Deferred]) -> None:
    """Wait (with a deadline) for every client loop to end; their failures are findings."""
    done = DeferredList(loops, consumeErrors=True)
    await done.addTimeout(90, reactor)


async def _check_books(soak: Soak, node: Node, keepers: list) -> int:
    """Stop every keeper's books at the simulator's height; compare. Returns the height."""
    live = [(state, proto) for state, proto in keepers if not proto.closed.called]
    deadline = soak.reactor.seconds() + 120
    while True:
        height, books = await threads.deferToThread(
            request_snapshot, node.info_url, soak.work / "sim-snapshot.json"
        )
        for state, _ in live:
            state.limit = height
        await until(
            lambda h=height: all(_at_least(state, h) for state, _ in live),
            max(1.0, deadline - soak.reactor.seconds()),
            f"every keeper at block {height}",
            soak.reactor,
        )
        if all(_exactly(state, height) for state, _ in live):
            break
    differences = []
    compared = 0
    for state, _ in live:
        for coin, coin_state in state.per_coin.items():
            compared += 1
            ours, theirs = comparable(coin_state.book.levels()), comparable(books[coin])
            if ours != theirs:
                differences.append(f"{state.name} {coin}: {_first_difference(ours, theirs)}")
    for state, _ in live:
        state.limit = float("inf")
        _advance(state)
    soak.check(
        "books",
        compared and not differences and len(live) == len(keepers),
        {"height": height, "books_compared": compared, "keepers_open": len(live),
         "differences": differences[:5]},
    )  # fmt: skip
    return height


def _at_least(state: KeeperState, height: int) -> bool:
    _advance(state)
    return all(c.book is not None and c.book.height >= height for c in state.per_coin.values())


def _exactly(state: KeeperState, height: int) -> bool:
    return all(c.book is not None and c.book.height == height for c in state.per_coin.values())


def _advance(state: KeeperState) -> None:
    try:
        state.advance()
    except Exception as exc:  # a gap: recorded as the keeper's error already
        state.error(f"advance: {exc!r}")


def _first_difference(ours: list, theirs: list) -> str:
    for side, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for index in range(max(len(a), len(b))):
            left = a[index] if index < len(a) else None
            right = b[index] if index < len(b) else None
            if left != right:
                return f"side {side} #{index}: client {left} != simulator {right}"
    return "?"


async def _check_trades(soak: Soak, reference: FillsReference, keepers: list, height: int) -> None:
    """Every trade of blocks (subscribed, height] arrived exactly once at every keeper."""
    live = [state for state, proto in keepers if not proto.closed.called]
    await until(lambda: all(s.received() > height for s in live), 60, "Updates past the height")
    await until(lambda: reference.poll() or reference.height > height, 60, "the fills files")
    lost, doubled, phantom, expected_total = [], [], [], 0
    for state in live:
        for coin, coin_state in state.per_coin.items():
            expected = reference.expected(coin, coin_state.trades_from(), height)
            expected_total += len(expected)
            got = coin_state.tids
            lost += [(state.name, coin, reference.trades[t][0], t) for t in expected - got.keys()]
            doubled += [(state.name, coin, t, n) for t, n in got.items() if n > 1]
            phantom += [(state.name, coin, t) for t in got if t not in reference.trades]
    lost_blocks = _ranges(sorted({block for _, _, block, _ in lost}))
    soak.check(
        "trades",
        expected_total > 0 and not lost and not doubled and not phantom,
        {"trades_expected": expected_total, "lost": len(lost), "lost_in_blocks": lost_blocks[:10],
         "snapshot_heights": sorted({h for s in live for c in s.per_coin.values() for h in c.snapshots})[:12],
         "doubled": doubled[:5], "phantom": phantom[:5],
         "snapshots_per_keeper": [sum(len(c.snapshots) for c in s.per_coin.values()) for s in live]},
    )  # fmt: skip


def _ranges(heights: list[int]) -> list[str]:
    """[5, 6, 7, 9] -> ["5..7", "9"] (blocks with lost trades, read as resync windows)."""
    ranges: list[list[int]] = []
    for height in heights:
        if ranges and height - ranges[-1][1] <= 10:
            ranges[-1][1] = height
        else:
            ranges.append([height, height])
    return [f"{a}..{b}" if a != b else str(a) for a, b in ranges]


def _check_keepers(soak: Soak, keepers: list) -> None:
    closed = [
        f"{state.name}: {proto.closed.result}" for state, proto in keepers if proto.closed.called
    ]
    errors = [f"{state.name}: {error}" for state, _ in keepers for error in state.errors]
    soak.check(
        "keepers",
        not closed and not errors,
        {
            "closed": closed,
            "errors": errors[:8],
            "messages": sum(sum(state.messages.values()) for state, _ in keepers),
            "l2_checked": sum(state.l2_checked for state, _ in keepers),
            "bbo_checked": sum(state.bbo_checked for state, _ in keepers),
        },
    )


def _check_abuse(soak: Soak, abuse: Abuse, fuzzer: Fuzzer, revoked: Any) -> None:
    fuzz = fuzzer.report
    soak.figures["fuzz"] = fuzz.summary()
    if soak.options.fuzz_examples:
        soak.check("fuzz", sum(fuzz.sent.values()) > 0 and not fuzz.failures, fuzz.failures[:8])
    flood = abuse.tally("flood")
    ended = revoked.closed.result if revoked is not None and revoked.closed.called else None
    if revoked is not None and ended is None:
        revoked.abort()  # the revocation did not close it: judged below, gone before _leave
    detail = {
        "stalled_clients_left_open": abuse.stalled_open[:5],
        "half_open_sockets_left_open": abuse.half_open_left,
        "flood_still_open": flood.closes["still open after the burst"],
        "intruders": abuse.tally("intruder").connects,
        "intruders_admitted": abuse.admitted[:5],
        "revoked_token_client": str(ended),
    }
    problems = [
        abuse.stalled_open,
        abuse.half_open_left,
        flood.closes["still open after the burst"],
        abuse.admitted,
        not abuse.tally("intruder").connects,
        set(abuse.tally("intruder").refused) - {"HTTP 401"},
        ended is None or ended.code != 1008 or ended.by_us,
    ]
    soak.check("abuse", not any(problems), detail)


async def _leave(soak: Soak, server: Server, keepers: list, rss_start: float) -> None:
    """Close the keepers; wait for the server to count no connection; wait for RSS to return."""
    for _, proto in keepers:
        if not proto.closed.called:
            proto.close()
    await until(
        lambda: all(proto.closed.called for _, proto in keepers), 30, "keepers closed", soak.reactor
    )
    await _until(
        soak.reactor, lambda: server.health().get("connections") == 0, 60, "no connection left"
    )
    bound = rss_start + soak.options.rss_bound_mb
    deadline = soak.reactor.seconds() + soak.options.rss_wait_s
    while server.rss_mb() > bound and soak.reactor.seconds() < deadline:
        await task.deferLater(soak.reactor, 0.5, lambda: None)
    final = server.rss_mb()
    soak.figures["rss_mb"] = {
        "start": round(rss_start, 1),
        "peak_sampled": round(soak.rss_peak_mb, 1),
        "peak_hwm_sum": round(server.peak_rss_mb(), 1),
        "processes": len(server.pids()),
        "final_by_process": server.rss_by_process_mb(),
        "final": round(final, 1),
        "bound": round(bound, 1),
        "phases": {name: round(value, 1) for name, value in soak.rss_phases.items()},
    }
    soak.check("rss", final <= bound, soak.figures["rss_mb"])


def report(soak: Soak) -> dict[str, Any]:
    figures = dict(soak.figures)
    tallies = figures.pop("tallies", {})
    figures["clients"] = {kind: tally.summary() for kind, tally in tallies.items()}
    return {
        "ok": bool(soak.checks) and all(check.ok for check in soak.checks),
        "options": asdict(soak.options),
        "work": str(soak.work),
        **figures,
        "checks": [asdict(check) for check in soak.checks],
    }

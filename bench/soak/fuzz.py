"""Random and mutated frames from hypothesis, on a plain raw-socket WebSocket client.

Hypothesis generates each case (garbage JSON, requests with a value of the
wrong type or a key too many, random text, bad UTF-8, binary frames, frames
over the size limit, protocol violations, a compressed message that inflates
past the limit). After each case the client sends a probe (a ``post`` with its own id) and
reads until the probe's answer or a close frame. The property: the server answers
every case with what the API promises (an error message, or a close frame
with the right code) and never drops the connection without a close frame,
never goes silent.

Runs in a thread (blocking sockets, like a careless script would be).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import ssl
import struct
import threading
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning

TEMPLATES: list[dict[str, Any]] = [
    {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC", "nSigFigs": 5}},
    {"method": "subscribe", "subscription": {"type": "trades", "coin": "ETH"}},
    {"method": "subscribe", "subscription": {"type": "l4Book", "coin": "BTC"}},
    {"method": "subscribe", "subscription": {"type": "bbo", "coin": "SOL"}},
    {"method": "subscribe", "subscription": {"type": "allMids", "dex": ""}},
    {"method": "unsubscribe", "subscription": {"type": "l2Book", "coin": "BTC"}},
    {"method": "post", "id": 7, "request": {"type": "info", "payload": {"type": "allMids"}}},
    {
        "method": "post",
        "id": 8,
        "request": {"type": "info", "payload": {"type": "l2Book", "coin": "BTC", "nSigFigs": None}},
    },
    {"method": "ping"},
]

ANSWERS = frozenset({"error", "subscriptionResponse", "post", "pong"})  # not data pushes
PROBE = json.dumps({"method": "ping"}).encode()  # in broken frames
FIRST_PROBE_ID = 10**12  # post ids of the probes (the templates use small ones)


def probe(probe_id: int) -> bytes:
    """The request sent after each case: its ``post`` answer (with this id) ends the case."""
    request = {"type": "info", "payload": {"type": "allMids"}}
    return json.dumps({"method": "post", "id": probe_id, "request": request}).encode()


PROTOCOL_ERROR = 1002
BAD_DATA = 1007
TOO_BIG = 1009
POLICY = 1008

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested request (for mutation)."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            paths.extend(_paths(inner, (*prefix, key)))
    return paths


def _mutated(template: dict[str, Any], path: tuple, action: str, value: Any) -> dict[str, Any]:
    request = json.loads(json.dumps(template))
    parent = request
    for key in path[:-1]:
        parent = parent[key]
    if action == "replace":
        parent[path[-1]] = value
    elif action == "delete":
        del parent[path[-1]]
    else:
        parent["extra"] = value
    return request


@dataclass(frozen=True)
class Case:
    """One thing to send; ``expect`` is what the server must answer."""

    kind: str
    frames: tuple[bytes, ...]  # raw frames (header + masked payload)
    expect: str  # "reply" (an answer before the probe's), "close:<codes>[,drop]"
    deflate: bool = False  # needs a permessage-deflate connection
    shown: bytes = b""  # the payload before masking, for reports

    def describe(self) -> str:
        return f"{self.kind}: {(self.shown or b''.join(self.frames))[:100]!r}"


def text_case(kind: str, payload: bytes, expect: str = "reply") -> Case:
    """One text frame carrying ``payload`` (any bytes, even invalid UTF-8)."""
    return Case(kind, (frame(payload),), expect, shown=payload)


def frame(
    payload: bytes, opcode: int = 0x1, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One WebSocket frame as a client sends it (or breaks it)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + _masked(payload, mask)


def _masked(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte key (as big integers: fast for big frames)."""
    if not payload:
        return b""
    stream = (key * (len(payload) // 4 + 1))[: len(payload)]
    mixed = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return mixed.to_bytes(len(payload), "big")


@st.composite
def mutated_requests(draw: st.DrawFn) -> Case:
    """A valid request with one value replaced by any JSON, deleted, or a key added.

    Each gets an answer: an error, a subscriptionResponse, a post answer or a pong.
    """
    template = draw(st.sampled_from(TEMPLATES))
    path = draw(st.sampled_from(_paths(template)))
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    request = _mutated(template, path, action, draw(json_values))
    return text_case("mutated request", json.dumps(request).encode())


def deflated(data: bytes) -> bytes:
    """``data`` as a permessage-deflate message body (trailing 00 00 ff ff removed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def cases(max_message_bytes: int) -> st.SearchStrategy[Case]:
    """Every kind of case, hypothesis choosing the kind and the bytes."""
    return st.one_of(
        mutated_requests(),
        json_values.map(lambda v: text_case("json value", json.dumps(v).encode())),
        st.text(max_size=200).map(lambda t: text_case("text", t.encode())),
        st.binary(min_size=1, max_size=200)
        .filter(lambda b: not _utf8(b))
        .map(lambda b: text_case("bad utf-8", b, f"close:{BAD_DATA}")),
        st.binary(max_size=200).map(lambda b: Case("binary", (frame(b, 0x2),), "reply")),
        st.integers(1, 4 * max_message_bytes).map(
            lambda n: text_case(
                "huge", b"[" + b" " * (max_message_bytes + n) + b"]", f"close:{TOO_BIG}"
            )
        ),
        st.integers(max_message_bytes + 1, 2**62).map(
            lambda n: Case("huge header", (_header_only(n),), f"close:{TOO_BIG}")
        ),
        st.sampled_from(_violations()),
        st.integers(1, 16).map(
            lambda mb: Case(
                "deflate bomb",
                (frame(deflated(b" " * (max_message_bytes + mb * 2**20)), rsv=4),),
                f"close:{TOO_BIG}",
                deflate=True,
            )
        ),
        st.binary(min_size=1, max_size=100).map(
            lambda b: Case(
                "bad deflate",
                (frame(b"\xff" + b, rsv=4),),
                f"close:{PROTOCOL_ERROR},{BAD_DATA}",
                deflate=True,
            )
        ),
    )


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _header_only(length: int) -> bytes:
    """A masked text frame header announcing ``length`` bytes, and a few of them."""
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length) + os.urandom(4) + b"[" * 16


def _violations() -> list[Case]:
    """Frames RFC 6455 forbids; the last may also be answered by dropping the connection."""
    frames = [
        frame(PROBE, rsv=2),  # a reserved bit without an extension
        frame(PROBE, opcode=0x3),  # a reserved data opcode
        frame(b"", opcode=0xB),  # a reserved control opcode
        frame(PROBE, masked=False),  # client frames must be masked
        frame(b"x" * 126, opcode=0x9),  # a control frame over 125 bytes
        frame(b"ping", opcode=0x9, fin=False),  # a fragmented control frame
        frame(PROBE, opcode=0x0),  # a continuation with nothing to continue
    ]
    cases = [Case("protocol", (f,), f"close:{PROTOCOL_ERROR}") for f in frames]
    # a close frame with a 1-byte body: failing the connection may skip the close frame
    bad_close = frame(b"\x03", opcode=0x8)
    return [*cases, Case("protocol", (bad_close,), f"close:{PROTOCOL_ERROR},drop")]


class RawClient:
    """A blocking WebSocket client over TLS that sends bytes as given."""

    def __init__(self, port: int, token: str, deflate: bool, timeout: float = 15.0) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buffer = b""
        self.inflater = zlib.decompressobj(-15)
        key = base64.b64encode(os.urandom(16)).decode()
        extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Authorization: Bearer {token}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extension}\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        self.deflate = b"permessage-deflate" in head

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server dropped the connection without a close frame")
        self.buffer += data

    def read(self) -> tuple[int, bytes]:
        """The next message or control frame: (opcode, payload), inflated if compressed."""
        parts: list[bytes] = []
        opcode, compressed = 0, False
        while True:
            first, payload = self._frame()
            if first & 0x0F >= 0x8:
                return first & 0x0F, payload  # control frames may come between fragments
            if not parts:
                opcode, compressed = first & 0x0F, bool(first & 0x40)
            parts.append(payload)
            if first & 0x80:
                break
        message = b"".join(parts)
        if compressed:
            message = self.inflater.decompress(message + b"\x00\x00\xff\xff")
        return opcode, message

    def _frame(self) -> tuple[int, bytes]:
        """One whole frame from the socket: (first header byte, payload)."""
        while True:
            header = self._header()
            if header is not None:
                offset, length = header
                if len(self.buffer) >= offset + length:
                    first = self.buffer[0]
                    payload = self.buffer[offset : offset + length]
                    self.buffer = self.buffer[offset + length :]
                    return first, payload
            self._fill()

    def _header(self) -> tuple[int, int] | None:
        """(payload offset, payload length) of the buffered frame, None if incomplete."""
        if len(self.buffer) < 2:
            return None
        length = self.buffer[1] & 0x7F
        if length == 126:
            return (4, struct.unpack("!H", self.buffer[2:4])[0]) if len(self.buffer) >= 4 else None
        if length == 127:
            return (
                (10, struct.unpack("!Q", self.buffer[2:10])[0]) if len(self.buffer) >= 10 else None
            )
        return 2, length

    def close(self) -> None:
        self.sock.close()


@dataclass
class FuzzReport:
    """What the fuzzer sent and what broke the property."""

    sent: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    connections: int = 0
    refused: Counter = field(default_factory=Counter)

    def fail(self, case: Case, problem: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(f"{problem} after {case.describe()}")

    def summary(self) -> dict[str, Any]:
        return {
            "cases": sum(self.sent.values()),
            "by_kind": dict(self.sent),
            "answers": dict(self.answers.most_common(12)),
            "connections": self.connections,
            "refused": dict(self.refused),
            "failures": self.failures,
        }


def _post_id(message: dict[str, Any]) -> Any:
    """The id a ``post`` answer is for (None for other messages)."""
    if message.get("channel") != "post" or not isinstance(message.get("data"), dict):
        return None
    answered = message["data"].get("id")
    return answered if isinstance(answered, int) else None


class _Stop(Exception):
    pass


class Fuzzer:
    """Sends hypothesis' cases to the server until stopped or ``examples`` are done."""

    def __init__(
        self, port: int, token: str, max_message_bytes: int, examples: int, pace_s: float
    ) -> None:
        self.port = port
        self.token = token
        self.max_message_bytes = max_message_bytes
        self.examples = examples
        self.pace_s = pace_s
        self.report = FuzzReport()
        self.stop_event = threading.Event()
        self._clients: dict[bool, RawClient] = {}
        self._probe_id = FIRST_PROBE_ID

    def run(self) -> FuzzReport:
        """Blocking: hypothesis drives :meth:`send_case` (call it in a thread)."""

        warnings.filterwarnings(  # the reactor thread's autobahn masks frames with random
            "ignore", "Do not use the `random` module", HypothesisDeprecationWarning
        )

        @settings(
            max_examples=self.examples,
            database=None,
            deadline=None,
            phases=(Phase.generate,),
            suppress_health_check=list(HealthCheck),
        )
        @given(cases(self.max_message_bytes))
        def property_holds(case: Case) -> None:
            if self.stop_event.is_set():
                raise _Stop()
            self.send_case(case)
            self.stop_event.wait(self.pace_s)  # load shaping, not synchronisation

        try:
            property_holds()
        except _Stop:
            pass
        finally:
            for client in self._clients.values():
                client.close()
        return self.report

    def _client(self, deflate: bool) -> RawClient:
        client = self._clients.get(deflate)
        if client is None:
            self.report.connections += 1
            client = self._clients[deflate] = RawClient(self.port, self.token, deflate)
        return client

    def send_case(self, case: Case) -> None:
        try:
            client = self._client(case.deflate)
        except (OSError, ConnectionError) as exc:
            self.report.refused[str(exc)[:60]] += 1
            return
        if case.deflate and not client.deflate:  # compression off: RSV1 is a violation
            case = Case(case.kind, case.frames, f"close:{PROTOCOL_ERROR}", True, case.shown)
        self.report.sent[case.kind] += 1
        try:
            for raw in case.frames:
                client.sock.sendall(raw)
            answer = self._answer(client, case)
        except (OSError, EOFError, zlib.error) as exc:
            answer = f"dropped: {type(exc).__name__}: {exc}"
        self.report.answers[f"{case.kind} -> {' '.join(answer.split(' ', 2)[:2])}"] += 1
        if answer.startswith("dropped") and case.expect.endswith(",drop"):
            self._drop(case.deflate)
        elif not answer.startswith(("probe", "close")):
            self.report.fail(case, answer)
            self._drop(case.deflate)
        elif answer.startswith("close"):
            self._judge_close(case, answer)
            self._drop(case.deflate)
        elif case.expect.startswith("close:"):
            self.report.fail(case, f"expected a close {case.expect[6:]}, got {answer}")

    def _answer(self, client: RawClient, case: Case) -> str:
        """Send the probe; read until its answer or a close frame. Returns a verdict."""
        replies = 0
        self._probe_id += 1
        with contextlib.suppress(OSError):  # the close frame may already be waiting
            client.sock.sendall(frame(probe(self._probe_id)))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            opcode, payload = client.read()
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return f"close {code} {payload[2:].decode(errors='replace')}"
            if opcode == 0x9:
                client.sock.sendall(frame(payload, opcode=0xA))
                continue
            if opcode != 0x1:
                continue
            message = json.loads(payload)
            answer_to = _post_id(message)
            if answer_to == self._probe_id:
                if case.expect == "reply" and replies == 0:
                    return "no answer before the probe's"
                return f"probe answered after {replies} answers"
            if answer_to is None or answer_to < FIRST_PROBE_ID:  # not an earlier probe's
                replies += message.get("channel") in ANSWERS
        return "silence: no probe answer and no close within 15 s"

    def _judge_close(self, case: Case, answer: str) -> None:
        code = answer.split(" ", 2)[1]
        if "rate limit" in answer:
            return  # the fuzzer's own pace ran into messages_per_minute: no verdict
        if case.expect.startswith("close:"):
            if code not in case.expect[6:].split(","):
                self.report.fail(case, f"expected close {case.expect[6:]}, got {answer}")
        else:
            self.report.fail(case, f"closed ({answer}) where an error message was due")

    def _drop(self, deflate: bool) -> None:
        client = self._clients.pop(deflate, None)
        if client is not None:
            client.close()

"""The config file -> typed, validated settings.

One INI file (configparser). Every section and key is known: an unknown
section or key, a bad value or a missing file is a :class:`ConfigError`
naming the file, the ``[section] key`` and the problem, so ``twistd`` can
print one line and exit 1. Units live in key names (``_s`` seconds,
``_bytes``). See etc/orderbook.ini for every key with its meaning.

A key exists in one place: its dataclass field. The field's type says how
its text is parsed (``bool``, ``str``, ``Path``, ``Path | None``); numbers
name their minimum and other keys their parser with :func:`key`.
:data:`PARSERS` is derived from the fields.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlparse

from twisted.internet.endpoints import _parse  # Twisted's endpoint-string parser

MODES = ("by_block", "streaming")
MARKETS = ("perps", "spot", "hip3", "outcome")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
BALANCES = ("reuseport", "shared")


class ConfigError(Exception):
    """The config file is unusable; str() is the one line to show the operator."""


# -- value parsers: each raises ValueError with the reason -------------------


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes/no/on/off/true/false, got {text!r}")


def _number(kind: Callable[[str], Any], minimum: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f"expected a {kind.__name__} number, got {text!r}") from None
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {text!r}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = _number(float, 0.0)(text)
    if value > 1.0:
        raise ValueError(f"must be within 0..1, got {text!r}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return value

    return parse


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("empty path")
    return Path(text.strip()).expanduser().absolute()


def _optional_path(text: str) -> Path | None:
    return _path(text) if text.strip() else None


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _nonempty_lines(text: str) -> tuple[str, ...]:
    values = _lines(text)
    if not values:
        raise ValueError("needs at least one value")
    return values


PORT_ENDPOINTS = ("tcp", "ssl", "tcp6", "ssl6")  # endpoint kinds whose first argument is a port


def _endpoints(text: str) -> tuple[str, ...]:
    """Listen lines (metrics_listen: none is fine)."""
    return _ports_checked(_lines(text))


def _listen_lines(text: str) -> tuple[str, ...]:
    return _ports_checked(_nonempty_lines(text))


def _ports_checked(specs: tuple[str, ...]) -> tuple[str, ...]:
    """``specs``, once every ``tcp:``/``ssl:`` one names a port 0-65535."""
    for spec in specs:
        args, kwargs = _parse(spec)
        if args and args[0] in PORT_ENDPOINTS:
            port = str(kwargs.get("port", args[1] if len(args) > 1 else ""))
            if not (port.isdigit() and int(port) <= 65535):
                raise ValueError(f"{spec}: the port must be a number 0-65535, not {port!r}")
    return specs


def _workers(text: str) -> int:
    """``auto`` (the number of CPUs) or a count >= 1."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    return _number(int, 1)(text)


def _markets(text: str) -> frozenset[str]:
    words = {word.strip().lower() for word in text.replace(",", " ").split()}
    if words == {"all"}:
        return frozenset(MARKETS)
    unknown = words - set(MARKETS)
    if unknown or not words:
        raise ValueError(f"expected 'all' or some of {', '.join(MARKETS)}, got {text!r}")
    return frozenset(words)


def _http_url(text: str) -> str:
    url = urlparse(text.strip())
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text.strip()


def _ws_url(text: str) -> str:
    if not text.strip():
        return ""
    url = urlparse(text.strip())
    if url.scheme not in ("ws", "wss") or not url.netloc:
        raise ValueError(f"expected a ws:// or wss:// URL, got {text!r}")
    return text.strip()


def _url_path(text: str) -> str:
    value = text.strip()
    if not value.startswith("/") or value == "/" or "?" in value:
        raise ValueError(f"expected an absolute path like /ws, got {text!r}")
    return value


def _text(text: str) -> str:
    return text.strip()


# -- keys: a field's default and how its text is parsed ----------------------

_BY_TYPE: dict[Any, Callable[[str], Any]] = {
    bool: _boolean,
    str: _text,
    Path: _path,
    Path | None: _optional_path,
}


def key(
    default: Any,
    *,
    parse: Callable[[str], Any] | None = None,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config key: its default and, unless its type says it, how its text is parsed.

    ``minimum`` is for ``int``/``float`` keys (which must name one), ``choices``
    for ``str`` keys taking one of a few words, ``parse`` for anything else.
    """
    metadata = {"parse": parse, "minimum": minimum, "choices": choices}
    return field(default=default, metadata=metadata)


def _parser(section: str, cls: type, item: Field[Any]) -> Callable[[str], Any]:
    meta = item.metadata
    kind = get_type_hints(cls)[item.name]
    if meta.get("parse") is not None:
        return meta["parse"]
    if meta.get("choices") is not None:
        return _choice(meta["choices"])
    if kind in (int, float):
        if meta.get("minimum") is None:
            raise TypeError(f"[{section}] {item.name}: a number key needs key(minimum=...)")
        return _number(kind, meta["minimum"])
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    raise TypeError(f"[{section}] {item.name}: no parser for {kind}; use key(parse=...)")


@dataclass(frozen=True)
class NodeSettings:
    """Where and how to read the node (section ``[node]``)."""

    data_dir: Path = Path("~/hl/data").expanduser()
    mode: str = key("by_block", choices=MODES)
    info_url: str = key("http://127.0.0.1:3001/info", parse=_http_url)
    snapshot_path: Path = Path("/tmp/orderbook-snapshot.json")
    snapshot_timeout_s: float = key(120.0, minimum=0.1)
    stall_timeout_s: float = key(10.0, minimum=0.1)
    stream_grace_ms: float = key(100.0, minimum=0)
    validate_interval_s: float = key(60.0, minimum=0)
    recheck_interval_s: float = key(1.0, minimum=0.01)
    max_buffered_blocks: int = key(20_000, minimum=1)
    markets: frozenset[str] = key(frozenset(MARKETS), parse=_markets)
    decode_worker: bool = False


@dataclass(frozen=True)
class TLSSettings:
    """Default certificate for ``ssl:`` listen endpoints that name no files (``[tls]``)."""

    certificate: Path | None = None
    private_key: Path | None = None
    self_signed: bool = False


@dataclass(frozen=True)
class ServerSettings:
    """Listening endpoints and HTTP paths (section ``[server]``)."""

    listen: tuple[str, ...] = key(("ssl:8000",), parse=_listen_lines)
    path: str = key("/ws", parse=_url_path)
    page: bool = True
    workers: int = key(os.cpu_count() or 1, parse=_workers)
    balance: str = key("reuseport", choices=BALANCES)
    metrics_listen: tuple[str, ...] = key((), parse=_endpoints)


@dataclass(frozen=True)
class WebSocketSettings:
    """Per-connection protocol options and limits (section ``[websocket]``)."""

    compression: bool = True
    max_connections: int = key(10_000, minimum=1)
    max_connections_per_ip: int = key(100, minimum=0)
    handshake_timeout_s: float = key(10.0, minimum=0)
    max_subscriptions: int = key(1000, minimum=1)
    max_message_bytes: int = key(65_536, minimum=128)
    messages_per_minute: int = key(2000, minimum=1)
    idle_timeout_s: float = key(60.0, minimum=0)
    auto_ping_interval_s: float = key(20.0, minimum=0)
    auto_ping_timeout_s: float = key(10.0, minimum=0.1)
    max_queued_bytes: int = key(32 * 1024 * 1024, minimum=1024)
    max_views: int = key(10_000, minimum=1)
    allowed_origins: tuple[str, ...] = key(("*",), parse=_nonempty_lines)
    echo: bool = False


@dataclass(frozen=True)
class WampSettings:
    """WAMP v2 on the same endpoint, and the external router (section ``[wamp]``)."""

    enabled: bool = True
    realm: str = "orderbook"
    router_url: str = key("", parse=_ws_url)
    router_realm: str = "orderbook"
    router_authid: str = ""
    router_ticket: str = ""
    router_cryptosign_key: Path | None = None
    router_ca_certificate: Path | None = None
    allow_plaintext_ticket: bool = False


@dataclass(frozen=True)
class AccessSettings:
    """Bearer tokens for clients (section ``[access]``); no tokens_file: open to all."""

    tokens_file: Path | None = None
    protect_metrics: bool = True


@dataclass(frozen=True)
class LogSettings:
    """Logging (section ``[log]``)."""

    format: str = key("text", choices=LOG_FORMATS)
    level: str = key("info", choices=LOG_LEVELS)


@dataclass(frozen=True)
class SimulatorSettings:
    """The in-process node simulator for the demo (section ``[simulator]``)."""

    enabled: bool = False
    seed: int = key(1, minimum=0)
    blocks_per_second: float = key(14.5, minimum=0.01)
    scale: float = key(1.0, minimum=0.001)
    info_port: int = key(3001, minimum=0)
    trade_share: float = key(1.0, parse=_fraction)


@dataclass(frozen=True)
class Settings:
    """Everything the config file says."""

    source: Path
    node: NodeSettings = field(default_factory=NodeSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    wamp: WampSettings = field(default_factory=WampSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    log: LogSettings = field(default_factory=LogSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)


SECTIONS: dict[str, type] = {
    item.name: get_type_hints(Settings)[item.name]
    for item in fields(Settings)
    if item.name != "source"
}


def _parsers() -> dict[tuple[str, str], Callable[[str], Any]]:
    return {
        (section, item.name): _parser(section, cls, item)
        for section, cls in SECTIONS.items()
        for item in fields(cls)
    }


PARSERS: dict[tuple[str, str], Callable[[str], Any]] = _parsers()
"""``(section, key) -> parser``, derived from the settings dataclasses."""


def load(path: str | Path) -> Settings:
    """Read and validate the config file at ``path``."""
    source = Path(path)
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=(";",), empty_lines_in_values=False
    )
    try:
        with source.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{source}: not a valid INI file: {_first_line(exc)}") from None
    sections = {name: _section(source, parser, name) for name in parser.sections()}
    settings = Settings(source=source, **sections)
    _check_consistency(source, settings)
    return settings


def _section(source: Path, parser: configparser.ConfigParser, name: str) -> Any:
    cls = SECTIONS.get(name)
    if cls is None:
        raise ConfigError(
            f"{source}: unknown section [{name}] (known: {', '.join(sorted(SECTIONS))})"
        )
    values = {}
    for key, text in parser.items(name):
        parse = PARSERS.get((name, key))
        if parse is None:
            known = sorted(k for (s, k) in PARSERS if s == name)
            raise ConfigError(f"{source}: [{name}] unknown key {key!r} (known: {', '.join(known)})")
        try:
            values[key] = parse(text)
        except ValueError as exc:
            raise ConfigError(f"{source}: [{name}] {key}: {exc}") from None
    return cls(**values)


def _check_consistency(source: Path, settings: Settings) -> None:
    """Checks that involve several keys (files are read by the modules that use them)."""
    node = settings.node
    if not settings.simulator.enabled and not node.data_dir.is_dir():
        raise ConfigError(f"{source}: [node] data_dir: directory {str(node.data_dir)!r} not found")
    for spec in settings.server.listen + settings.server.metrics_listen:
        if uses_tls_section(spec):
            _check_tls(source, settings.tls, spec)
    wamp = settings.wamp
    plain = wamp.router_url.startswith("ws://") and not wamp.allow_plaintext_ticket
    if plain and wamp.router_ticket and wamp.router_cryptosign_key is None:
        raise ConfigError(
            f"{source}: [wamp] router_ticket: refused over plain ws:// (the ticket would "
            "travel unencrypted): use a wss:// router_url, or allow_plaintext_ticket = yes"
        )


TLS_ENDPOINTS = ("ssl:", "systemd:")
"""Listen endpoints served with TLS by this server (``tls:`` is Twisted's own SNI one)."""


def uses_tls_section(spec: str) -> bool:
    """True for a TLS endpoint that names no key file: it takes the ``[tls]`` files."""
    return spec.startswith(TLS_ENDPOINTS) and "privateKey=" not in spec


def _check_tls(source: Path, tls: TLSSettings, spec: str) -> None:
    for name in ("certificate", "private_key"):
        if getattr(tls, name) is None:
            raise ConfigError(
                f"{source}: [tls] {name}: required by listen = {spec} "
                "(or name the files in it: privateKey=KEY:certKey=CERT)"
            )


def example() -> str:
    """The documented production config (etc/orderbook.ini, shipped in the package)."""
    return resources.files("orderbook").joinpath("etc", "orderbook.ini").read_text("utf-8")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]

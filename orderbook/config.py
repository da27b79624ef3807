"""The config file -> typed, validated settings.

One INI file (configparser). Every section and key is known: an unknown
section or key, a bad value or a missing file is a :class:`ConfigError`
naming the file, the ``[section] key`` and the problem, so ``twistd`` can
print one line and exit 1. Units live in key names (``_s`` seconds,
``_bytes``). See etc/orderbook.ini for every key with its meaning.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

MODES = ("by_block", "streaming")
MARKETS = ("perps", "spot", "hip3", "outcome")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


class ConfigError(Exception):
    """The config file is unusable; str() is the one line to show the operator."""


@dataclass(frozen=True)
class NodeSettings:
    """Where and how to read the node (section ``[node]``)."""

    data_dir: Path = Path("~/hl/data").expanduser()
    mode: str = "by_block"
    info_url: str = "http://127.0.0.1:3001/info"
    snapshot_path: Path = Path("/tmp/orderbook-snapshot.json")
    snapshot_timeout_s: float = 120.0
    stall_timeout_s: float = 10.0
    validate_interval_s: float = 60.0
    recheck_interval_s: float = 1.0
    max_buffered_blocks: int = 20_000
    markets: frozenset[str] = frozenset(MARKETS)
    decode_worker: bool = False


@dataclass(frozen=True)
class TLSSettings:
    """Certificate for ``ssl:`` listen endpoints (section ``[tls]``)."""

    certificate: Path | None = None
    private_key: Path | None = None
    self_signed: bool = False


@dataclass(frozen=True)
class ServerSettings:
    """Listening endpoints and HTTP paths (section ``[server]``)."""

    listen: tuple[str, ...] = ("ssl:8000",)
    path: str = "/ws"
    page: bool = True


@dataclass(frozen=True)
class WebSocketSettings:
    """Per-connection protocol options and limits (section ``[websocket]``)."""

    compression: bool = True
    max_connections: int = 10_000
    max_subscriptions: int = 1000
    max_message_bytes: int = 65_536
    messages_per_minute: int = 2000
    idle_timeout_s: float = 60.0
    auto_ping_interval_s: float = 20.0
    auto_ping_timeout_s: float = 10.0
    max_queued_bytes: int = 8 * 1024 * 1024
    allowed_origins: tuple[str, ...] = ("*",)
    echo: bool = False


@dataclass(frozen=True)
class WampSettings:
    """WAMP v2 on the same endpoint, and the external router (section ``[wamp]``)."""

    enabled: bool = True
    realm: str = "orderbook"
    router_url: str = ""
    router_realm: str = "orderbook"
    router_authid: str = ""
    router_ticket: str = ""
    router_cryptosign_key: Path | None = None
    router_ca_certificate: Path | None = None


@dataclass(frozen=True)
class LogSettings:
    """Logging (section ``[log]``)."""

    format: str = "text"
    level: str = "info"


@dataclass(frozen=True)
class SimulatorSettings:
    """The in-process node simulator for the demo (section ``[simulator]``)."""

    enabled: bool = False
    seed: int = 1
    blocks_per_second: float = 14.5
    scale: float = 1.0
    info_port: int = 3001


@dataclass(frozen=True)
class Settings:
    """Everything the config file says."""

    source: Path
    node: NodeSettings = field(default_factory=NodeSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    wamp: WampSettings = field(default_factory=WampSettings)
    log: LogSettings = field(default_factory=LogSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)


SECTIONS: dict[str, type] = {
    "node": NodeSettings,
    "tls": TLSSettings,
    "server": ServerSettings,
    "websocket": WebSocketSettings,
    "wamp": WampSettings,
    "log": LogSettings,
    "simulator": SimulatorSettings,
}


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


PARSERS: dict[tuple[str, str], Callable[[str], Any]] = {
    ("node", "data_dir"): _path,
    ("node", "mode"): _choice(MODES),
    ("node", "info_url"): _http_url,
    ("node", "snapshot_path"): _path,
    ("node", "snapshot_timeout_s"): _number(float, 0.1),
    ("node", "stall_timeout_s"): _number(float, 0.1),
    ("node", "validate_interval_s"): _number(float, 0),
    ("node", "recheck_interval_s"): _number(float, 0.01),
    ("node", "max_buffered_blocks"): _number(int, 1),
    ("node", "markets"): _markets,
    ("node", "decode_worker"): _boolean,
    ("tls", "certificate"): _optional_path,
    ("tls", "private_key"): _optional_path,
    ("tls", "self_signed"): _boolean,
    ("server", "listen"): _nonempty_lines,
    ("server", "path"): _url_path,
    ("server", "page"): _boolean,
    ("websocket", "compression"): _boolean,
    ("websocket", "max_connections"): _number(int, 1),
    ("websocket", "max_subscriptions"): _number(int, 1),
    ("websocket", "max_message_bytes"): _number(int, 128),
    ("websocket", "messages_per_minute"): _number(int, 1),
    ("websocket", "idle_timeout_s"): _number(float, 0),
    ("websocket", "auto_ping_interval_s"): _number(float, 0),
    ("websocket", "auto_ping_timeout_s"): _number(float, 0.1),
    ("websocket", "max_queued_bytes"): _number(int, 1024),
    ("websocket", "allowed_origins"): _nonempty_lines,
    ("websocket", "echo"): _boolean,
    ("wamp", "enabled"): _boolean,
    ("wamp", "realm"): _text,
    ("wamp", "router_url"): _ws_url,
    ("wamp", "router_realm"): _text,
    ("wamp", "router_authid"): _text,
    ("wamp", "router_ticket"): _text,
    ("wamp", "router_cryptosign_key"): _optional_path,
    ("wamp", "router_ca_certificate"): _optional_path,
    ("log", "format"): _choice(LOG_FORMATS),
    ("log", "level"): _choice(LOG_LEVELS),
    ("simulator", "enabled"): _boolean,
    ("simulator", "seed"): _number(int, 0),
    ("simulator", "blocks_per_second"): _number(float, 0.01),
    ("simulator", "scale"): _number(float, 0.001),
    ("simulator", "info_port"): _number(int, 0),
}


def _check_parsers_cover_settings() -> None:
    for section, cls in SECTIONS.items():
        names = {f.name for f in fields(cls)}
        keys = {key for (sec, key) in PARSERS if sec == section}
        assert names == keys, (section, names ^ keys)


_check_parsers_cover_settings()


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
    """Checks that involve several keys or the file system."""
    node = settings.node
    if not settings.simulator.enabled and not node.data_dir.is_dir():
        raise ConfigError(f"{source}: [node] data_dir: directory {str(node.data_dir)!r} not found")
    if any(spec.startswith("ssl:") for spec in settings.server.listen):
        _check_tls(source, settings.tls)


def _check_tls(source: Path, tls: TLSSettings) -> None:
    for key in ("certificate", "private_key"):
        path = getattr(tls, key)
        if path is None:
            raise ConfigError(f"{source}: [tls] {key}: required by the ssl: listen endpoint")
        if tls.self_signed and not path.exists():
            continue  # generated at startup
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{source}: [tls] {key}: cannot read {str(path)!r}: {exc.strerror}"
            ) from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]

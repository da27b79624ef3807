"""The config file: every key parsed to typed settings, every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderbook import config
from orderbook.config import (
    ConfigError,
    LogSettings,
    NodeSettings,
    ServerSettings,
    Settings,
    SimulatorSettings,
    TLSSettings,
    WampSettings,
    WebSocketSettings,
)

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orderbook.ini"
    path.write_text(text)
    return path


def minimal(tmp_path: Path, extra: str = "") -> Path:
    return write(tmp_path, f"[node]\ndata_dir = {tmp_path}\n[server]\nlisten = tcp:0\n{extra}")


def test_full_file_parses_to_typed_settings(tmp_path):
    """Every section and key lands in its typed field, with units converted."""
    (tmp_path / "cert.pem").write_text("cert")
    (tmp_path / "key.pem").write_text("key")
    path = write(
        tmp_path,
        f"""
[node]
data_dir = {tmp_path}
mode = streaming
info_url = http://127.0.0.1:3999/info
snapshot_path = {tmp_path}/snap.json
snapshot_timeout_s = 5
stall_timeout_s = 2.5
validate_interval_s = 0
recheck_interval_s = 0.5
max_buffered_blocks = 100
markets = perps, hip3
decode_worker = no
[tls]
certificate = {tmp_path}/cert.pem
private_key = {tmp_path}/key.pem
self_signed = no
[server]
listen = ssl:8443
    tcp:8080:interface=127.0.0.1
path = /feed
page = off
[websocket]
compression = off
max_connections = 10
max_subscriptions = 5
max_message_bytes = 4096
messages_per_minute = 60
idle_timeout_s = 30
auto_ping_interval_s = 0
auto_ping_timeout_s = 3
max_queued_bytes = 65536
allowed_origins = https://app.example.com:443
echo = yes
[wamp]
enabled = no
realm = books
router_url = wss://router.example.com:8080/ws
router_realm = public
router_authid = orderbook
router_ticket = secret
router_cryptosign_key =
router_ca_certificate = {tmp_path}/ca.pem
[log]
format = json
level = warn
[simulator]
enabled = no
seed = 7
blocks_per_second = 2
scale = 0.5
info_port = 0
""",
    )
    assert config.load(path) == Settings(
        source=path,
        node=NodeSettings(
            data_dir=tmp_path,
            mode="streaming",
            info_url="http://127.0.0.1:3999/info",
            snapshot_path=tmp_path / "snap.json",
            snapshot_timeout_s=5.0,
            stall_timeout_s=2.5,
            validate_interval_s=0.0,
            recheck_interval_s=0.5,
            max_buffered_blocks=100,
            markets=frozenset({"perps", "hip3"}),
            decode_worker=False,
        ),
        tls=TLSSettings(
            certificate=tmp_path / "cert.pem", private_key=tmp_path / "key.pem", self_signed=False
        ),
        server=ServerSettings(
            listen=("ssl:8443", "tcp:8080:interface=127.0.0.1"), path="/feed", page=False
        ),
        websocket=WebSocketSettings(
            compression=False,
            max_connections=10,
            max_subscriptions=5,
            max_message_bytes=4096,
            messages_per_minute=60,
            idle_timeout_s=30.0,
            auto_ping_interval_s=0.0,
            auto_ping_timeout_s=3.0,
            max_queued_bytes=65536,
            allowed_origins=("https://app.example.com:443",),
            echo=True,
        ),
        wamp=WampSettings(
            enabled=False,
            realm="books",
            router_url="wss://router.example.com:8080/ws",
            router_realm="public",
            router_authid="orderbook",
            router_ticket="secret",
            router_cryptosign_key=None,
            router_ca_certificate=tmp_path / "ca.pem",
        ),
        log=LogSettings(format="json", level="warn"),
        simulator=SimulatorSettings(
            enabled=False, seed=7, blocks_per_second=2.0, scale=0.5, info_port=0
        ),
    )


def test_defaults_apply_to_missing_keys(tmp_path):
    """A minimal file gets the documented production defaults."""
    settings = config.load(minimal(tmp_path))
    assert settings.node.mode == "by_block"
    assert settings.node.validate_interval_s == 60.0
    assert settings.node.markets == frozenset(config.MARKETS)
    assert settings.websocket.compression is True
    assert settings.websocket.max_subscriptions == 1000
    assert settings.websocket.max_message_bytes == 65536
    assert settings.websocket.idle_timeout_s == 60.0
    assert settings.wamp.realm == "orderbook"


@pytest.mark.parametrize("name", ["orderbook.ini", "demo.ini"])
def test_shipped_config_files_list_every_key(name):
    """etc/*.ini use only known keys; orderbook.ini documents every one of them."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(REPO / "etc" / name)
    keys = {(section, key) for section in parser.sections() for key in parser[section]}
    assert keys <= set(config.PARSERS)
    if name == "orderbook.ini":
        documented = keys | {(s, k) for (s, k) in config.PARSERS if s == "simulator"}
        assert documented == set(config.PARSERS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[nodes]\nx = 1\n", "unknown section [nodes]"),
        ("[websocket]\ncompresion = on\n", "[websocket] unknown key 'compresion'"),
        ("[websocket]\ncompression = maybe\n", "[websocket] compression: expected yes/no"),
        (
            "[websocket]\nmax_subscriptions = lots\n",
            "[websocket] max_subscriptions: expected a int",
        ),
        ("[websocket]\nmax_subscriptions = 0\n", "[websocket] max_subscriptions: must be >= 1"),
        ("[log]\nformat = xml\n", "[log] format: expected one of text, json"),
        ("[wamp]\nrouter_url = http://x\n", "[wamp] router_url: expected a ws:// or wss://"),
        ("[server]\npath = ws\n", "[server] path: expected an absolute path"),
        ("[server]\nlisten = ssl:118000\n", "[server] listen: ssl:118000: the port must be"),
        ("[server]\nlisten = tcp:port=http\n", "[server] listen: tcp:port=http: the port must"),
        ("[server]\nmetrics_listen = tcp\n", "[server] metrics_listen: tcp: the port must be"),
    ],
)
def test_mistakes_name_file_section_key_and_problem(tmp_path, extra, message):
    """Each bad file raises one ConfigError line naming the file and the key."""
    path = write(tmp_path, f"[node]\ndata_dir = {tmp_path}\n{extra}")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: ")
    assert message in line
    assert "\n" not in line


def test_markets_reject_unknown_class(tmp_path):
    """markets takes only all/perps/spot/hip3/outcome."""
    path = write(tmp_path, f"[node]\ndata_dir = {tmp_path}\nmarkets = perps futures\n")
    with pytest.raises(ConfigError, match=r"\[node\] markets: expected 'all'"):
        config.load(path)


def test_missing_data_dir_is_named(tmp_path):
    """A data_dir that does not exist fails at load, naming the directory."""
    path = write(tmp_path, f"[node]\ndata_dir = {tmp_path}/nope\n[server]\nlisten = tcp:0\n")
    with pytest.raises(ConfigError, match=r"\[node\] data_dir: directory .*nope.* not found"):
        config.load(path)


def test_missing_file_is_named(tmp_path):
    """A config path that does not exist is one clear line."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(tmp_path / "absent.ini")


@pytest.mark.parametrize("spec", ["ssl:0", "systemd:domain=INET:index=0"])
def test_tls_listen_without_files_needs_tls_section(tmp_path, spec):
    """A TLS endpoint naming no files needs [tls] certificate and private_key."""
    path = minimal(tmp_path)
    path.write_text(path.read_text().replace("listen = tcp:0", f"listen = {spec}"))
    with pytest.raises(ConfigError, match=r"\[tls\] certificate: required by listen = "):
        config.load(path)


def test_ssl_listen_naming_its_files_needs_no_tls_section(tmp_path):
    """ssl:PORT:privateKey=KEY:certKey=CERT is a complete endpoint: no [tls] needed."""
    path = minimal(tmp_path)
    spec = f"ssl:0:interface=127.0.0.1:privateKey={tmp_path}/k.pem:certKey={tmp_path}/c.pem"
    path.write_text(path.read_text().replace("listen = tcp:0", f"listen = {spec}"))
    assert config.load(path).server.listen == (spec,)


def test_parsers_are_derived_from_the_fields():
    """Every dataclass field is a key with a parser, and nothing else is."""
    from dataclasses import fields

    expected = {(s, f.name) for s, cls in config.SECTIONS.items() for f in fields(cls)}
    assert set(config.PARSERS) == expected
    assert config.PARSERS[("websocket", "max_connections")]("5") == 5
    with pytest.raises(ValueError, match="must be >= 1"):
        config.PARSERS[("websocket", "max_connections")]("0")
    assert config.PARSERS[("tls", "certificate")]("") is None


def test_a_number_key_without_minimum_is_refused_at_definition():
    """A key whose type gives no parser fails when the module defines it, not at -O."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Bad:
        count: int = 3

    with pytest.raises(TypeError, match=r"\[bad\] count: a number key needs"):
        config._parser("bad", Bad, config.fields(Bad)[0])


def test_self_signed_allows_absent_files(tmp_path):
    """With self_signed = yes the files may be absent (they are generated at start)."""
    path = minimal(
        tmp_path,
        f"[tls]\ncertificate = {tmp_path}/c.pem\nprivate_key = {tmp_path}/k.pem\nself_signed = yes\n",
    )
    path.write_text(path.read_text().replace("listen = tcp:0", "listen = ssl:0"))
    assert config.load(path).tls.self_signed is True


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    """Relative paths are taken from the working directory, once, at load."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    path = write(
        tmp_path, "[node]\ndata_dir = data\nsnapshot_path = snap.json\n[server]\nlisten = tcp:0\n"
    )
    node = config.load(path).node
    assert node.data_dir == tmp_path / "data"
    assert node.snapshot_path == tmp_path / "snap.json"


def test_workers_is_auto_or_a_count(tmp_path):
    """[server] workers: 'auto' is the number of CPUs; 0 is a one-line error."""
    import os

    from orderbook import config

    path = tmp_path / "w.ini"
    path.write_text(
        f"[node]\ndata_dir = {tmp_path}\n[server]\nlisten = tcp:0\nworkers = auto\nbalance = shared\n"
    )
    settings = config.load(path)
    assert settings.server.workers == (os.cpu_count() or 1)
    assert settings.server.balance == "shared"
    path.write_text(f"[node]\ndata_dir = {tmp_path}\n[server]\nlisten = tcp:0\nworkers = 0\n")
    with pytest.raises(config.ConfigError, match=r"\[server\] workers.*>= 1"):
        config.load(path)

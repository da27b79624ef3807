"""TLS: listen lines, certificate files, a real handshake (fullchain, ALPN), SIGHUP reload.

The handshakes are real: a Site on 127.0.0.1 behind ``tls.endpoint``, and a
blocking stdlib ``ssl`` client in a thread that trusts only what the test
says (the root CA of a root -> intermediate -> leaf chain made here).
"""

from __future__ import annotations

import datetime
import gc
import os
import signal
import socket
import ssl
import stat
import time
import weakref
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import threads
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from orderbook import process, tls
from orderbook.config import TLSSettings

NO_TLS = TLSSettings()
SECTION = TLSSettings(Path("/etc/ob/c:1.pem"), Path("/etc/ob/k.pem"), False)


# -- listen lines ---------------------------------------------------------------


def test_ssl_without_files_takes_the_tls_section():
    """ssl:PORT binds tcp:PORT and serves the [tls] files."""
    listen = tls.parse_listen("ssl:8443:interface=127.0.0.1", SECTION)
    assert listen.transport == "tcp:port=8443:interface=127.0.0.1"
    assert listen.files == tls.TLSFiles(Path("/etc/ob/k.pem"), Path("/etc/ob/c:1.pem"))
    assert listen.scheme == "tls"


def test_ssl_naming_its_files_is_used_as_written():
    """A standard Twisted ssl: string with its own files needs no [tls] section."""
    spec = r"ssl:8443:interface=127.0.0.1:privateKey=/k\:1.pem:certKey=/full.pem:extraCertChain=/ch.pem"
    listen = tls.parse_listen(spec, NO_TLS)
    assert listen.transport == "tcp:port=8443:interface=127.0.0.1"
    files = listen.files
    assert files is not None
    assert (files.private_key, files.certificate, files.chain) == (
        Path("/k:1.pem"),
        Path("/full.pem"),
        Path("/ch.pem"),
    )
    assert files.label("certificate") == f"listen = {spec}: certKey"


def test_ssl_key_file_alone_holds_the_certificate_too():
    """As in Twisted: without certKey= the privateKey= file holds both."""
    files = tls.parse_listen("ssl:1:privateKey=/both.pem", NO_TLS).files
    assert files is not None and files.certificate == files.private_key == Path("/both.pem")


def test_files_without_the_key_are_refused():
    """certKey= without privateKey= would silently take another key: one line instead."""
    with pytest.raises(tls.CertificateError, match="names certKey= but no privateKey="):
        tls.parse_listen("ssl:1:certKey=/full.pem", SECTION)


def test_systemd_gets_tls_on_top_and_plain_endpoints_none():
    """systemd: keeps its own arguments and gets the [tls] files; tcp:/unix: are plaintext."""
    listen = tls.parse_listen("systemd:domain=INET:index=0", SECTION)
    assert listen.transport == "systemd:domain=INET:index=0"
    assert listen.files is not None and listen.files.where == "[tls]"
    for spec in ("tcp:8000", "unix:/run/ob.sock"):
        plain = tls.parse_listen(spec, SECTION)
        assert (plain.transport, plain.files, plain.scheme) == (spec, None, "plaintext")


# -- certificates made here -----------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject, key, issuer, issuer_key, ca: bool, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        san = [x509.DNSName(n) for n in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Chain:
    """A root CA, an intermediate CA and a server leaf for localhost, as files."""

    def __init__(self, directory: Path, name: str = "leaf") -> None:
        root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
        root = _issue("Test Root", root_key, "Test Root", root_key, ca=True)
        mid = _issue("Test Intermediate", mid_key, "Test Root", root_key, ca=True)
        leaf = _issue(name, leaf_key, "Test Intermediate", mid_key, False, ["localhost"])
        directory.mkdir(parents=True, exist_ok=True)
        self.root = directory / "root.pem"
        self.root.write_bytes(_pem(root))
        self.key = directory / "privkey.pem"
        self.key.write_bytes(_key_pem(leaf_key))
        self.leaf_only = directory / "cert.pem"
        self.leaf_only.write_bytes(_pem(leaf))
        self.chain = directory / "chain.pem"
        self.chain.write_bytes(_pem(mid))
        self.fullchain = directory / "fullchain.pem"  # what an ACME client writes
        self.fullchain.write_bytes(_pem(leaf) + _pem(mid))
        self.leaf_der = leaf.public_bytes(serialization.Encoding.DER)


# -- loading: every problem is one line naming the file -------------------------


def test_fullchain_file_serves_leaf_then_intermediates(tmp_path):
    """Every certificate of a fullchain is served; chain.pem on top adds no duplicate."""
    chain = Chain(tmp_path)
    files = tls.TLSFiles(chain.key, chain.fullchain, chain=chain.chain)
    _, served = tls.load_options(files)
    subjects = [c.subject.rfc4514_string() for c in served]
    assert subjects == ["CN=leaf", "CN=Test Intermediate"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("garbage_certificate", "[tls] certificate: {cert} is not a PEM certificate"),
        ("other_key", "[tls] private_key: {key} does not belong to the certificate"),
        ("no_key", "[tls] private_key: cannot read '{key}': No such file"),
        ("garbage_key", "[tls] private_key: {key} is not an unencrypted PEM private key"),
    ],
)
def test_unusable_files_are_one_line(tmp_path, damage, message):
    """Each broken pair raises one CertificateError line naming key and file."""
    chain = Chain(tmp_path)
    if damage == "garbage_certificate":
        chain.fullchain.write_text("garbage\n")
    elif damage == "other_key":
        chain.key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    elif damage == "no_key":
        chain.key.unlink()
    else:
        chain.key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(tls.CertificateError) as caught:
        tls.load_options(tls.TLSFiles(chain.key, chain.fullchain))
    line = str(caught.value)
    assert message.format(cert=chain.fullchain, key=chain.key) in line
    assert "\n" not in line


# -- self-signed ------------------------------------------------------------------


def test_self_signed_pair_is_generated_once_as_a_leaf(tmp_path):
    """Absent files are generated (key 0600, CA:FALSE, serverAuth); present ones are kept."""
    settings = TLSSettings(tmp_path / "a" / "cert.pem", tmp_path / "a" / "key.pem", True)
    tls.ensure_self_signed(settings)
    cert = settings.certificate.read_bytes()
    parsed = x509.load_pem_x509_certificate(cert)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    assert parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert stat.S_IMODE(settings.private_key.stat().st_mode) == 0o600
    tls.ensure_self_signed(settings)
    assert settings.certificate.read_bytes() == cert
    assert len(tls.fingerprint(cert).split(":")) == 32


def test_self_signed_off_generates_nothing(tmp_path):
    """Without self_signed nothing is written."""
    tls.ensure_self_signed(TLSSettings(tmp_path / "c.pem", tmp_path / "k.pem", False))
    assert list(tmp_path.iterdir()) == []


# -- real handshakes --------------------------------------------------------------


class Client:
    """A blocking HTTPS keep-alive client (run its calls in a thread)."""

    def __init__(self, port: int, cafile: Path) -> None:
        context = ssl.create_default_context(cafile=str(cafile))
        context.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.alpn = self.sock.selected_alpn_protocol()
        self.certificate = self.sock.getpeercert(binary_form=True)

    def get(self) -> bytes:
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while not data.endswith(b"ok"):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data.split(b"\r\n", 1)[0]

    def close(self) -> None:
        self.sock.close()


def serve(reactor, files: tls.TLSFiles):
    """A Site answering "ok" at / behind TLS with ``files``, on 127.0.0.1:0."""
    root = Resource()
    root.putChild(b"", Data(b"ok", "text/plain"))
    served = tls.ServedCertificate(files)
    served.load()
    listen = tls.Listen("ssl:0", "tcp:0:interface=127.0.0.1", files)
    return served, tls.endpoint(reactor, listen, served).listen(Site(root))


@pytest_twisted.ensureDeferred
async def test_client_trusting_only_the_root_connects_with_a_fullchain(reactor, tmp_path):
    """fullchain.pem: the intermediate is sent, the root is enough; ALPN picks http/1.1."""
    chain = Chain(tmp_path)
    _, listening = serve(reactor, tls.TLSFiles(chain.key, chain.fullchain))
    port = await listening
    try:
        client = await threads.deferToThread(Client, port.getHost().port, chain.root)
        assert await threads.deferToThread(client.get) == b"HTTP/1.1 200 OK"
        assert client.alpn == "http/1.1"
        assert client.certificate == chain.leaf_der
        client.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_leaf_alone_fails_for_that_client(reactor, tmp_path):
    """The control: without the intermediate the same client cannot verify the server."""
    chain = Chain(tmp_path)
    _, listening = serve(reactor, tls.TLSFiles(chain.key, chain.leaf_only))
    port = await listening
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await threads.deferToThread(Client, port.getHost().port, chain.root)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_self_signed_leaf_is_trusted_when_pinned(reactor, tmp_path):
    """A client given the self-signed certificate as its CA file connects."""
    settings = TLSSettings(tmp_path / "c.pem", tmp_path / "k.pem", True)
    tls.ensure_self_signed(settings)
    _, listening = serve(reactor, tls.TLSFiles(settings.private_key, settings.certificate))
    port = await listening
    try:
        client = await threads.deferToThread(Client, port.getHost().port, settings.certificate)
        assert await threads.deferToThread(client.get) == b"HTTP/1.1 200 OK"
        client.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_sighup_reloads_for_new_clients_and_keeps_connected_ones(reactor, tmp_path):
    """New files + SIGHUP: a new client gets the new chain; a connected one keeps working."""
    first, second = Chain(tmp_path / "one", "first"), Chain(tmp_path / "two", "second")
    live = tmp_path / "live"
    live.mkdir()
    files = tls.TLSFiles(live / "privkey.pem", live / "fullchain.pem")
    _install(first, live)
    served, listening = serve(reactor, files)
    hangup = process.HangupReload(reactor)
    hangup.add(served.reload)
    hangup.startService()
    port = await listening
    number = port.getHost().port
    try:
        old = await threads.deferToThread(Client, number, first.root)
        assert old.certificate == first.leaf_der
        _install(second, live)
        os.kill(os.getpid(), signal.SIGHUP)
        await _until(reactor, lambda: served.chain[0].subject.rfc4514_string() == "CN=second")
        new = await threads.deferToThread(Client, number, second.root)
        assert new.certificate == second.leaf_der
        assert await threads.deferToThread(old.get) == b"HTTP/1.1 200 OK"  # not dropped
        old.close()
        new.close()
    finally:
        hangup.stopService()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_reload_with_a_broken_file_keeps_the_old_certificate(reactor, tmp_path):
    """A half-written or wrong file on reload is logged; the server keeps serving."""
    chain = Chain(tmp_path)
    served, listening = serve(reactor, tls.TLSFiles(chain.key, chain.fullchain))
    port = await listening
    try:
        chain.fullchain.write_text("-----BEGIN CERTIFICATE-----\n")
        served.reload()
        client = await threads.deferToThread(Client, port.getHost().port, chain.root)
        assert client.certificate == chain.leaf_der
        client.close()
    finally:
        await port.stopListening()


def _install(chain: Chain, live: Path) -> None:
    """Replace the live files the way certbot's deploy step does (write, rename)."""
    for source, name in ((chain.key, "privkey.pem"), (chain.fullchain, "fullchain.pem")):
        temporary = live / f".{name}.new"
        temporary.write_bytes(source.read_bytes())
        temporary.replace(live / name)


async def _until(reactor, condition, timeout: float = 10.0) -> None:
    from twisted.internet.task import deferLater

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the reload")
        await deferLater(reactor, 0.01, lambda: None)


def watch_tls_connections(served: tls.ServedCertificate) -> list[weakref.ref]:
    """Weak references to every OpenSSL connection ``served`` makes from now on."""
    made: list[weakref.ref] = []
    make = served.options.serverConnectionForTLS

    def recorded(protocol):
        connection = make(protocol)
        made.append(weakref.ref(connection))
        return connection

    served.options.serverConnectionForTLS = recorded
    return made


@pytest.mark.parametrize("ending", ["dropped", "garbage"])
@pytest_twisted.ensureDeferred
async def test_a_connection_ending_in_a_tls_error_is_freed_without_the_collector(
    reactor, tmp_path, ending
):
    """A client that drops TCP without close_notify, or never speaks TLS: its OpenSSL
    connection is freed by reference counting alone (gc_policy freezes what the
    collector has not freed, so a cycle here would be kept for good)."""
    chain = Chain(tmp_path)
    served, listening = serve(reactor, tls.TLSFiles(chain.key, chain.fullchain))
    port = await listening
    made = watch_tls_connections(served)
    gc.collect()
    gc.disable()
    try:
        if ending == "dropped":
            client = await threads.deferToThread(Client, port.getHost().port, chain.root)
            assert await threads.deferToThread(client.get) == b"HTTP/1.1 200 OK"
            client.close()  # no close_notify: the server reads an EOF that TLS calls an error
        else:
            raw = socket.create_connection(("127.0.0.1", port.getHost().port))
            raw.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")  # not a ClientHello
            await _until(reactor, lambda: made)
        assert len(made) == 1
        await _until(reactor, lambda: not port.factory.protocols and made[0]() is None)
        if ending == "garbage":
            raw.close()
    finally:
        gc.enable()
        await port.stopListening()

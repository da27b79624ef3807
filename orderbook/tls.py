"""TLS for listen endpoints: which files, loading and reloading them, self-signed pairs.

``listen`` lines are standard Twisted endpoint strings. ``ssl:`` and
``systemd:`` endpoints are served with TLS by :class:`ServedCertificate`:
the files they name (``privateKey=``, ``certKey=``, ``extraCertChain=``,
``dhParameters=``, ``sslmethod=`` as in Twisted's ``ssl:``) or, when they
name no key, the ``[tls]`` section's. The certificate file may be a fullchain
(leaf first, then intermediates): every certificate in it is served.
:meth:`ServedCertificate.reload` (on SIGHUP) re-reads the files for new
connections; connected clients keep theirs. TLS 1.2 is the minimum.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.application.service import Service
from twisted.internet import ssl
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, _parse, serverFromString
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IStreamServerEndpoint
from twisted.internet.ssl import CertificateOptions, DiffieHellmanParameters
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from orderbook import process
from orderbook.config import TLS_ENDPOINTS, TLSSettings

_log = Logger(namespace="orderbook.tls")

SELF_SIGNED_DAYS = 825

_FILE_ARGS = {
    "privateKey": "private_key",
    "certKey": "certificate",
    "extraCertChain": "chain",
    "dhParameters": "dh_parameters",
}
_TWISTED_NAMES = {value: key for key, value in _FILE_ARGS.items()}
_SSL_POSITIONAL = ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog")


class CertificateError(Exception):
    """The TLS files are unusable; str() is the one line naming the file and the problem."""


@dataclass(frozen=True)
class TLSFiles:
    """The files one TLS endpoint serves, and where the config named them."""

    private_key: Path
    certificate: Path
    chain: Path | None = None
    dh_parameters: Path | None = None
    method: str | None = None
    where: str = "[tls]"

    def label(self, name: str) -> str:
        """``[tls] certificate`` or ``listen = SPEC: certKey``, for messages."""
        if self.where == "[tls]":
            return f"[tls] {name}"
        return f"{self.where}: {_TWISTED_NAMES[name]}"


@dataclass(frozen=True)
class Listen:
    """One ``listen`` line: the endpoint to bind and the TLS files on top (None: none)."""

    spec: str
    transport: str
    files: TLSFiles | None

    @property
    def scheme(self) -> str:
        return "plaintext" if is_plaintext(self.spec) else "tls"


def is_plaintext(spec: str) -> bool:
    """True for endpoints that carry no TLS (tcp:, unix:, ...)."""
    return not spec.startswith((*TLS_ENDPOINTS, "tls:"))


def parse_listen(spec: str, tls: TLSSettings) -> Listen:
    """Split a listen line into the bare endpoint and its TLS files (no I/O).

    Raises CertificateError for files named without the key (``certKey=`` alone).
    """
    if not spec.startswith(TLS_ENDPOINTS):
        return Listen(spec, spec, None)
    args, kwargs = _parse(spec)
    if spec.startswith("ssl:"):
        kwargs = {**dict(zip(_SSL_POSITIONAL, args[1:], strict=False)), **kwargs}
        args = ["tcp"]
    files = {_FILE_ARGS[k]: Path(kwargs.pop(k)) for k in list(kwargs) if k in _FILE_ARGS}
    method = kwargs.pop("sslmethod", None)
    if "private_key" in files:
        files.setdefault("certificate", files["private_key"])  # as Twisted's ssl: does
        where = f"listen = {spec}"
    elif files:
        named = ", ".join(f"{_TWISTED_NAMES[name]}=" for name in files)
        raise CertificateError(f"listen = {spec}: names {named} but no privateKey=")
    else:
        files.update(private_key=tls.private_key, certificate=tls.certificate)
        where = "[tls]"
    transport = ":".join([*args, *(f"{k}={_escape(v)}" for k, v in kwargs.items())])
    return Listen(spec, transport, TLSFiles(**files, method=method, where=where))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


class CycleFreeTLS(BufferingTLSTransport):
    """Twisted's TLS protocol, less one reference cycle per connection that ends in error.

    On a TLS error (a client that drops TCP without a close_notify, a failed
    handshake) Twisted keeps the Failure in a local of the frame its traceback
    holds: a cycle that keeps the whole connection, ~60 KB of OpenSSL state,
    until a full collection, and for good once gc_policy's freeze has seen
    it. The exception stays, its frames go (nobody reads them).
    """

    def _tlsShutdownFinished(self, reason: Failure | None) -> None:
        if reason is not None:  # not cleanFailure(): it also formats every frame's text
            reason.tb = None
            reason.value.__traceback__ = None
        super()._tlsShutdownFinished(reason)


class CycleFreeTLSFactory(TLSMemoryBIOFactory):
    """TLS on top of a factory's protocols, with :class:`CycleFreeTLS`."""

    protocol = CycleFreeTLS


@implementer(IStreamServerEndpoint)
class TLSEndpoint:
    """TLS on top of any stream endpoint (tcp:, systemd:), with a swappable certificate."""

    def __init__(self, inner: Any, creator: Any) -> None:
        self.inner = inner
        self.creator = creator

    def listen(self, factory: Any) -> Any:
        return self.inner.listen(CycleFreeTLSFactory(self.creator, False, factory))


def endpoint(
    reactor: Any,
    listen: Listen,
    certificate: ServedCertificate | None,
    adopt_fd: int | None = None,
) -> Any:
    """The server endpoint for ``listen``: its bare endpoint, TLS on top when it has files.

    With ``adopt_fd`` the bare endpoint is that already listening socket (a
    worker accepting on the socket its parent bound).
    """
    if adopt_fd is None:
        inner = serverFromString(reactor, listen.transport)
    else:
        with socket.socket(fileno=os.dup(adopt_fd)) as sock:
            family = sock.family
        inner = AdoptedStreamServerEndpoint(reactor, adopt_fd, family)
    return inner if certificate is None else TLSEndpoint(inner, certificate)


@implementer(IOpenSSLServerConnectionCreator)
class ServedCertificate:
    """The certificate chain and key one endpoint serves; reloadable for new connections."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self.options: CertificateOptions | None = None
        self.chain: list[x509.Certificate] = []

    def load(self) -> None:
        """Read the files; raise CertificateError (one line) if they are unusable."""
        self.options, self.chain = load_options(self.files)
        leaf = self.chain[0]
        _log.info(
            "TLS certificate {subject} from {path}: valid until {until}, "
            "{count} certificate(s) served",
            subject=leaf.subject.rfc4514_string(),
            path=str(self.files.certificate),
            until=leaf.not_valid_after_utc.isoformat(),
            count=len(self.chain),
        )

    def reload(self) -> None:
        """Re-read the files for new connections; on a bad file keep serving the old ones."""
        try:
            self.load()
        except CertificateError as exc:
            _log.error("TLS reload failed, still serving the previous certificate: {e}", e=exc)

    def serverConnectionForTLS(self, protocol: Any) -> Any:
        assert self.options is not None, "ServedCertificate.load() was not called"
        return self.options.serverConnectionForTLS(protocol)


def load_options(files: TLSFiles) -> tuple[CertificateOptions, list[x509.Certificate]]:
    """Read key, certificate(s) and chain: the options and what is served (leaf first)."""
    certificates = _certificates(files, "certificate", files.certificate)
    leaf, chain = certificates[0], certificates[1:]
    if files.chain is not None:
        chain += _certificates(files, "chain", files.chain)
    chain = _unique(chain, leaf)
    key = _private_key(files)
    if _public(key) != _public(leaf):
        raise CertificateError(
            f"{files.label('private_key')}: {files.private_key} does not belong to the "
            f"certificate {files.certificate}"
        )
    pair = ssl.PrivateCertificate.loadPEM(_pem(leaf) + _key_pem(key))
    options = CertificateOptions(
        privateKey=pair.privateKey.original,
        certificate=pair.original,
        extraCertChain=[ssl.Certificate.loadPEM(_pem(c)).original for c in chain] or None,
        dhParameters=_dh(files),
        **({"method": getattr(ssl.SSL, files.method)} if files.method else {}),
    )
    options.getContext()  # build it now: errors here, not at the first client
    return options, [leaf, *chain]


def check(listens: list[Listen], section: TLSSettings) -> None:
    """Read (never write) every endpoint's files; raise CertificateError on the first bad one.

    The [tls] pair that ``self_signed`` will generate at start is skipped.
    """
    for listen in listens:
        if listen.files is None or _to_generate(listen.files, section):
            continue
        load_options(listen.files)


def _to_generate(files: TLSFiles, section: TLSSettings) -> bool:
    return (
        section.self_signed
        and files.where == "[tls]"
        and not (files.certificate.exists() and files.private_key.exists())
    )


def _read(files: TLSFiles, name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(
            f"{files.label(name)}: cannot read {str(path)!r}: {exc.strerror}"
        ) from None


def _certificates(files: TLSFiles, name: str, path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(files, name, path))
    except ValueError as exc:
        raise CertificateError(
            f"{files.label(name)}: {path} is not a PEM certificate ({exc})"
        ) from None


def _private_key(files: TLSFiles) -> Any:
    data = _read(files, "private_key", files.private_key)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(
            f"{files.label('private_key')}: {files.private_key} is not an unencrypted PEM "
            f"private key ({exc})"
        ) from None


def _dh(files: TLSFiles) -> Any:
    if files.dh_parameters is None:
        return None
    _read(files, "dh_parameters", files.dh_parameters)
    return DiffieHellmanParameters.fromFile(FilePath(str(files.dh_parameters)))


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public(key_or_certificate: Any) -> bytes:
    return key_or_certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _unique(chain: list[x509.Certificate], leaf: x509.Certificate) -> list[x509.Certificate]:
    """The chain without the leaf and duplicates (fullchain.pem plus chain.pem)."""
    seen = {leaf.fingerprint(hashes.SHA256())}
    unique = []
    for certificate in chain:
        digest = certificate.fingerprint(hashes.SHA256())
        if digest not in seen:
            seen.add(digest)
            unique.append(certificate)
    return unique


class Certificates(Service):
    """Make the self-signed pair if asked, then load every TLS endpoint's files.

    Runs in ``privilegedStartService``, before the listening services: a bad
    file stops startup with one line (via ``fail``) before the reactor runs.
    """

    def __init__(self, tls: TLSSettings, source: Path) -> None:
        self.tls = tls
        self.source = source
        self.served: list[ServedCertificate] = []

    def serve(self, files: TLSFiles) -> ServedCertificate:
        """The ServedCertificate for ``files`` (one per distinct set of files)."""
        for served in self.served:
            if replace(served.files, where="") == replace(files, where=""):
                return served
        served = ServedCertificate(files)
        self.served.append(served)
        return served

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        try:
            ensure_self_signed(self.tls)
        except OSError as exc:
            process.fail(
                f"{self.source}: [tls] self_signed: cannot write {exc.filename}: {exc.strerror}"
            )
        for served in self.served:
            try:
                served.load()
            except CertificateError as exc:
                process.fail(f"{self.source}: {exc}")

    def reload(self) -> None:
        """Re-read every endpoint's files (SIGHUP)."""
        for served in self.served:
            served.reload()


def ensure_self_signed(tls: TLSSettings) -> None:
    """Generate key and certificate at the configured paths if both are absent."""
    if not tls.self_signed or tls.certificate is None or tls.private_key is None:
        return
    if tls.certificate.exists() and tls.private_key.exists():
        return
    key_pem, cert_pem = make_self_signed(["localhost", "127.0.0.1", "::1"])
    _write_private(tls.private_key, key_pem)
    tls.certificate.parent.mkdir(parents=True, exist_ok=True)
    tls.certificate.write_bytes(cert_pem)
    _log.warn(
        "generated a self-signed TLS certificate {certificate} (key {key}), "
        "SHA-256 fingerprint {fingerprint}: browsers will ask you to accept it",
        certificate=str(tls.certificate),
        key=str(tls.private_key),
        fingerprint=fingerprint(cert_pem),
    )


def make_self_signed(names: list[str]) -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed server (leaf, not CA) certificate (PEM, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(name) for name in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as colon-separated hex."""
    certificate = x509.load_pem_x509_certificate(cert_pem)
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()

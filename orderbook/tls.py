"""TLS for listen endpoints: certificate files, self-signed generation, endpoint strings.

A ``listen = ssl:8000`` line gets its ``privateKey``/``certKey`` from the
``[tls]`` section; a full Twisted endpoint string that names its own files is
used as written. TLS 1.2 is the minimum (Twisted's default for ``ssl:``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.logger import Logger

from orderbook.config import ConfigError, TLSSettings

_log = Logger(namespace="orderbook.tls")

SELF_SIGNED_DAYS = 825


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


def check_pair(tls: TLSSettings, source: Path) -> None:
    """Raise ConfigError (one line) unless the [tls] files are a PEM certificate and its key."""
    if tls.certificate is None or tls.private_key is None:
        return  # endpoints naming their own files (config.py requires these for ssl:)
    cert_pem = _read(source, "certificate", tls.certificate)
    key_pem = _read(source, "private_key", tls.private_key)
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: [tls] certificate: {tls.certificate} is not a PEM certificate ({exc})"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{source}: [tls] private_key: {tls.private_key} is not an unencrypted PEM "
            f"private key ({exc})"
        ) from None
    public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != certificate.public_key().public_bytes(*public):
        raise ConfigError(
            f"{source}: [tls] private_key: {tls.private_key} does not belong to the certificate "
            f"{tls.certificate}"
        )


def _read(source: Path, name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{source}: [tls] {name}: cannot read {str(path)!r}: {exc.strerror}"
        ) from None


def make_self_signed(names: list[str]) -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed certificate for ``names`` (PEM, PEM)."""
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
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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


def endpoint_string(spec: str, tls: TLSSettings) -> str:
    """Complete an ``ssl:`` endpoint string with the [tls] files when it names none."""
    if not spec.startswith("ssl:") or "privateKey=" in spec:
        return spec
    key = _escape(str(tls.private_key))
    cert = _escape(str(tls.certificate))
    return f"{spec}:privateKey={key}:certKey={cert}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def is_plaintext(spec: str) -> bool:
    """True for endpoints that carry no TLS (tcp:, unix:)."""
    return not spec.startswith(("ssl:", "tls:"))

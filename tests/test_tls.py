"""TLS helpers: self-signed generation and endpoint strings."""

from __future__ import annotations

import stat

from cryptography import x509

from orderbook import tls
from orderbook.config import TLSSettings


def test_self_signed_pair_is_generated_once(tmp_path):
    """Absent files are generated (key private to the owner); present ones are kept."""
    settings = TLSSettings(tmp_path / "a" / "cert.pem", tmp_path / "a" / "key.pem", True)
    tls.ensure_self_signed(settings)
    cert = settings.certificate.read_bytes()
    names = x509.load_pem_x509_certificate(cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(settings.private_key.stat().st_mode) == 0o600
    tls.ensure_self_signed(settings)
    assert settings.certificate.read_bytes() == cert
    assert len(tls.fingerprint(cert).split(":")) == 32


def test_self_signed_off_generates_nothing(tmp_path):
    """Without self_signed nothing is written."""
    tls.ensure_self_signed(TLSSettings(tmp_path / "c.pem", tmp_path / "k.pem", False))
    assert list(tmp_path.iterdir()) == []


def test_endpoint_string_takes_tls_files():
    """ssl:PORT gets the [tls] files (escaped); explicit files and tcp: stay as written."""
    settings = TLSSettings(tls.Path("/etc/ob/c:1.pem"), tls.Path("/etc/ob/k.pem"), False)
    assert tls.endpoint_string("ssl:8000", settings) == (
        "ssl:8000:privateKey=/etc/ob/k.pem:certKey=/etc/ob/c\\:1.pem"
    )
    assert (
        tls.endpoint_string("ssl:1:privateKey=x:certKey=y", settings)
        == "ssl:1:privateKey=x:certKey=y"
    )
    assert tls.endpoint_string("tcp:8000", settings) == "tcp:8000"
    assert tls.is_plaintext("tcp:8000") and not tls.is_plaintext("ssl:8000")

"""makeService wiring: which services exist for which config (nothing started)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from orderbook import tap


def make(
    tmp_path,
    extra: str = "",
    listen: str = "tcp:0\n  tcp:0:interface=127.0.0.1",
    workers: int = 1,
):
    path = tmp_path / "ob.ini"
    path.write_text(
        f"[node]\ndata_dir = {tmp_path}\n[server]\nlisten = {listen}\nworkers = {workers}\n" + extra
    )
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    return tap.makeService(options, reactor=MemoryReactorClock())


def kinds(service) -> list[str]:
    return [type(child).__name__ for child in service]


def test_default_wiring(tmp_path):
    """Ingestion, the GC timer, WAMP shutdown and one listener per listen line."""
    service = make(tmp_path)
    names = kinds(service)
    assert names.count("ListeningService") == 2
    assert "IngestService" in names and "WampShutdown" in names
    assert "GcPolicy" in names
    assert "CrossbarPublisher" not in names and "SimulatorService" not in names


def test_router_and_simulator_are_wired_when_configured(tmp_path):
    """router_url adds the publisher (and its status to /health); [simulator] its service."""
    service = make(
        tmp_path,
        "[wamp]\nrouter_url = ws://127.0.0.1:9/ws\n[simulator]\nenabled = yes\ninfo_port = 0\n",
    )
    names = kinds(service)
    assert names[:3] == ["FileLimit", "HangupReload", "Certificates"]
    assert names.index("SimulatorService") < names.index("IngestService")  # makes the files
    assert "CrossbarPublisher" in names
    site = next(c for c in service if type(c).__name__ == "ListeningService").factory
    health = site.resource.children[b"health"]
    document = health.document()
    assert document["router"]["connected"] is False
    assert document["state"] == "initializing"


def test_workers_make_a_parent_that_binds_and_supervises(tmp_path):
    """workers = 2: the parent holds the process services, the simulator and the
    supervisor; ingestion, feeds and listeners live in the workers."""
    service = make(tmp_path, "[simulator]\nenabled = yes\ninfo_port = 0\n", workers=2)
    names = kinds(service)
    assert names == [
        "FileLimit",
        "HangupReload",
        "Certificates",
        "SimulatorService",
        "ParentService",
    ]
    parent = next(c for c in service if type(c).__name__ == "ParentService")
    assert parent.count == 2 and parent.balance == "reuseport"
    assert parent.health()["state"] == "initializing"


def test_wamp_off_leaves_no_wamp(tmp_path):
    """[wamp] enabled = no: no WAMP session service."""
    assert "WampShutdown" not in kinds(make(tmp_path, "[wamp]\nenabled = no\n"))


def test_option_parsing_writes_nothing_and_start_makes_the_self_signed_pair(tmp_path):
    """self_signed files appear when the Certificates service starts, not while parsing."""
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    service = make(
        tmp_path,
        f"[tls]\ncertificate = {cert}\nprivate_key = {key}\nself_signed = yes\n",
        listen="ssl:0:interface=127.0.0.1",
    )
    assert not cert.exists() and not key.exists()
    certificates = next(c for c in service if type(c).__name__ == "Certificates")
    certificates.privilegedStartService()
    assert cert.exists() and key.exists()
    assert certificates.served[0].chain  # loaded for the ssl: endpoint


def test_ssl_string_naming_its_files_is_served_with_tls(tmp_path):
    """A standard ssl: string with its own files needs no [tls]; it is wired with TLS on top."""
    from orderbook.tls import TLSEndpoint, make_self_signed

    key_pem, cert_pem = make_self_signed(["localhost"])
    (tmp_path / "k.pem").write_bytes(key_pem)
    (tmp_path / "c.pem").write_bytes(cert_pem)
    spec = f"ssl:0:interface=127.0.0.1:privateKey={tmp_path}/k.pem:certKey={tmp_path}/c.pem"
    service = make(tmp_path, listen=spec)
    listening = next(c for c in service if type(c).__name__ == "ListeningService")
    assert isinstance(listening.endpoint, TLSEndpoint)
    assert listening.listen.files.certificate == tmp_path / "c.pem"

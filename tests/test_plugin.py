"""The twistd plugin and the command line: found, parsed, config errors in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from orderbook import tap
from tests.e2e.procs import Proc, twistd_command


def test_plugin_is_found():
    """twistd sees the ``orderbook`` service maker, pointing at orderbook.tap."""
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "orderbook" in makers
    assert makers["orderbook"].module == "orderbook.tap"
    assert makers["orderbook"].options is tap.Options


def test_config_is_required():
    """Options without --config is a usage error."""
    with pytest.raises(usage.UsageError, match="--config FILE is required"):
        tap.Options().parseOptions([])


def test_options_load_settings(tmp_path):
    """--config parses the file into typed settings."""
    path = tmp_path / "ob.ini"
    path.write_text(f"[node]\ndata_dir = {tmp_path}\n[server]\nlisten = tcp:0\n")
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    assert options.settings.server.listen == ("tcp:0",)


def run_twistd(tmp_path: Path, config_text: str) -> tuple[int, str]:
    config = tmp_path / "bad.ini"
    config.write_text(config_text)
    proc = Proc(
        twistd_command() + ["-n", "--pidfile", "", "orderbook", "--config", str(config)],
        tmp_path / "out.log",
        cwd=tmp_path,
    )
    proc.popen.wait(60)
    return proc.stop(), proc.output()


BAD_CONFIGS = [
    ("[nodes]\n", "unknown section [nodes]"),
    (
        "[node]\ndata_dir = {tmp}\nmode = batch\n",
        "[node] mode: expected one of by_block, streaming",
    ),
    ("[node]\ndata_dir = {tmp}\nfoo = 1\n", "[node] unknown key 'foo'"),
    ("[node]\ndata_dir = {tmp}/absent\n", "[node] data_dir: directory"),
    (
        "[node]\ndata_dir = {tmp}\n[tls]\ncertificate = {tmp}/no.pem\nprivate_key = {tmp}/no.key\n",
        "[tls] certificate: cannot read",
    ),
]


TLS_FILES = "[node]\ndata_dir = {tmp}\n[server]\nlisten = ssl:0\n[tls]\ncertificate = {tmp}/c.pem\nprivate_key = {tmp}/k.pem\n"
BAD_CONFIGS += [
    (TLS_FILES, "[tls] certificate: {tmp}/c.pem is not a PEM certificate"),
    (TLS_FILES, "[tls] private_key: {tmp}/k.pem does not belong to the certificate"),
]


def write_tls_files(tmp_path: Path, message: str) -> None:
    """Garbage or a mismatched key, as the message expects."""
    from orderbook.tls import make_self_signed

    key, cert = make_self_signed(["localhost"])
    other_key, _ = make_self_signed(["localhost"])
    if "not a PEM certificate" in message:
        cert = b"garbage\n"
    if "does not belong" in message:
        key = other_key
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_twistd_config_errors_exit_1_with_one_line(tmp_path, text, message):
    """A bad config makes the real twistd exit 1 with one line naming file and key."""
    message = message.format(tmp=tmp_path)
    if text is TLS_FILES:
        write_tls_files(tmp_path, message)
    code, output = run_twistd(tmp_path, text.format(tmp=tmp_path))
    assert code == 1
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith(f"orderbook: {tmp_path / 'bad.ini'}: ")
    assert message in lines[0]
    assert "Traceback" not in output


def test_busy_port_exits_1_naming_the_endpoint(tmp_path):
    """A listen endpoint that cannot bind stops startup with exit 1 and says which."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = f"tcp:{port}:interface=127.0.0.1"
        code, output = run_twistd(
            tmp_path, f"[node]\ndata_dir = {tmp_path}\n[server]\nlisten = {spec}\n"
        )
    assert code == 1
    assert f"orderbook: cannot listen on {spec}: " in output
    assert "Address already in use" in output and "Traceback" not in output


def test_example_config_prints_the_shipped_file_and_exits_0(tmp_path):
    """--example-config prints etc/orderbook.ini (one file: the package data links to it)."""
    import subprocess

    from tests.e2e.procs import REPO, child_env

    shipped = REPO / "orderbook" / "etc" / "orderbook.ini"
    assert shipped.resolve() == (REPO / "etc" / "orderbook.ini").resolve()
    result = subprocess.run(
        twistd_command() + ["orderbook", "--example-config"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "etc" / "orderbook.ini").read_text()
    assert not (tmp_path / "twistd.pid").exists()


def test_help_points_at_the_example_config():
    """--help names --example-config where it used to name a file pip does not install."""
    text = str(tap.Options())
    assert "--example-config" in text and "etc/orderbook.ini" not in text

"""Operations end to end: the real ``twistd -n orderbook`` as production starts it.

- socket activation: a listening socket passed the way systemd passes it (fd 3,
  LISTEN_FDS/LISTEN_PID), TLS on top, SIGHUP reloading the certificate while a
  client stays connected, permessage-deflate still offered;
- the open-files limit: raised at start, and one line naming what to set when
  the hard limit is too low for max_connections;
- a failed start (a busy port, the simulator's info port): one line, exit 1,
  no twistd.pid left behind;
- ``pip install .`` into a fresh virtualenv ships ``--example-config``, and the
  printed file, with data_dir and the certificate set, starts.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from orderbook.tls import make_self_signed
from tests.e2e.browser import WebSocketClient
from tests.e2e.procs import REPO, Proc, child_env, free_port, twistd_command, wait_until

pytestmark = pytest.mark.e2e

NODELESS = """\
[node]
data_dir = {tmp}
info_url = http://127.0.0.1:{info}/info
snapshot_path = {tmp}/snapshot.json
validate_interval_s = 0
[server]
listen = {listen}
"""


def nodeless(tmp_path: Path, listen: str, extra: str = "") -> Path:
    """A config with an empty data dir and no node answering (state stays bootstrapping)."""
    config = tmp_path / "server.ini"
    config.write_text(NODELESS.format(tmp=tmp_path, info=free_port(), listen=listen) + extra)
    return config


def write_pair(directory: Path) -> tuple[Path, Path, bytes]:
    """A fresh self-signed key and certificate as files; the certificate's DER bytes."""
    key_pem, cert_pem = make_self_signed(["localhost"])
    key, cert = directory / "key.pem", directory / "cert.pem"
    for path, data in ((key, key_pem), (cert, cert_pem)):
        temporary = path.with_suffix(".new")
        temporary.write_bytes(data)
        temporary.replace(path)
    return key, cert, ssl.PEM_cert_to_DER_cert(cert_pem.decode())


def peer_certificate(port: int) -> bytes:
    """The DER certificate a new TLS connection to 127.0.0.1:port is served."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        return sock.getpeercert(binary_form=True)


def upgrade_headers(port: int) -> str:
    """The 101 response head to a wss upgrade that offers permessage-deflate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        return head.decode(errors="replace")


def spawn_activated(config: Path, workdir: Path, listening: socket.socket) -> Proc:
    """twistd started as systemd does it: the socket on fd 3, LISTEN_FDS=1, LISTEN_PID=its pid
    and LISTEN_FDNAMES (systemd >= 227 always sets it; Twisted requires it).

    bash moves the socket to fd 3 and exports its own pid, then execs twistd
    (same pid), exactly the environment sd_listen_fds() expects.
    """
    script = 'exec 3<&"$OB_LISTEN_FD"; export LISTEN_PID=$$; exec "$@"'
    args = ["bash", "-c", script, "bash", *twistd_command()]
    args += ["-n", "--pidfile", "", "orderbook", "--config", str(config)]
    env = child_env(LISTEN_FDS="1", LISTEN_FDNAMES="orderbook.socket")
    env["OB_LISTEN_FD"] = str(listening.fileno())
    return Proc(args, workdir / "twistd.log", workdir, env=env, pass_fds=(listening.fileno(),))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to place the socket on fd 3")
def test_socket_activation_serves_tls_and_reloads_on_sighup(tmp_path):
    """The passed socket serves wss; new files + SIGHUP reach new clients, not old ones."""
    key, cert, first = write_pair(tmp_path)
    extra = f"[tls]\ncertificate = {cert}\nprivate_key = {key}\n"
    config = nodeless(tmp_path, "systemd:domain=INET:index=0", extra)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(64)
        port = listening.getsockname()[1]
        server = spawn_activated(config, tmp_path, listening)
    try:
        server.wait_for(rf"listening on 127\.0\.0\.1:{port} \(tls\)")
        assert peer_certificate(port) == first
        head = upgrade_headers(port)
        assert head.startswith("HTTP/1.1 101") and "permessage-deflate" in head, head
        connected = WebSocketClient.connect(f"wss://127.0.0.1:{port}/ws")
        connected.send_json({"method": "ping"})
        assert connected.receive_json(10) == {"channel": "pong"}
        _, _, second = write_pair(tmp_path)
        server.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: peer_certificate(port) == second, 15, "the new certificate")
        connected.send_json({"method": "ping"})
        assert connected.receive_json(10) == {"channel": "pong"}  # not dropped
        connected.close()
    finally:
        code = server.stop()
    assert code in (0, -15), server.output()[-3000:]
    assert "SIGHUP: reloading" in server.output()
    assert "Traceback" not in server.output()


def test_without_a_passed_socket_the_systemd_endpoint_is_one_line(tmp_path):
    """listen = systemd:... started by hand (no LISTEN_FDS): exit 1, one line saying so."""
    key, cert, _ = write_pair(tmp_path)
    extra = f"[tls]\ncertificate = {cert}\nprivate_key = {key}\n"
    config = nodeless(tmp_path, "systemd:domain=INET:index=0", extra)
    code, output = run_to_exit(config, tmp_path)
    assert code == 1
    assert _lines(output) == [
        f"orderbook: {config}: [server] listen = systemd:domain=INET:index=0: no such socket "
        "was passed (LISTEN_FDS/LISTEN_PID from systemd: start it through its .socket unit)"
    ]


def test_standard_ssl_string_with_a_fullchain_starts_without_tls_section(tmp_path):
    """listen = ssl:PORT:interface=...:privateKey=KEY:certKey=FULLCHAIN, no [tls]: it serves,
    and a client that trusts only the root CA verifies the server (intermediate sent)."""
    from tests.test_tls import Chain

    chain = Chain(tmp_path / "acme")
    port = free_port()
    spec = f"ssl:{port}:interface=127.0.0.1:privateKey={chain.key}:certKey={chain.fullchain}"
    config = nodeless(tmp_path, spec)
    args = twistd_command() + ["-n", "--pidfile", "", "orderbook", "--config", str(config)]
    server = Proc(args, tmp_path / "twistd.log", tmp_path)
    try:
        server.wait_for(rf"listening on 127\.0\.0\.1:{port} \(tls\)")
        context = ssl.create_default_context(cafile=str(chain.root))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def run_to_exit(config: Path, workdir: Path, *twistd: str) -> tuple[int, str]:
    """Run ``twistd -n orderbook`` with twistd's default pidfile in ``workdir`` until it exits."""
    args = twistd_command() + ["-n", *twistd, "orderbook", "--config", str(config)]
    proc = Proc(args, workdir / "out.log", workdir)
    proc.popen.wait(60)
    return proc.stop(), proc.output()


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_busy_port_is_one_line_and_leaves_no_pidfile(tmp_path):
    """twistd writes twistd.pid before binding; a failed bind must remove it again."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        code, output = run_to_exit(nodeless(tmp_path, spec), tmp_path)
    assert code == 1
    failures = [line for line in _lines(output) if "cannot listen" in line]
    assert len(failures) == 1 and f"orderbook: cannot listen on {spec}: " in failures[0]
    assert "Traceback" not in output
    assert not (tmp_path / "twistd.pid").exists()


def test_demo_with_the_info_port_taken_is_one_line(tmp_path):
    """etc/demo.ini on a host whose port 3001 is taken (a node with --serve-info)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        demo = (REPO / "etc" / "demo.ini").read_text().replace("3001", str(busy))
        demo = demo.replace("ssl:8000:", f"ssl:{free_port()}:")
        config = tmp_path / "demo.ini"
        config.write_text(demo)
        code, output = run_to_exit(config, tmp_path)
    assert code == 1, output[-3000:]
    failures = [line for line in _lines(output) if "cannot listen" in line]
    assert len(failures) == 1, output[-3000:]
    assert f"cannot listen on 127.0.0.1:{busy}" in failures[0] and "simulator" in failures[0]
    assert "Traceback" not in output
    assert not (tmp_path / "twistd.pid").exists()


def _limits(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(("max_connections", "warned"), [(100, False), (5000, True)])
def test_open_files_limit_is_raised_and_a_short_one_is_named(tmp_path, max_connections, warned):
    """Soft 256 / hard 1024: raised to 1024; enough for 100 clients, not for 5000 (one line)."""
    config = nodeless(
        tmp_path,
        "tcp:0:interface=127.0.0.1",
        f"[websocket]\nmax_connections = {max_connections}\n",
    )
    args = twistd_command() + ["-n", "--pidfile", "", "orderbook", "--config", str(config)]
    server = Proc(args, tmp_path / "twistd.log", tmp_path, preexec_fn=_limits(256, 1024))
    try:
        server.wait_for(r"listening on 127\.0\.0\.1:\d+")
        assert _soft_limit(server.popen.pid) == 1024
        needed = max_connections + 256
        warning = f"open files limit is 1024 (hard limit 1024) but the config needs about {needed}"
        lines = [line for line in _lines(server.output()) if warning in line]
        assert len(lines) == int(warned), server.output()
        if warned:
            assert f"LimitNOFILE={needed}" in lines[0]
    finally:
        server.stop()


# -- pip install . ------------------------------------------------------------------


def fresh_install(tmp_path: Path) -> Path:
    """``pip install .`` of a copy of this checkout into a new virtualenv; its python.

    The install is the real one (wheel built from setup.cfg, package data,
    the twistd plugin); only the dependencies come from the running
    interpreter (a .pth file), so the test needs no network.
    """
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.rst"):
        shutil.copy2(REPO / name, source / name)
    for name in ("orderbook", "twisted", "etc"):
        shutil.copytree(
            REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = tmp_path / "venv"
    # Without a pip of its own (ensurepip takes seconds): this interpreter's pip installs
    # into it (pip --python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    install = [*pip, "install", "-q", "--no-deps", str(source)]
    subprocess.run(install, check=True, cwd=tmp_path, env=_clean_env())
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [str(python), "-c", "import orderbook; print(orderbook.__file__)"],
        cwd=tmp_path,
        env=_clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(purelib), where  # the installed copy, not the checkout
    return python


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: the installed package, not this checkout, must answer."""
    env = child_env()
    env.pop("PYTHONPATH", None)
    return env


TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


@pytest.mark.slow
def test_pip_install_ships_the_example_config_and_it_starts(tmp_path):
    """From a fresh venv: --example-config prints etc/orderbook.ini; set 3 keys and it serves."""
    python = fresh_install(tmp_path)
    twistd = [str(python), "-c", TWISTD]
    run = {"cwd": tmp_path, "env": _clean_env(), "capture_output": True, "text": True}
    printed = subprocess.run([*twistd, "orderbook", "--example-config"], **run)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == (REPO / "etc" / "orderbook.ini").read_text()
    usage = subprocess.run([*twistd, "orderbook", "--help"], **run).stdout
    assert "--example-config" in usage
    key, cert, _ = write_pair(tmp_path)
    port = free_port()
    text = _set(printed.stdout, "data_dir", str(tmp_path))
    text = _set(text, "certificate", str(cert))
    text = _set(text, "private_key", str(key))
    text = _set(text, "listen", f"ssl:{port}:interface=127.0.0.1")  # tests never use fixed ports
    text = _set(text, "info_url", f"http://127.0.0.1:{free_port()}/info")
    (tmp_path / "tokens").write_text("example-" + "t" * 24 + "\n")
    text = _set(text, "tokens_file", str(tmp_path / "tokens"))
    ops = free_port()
    text = _set(text, "metrics_listen", f"tcp:{ops}:interface=127.0.0.1")
    config = tmp_path / "my.ini"
    config.write_text(text)
    args = [*twistd, "-n", "--pidfile", "", "orderbook", "--config", str(config)]
    server = Proc(args, tmp_path / "twistd.log", tmp_path, env=_clean_env())
    try:
        server.wait_for(rf"listening on 127\.0\.0\.1:{port} \(tls\)")
        server.wait_for(rf"listening on 127\.0\.0\.1:{ops} \(plaintext\)")
        document = _health(f"http://127.0.0.1:{ops}/health")
        assert document["state"] in ("initializing", "bootstrapping")
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def _set(text: str, key: str, value: str) -> str:
    updated, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    assert count == 1, key
    return updated


def _health(url: str) -> dict:
    import urllib.error
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503 until the book is live
        return json.loads(error.read())

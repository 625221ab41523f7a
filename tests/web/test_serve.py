"""``citybrain serve --workers N``: N processes on one port, each with a socket of its own, a
worker that dies is replaced, and SIGTERM stops them all; with a certificate and key it
speaks HTTPS (and marks cookies Secure), and refuses a half or mismatched TLS setting."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from citybrain.kit.db import Database


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _servers(pid: int) -> list[int]:
    """The server processes under the parent (not multiprocessing's resource tracker)."""
    out = []
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in command:
            out.append(child)
    return out


def _healthz(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_two_processes_serve_one_port_replace_a_dead_one_and_stop_on_sigterm(
    fresh_database: Database, tmp_path: Path
) -> None:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "CITYBRAIN_DATABASE_URL": fresh_database.url,
            "CITYBRAIN_DATA_DIR": str(tmp_path),
            "CITYBRAIN_LOG_LEVEL": "WARNING",
        }
    )
    citybrain = str(Path(sys.executable).parent / "citybrain")
    parent = subprocess.Popen(
        [citybrain, "serve", "--port", str(port), "--workers", "2", "--no-background"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait(lambda: len(_servers(parent.pid)) == 2 and _healthz(port), 60)
        first = sorted(_servers(parent.pid))
        # Each process has a listening socket of its own on the port (SO_REUSEPORT).
        for pid in first:
            assert _wait(_listening(pid, port), 30), pid
        assert all(_healthz(port) for _ in range(20))
        # A worker that dies is replaced; the port keeps answering meanwhile.
        os.kill(first[0], signal.SIGKILL)
        assert _wait(
            lambda: len(_servers(parent.pid)) == 2 and first[0] not in _servers(parent.pid), 60
        )
        assert _wait(lambda: _healthz(port), 30)
        # SIGTERM stops every process, gracefully.
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(40) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in first[1:])
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _listening(pid: int, port: int) -> Callable[[], bool]:
    return lambda: _listens(pid, port)


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port and inode in inodes:
            return True
    return False


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files (what a city's CA would issue)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "citybrain-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_speaks_https_with_a_certificate_and_marks_cookies_secure(
    fresh_database: Database, tmp_path: Path, workers: int
) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "CITYBRAIN_DATABASE_URL": fresh_database.url,
            "CITYBRAIN_DATA_DIR": str(tmp_path),
            "CITYBRAIN_LOG_LEVEL": "WARNING",
            "CITYBRAIN_TLS_KEYFILE": str(keyfile),  # one from the environment,
        }
    )
    citybrain = str(Path(sys.executable).parent / "citybrain")
    server = subprocess.Popen(
        [citybrain, "serve", "--port", str(port), "--workers", str(workers), "--no-background",
         "--certfile", str(certfile)],  # the other from the command line
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    trusted = ssl.create_default_context(cafile=str(certfile))

    def get(path: str) -> Any:
        return urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=trusted, timeout=5)

    def answers() -> bool:
        try:
            with get("/healthz") as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    try:
        assert _wait(answers, 60)
        with get("/login") as page:
            cookies = page.headers.get_all("set-cookie") or []
        assert cookies and all("secure" in c.lower() for c in cookies)
        assert not _healthz(port)  # plain HTTP is not spoken on the port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_serve_refuses_half_a_tls_setting_or_a_mismatched_key(tmp_path: Path) -> None:
    certfile, _key = _self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _cert, wrong_key = _self_signed(other)
    citybrain = str(Path(sys.executable).parent / "citybrain")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYBRAIN_TLS_")}
    for extra, says in (
        (["--certfile", str(certfile)], "CITYBRAIN_TLS_KEYFILE"),
        (["--certfile", str(certfile), "--keyfile", str(tmp_path / "none.pem")], "no file"),
        (["--certfile", str(certfile), "--keyfile", str(wrong_key)], "matching pair"),
    ):
        run = subprocess.run(
            [citybrain, "serve", "--port", str(_free_port()), *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 1 and says in " ".join(run.stderr.split()), run.stderr

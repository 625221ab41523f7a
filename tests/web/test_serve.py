"""``citybrain serve --workers N``: N processes on one port, each with a socket of its own, a
worker that dies is replaced, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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

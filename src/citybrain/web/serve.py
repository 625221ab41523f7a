"""Serving the app (``citybrain serve``): one process, or several on one port.

Python runs one thread at a time per process, so a server uses more than one core only with
more processes. ``serve(workers=N)`` starts N worker processes; each binds its own listening
socket to the same address with ``SO_REUSEPORT``, so the kernel spreads new connections over
them evenly (a shared listening socket lets whichever process wakes first accept a whole burst
of connections, and a gate's keep-alive connection stays where it landed). Jobs and event
delivery run in worker 0 only: two job schedulers would each enqueue every periodic job. The
parent restarts a worker that dies and, on SIGINT or SIGTERM, stops them all gracefully
(uvicorn's own shutdown: requests in flight are finished, and with them their scans).

With a certificate and key (``CITYBRAIN_TLS_CERTFILE``, ``CITYBRAIN_TLS_KEYFILE``, or
``--certfile``/``--keyfile``) every process serves HTTPS: a gate phone on the city's network
gets the secure context its camera and the in-browser verification need, with no proxy in
front. Both files are checked before anything starts.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import ssl
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from citybrain.kit.errors import ConfigurationError
from citybrain.kit.logging import get_logger

log = get_logger(__name__)

# A worker that dies this soon after starting, this many times in a row, is not restarted
# again (the port is taken, the database unreachable: restarting will not help).
QUICK_DEATH_SECONDS = 10.0
QUICK_DEATHS = 3
STOP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Tls:
    """The PEM certificate (chain) and private key to serve HTTPS with."""

    certfile: Path
    keyfile: Path

    def uvicorn_options(self) -> dict[str, Any]:
        """The options uvicorn takes them as."""
        return {"ssl_certfile": str(self.certfile), "ssl_keyfile": str(self.keyfile)}


def tls_from(certfile: Path | None, keyfile: Path | None) -> Tls | None:
    """The TLS files checked: both or neither given, readable, and a key that matches the
    certificate (so a mistake stops ``serve`` at once, saying which, not at the first
    handshake)."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ConfigurationError(
            "HTTPS 需要同时提供证书和私钥（CITYBRAIN_TLS_CERTFILE 与 CITYBRAIN_TLS_KEYFILE）",
            "HTTPS needs both a certificate and a key (CITYBRAIN_TLS_CERTFILE and "
            "CITYBRAIN_TLS_KEYFILE)",
        )
    for path, name in ((certfile, "CITYBRAIN_TLS_CERTFILE"), (keyfile, "CITYBRAIN_TLS_KEYFILE")):
        if not path.is_file():
            raise ConfigurationError(f"{name}：找不到文件 {path}", f"{name}: no file at {path}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as error:
        raise ConfigurationError(
            f"证书或私钥无法使用（须为PEM格式且相互匹配）：{error.__class__.__name__}",
            f"the certificate or key cannot be used (PEM, and a matching pair): {error}",
        ) from None
    return Tls(certfile, keyfile)


def _listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _run_worker(index: int, host: str, port: int, background: bool, tls: Tls | None) -> None:
    """One worker process: its own socket, the app, uvicorn until told to stop."""
    import uvicorn

    from citybrain.web.app import create_app, tune_for_serving

    sock = _listen_socket(host, port)
    app = create_app(background=background and index == 0)
    tune_for_serving()
    options = tls.uvicorn_options() if tls else {}
    config = uvicorn.Config(app, log_config=None, access_log=False, **options)
    uvicorn.Server(config).run(sockets=[sock])


def serve(
    host: str, port: int, *, workers: int = 1, background: bool = True, tls: Tls | None = None
) -> None:
    """Serve the app on ``host:port`` in ``workers`` processes (1: in this process), over
    HTTPS when ``tls`` is given."""
    if workers <= 1:
        import uvicorn

        from citybrain.web.app import create_app, tune_for_serving

        app = create_app(background=background)
        tune_for_serving()
        options = tls.uvicorn_options() if tls else {}
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, **options)
        return
    _supervise(host, port, workers, background, tls)


def _supervise(host: str, port: int, workers: int, background: bool, tls: Tls | None) -> None:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_run_worker,
            args=(index, host, port, background, tls),
            name=f"citybrain-serve-{index}",
            daemon=False,
        )
        process.start()
        return process

    processes = {index: start(index) for index in range(workers)}
    started = {index: time.monotonic() for index in processes}
    quick_deaths = dict.fromkeys(processes, 0)
    log.info(
        "serve.started",
        host=host,
        port=port,
        workers=workers,
        https=tls is not None,
        pid=os.getpid(),
    )
    failed = False
    try:
        while not stopping:
            time.sleep(0.5)
            for index, process in list(processes.items()):
                if process.is_alive() or stopping:
                    continue
                lived = time.monotonic() - started[index]
                quick_deaths[index] = quick_deaths[index] + 1 if lived < QUICK_DEATH_SECONDS else 0
                log.error("serve.worker_died", worker=index, exitcode=process.exitcode)
                if quick_deaths[index] >= QUICK_DEATHS:
                    failed = stopping = True
                    break
                processes[index] = start(index)
                started[index] = time.monotonic()
    finally:
        for process in processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in processes.values():
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise SystemExit("a server process kept dying at start (see the log)")

"""Serving the app (``citybrain serve``): one process, or several on one port.

Python runs one thread at a time per process, so a server uses more than one core only with
more processes. ``serve(workers=N)`` starts N worker processes; each binds its own listening
socket to the same address with ``SO_REUSEPORT``, so the kernel spreads new connections over
them evenly (a shared listening socket lets whichever process wakes first accept a whole burst
of connections, and a gate's keep-alive connection stays where it landed). Jobs and event
delivery run in worker 0 only: two job schedulers would each enqueue every periodic job. The
parent restarts a worker that dies and, on SIGINT or SIGTERM, stops them all gracefully
(uvicorn's own shutdown: requests in flight are finished, and with them their scans).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from citybrain.kit.logging import get_logger

log = get_logger(__name__)

# A worker that dies this soon after starting, this many times in a row, is not restarted
# again (the port is taken, the database unreachable: restarting will not help).
QUICK_DEATH_SECONDS = 10.0
QUICK_DEATHS = 3
STOP_TIMEOUT_SECONDS = 30.0


def _listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _run_worker(index: int, host: str, port: int, background: bool) -> None:
    """One worker process: its own socket, the app, uvicorn until told to stop."""
    import uvicorn

    from citybrain.web.app import create_app, tune_for_serving

    sock = _listen_socket(host, port)
    app = create_app(background=background and index == 0)
    tune_for_serving()
    config = uvicorn.Config(app, log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def serve(host: str, port: int, *, workers: int = 1, background: bool = True) -> None:
    """Serve the app on ``host:port`` in ``workers`` processes (1: in this process)."""
    if workers <= 1:
        import uvicorn

        from citybrain.web.app import create_app, tune_for_serving

        app = create_app(background=background)
        tune_for_serving()
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
        return
    _supervise(host, port, workers, background)


def _supervise(host: str, port: int, workers: int, background: bool) -> None:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_run_worker,
            args=(index, host, port, background),
            name=f"citybrain-serve-{index}",
            daemon=False,
        )
        process.start()
        return process

    processes = {index: start(index) for index in range(workers)}
    started = {index: time.monotonic() for index in processes}
    quick_deaths = dict.fromkeys(processes, 0)
    log.info("serve.started", host=host, port=port, workers=workers, pid=os.getpid())
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

"""Running jobs: inside the web server (embedded) or as the ``citybrain worker`` process.

Both import every task module first (so every job, schedule and event handler is declared),
then run a Huey consumer (worker threads plus the scheduler that moves due and periodic jobs
into the queue) and the background services packages register here, such as the events
package's dispatcher. Services are registered by name rather than imported, because jobs sits
below every package that uses it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any, Protocol

from huey.consumer import Consumer

from citybrain.core.jobs.queue import get_queue
from citybrain.kit.logging import get_logger

log = get_logger(__name__)

# Every module that declares jobs, schedules or event handlers. Add your package's
# ``tasks.py`` here: a process imports exactly these before it runs jobs or delivers events.
TASK_MODULES: list[str] = [
    "citybrain.core.events.tasks",
    "citybrain.core.authz.tasks",
    "citybrain.datahub.tasks",
    "citybrain.analysis.tasks",
    "citybrain.risk.tasks",
    "citybrain.healthcode.tasks",
    "citybrain.apps.residents.tasks",
    "citybrain.apps.cockpit.tasks",
]

# Workers poll an idle SQLite queue with a growing delay; cap it so a job enqueued after a
# quiet spell starts within a second or two (Redis blocks on the queue instead of polling).
IDLE_POLL_MAX_DELAY = 1.0


class BackgroundService(Protocol):
    """Something that runs beside the consumer, such as the events dispatcher."""

    def start(self) -> None:
        """Start running in the background."""

    def stop(self) -> None:
        """Stop, letting current work finish."""


_service_factories: dict[str, Callable[[], BackgroundService]] = {}
_services_lock = threading.Lock()


def import_task_modules(modules: Iterable[str] | None = None) -> list[ModuleType]:
    """Import ``modules`` (default: ``TASK_MODULES``) so their jobs and handlers are declared."""
    return [importlib.import_module(name) for name in list(modules or TASK_MODULES)]


def register_service(name: str, factory: Callable[[], BackgroundService]) -> None:
    """Have every worker (embedded or not) start ``factory()`` beside its consumer.

    Called at import time of a task module; registering the same name again replaces it.
    """
    with _services_lock:
        _service_factories[name] = factory


def registered_services() -> list[str]:
    """Names of the registered services, in registration order."""
    with _services_lock:
        return list(_service_factories)


def create_services() -> list[BackgroundService]:
    """Import the task modules and build one instance of every registered service."""
    import_task_modules()
    with _services_lock:
        factories = list(_service_factories.values())
    return [factory() for factory in factories]


class _HostedConsumer(Consumer):  # type: ignore[misc]
    """A consumer that leaves the process's signals alone.

    Huey's ``Consumer.start`` installs SIGINT/SIGTERM/SIGHUP handlers that only its own
    ``run`` loop reads; inside uvicorn they would replace the server's handlers and Ctrl-C
    would no longer stop it (and ``signal.signal`` fails outright off the main thread).
    """

    def _set_signal_handlers(self) -> None:
        pass


class EmbeddedWorker:
    """Jobs, schedules and registered services inside another process (``citybrain serve``).

    ``start()`` on application startup, ``stop()`` on shutdown. ``services=None`` means the
    registered services (the events dispatcher); pass a list, possibly empty, to choose.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        services: Sequence[BackgroundService] | None = None,
        periodic: bool = True,
        health_check_interval: float = 10.0,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.periodic = periodic
        self.health_check_interval = health_check_interval
        self.shutdown_timeout = shutdown_timeout
        self._requested_services = services
        self.services: list[BackgroundService] = []
        self.consumer: Any = None
        self._supervisor: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the consumer has been started and not stopped."""
        return self.consumer is not None

    def start(self) -> None:
        """Start the worker threads, the scheduler and the services (no-op if running)."""
        if self.consumer is not None:
            return
        import_task_modules()
        consumer = _HostedConsumer(
            get_queue(),
            workers=self.workers,
            periodic=self.periodic,
            worker_type="thread",
            max_delay=IDLE_POLL_MAX_DELAY,
            check_worker_health=True,
            health_check_interval=self.health_check_interval,
            shutdown_timeout=self.shutdown_timeout,
        )
        consumer.start()
        self.consumer = consumer
        # Consumer.run() would restart dead worker threads; we are not running it, so a
        # small supervisor does that part.
        self._supervisor = threading.Thread(
            target=self._supervise, args=(consumer,), name="citybrain-jobs-health", daemon=True
        )
        self._supervisor.start()
        self.services = (
            create_services()
            if self._requested_services is None
            else list(self._requested_services)
        )
        for service in self.services:
            service.start()
        log.info("jobs.embedded_worker_started", workers=self.workers, services=len(self.services))

    def _supervise(self, consumer: Any) -> None:
        while not consumer.stop_flag.wait(self.health_check_interval):
            try:
                consumer.check_worker_health()
            except Exception as exc:
                log.error("jobs.health_check_failed", error=type(exc).__name__)

    def stop(self) -> None:
        """Stop the services, then the consumer, letting running jobs finish (bounded)."""
        if self.consumer is None:
            return
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:
                log.error("jobs.service_stop_failed", error=type(exc).__name__)
        self.services = []
        self.consumer.stop(graceful=True)
        if self._supervisor is not None:
            self._supervisor.join(self.shutdown_timeout)
            self._supervisor = None
        self.consumer = None
        log.info("jobs.embedded_worker_stopped")


def run_worker(workers: int = 4, *, services: Sequence[BackgroundService] | None = None) -> None:
    """Run jobs, schedules and services in this process until a signal stops it.

    For ``citybrain worker``; blocks. SIGTERM (systemd, containers) stops gracefully, letting
    running jobs finish; SIGINT stops at once; SIGHUP restarts the process.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    import_task_modules()
    consumer = get_queue().create_consumer(
        workers=workers,
        worker_type="thread",
        periodic=True,
        max_delay=IDLE_POLL_MAX_DELAY,
        check_worker_health=True,
        graceful_signal="TERM",
    )
    running = create_services() if services is None else list(services)
    for service in running:
        service.start()
    log.info("jobs.worker_started", workers=workers, services=len(running))
    try:
        consumer.run()
    finally:
        for service in reversed(running):
            service.stop()
        log.info("jobs.worker_stopped")

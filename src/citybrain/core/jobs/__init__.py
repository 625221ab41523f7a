"""Durable background jobs and schedules (Huey: SQLite embedded, Redis in production)."""

from citybrain.core.jobs.queue import (
    Job,
    build_queue,
    declared_jobs,
    get_queue,
    job,
    reset_queue,
    schedule,
)
from citybrain.core.jobs.worker import (
    TASK_MODULES,
    BackgroundService,
    EmbeddedWorker,
    import_task_modules,
    register_service,
    run_worker,
)

__all__ = [
    "TASK_MODULES",
    "BackgroundService",
    "EmbeddedWorker",
    "Job",
    "build_queue",
    "declared_jobs",
    "get_queue",
    "import_task_modules",
    "job",
    "register_service",
    "reset_queue",
    "run_worker",
    "schedule",
]

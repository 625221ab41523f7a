"""Background work of the analysis: trace a case's contacts when its report reaches the lake,
and forget the records a retention purge took out of the lake.

The intake announces every file it takes in (``datahub.file_ingested``). A file of case reports
or lab tests with accepted rows starts the tracing job; the handler only enqueues it, because
the dispatcher's handlers must be short (linkage and the contact query take seconds). The job
traces every case not traced yet, so one run catches up with several files, and a second job
finding nothing new does nothing. A retention purge (``datahub.files_purged``) starts a job
that links again and brings the contact index up to date, so no derived store keeps what the
lake no longer holds. Every night the contact lists of cases traced longer ago than their
retention period are deleted.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from citybrain.analysis.contacts import CASE_CATEGORIES
from citybrain.analysis.tracing import (
    forget_purged_records,
    purge_contact_lists,
    trace_new_cases,
)
from citybrain.core.audit.service import SYSTEM
from citybrain.core.events.dispatcher import subscribe
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs.queue import job, schedule
from citybrain.datahub.lake import LakePaths
from citybrain.datahub.retention import TOPIC_FILES_PURGED
from citybrain.kit.db import get_database
from citybrain.kit.logging import get_logger

log = get_logger(__name__)

# Case reports, and positive tests that may date a case earlier, start a trace.
TRIGGER_CATEGORIES = frozenset({*CASE_CATEGORIES, "lab_test"})


@job(retries=3, retry_delay=10)
def trace_cases() -> int:
    """Trace every case in the lake not traced yet; returns how many were traced."""
    traced = trace_new_cases(LakePaths.default(), get_database(), SYSTEM)
    log.info("analysis.cases_traced", cases=len(traced))
    return len(traced)


@subscribe("datahub.file_ingested", name="analysis.trace_on_arrival")
def trace_on_arrival(session: Session, event: OutboxEvent) -> None:
    """Start the tracing job for a file of case reports or lab tests with accepted rows."""
    payload = event.payload or {}
    if payload.get("category") in TRIGGER_CATEGORIES and int(payload.get("accepted") or 0) > 0:
        trace_cases()


@job(retries=3, retry_delay=60)
def forget_purged() -> bool:
    """Link again and update the contact index after a retention purge; whether anything
    derived existed to update."""
    summary = forget_purged_records(LakePaths.default(), get_database(), SYSTEM)
    log.info("analysis.purged_records_forgotten", relinked=summary is not None)
    return summary is not None


@subscribe(TOPIC_FILES_PURGED, name="analysis.forget_purged")
def forget_on_purge(session: Session, event: OutboxEvent) -> None:
    """Start the job that takes purged records out of the person keys and the index."""
    forget_purged()


@schedule(minute="5", hour="4")
def purge_old_contact_lists() -> None:
    """At 04:05 in the city: delete the contact lists past their retention period."""
    gone = purge_contact_lists(LakePaths.default(), get_database(), SYSTEM)
    log.info("analysis.contact_lists_purged", count=gone)

"""Background work of the health codes: scans to the lake, the trust list kept fresh,
retired keys removed once their grace period is over, and scans purged after their retention
period.

The writer's ``healthcode.scans_recorded`` events arrive many times a second at a peak; the
handler only schedules the export a little later (at most one pending per process), so one
export takes many batches into one lake file instead of one small file per commit. A periodic
run catches whatever a missed schedule left behind.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy.orm import Session

from citybrain.core.events.dispatcher import subscribe
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs.queue import job, schedule
from citybrain.datahub.lake import LakePaths
from citybrain.healthcode import cards, passes
from citybrain.healthcode.export import export_scans
from citybrain.healthcode.keys import (
    TOPIC_KEY_CREATED,
    TOPIC_KEY_ROTATED,
    TOPIC_KEYS_REMOVED,
    prune_keys,
    trust_cache,
)
from citybrain.healthcode.service import TOPIC_SCANS_RECORDED, purge_expired_scans
from citybrain.kit.db import get_database
from citybrain.kit.logging import get_logger

log = get_logger(__name__)

# Seconds between a batch's commit and its export at the latest (one export per window).
EXPORT_DELAY_SECONDS = 30.0
_scheduled_at = 0.0
_schedule_lock = threading.Lock()


@job(retries=3, retry_delay=10)
def export_scans_to_lake() -> dict[str, Any]:
    """Export every scan batch not yet in the lake (one file per category)."""
    result = export_scans(get_database(), LakePaths.default())
    summary = result.as_dict()
    log.info("healthcode.scans_exported", **{k: v for k, v in summary.items() if k != "files"})
    return summary


@subscribe(TOPIC_SCANS_RECORDED, name="healthcode.export_on_scans")
def export_on_scans(session: Session, event: OutboxEvent) -> None:
    """Schedule the export, unless one is already scheduled from this process."""
    global _scheduled_at
    with _schedule_lock:
        now = time.monotonic()
        if now - _scheduled_at < EXPORT_DELAY_SECONDS:
            return
        _scheduled_at = now
    export_scans_to_lake.schedule(delay=EXPORT_DELAY_SECONDS)


@subscribe(TOPIC_KEY_CREATED, name="healthcode.trust_on_key_created")
@subscribe(TOPIC_KEY_ROTATED, name="healthcode.trust_on_key_rotated")
@subscribe(TOPIC_KEYS_REMOVED, name="healthcode.trust_on_keys_removed")
def refresh_trust_list(session: Session, event: OutboxEvent) -> None:
    """A key changed: this process re-reads the trust list on the next scan."""
    trust_cache.invalidate()


@schedule(minute="*/10")
def export_and_prune() -> None:
    """Every ten minutes: export what no event scheduled, and remove retired keys whose
    grace period is over."""
    export_scans_to_lake.call_local()
    with get_database().unit_of_work() as session:
        removed = prune_keys(session)
    if removed:
        log.info("healthcode.keys_removed", count=len(removed))


@schedule(minute="30", hour="3")
def purge_scans() -> None:
    """Every night: delete scans past their retention period that are already in the lake."""
    with get_database().unit_of_work() as session:
        gone = purge_expired_scans(session)
    log.info("healthcode.scans_purged", count=gone)


@schedule(minute="35", hour="3")
def purge_passes() -> None:
    """Every night: delete exit passes that ended longer ago than their retention period."""
    with get_database().unit_of_work() as session:
        gone = passes.purge_expired(session)
    log.info("healthcode.passes_purged", count=gone)


@schedule(minute="40", hour="3")
def purge_cards() -> None:
    """Every night: delete printed health cards that ended longer ago than they are kept."""
    with get_database().unit_of_work() as session:
        gone = cards.purge_ended_cards(session)
    log.info("healthcode.cards_purged", count=gone)

"""Background work of risk: facts from traced cases, colours for people who register after
the analysis found them, recomputing every colour after a rule change in a big city, and the
sweep that ends colours and overrides whose time has run out, each notification sent to the
person's phone by text message, and the nightly purge of the persons' notifications past their
retention period.

Handlers stay short (the dispatcher holds the write lock while they run): reading a trace's
contacts and asserting their facts is a job the handler enqueues; the job is idempotent
(every fact carries a dedupe key), so a retry asserts nothing twice.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from citybrain.analysis.tracing import TOPIC_CONTACTS_LISTED
from citybrain.core.audit.service import SYSTEM, record
from citybrain.core.events.dispatcher import subscribe
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs.queue import job, schedule
from citybrain.datahub.lake import LakePaths
from citybrain.kit import clock
from citybrain.kit.db import get_database, let_writers_in
from citybrain.kit.logging import get_logger
from citybrain.kit.sms import SmsNotSent, send_sms
from citybrain.risk import batches, service
from citybrain.risk.findings import assert_findings, record_trace, trace_findings
from citybrain.risk.models import FactBatch
from citybrain.risk.rulesets import recompute_compounds_batch, recompute_subjects_batch
from citybrain.risk.settings import risk_settings

log = get_logger(__name__)


# Facts a transaction of a traced case's job asserts (SQLite's write lock is let go between).
FINDINGS_CHUNK = 50


@job(retries=3, retry_delay=10)
def contact_facts(case_key: int, result_path: str) -> dict[str, object]:
    """Assert the facts of one traced case (its contacts' close and secondary contact facts,
    and the case's own) a chunk a transaction, the write lock left free between them (a case
    with hundreds of contacts does not keep gates waiting); a retry asserts nothing twice.
    Returns the counts."""
    database = get_database()
    with database.sessions() as session:
        findings, summary = trace_findings(
            session, LakePaths.default(), case_key=case_key, result_path=result_path
        )
    for at in range(0, len(findings), FINDINGS_CHUNK):
        with database.unit_of_work(immediate=True) as session:
            assert_findings(session, SYSTEM, summary, findings[at : at + FINDINGS_CHUNK])
        let_writers_in(database)
    with database.unit_of_work(immediate=True) as session:
        record_trace(session, SYSTEM, case_key, summary)
    log.info("risk.contact_facts", case_key=case_key, **summary.as_dict())
    return summary.as_dict()


@subscribe(TOPIC_CONTACTS_LISTED, name="risk.facts_from_contacts")
def on_contacts_listed(session: Session, event: OutboxEvent) -> None:
    """A case's contacts were listed: enqueue the job that turns them into facts."""
    payload = event.payload or {}
    if payload.get("case_key") is None or not payload.get("result_path"):
        return
    contact_facts(int(payload["case_key"]), str(payload["result_path"]))


@job(retries=3, retry_delay=10)
def assert_batch(batch_id: int) -> int:
    """Assert an approved list's facts (批量登记) a chunk at a time, each chunk its own
    transaction: SQLite's write lock is let go between them, and left free for a moment
    (``let_writers_in``), so gates go on scanning; a retry starts where the last committed
    chunk ended. Returns the facts asserted."""
    while True:
        with get_database().unit_of_work(immediate=True) as session:
            if batches.assert_batch_chunk(session, batch_id):
                batch = session.get(FactBatch, batch_id)
                asserted = batch.facts_asserted if batch is not None else 0
                break
        let_writers_in(get_database())
    log.info("risk.batch_asserted", batch_id=batch_id, facts=asserted)
    return asserted


@subscribe(batches.TOPIC_BATCH_APPROVED, name="risk.assert_batch")
def on_batch_approved(session: Session, event: OutboxEvent) -> None:
    """A list was approved: enqueue the job that asserts its facts."""
    batch_id = (event.payload or {}).get("batch_id")
    if isinstance(batch_id, int):
        assert_batch(batch_id)


@subscribe(service.TOPIC_COLOUR_CHANGED, name="risk.tell_colour_changed")
def on_colour_changed(session: Session, event: OutboxEvent) -> None:
    """A code changed colour: tell the person, if the rules did it and the registry holds
    them (their message is then texted like every other)."""
    payload = event.payload or {}
    if payload.get("overridden") or payload.get("override_ended") == "revoked":
        return  # applying or revoking a manual colour tells the person itself
    subject, old, new = payload.get("subject"), payload.get("old"), payload.get("new")
    if isinstance(subject, str) and isinstance(old, str) and isinstance(new, str):
        service.tell_colour_changed(session, subject, old, new)


@subscribe(service.TOPIC_PERSON_NOTIFIED, name="risk.text_on_notification")
def on_person_notified(session: Session, event: OutboxEvent) -> None:
    """A person was told something (an override applied or ended, an appeal decided): enqueue
    the job that also sends it to their phone."""
    notification_id = (event.payload or {}).get("notification_id")
    if isinstance(notification_id, int) and risk_settings().text_notifications:
        text_notification(notification_id)


@job(retries=5, retry_delay=60)
def text_notification(notification_id: int) -> str:
    """Send notification ``notification_id`` to the person's registered phone (通知短信) and
    record how it ended. The platform is called outside any transaction; a refusal is retried
    (five times, a minute apart). At least once: a crash between the platform's answer and the
    record sends the message again."""
    database = get_database()
    with database.unit_of_work(immediate=True) as session:
        message = service.text_to_send(session, notification_id)
    if message is None:
        return "nothing_to_send"
    try:
        send_sms(message.phone, message.text)
    except SmsNotSent as error:
        if error.code != "sms_not_configured":
            log.warning("risk.notification_text_refused", notification_id=notification_id)
            raise
        outcome = "no_gateway"
    else:
        outcome = "sent"
    with database.unit_of_work(immediate=True) as session:
        service.settle_text(session, notification_id, outcome)
    return outcome


@subscribe("person.registered", name="risk.person_registered")
def on_person_registered(session: Session, event: OutboxEvent) -> None:
    """Someone registered: facts found about them earlier now place them in their compound,
    and a case in force in the household they joined makes them a close contact (idempotent:
    the residents app has often done it already in the registration's transaction)."""
    ref = (event.payload or {}).get("person_ref")
    if isinstance(ref, str):
        service.person_registered(session, ref)


@job(retries=3, retry_delay=30)
def recompute_colours(version: int) -> dict[str, int]:
    """After a rule set was activated in a city too big to recompute at once: every colour
    and tier under ``version``, a batch per transaction, the write lock left free for a moment
    between them (gates scan meanwhile). Stops if another version took over meanwhile (its own
    job does the work)."""
    database = get_database()
    size = risk_settings().batch_size
    subjects = changed = compounds = 0
    after: str | None = ""
    while after is not None:
        with database.unit_of_work(immediate=True) as session:
            rule_set = service.active_rule_set(session)
            if rule_set.version != version:
                return {"superseded": 1}
            after, done, moved = recompute_subjects_batch(
                session, rule_set, after, clock.now(), size
            )
            subjects += done
            changed += moved
        let_writers_in(database)
    after = ""
    while after is not None:
        with database.unit_of_work(immediate=True) as session:
            rule_set = service.active_rule_set(session)
            if rule_set.version != version:
                return {"superseded": 1}
            after, done = recompute_compounds_batch(
                session, rule_set, after, clock.now(), max(10, size // 10)
            )
            compounds += done
        let_writers_in(database)
    counts = {"recomputed": subjects, "changed": changed, "compounds": compounds}
    with database.unit_of_work() as session:
        record(
            session,
            SYSTEM,
            "risk.rules.recomputed",
            object_type="rule_set",
            object_id=version,
            detail=counts,
        )
    return counts


@subscribe(service.TOPIC_RULES_ACTIVATED, name="risk.recompute_on_activation")
def on_rules_activated(session: Session, event: OutboxEvent) -> None:
    """A rule set was activated without recomputing inline: start the job."""
    payload = event.payload or {}
    if payload.get("recompute") == "job":
        recompute_colours(int(payload["version"]))


def sweep_once() -> dict[str, int]:
    """End what has run out: colours and tiers past their recheck time, overrides past 72
    hours or their set end."""
    with get_database().unit_of_work(immediate=True) as session:
        counts = service.sweep(session)
    if any(counts.values()):
        log.info("risk.swept", **counts)
    return counts


def purge_old_notifications() -> int:
    """Delete the persons' notifications past their retention period; returns how many."""
    with get_database().unit_of_work() as session:
        purged = service.purge_expired_notifications(session)
    log.info("risk.notifications_purged", count=purged)
    return purged


@schedule(minute="55", hour="3")
def purge_risk_notifications() -> None:
    """At 03:55 in the city: delete the notifications past their retention period."""
    purge_old_notifications()


def purge_old_facts() -> int:
    """Delete the facts of persons at rest past their retention period, and clear the
    people of the lists uploaded as long ago; returns how many facts."""
    with get_database().unit_of_work(immediate=True) as session:
        purged = service.purge_expired_facts(session)
        lists = batches.purge_expired_batch_lists(session)
    log.info("risk.facts_purged", count=purged, lists=lists)
    return purged


@schedule(minute="10", hour="4")
def purge_risk_facts() -> None:
    """At 04:10 in the city: delete the facts of persons at rest past their retention."""
    purge_old_facts()


def purge_old_appeal_texts() -> int:
    """Clear the texts of appeals decided longer ago than their retention; returns how
    many."""
    with get_database().unit_of_work(immediate=True) as session:
        cleared = service.purge_expired_appeal_texts(session)
    log.info("risk.appeal_texts_purged", count=cleared)
    return cleared


@schedule(minute="0", hour="4")
def purge_risk_appeal_texts() -> None:
    """At 04:00 in the city: clear the appeal texts past their retention period."""
    purge_old_appeal_texts()


@schedule(minute="*/5")
def sweep_expired() -> None:
    """Every five minutes: recompute colours and tiers whose time ran out, end overrides."""
    sweep_once()

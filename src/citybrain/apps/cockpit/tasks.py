"""The cockpit's event handlers (figures, alerts, freshness, loop times, each recounted from
the source tables for what the event touched) and the periodic freshness check.

Handlers are short (they run under SQLite's write lock) and idempotent: a leaf recount adds
nothing the second time, and alerts carry a dedupe key.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from citybrain.analysis.tracing import TOPIC_CONTACTS_LISTED
from citybrain.apps.cockpit import repository, service
from citybrain.core.events.dispatcher import subscribe
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs.queue import schedule
from citybrain.core.people import service as people_service
from citybrain.datahub.service import TOPIC_FILE_INGESTED
from citybrain.healthcode.cards import TOPIC_ENDED_CARD_PRESENTED
from citybrain.healthcode.service import TOPIC_SCANS_RECORDED
from citybrain.kit.db import get_database
from citybrain.risk import service as risk
from citybrain.risk.models import Fact

TOPIC_HOUSEHOLD_REGISTERED = "residents.household.registered"
TOPIC_HOUSEHOLD_CREATED = "household.created"  # staff open households in the registry too
TOPIC_PERSON_REGISTERED = "person.registered"


def _payload(event: OutboxEvent) -> dict[str, object]:
    return dict(event.payload or {})


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


@subscribe(risk.TOPIC_FACT_ASSERTED, name="cockpit.fact_asserted")
def on_fact_asserted(session: Session, event: OutboxEvent) -> None:
    """A fact: recount its leaves; a confirmed case is an alert; a trace's facts move the
    loop times."""
    fact_id = _int(_payload(event).get("fact_id"))
    if fact_id is None:
        return
    leaves, fact = repository.fact_leaves(session, fact_id)
    service.refresh_leaves(session, leaves)
    if fact is None:
        return
    if fact.kind == "confirmed_case" and fact.retracted_at is None:
        leaf = fact.compound_code or repository.subject_leaf(session, fact.subject)
        service.alert_new_case(session, fact.id, leaf or repository.CITY)
    if fact.dedupe_key and fact.dedupe_key.startswith("trace:"):
        case_key = _int(fact.dedupe_key.split(":", 1)[1])
        if case_key is not None:
            service.loop_changed(session, repository.trace_day(session, case_key))
    _control_changed(session, fact)


def _control_changed(session: Session, fact: Fact) -> None:
    """A traced contact put under control (or that record withdrawn) moves the last step of
    the loop of the days their traces ran."""
    if fact.kind == "in_quarantine":
        for day in sorted(repository.trace_days_of_subject(session, fact.subject)):
            service.loop_changed(session, day)


@subscribe(risk.TOPIC_FACT_RETRACTED, name="cockpit.fact_retracted")
def on_fact_retracted(session: Session, event: OutboxEvent) -> None:
    """A retracted fact counts nowhere any more: recount its leaves (and the loop, for a
    withdrawn quarantine)."""
    fact_id = _int(_payload(event).get("fact_id"))
    if fact_id is not None:
        leaves, fact = repository.fact_leaves(session, fact_id)
        service.refresh_leaves(session, leaves)
        if fact is not None:
            _control_changed(session, fact)


@subscribe(risk.TOPIC_COLOUR_CHANGED, name="cockpit.colour_changed")
def on_colour_changed(session: Session, event: OutboxEvent) -> None:
    """A code changed colour: recount where the subject lives."""
    subject = _payload(event).get("subject")
    if isinstance(subject, str):
        leaf = repository.subject_leaf(session, subject)
        service.refresh_leaves(session, {leaf} if leaf else set())


@subscribe(risk.TOPIC_TIER_CHANGED, name="cockpit.tier_changed")
def on_tier_changed(session: Session, event: OutboxEvent) -> None:
    """A compound changed tier: recount it; turning red is an alert."""
    payload = _payload(event)
    code = payload.get("compound_code")
    if not isinstance(code, str):
        return
    service.refresh_leaves(session, {code})
    if payload.get("new") == "red" and repository.compound_tier(session, code) == "red":
        service.alert_compound_red(session, event.id, code)


@subscribe(risk.TOPIC_OVERRIDE_REQUESTED, name="cockpit.override_requested")
def on_override_requested(session: Session, event: OutboxEvent) -> None:
    """A manual colour was requested: one more open."""
    _override_changed(session, event)


@subscribe(risk.TOPIC_OVERRIDE_APPLIED, name="cockpit.override_applied")
def on_override_applied(session: Session, event: OutboxEvent) -> None:
    """A manual colour applied: recount, and alert (area only)."""
    leaf = _override_changed(session, event)
    override_id = _int(_payload(event).get("override_id"))
    if leaf is not None and override_id is not None:
        service.alert_override(session, override_id, leaf, str(_payload(event).get("colour")))


def _account_counted(event: OutboxEvent) -> tuple[str, str | None, int] | None:
    """An account event's account, its area and its count in 24 hours."""
    payload = _payload(event)
    actor, area = payload.get("actor"), payload.get("area_code")
    if not isinstance(actor, str):
        return None
    return actor, area if isinstance(area, str) else None, _int(payload.get("in_24h")) or 0


@subscribe(risk.TOPIC_HAND_TURN_LIMIT, name="cockpit.hand_turn_limit")
def on_hand_turn_limit(session: Session, event: OutboxEvent) -> None:
    """An account was refused one more green code turned by hand: alert who."""
    counted = _account_counted(event)
    if counted is not None:
        service.alert_hand_turn_limit(session, *counted)


@subscribe(risk.TOPIC_HAND_FREE_MANY, name="cockpit.hand_free_many")
def on_hand_free_many(session: Session, event: OutboxEvent) -> None:
    """An account turned many codes green by withdrawing facts: alert who."""
    counted = _account_counted(event)
    if counted is not None:
        service.alert_hand_frees(session, *counted)


@subscribe(risk.TOPIC_OVERRIDE_ENDED, name="cockpit.override_ended")
def on_override_ended(session: Session, event: OutboxEvent) -> None:
    """A manual colour ended."""
    _override_changed(session, event)


def _override_changed(session: Session, event: OutboxEvent) -> str | None:
    override_id = _int(_payload(event).get("override_id"))
    if override_id is None:
        return None
    leaf = repository.override_leaf(session, override_id)
    service.refresh_leaves(session, {leaf} if leaf else set())
    return leaf


@subscribe(risk.TOPIC_APPEAL_FILED, name="cockpit.appeal_filed")
def on_appeal_filed(session: Session, event: OutboxEvent) -> None:
    """An appeal filed: its street has one more open."""
    _appeal_changed(session, event)


@subscribe(risk.TOPIC_APPEAL_DECIDED, name="cockpit.appeal_decided")
def on_appeal_decided(session: Session, event: OutboxEvent) -> None:
    """An appeal decided: one fewer open."""
    _appeal_changed(session, event)


def _appeal_changed(session: Session, event: OutboxEvent) -> None:
    appeal_id = _int(_payload(event).get("appeal_id"))
    if appeal_id is not None:
        leaf = repository.appeal_leaf(session, appeal_id)
        service.refresh_leaves(session, {leaf} if leaf else set())


@subscribe(TOPIC_HOUSEHOLD_REGISTERED, name="cockpit.household_registered")
def on_household_registered(session: Session, event: OutboxEvent) -> None:
    """A household registered itself in a compound: recount the compound."""
    _household_changed(session, event)


@subscribe(TOPIC_HOUSEHOLD_CREATED, name="cockpit.household_created")
def on_household_created(session: Session, event: OutboxEvent) -> None:
    """Staff opened a household in a compound: recount the compound."""
    _household_changed(session, event)


@subscribe(TOPIC_PERSON_REGISTERED, name="cockpit.person_registered")
def on_person_registered(session: Session, event: OutboxEvent) -> None:
    """A person entered the registry (a resident, a household member, or by staff): recount
    where they live (their green code)."""
    code = _payload(event).get("area_code")
    if isinstance(code, str):
        service.refresh_leaves(session, {code})


@subscribe(people_service.TOPIC_PERSON_WITHDRAWN, name="cockpit.person_withdrawn")
def on_person_withdrawn(session: Session, event: OutboxEvent) -> None:
    """A registration was withdrawn (a household member entered by mistake): recount where
    they were registered."""
    on_person_registered(session, event)


def _household_changed(session: Session, event: OutboxEvent) -> None:
    code = _payload(event).get("compound_code")
    if isinstance(code, str):
        service.refresh_leaves(session, {code})


@subscribe(TOPIC_SCANS_RECORDED, name="cockpit.scans_recorded")
def on_scans_recorded(session: Session, event: OutboxEvent) -> None:
    """Scans recorded: recount the checkpoints among them (crossings)."""
    payload = _payload(event)
    first, last = _int(payload.get("first_id")), _int(payload.get("last_id"))
    if first is not None and last is not None:
        service.refresh_leaves(session, repository.checkpoint_leaves(session, first, last))


@subscribe(TOPIC_CONTACTS_LISTED, name="cockpit.contacts_listed")
def on_contacts_listed(session: Session, event: OutboxEvent) -> None:
    """A case's contacts were listed: the day's loop times move."""
    case_key = _int(_payload(event).get("case_key"))
    if case_key is not None:
        service.loop_changed(session, repository.trace_day(session, case_key))


@subscribe(TOPIC_FILE_INGESTED, name="cockpit.file_ingested")
def on_file_ingested(session: Session, event: OutboxEvent) -> None:
    """A feed file arrived: its category is fresh again (and fever visits move)."""
    category = _payload(event).get("category")
    if isinstance(category, str) and category:
        service.source_ingested(session, category)


def check_freshness_once() -> list[str]:
    """Alert the feeds gone stale; returns their categories."""
    with get_database().unit_of_work() as session:
        return service.check_freshness(session)


@schedule(minute="*/10")
def check_source_freshness() -> None:
    """Every ten minutes: is any feed later than its expected interval?"""
    check_freshness_once()


@schedule(minute="5-59/10")
def check_overdue_appeals() -> None:
    """Every ten minutes: has any street's appeal passed its deadline? (Once a day a street.)"""
    with get_database().unit_of_work(immediate=True) as session:
        service.check_overdue_appeals(session)


@schedule(minute="7-59/10")
def check_uncontrolled_contacts() -> None:
    """Every ten minutes: has any street close contacts not under control past the deadline?
    (Once a day a street.)"""
    with get_database().unit_of_work(immediate=True) as session:
        service.check_uncontrolled_contacts(session)


@subscribe(people_service.TOPIC_HOUSEHOLD_MOVED, name="cockpit.household_moved")
def on_household_moved(session: Session, event: OutboxEvent) -> None:
    """A household moved: recount the compound it left and the one it moved to."""
    payload = _payload(event)
    codes = {c for c in (payload.get("from_compound"), payload.get("compound_code")) if c}
    service.refresh_leaves(session, {str(c) for c in codes})


@subscribe(TOPIC_ENDED_CARD_PRESENTED, name="cockpit.ended_card_presented")
def on_ended_card_presented(session: Session, event: OutboxEvent) -> None:
    """An ended printed health card was shown at a gate: alert the holder's street (once a
    day)."""
    area = _payload(event).get("area_code")
    if isinstance(area, str) and area:
        service.alert_card_presented(session, area)

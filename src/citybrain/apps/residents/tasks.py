"""Background work of resident registration: forget failed resident logins once the
rate-limit window has passed (they hold a pseudonymous key and an address, nothing more),
one-time SMS codes a day after they were sent (the daily limit no longer needs them), adult
members' invitations whose consent never came, and daily health reports past their retention
period; and, each morning, telling the household members who turn 18 that their code and
their place in the household are now theirs; and telling a resident who logs in themselves of
a printed health card someone else issued for them, and a household of an ended card of theirs
presented at a gate."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from citybrain.apps.residents.repository import purge_failures_before, purge_sms_codes_before
from citybrain.apps.residents.service import (
    purge_expired_reports,
    purge_lapsed_invitations,
    tell_card_holder,
    tell_coming_of_age,
    tell_household_of_presented_card,
)
from citybrain.core.events.dispatcher import subscribe
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs.queue import schedule
from citybrain.healthcode import cards as gate_cards
from citybrain.kit import clock
from citybrain.kit.db import get_database
from citybrain.kit.logging import get_logger
from citybrain.kit.settings import get_settings

log = get_logger(__name__)


def purge_expired_failures() -> int:
    """Delete failed resident logins older than twice the window; returns how many."""
    window = dt.timedelta(seconds=get_settings().login_window_seconds)
    with get_database().unit_of_work() as session:
        purged = purge_failures_before(session, clock.now() - 2 * window)
    log.info("resident login failures purged", count=purged)
    return purged


def purge_old_sms_codes() -> int:
    """Delete one-time SMS codes sent more than a day ago; returns how many."""
    with get_database().unit_of_work() as session:
        purged = purge_sms_codes_before(session, clock.now() - dt.timedelta(days=1))
    log.info("resident sms codes purged", count=purged)
    return purged


def purge_old_invitations() -> int:
    """Delete adult members' invitations past their consent period; returns how many."""
    with get_database().unit_of_work() as session:
        purged = purge_lapsed_invitations(session)
    log.info("resident member invitations purged", count=purged)
    return purged


@schedule(minute="*/15")
def purge_resident_login_failures() -> None:
    """Every quarter hour: forget failed resident logins and SMS codes that can no longer
    count, and invitations that lapsed."""
    purge_expired_failures()
    purge_old_sms_codes()
    purge_old_invitations()


def purge_old_reports() -> int:
    """Delete daily health reports past their retention period; returns how many."""
    with get_database().unit_of_work() as session:
        purged = purge_expired_reports(session)
    log.info("resident health reports purged", count=purged)
    return purged


@schedule(minute="50", hour="3")
def purge_resident_health_reports() -> None:
    """At 03:50 in the city: delete the daily health reports past their retention period."""
    purge_old_reports()


def tell_members_coming_of_age() -> int:
    """Tell today's household members who turn 18; returns how many."""
    with get_database().unit_of_work() as session:
        told = tell_coming_of_age(session)
    log.info("residents told of coming of age", count=told)
    return told


@schedule(minute="0", hour="8")
def tell_residents_coming_of_age() -> None:
    """At 08:00 in the city: tell the household members who turn 18 today (成年提醒)."""
    tell_members_coming_of_age()


@subscribe(gate_cards.TOPIC_CARD_ISSUED, name="residents.tell_card_holder")
def on_card_issued(session: Session, event: OutboxEvent) -> None:
    """A printed health card was issued: its holder is told if someone else issued it."""
    payload = event.payload or {}
    ref, card, by, via = (payload.get(k) for k in ("person_ref", "card", "issued_by", "via"))
    if isinstance(ref, str) and isinstance(card, int) and isinstance(by, str):
        tell_card_holder(session, ref, card, by, str(via))


@subscribe(gate_cards.TOPIC_ENDED_CARD_PRESENTED, name="residents.tell_card_presented")
def on_ended_card_presented(session: Session, event: OutboxEvent) -> None:
    """A card that had ended was presented at a gate: the holder's household is told."""
    payload = event.payload or {}
    ref, card, reason, place, at = (
        payload.get(k) for k in ("person_ref", "card", "reason", "place_code", "presented_at")
    )
    if isinstance(ref, str) and isinstance(card, int) and isinstance(place, str):
        when = dt.datetime.fromisoformat(at) if isinstance(at, str) else event.created_at
        tell_household_of_presented_card(session, ref, card, str(reason), place, when)

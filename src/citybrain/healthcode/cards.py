"""Printed health cards (纸质健康卡) for residents without a smartphone of their own.

An elder with no smartphone, or a child, still has to pass gates. Their household's phone
shows their code, but they do not always go out with it. A card is printed for them by the
community's staff (社区代办) or by their household, from the residents' pages. Its QR (``CBK1:``,
signed like every code) names the holder and the card, never a colour. The gate verifies the
signature and then the card against this table: a card reported lost (挂失) or replaced by a
newer one is refused, and so are all its copies. It takes the holder's *current* colour online,
decides by the place's policy as for any scan, and shows the holder's masked name and the last
four characters of their ID number. The gate staff compare them with the ID card the holder
carries; the card has no photograph.

Without the network a gate cannot know a card holder's colour, so a card is never passed
offline (the gate page says so). A person has one card in force at a time: a new card ends the
old one. Cards end after ``card_validity_days`` (180), and the rows of cards ended
``CARD_KEEP_DAYS`` ago are purged nightly. A person's cards go with their registration (the
foreign key cascades). Issuing, printing and ending are audited (ids and counts, never the
holder); issuing and ending are announced (``healthcode.card_issued`` and
``healthcode.card_ended``).

A card that ended and is still presented at a gate (挂失卡被出示) is refused there and noted
(``CardPresentation``: where, when, by which scanner), audited and announced
(``healthcode.ended_card_presented``): someone may be going about with another's card, or the
holder with an old copy, and their household and community are told where and when. Nothing
here commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, record, record_purge
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.scope import scoped
from citybrain.core.events.service import publish
from citybrain.core.geo.models import Place
from citybrain.core.people import repository as people_repository
from citybrain.core.people import service as people_service
from citybrain.core.people.models import Person
from citybrain.healthcode.codes import CodeRefused, VerifiedCard, sign_card
from citybrain.healthcode.models import (
    CARD_BY_HOUSEHOLD,
    CARD_BY_STAFF,
    CARD_CANCELLED,
    CARD_END_REASONS,
    CARD_LOST,
    CARD_REPLACED,
    CardPresentation,
    HealthCard,
)
from citybrain.healthcode.passes import not_found_in_area
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.kit import clock
from citybrain.kit.crypto import field_cipher
from citybrain.kit.db import rows_affected
from citybrain.kit.errors import InvalidInput
from citybrain.kit.masking import mask_name

TOPIC_CARD_ISSUED = "healthcode.card_issued"
TOPIC_CARD_ENDED = "healthcode.card_ended"
TOPIC_ENDED_CARD_PRESENTED = "healthcode.ended_card_presented"
# An ended card read again at the same place within this time is noted once (a scanner wedge
# reading it twice, or the gate staff trying again).
PRESENTATION_REPEAT = dt.timedelta(minutes=5)
# How far back the staff's and the household's pages list ended cards presented at gates.
PRESENTED_WITHIN = dt.timedelta(days=14)
# A card's row is kept this long after it ended (expired, lost, replaced), so a gate can say
# "reported lost" rather than "not valid" for a while; then it is purged.
CARD_KEEP_DAYS = 90
# Cards issued and printed together (a sheet of A4 holds ten): a bound on one request's work.
MANY_AT_ONCE = 60
END_REASON_LABELS: dict[str, tuple[str, str]] = {
    CARD_LOST: ("挂失", "reported lost"),
    CARD_REPLACED: ("已补办新卡", "replaced by a new card"),
    CARD_CANCELLED: ("作废", "cancelled"),
}


@dataclass(frozen=True)
class CardHolder:
    """What a gate shows of a card's holder so the staff can check the ID card beside it."""

    card_no: int
    name: str  # masked: 张*明
    id_tail: str  # the ID number's last four characters


@dataclass(frozen=True)
class Presentation:
    """An ended card presented at a gate, as the card's page lists it."""

    presented_at: dt.datetime
    place_code: str
    place_name: str
    direction: str


@dataclass(frozen=True)
class PresentedCard:
    """An ended card of a household or a compound presented at gates lately: how often, and
    where and when last."""

    card: HealthCard
    times: int
    last: Presentation


@dataclass(frozen=True)
class PrintableCard:
    """A card ready to print: its row and its signed text (the QR's content)."""

    card: HealthCard
    text: str


def in_force(card: HealthCard, now: dt.datetime) -> bool:
    """Whether ``card`` passes gates at ``now``: not ended and not expired."""
    return card.ended_at is None and clock.as_utc(card.expires_at) > now


def holder_area(session: Session, card: HealthCard) -> str:
    """Where the card's holder lives now (their compound), or, were they gone, where the card
    was issued: whose staff look after the card."""
    area = session.scalar(select(Person.area_code).where(Person.ref == card.person_ref))
    return area or card.area_code


def card_number(card_no: int) -> str:
    """A card's number as printed: No. 000123."""
    return f"{card_no:06d}"


def card_holder(
    session: Session, card: VerifiedCard, *, now: dt.datetime | None = None
) -> CardHolder:
    """The holder of a verified card, if the card is still in force; raises ``CodeRefused``
    (``card_revoked`` for a card lost, replaced or cancelled; ``card_unknown`` for a card this
    platform no longer holds, or whose holder's registration was withdrawn). One indexed read,
    for card scans only: a phone's health code never comes here."""
    at = now or clock.now()
    row = session.get(HealthCard, card.card_no)
    if row is None or row.person_ref != card.person_ref:
        raise CodeRefused("card_unknown")
    if row.ended_at is not None:
        raise CodeRefused("card_revoked")
    if clock.as_utc(row.expires_at) <= at:
        raise CodeRefused("expired")
    return CardHolder(row.id, row.holder_name, row.id_tail)


def current_cards(
    session: Session, refs: Sequence[str], *, now: dt.datetime | None = None
) -> dict[str, HealthCard]:
    """The card in force of each of ``refs`` that has one (one read)."""
    if not refs:
        return {}
    at = now or clock.now()
    rows = session.scalars(
        select(HealthCard).where(
            HealthCard.person_ref.in_(list(refs)),
            HealthCard.ended_at.is_(None),
            HealthCard.expires_at > at,
        )
    )
    return {row.person_ref: row for row in rows}


def _end_cards_of(session: Session, person_ref: str, actor: Actor, at: dt.datetime) -> int:
    """End the person's cards in force (a new one replaces them); how many."""
    result = session.execute(
        update(HealthCard)
        .where(HealthCard.person_ref == person_ref, HealthCard.ended_at.is_(None))
        .values(ended_at=at, ended_by=actor.ref, end_reason=CARD_REPLACED)
    )
    return rows_affected(result)


def _issue(session: Session, actor: Actor, person: Person, via: str) -> PrintableCard:
    # The person's row locked first (PostgreSQL; SQLite has one writer anyway): a double click
    # on 办理 issues one card after the other, the second ending the first, never two in force.
    session.execute(select(Person.id).where(Person.id == person.id).with_for_update())
    at = clock.now().replace(microsecond=0)
    cipher = field_cipher()
    name = cipher.decrypt(person.name_enc, people_service.NAME_FIELD)
    id_number = cipher.decrypt(person.id_number_enc, people_service.ID_FIELD)
    replaced = _end_cards_of(session, person.ref, actor, at)
    days = get_healthcode_settings().card_validity_days
    card = HealthCard(
        person_ref=person.ref,
        holder_name=mask_name(name),
        id_tail=id_number[-4:],
        area_code=person.area_code,
        issued_via=via,
        issued_by=actor.ref,
        issued_at=at,
        expires_at=at + dt.timedelta(days=days),
    )
    session.add(card)
    session.flush()
    detail: dict[str, object] = {"card": card.id, "via": via, "replaced": replaced, "days": days}
    record(
        session,
        actor,
        "healthcode.card_issue",
        object_type="person",
        object_id=person.ref,
        area_code=person.area_code,
        detail=detail,
    )
    # Who issued it (an account, or a resident by their pseudonymous ref): the holder is told
    # of a card someone else printed for them.
    announced = {**detail, "person_ref": person.ref, "issued_by": actor.ref}
    publish(session, TOPIC_CARD_ISSUED, announced, key=person.ref)
    return PrintableCard(card, _text(session, card))


def _text(session: Session, card: HealthCard) -> str:
    return sign_card(
        session,
        card.person_ref,
        card.id,
        issued_at=clock.as_utc(card.issued_at),
        expires_at=clock.as_utc(card.expires_at),
    )


def _person_for_staff(session: Session, who: Principal, person_ref: str, action: str) -> Person:
    who.require(Permission.RESIDENTS_CORRECT)
    person = (
        people_repository.get_scoped(session, who, person_ref) if person_ref.isalnum() else None
    )
    if person is None:
        raise not_found_in_area(who, action, "person", person_ref[:32])
    return person


def issue_by_staff(session: Session, who: Principal, person_ref: str) -> PrintableCard:
    """Issue a card to a resident of ``who``'s jurisdiction (社区代办: staff who may correct
    registrations), ending the card they held; outside it, the same 404 as no such person,
    audited as denied."""
    person = _person_for_staff(session, who, person_ref, "healthcode.card_issue")
    return _issue(session, who.actor, person, CARD_BY_STAFF)


def issue_by_household(session: Session, actor: Actor, member: Person) -> PrintableCard:
    """Issue a card to ``member``, printed by their household on the residents' pages (the
    caller has checked that ``member`` belongs to the logged-in resident's household)."""
    return _issue(session, actor, member, CARD_BY_HOUSEHOLD)


def issue_many_by_staff(
    session: Session, who: Principal, person_refs: Sequence[str]
) -> list[PrintableCard]:
    """Issue cards to several residents of ``who``'s jurisdiction at once (批量办理: the
    community prints its elders' cards on one sheet), each ending the card its holder held and
    audited as one issue. All or nothing: one resident outside the jurisdiction refuses the
    lot (404). At most ``MANY_AT_ONCE`` a sheet."""
    refs = list(dict.fromkeys(person_refs))
    if not refs:
        raise InvalidInput("请先选择居民", "choose the residents first", field="refs")
    if len(refs) > MANY_AT_ONCE:
        raise InvalidInput(
            f"一次最多办理{MANY_AT_ONCE}张，请分批办理",
            f"at most {MANY_AT_ONCE} cards at once: issue them in parts",
            field="refs",
        )
    return [issue_by_staff(session, who, ref) for ref in refs]


def _card_for_staff(session: Session, who: Principal, card_id: int, action: str) -> HealthCard:
    # Scoped by where the holder lives now, not where the card was issued: a card follows its
    # holder when they move, and the community they left no longer prints or ends it.
    who.require(Permission.RESIDENTS_CORRECT)
    card = session.scalars(
        scoped(
            select(HealthCard)
            .join(Person, Person.ref == HealthCard.person_ref)
            .where(HealthCard.id == card_id),
            Person.area_code,
            who,
        )
    ).first()
    if card is None:
        raise not_found_in_area(who, action, "health_card", str(card_id))
    return card


def card_for_staff(session: Session, who: Principal, card_id: int) -> HealthCard:
    """A card of ``who``'s jurisdiction (any, in force or not); outside it, the same 404 as no
    such card, audited as denied."""
    return _card_for_staff(session, who, card_id, "healthcode.card_view")


def printable_for_staff(session: Session, who: Principal, card_id: int) -> PrintableCard:
    """A card of ``who``'s jurisdiction to print (again): the same card, signed afresh. A card
    no longer in force is refused (print a new one instead). Audited (a print puts a bearer
    card in someone's hands)."""
    card = _card_for_staff(session, who, card_id, "healthcode.card_print")
    return printable(session, who.actor, card)


def printable(session: Session, actor: Actor, card: HealthCard) -> PrintableCard:
    """``card`` to print (again), the caller having checked that ``actor`` may (a household
    member's, or one of the staff's jurisdiction: :func:`card_for_staff`): the same card,
    signed afresh; refused once it is no longer in force. Audited."""
    if not in_force(card, clock.now()):
        raise InvalidInput(
            "此卡已失效，请重新办理新卡",
            "this card is no longer valid; issue a new one",
            field="card",
            code="card_not_in_force",
        )
    record(
        session,
        actor,
        "healthcode.card_print",
        object_type="health_card",
        object_id=card.id,
        area_code=holder_area(session, card),
    )
    return PrintableCard(card, _text(session, card))


def _end(session: Session, actor: Actor, card: HealthCard, reason: str) -> HealthCard:
    if reason not in CARD_END_REASONS:
        raise InvalidInput(
            "请选择作废原因", "choose why the card ends", field="reason", code="bad_reason"
        )
    if card.ended_at is not None:
        return card  # ended already: the second click changes nothing
    card.ended_at = clock.now()
    card.ended_by = actor.ref
    card.end_reason = reason
    _audit_and_announce(
        session, actor, card, "healthcode.card_end", TOPIC_CARD_ENDED, {"reason": reason}
    )
    return card


def _audit_and_announce(
    session: Session,
    actor: Actor,
    card: HealthCard,
    action: str,
    topic: str,
    detail: dict[str, object],
    **announced: object,
) -> None:
    """Audit ``action`` on ``card`` under its holder's area and announce ``topic`` with the
    same detail, the holder's ref and area, and ``announced`` (never the holder's name)."""
    detail = {"card": card.id, **detail}
    area = holder_area(session, card)
    record(
        session,
        actor,
        action,
        object_type="health_card",
        object_id=card.id,
        area_code=area,
        detail=detail,
    )
    publish(
        session,
        topic,
        {**detail, "person_ref": card.person_ref, "area_code": area, **announced},
        key=card.person_ref,
    )


def end_by_staff(
    session: Session, who: Principal, card_id: int, reason: str = CARD_LOST
) -> HealthCard:
    """End a card of ``who``'s jurisdiction at once (挂失 or 作废): every copy of it is refused
    from the gate's next scan."""
    card = _card_for_staff(session, who, card_id, "healthcode.card_end")
    return _end(session, who.actor, card, reason)


def end_by_household(
    session: Session, actor: Actor, card: HealthCard, reason: str = CARD_LOST
) -> HealthCard:
    """End a card of the resident's household (the caller checked the household)."""
    return _end(session, actor, card, reason)


def cards_of_compound(
    session: Session, who: Principal, compound_code: str, *, in_force_only: bool = False
) -> list[HealthCard]:
    """The cards of the residents of a compound of ``who``'s jurisdiction (the holders living
    there now), newest first; a compound outside it lists nothing. The caller checks the
    compound and audits the listing."""
    who.require(Permission.RESIDENTS_VIEW)
    statement = scoped(
        select(HealthCard)
        .join(Person, Person.ref == HealthCard.person_ref)
        .where(Person.area_code == compound_code),
        Person.area_code,
        who,
    )
    if in_force_only:
        statement = statement.where(
            HealthCard.ended_at.is_(None), HealthCard.expires_at > clock.now()
        )
    return list(session.scalars(statement.order_by(HealthCard.id.desc())))


def purge_ended_cards(session: Session, *, now: dt.datetime | None = None) -> int:
    """Delete the cards that ended (expired, lost, replaced, cancelled) more than
    ``CARD_KEEP_DAYS`` ago; audited when any went. Never commits."""
    before = (now or clock.now()) - dt.timedelta(days=CARD_KEEP_DAYS)
    result = session.execute(
        delete(HealthCard).where(or_(HealthCard.ended_at < before, HealthCard.expires_at < before))
    )
    gone = rows_affected(result)
    record_purge(
        session,
        "healthcode.cards_purge",
        object_type="health_card",
        deleted=gone,
        before=before,
        retention_days=CARD_KEEP_DAYS,
        actor=SYSTEM,
    )
    return gone


def note_presentation(
    session: Session,
    actor: Actor,
    card: VerifiedCard,
    place_code: str,
    direction: str,
    *,
    now: dt.datetime | None = None,
) -> CardPresentation | None:
    """Note that ``card``, which has ended (reported lost, replaced or cancelled), was presented
    at ``place_code`` and refused there (挂失卡被出示): audited in the card's area, so the
    community sees it, and announced (``healthcode.ended_card_presented``: the holder's
    household is told). Read again at the same place within ``PRESENTATION_REPEAT``, it is
    noted once. A card still in force, unknown or merely expired is not noted. Returns the
    new row, if any."""
    at = now or clock.now()
    row = session.get(HealthCard, card.card_no)
    if row is None or row.person_ref != card.person_ref or row.ended_at is None:
        return None
    seen = session.scalar(
        select(CardPresentation.id)
        .where(
            CardPresentation.card_id == row.id,
            CardPresentation.place_code == place_code,
            CardPresentation.presented_at >= at - PRESENTATION_REPEAT,
        )
        .limit(1)
    )
    if seen is not None:
        return None
    presentation = CardPresentation(
        card_id=row.id,
        place_code=place_code,
        direction=direction,
        presented_by=actor.ref,
        presented_at=at,
    )
    session.add(presentation)
    session.flush()
    _audit_and_announce(
        session,
        actor,
        row,
        "healthcode.ended_card_presented",
        TOPIC_ENDED_CARD_PRESENTED,
        {"reason": row.end_reason, "place_code": place_code, "direction": direction},
        presented_at=at.isoformat(),
    )
    return presentation


def presentations_of(session: Session, card_id: int) -> list[Presentation]:
    """Where and when an ended card was presented at gates, newest first."""
    rows = session.execute(
        select(CardPresentation, Place.name)
        .outerjoin(Place, Place.code == CardPresentation.place_code)
        .where(CardPresentation.card_id == card_id)
        .order_by(CardPresentation.presented_at.desc(), CardPresentation.id.desc())
    )
    return [_presentation(row, name) for row, name in rows]


def _presentation(row: CardPresentation, place_name: str | None) -> Presentation:
    return Presentation(
        clock.as_utc(row.presented_at), row.place_code, place_name or row.place_code, row.direction
    )


def presented_cards(
    session: Session, refs: Sequence[str], *, now: dt.datetime | None = None
) -> list[PresentedCard]:
    """The ended cards of ``refs`` presented at gates within ``PRESENTED_WITHIN``, the most
    recently presented first (one read): what a household's or a compound's page warns of."""
    if not refs:
        return []
    since = (now or clock.now()) - PRESENTED_WITHIN
    rows = session.execute(
        select(CardPresentation, HealthCard, Place.name)
        .join(HealthCard, HealthCard.id == CardPresentation.card_id)
        .outerjoin(Place, Place.code == CardPresentation.place_code)
        .where(HealthCard.person_ref.in_(list(refs)), CardPresentation.presented_at >= since)
        .order_by(CardPresentation.presented_at.desc(), CardPresentation.id.desc())
    )
    found: dict[int, PresentedCard] = {}
    for presentation, card, name in rows:
        known = found.get(card.id)
        if known is None:
            found[card.id] = PresentedCard(card, 1, _presentation(presentation, name))
        else:
            found[card.id] = PresentedCard(card, known.times + 1, known.last)
    return list(found.values())

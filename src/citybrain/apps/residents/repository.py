"""All SQL of resident registration. Every staff query of personal data goes through
``core.authz.scope.scoped``; resident queries are bound to the resident's own household."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from citybrain.apps.residents.models import (
    HealthReport,
    MemberInvitation,
    ResidentAccount,
    ResidentLoginFailure,
    ResidentSmsCode,
)
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.scope import scoped, within
from citybrain.core.geo.models import Area, Compound, Place
from citybrain.core.people.models import Household, Person
from citybrain.healthcode.models import Scan
from citybrain.kit.db import rows_affected

# ---------------------------------------------------------------------------------------------
# Residents' own data (bound to one person or household, never a search)


def person_by_ref(session: Session, ref: str) -> Person | None:
    """The person ``ref`` (for the resident's own session only)."""
    return session.scalars(select(Person).where(Person.ref == ref)).first()


def person_by_id_index(session: Session, id_bidx: str) -> Person | None:
    """The person with this ID-number blind index, wherever they live: registration must find
    an existing person so no ID is registered twice."""
    return session.scalars(select(Person).where(Person.id_number_bidx == id_bidx)).first()


def household_members(session: Session, person: Person) -> list[Person]:
    """The person and everyone of their household (just the person when they have none)."""
    if person.household_id is None:
        return [person]
    return list(
        session.scalars(
            select(Person).where(Person.household_id == person.household_id).order_by(Person.id)
        )
    )


def person_with_account(session: Session, ref: str) -> tuple[Person, dt.datetime | None] | None:
    """Person ``ref`` and when their sessions were last ended, if they have an account (one
    query: it runs on every page a resident opens)."""
    row = session.execute(
        select(Person, ResidentAccount.sessions_revoked_at)
        .join(ResidentAccount, ResidentAccount.person_ref == Person.ref)
        .where(Person.ref == ref)
    ).first()
    return (row[0], row[1]) if row is not None else None


def account(session: Session, ref: str) -> ResidentAccount | None:
    """The self-service account of person ``ref``, if they have one."""
    return session.get(ResidentAccount, ref)


def report_of(session: Session, ref: str, day: dt.date) -> HealthReport | None:
    """Person ``ref``'s report of ``day``, if any."""
    return session.scalars(
        select(HealthReport).where(HealthReport.person_ref == ref, HealthReport.report_date == day)
    ).first()


def reports_of_persons(session: Session, refs: list[str], day: dt.date) -> dict[str, HealthReport]:
    """The reports of ``day`` of these persons, by person ref."""
    if not refs:
        return {}
    rows = session.scalars(
        select(HealthReport).where(
            HealthReport.person_ref.in_(refs), HealthReport.report_date == day
        )
    )
    return {r.person_ref: r for r in rows}


# ---------------------------------------------------------------------------------------------
# Failed logins


def recent_failures(session: Session, key: str, client_ip: str, since: dt.datetime) -> int:
    """The larger of the failures for this ID key and (a quarter of) those for this address."""
    by_key = session.scalar(
        select(func.count())
        .select_from(ResidentLoginFailure)
        .where(ResidentLoginFailure.key == key, ResidentLoginFailure.at >= since)
    )
    # Residents behind one carrier NAT share an address: it gets more room than one ID.
    by_ip = session.scalar(
        select(func.count())
        .select_from(ResidentLoginFailure)
        .where(ResidentLoginFailure.client_ip == client_ip, ResidentLoginFailure.at >= since)
    )
    return max(int(by_key or 0), int(by_ip or 0) // 4)


def clear_failures(session: Session, key: str) -> None:
    """Forget the failures of one ID after a successful login."""
    session.execute(delete(ResidentLoginFailure).where(ResidentLoginFailure.key == key))


def purge_failures_before(session: Session, before: dt.datetime) -> int:
    """Delete failure records older than ``before``; returns how many."""
    result = session.execute(delete(ResidentLoginFailure).where(ResidentLoginFailure.at < before))
    return rows_affected(result)


# One-time codes sent by text message


def latest_sms_code(
    session: Session, phone_key: str, purpose: str | None = None
) -> ResidentSmsCode | None:
    """The phone's newest code (for ``purpose``, the only one that counts for it; of any
    purpose, the last one sent)."""
    query = select(ResidentSmsCode).where(ResidentSmsCode.phone_key == phone_key)
    if purpose is not None:
        query = query.where(ResidentSmsCode.purpose == purpose)
    return session.scalars(
        query.order_by(ResidentSmsCode.sent_at.desc(), ResidentSmsCode.id.desc()).limit(1)
    ).first()


def sms_codes_sent(
    session: Session,
    *,
    since: dt.datetime,
    phone_key: str | None = None,
    client_ip: str | None = None,
) -> int:
    """How many codes went to one phone, or were asked from one address, since ``since``."""
    query = (
        select(func.count()).select_from(ResidentSmsCode).where(ResidentSmsCode.sent_at >= since)
    )
    if phone_key is not None:
        query = query.where(ResidentSmsCode.phone_key == phone_key)
    if client_ip is not None:
        query = query.where(ResidentSmsCode.client_ip == client_ip)
    return int(session.scalar(query) or 0)


def purge_sms_codes_before(session: Session, before: dt.datetime) -> int:
    """Delete codes sent before ``before``; returns how many."""
    result = session.execute(delete(ResidentSmsCode).where(ResidentSmsCode.sent_at < before))
    return rows_affected(result)


def invitations_of_household(
    session: Session, household_id: int, now: dt.datetime
) -> list[MemberInvitation]:
    """The household's adult members still awaiting their consent (not lapsed), oldest first."""
    return list(
        session.scalars(
            select(MemberInvitation)
            .where(MemberInvitation.household_id == household_id, MemberInvitation.expires_at > now)
            .order_by(MemberInvitation.id)
        )
    )


def all_invitations(session: Session) -> list[MemberInvitation]:
    """Every invitation (a few at most per household, lapsing within days: for resealing)."""
    return list(session.scalars(select(MemberInvitation).order_by(MemberInvitation.id)))


def move_invitations(session: Session, household_id: int, compound_code: str) -> None:
    """A household moved: its invitations now await consent in its new compound."""
    session.execute(
        update(MemberInvitation)
        .where(MemberInvitation.household_id == household_id)
        .values(compound_code=compound_code)
    )


def delete_invitations_of_household(session: Session, household_id: int) -> int:
    """Delete every invitation into household ``household_id``; returns how many."""
    result = session.execute(
        delete(MemberInvitation).where(MemberInvitation.household_id == household_id)
    )
    return rows_affected(result)


def purge_invitations_before(session: Session, before: dt.datetime) -> int:
    """Delete invitations that lapsed before ``before``; returns how many."""
    result = session.execute(delete(MemberInvitation).where(MemberInvitation.expires_at < before))
    return rows_affected(result)


# ---------------------------------------------------------------------------------------------
# Staff queries, all scoped to the principal's jurisdiction


def in_jurisdiction(column: InstrumentedAttribute[str], who: Principal) -> ColumnElement[bool]:
    """The condition ``core.authz.scope.scoped`` adds, for selects of several entities (its
    type variable takes one-entity selects): ``column`` lies inside ``who``'s jurisdiction."""
    condition: ColumnElement[bool] = within(column, who.area_code)
    return condition


def compound_scoped(session: Session, who: Principal, code: str) -> Compound | None:
    """The compound ``code`` if inside ``who``'s jurisdiction."""
    return session.scalars(
        scoped(select(Compound).where(Compound.code == code), Compound.code, who)
    ).first()


def compounds_scoped(
    session: Session,
    who: Principal,
    *,
    area_code: str | None,
    name: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[tuple[Compound, str]]]:
    """Compounds in ``who``'s jurisdiction (optionally inside ``area_code``, name containing
    ``name``), with their community's name, by code."""
    statement = (
        select(Compound, Area.name)
        .join(Area, Area.code == Compound.community_code)
        .where(in_jurisdiction(Compound.code, who))
    )
    if area_code:
        statement = statement.where(within(Compound.code, area_code))
    if name:
        statement = statement.where(Compound.name.contains(name, autoescape=True))
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.execute(statement.order_by(Compound.code).limit(limit).offset(offset)).all()
    return int(total), [(c, n) for c, n in rows]


def resident_counts(session: Session, who: Principal, codes: list[str]) -> dict[str, int]:
    """Registered persons per compound, for compounds in ``who``'s jurisdiction."""
    if not codes:
        return {}
    statement = (
        select(Person.area_code, func.count())
        .where(Person.area_code.in_(codes), in_jurisdiction(Person.area_code, who))
        .group_by(Person.area_code)
    )
    return {code: int(n) for code, n in session.execute(statement)}


def invitation_counts(
    session: Session, who: Principal, codes: list[str], now: dt.datetime
) -> dict[str, int]:
    """Adults awaiting consent per compound (not lapsed), in ``who``'s jurisdiction."""
    if not codes:
        return {}
    statement = (
        select(MemberInvitation.compound_code, func.count())
        .where(
            MemberInvitation.compound_code.in_(codes),
            MemberInvitation.expires_at > now,
            in_jurisdiction(MemberInvitation.compound_code, who),
        )
        .group_by(MemberInvitation.compound_code)
    )
    return {code: int(n) for code, n in session.execute(statement)}


def report_counts(
    session: Session, who: Principal, codes: list[str], day: dt.date
) -> dict[str, tuple[int, int]]:
    """(reports, flagged reports) of ``day`` per compound, in ``who``'s jurisdiction."""
    if not codes:
        return {}
    flagged = func.sum(case((HealthReport.flagged.is_(True), 1), else_=0))
    statement = (
        select(HealthReport.area_code, func.count(), flagged)
        .where(
            HealthReport.area_code.in_(codes),
            HealthReport.report_date == day,
            in_jurisdiction(HealthReport.area_code, who),
        )
        .group_by(HealthReport.area_code)
    )
    return {code: (int(n), int(f or 0)) for code, n, f in session.execute(statement)}


def residents_scoped(session: Session, who: Principal, compound_code: str) -> list[Person]:
    """Persons living in ``compound_code``, if inside ``who``'s jurisdiction, by household."""
    statement = scoped(
        select(Person).where(Person.area_code == compound_code), Person.area_code, who
    )
    return list(session.scalars(statement.order_by(Person.household_id, Person.id)))


def invitations_scoped(
    session: Session, who: Principal, compound_code: str, now: dt.datetime
) -> list[MemberInvitation]:
    """Invitations awaiting consent in ``compound_code``, if inside ``who``'s jurisdiction."""
    statement = scoped(
        select(MemberInvitation).where(
            MemberInvitation.compound_code == compound_code, MemberInvitation.expires_at > now
        ),
        MemberInvitation.compound_code,
        who,
    )
    return list(session.scalars(statement.order_by(MemberInvitation.id)))


def invitation_scoped(
    session: Session, who: Principal, invitation_id: int, now: dt.datetime
) -> MemberInvitation | None:
    """One live invitation, if its compound lies inside ``who``'s jurisdiction."""
    statement = scoped(
        select(MemberInvitation).where(
            MemberInvitation.id == invitation_id, MemberInvitation.expires_at > now
        ),
        MemberInvitation.compound_code,
        who,
    )
    return session.scalars(statement).first()


def households_by_id(session: Session, ids: set[int]) -> dict[int, Household]:
    """Households by id (their units are decrypted by the service)."""
    if not ids:
        return {}
    return {h.id: h for h in session.scalars(select(Household).where(Household.id.in_(ids)))}


def account_refs(session: Session, refs: list[str]) -> set[str]:
    """Which of ``refs`` have a self-service account."""
    if not refs:
        return set()
    return set(
        session.scalars(
            select(ResidentAccount.person_ref).where(ResidentAccount.person_ref.in_(refs))
        )
    )


def reports_scoped(
    session: Session,
    who: Principal,
    compound_code: str,
    day: dt.date,
    *,
    flagged_only: bool,
) -> list[tuple[HealthReport, Person]]:
    """The reports of ``day`` from ``compound_code`` in ``who``'s jurisdiction, flagged ones
    first (those not yet followed up before the rest), then by time."""
    statement = (
        select(HealthReport, Person)
        .join(Person, Person.ref == HealthReport.person_ref)
        .where(HealthReport.area_code == compound_code, HealthReport.report_date == day)
        .where(in_jurisdiction(HealthReport.area_code, who))
    )
    if flagged_only:
        statement = statement.where(HealthReport.flagged.is_(True))
    statement = statement.order_by(
        HealthReport.flagged.desc(),
        HealthReport.followed_up_at.is_not(None),
        HealthReport.updated_at.desc(),
    )
    return [(r, p) for r, p in session.execute(statement).all()]


def report_scoped(session: Session, who: Principal, report_id: int) -> HealthReport | None:
    """One report if inside ``who``'s jurisdiction."""
    return session.scalars(
        scoped(
            select(HealthReport).where(HealthReport.id == report_id), HealthReport.area_code, who
        )
    ).first()


def scans_scoped(
    session: Session,
    who: Principal,
    compound_code: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    direction: str | None,
    limit: int,
) -> list[tuple[Scan, Place, Person | None]]:
    """Entries and exits at the gates of ``compound_code`` in ``[since, until)``, newest first,
    inside ``who``'s jurisdiction."""
    statement = (
        select(Scan, Place, Person)
        .join(Place, Place.code == Scan.place_code)
        .outerjoin(Person, Person.ref == Scan.person_ref)
        .where(
            Place.compound_code == compound_code,
            Scan.scanned_at >= since,
            Scan.scanned_at < until,
        )
        # A gate's area is the community its compound lies in.
        .where(in_jurisdiction(Place.area_code, who))
    )
    if direction:
        statement = statement.where(Scan.direction == direction)
    rows = session.execute(statement.order_by(Scan.scanned_at.desc()).limit(limit)).all()
    return [(s, pl, pe) for s, pl, pe in rows]


def member_counts(session: Session, household_ids: set[int]) -> dict[int, int]:
    """Registered members per household."""
    if not household_ids:
        return {}
    rows = session.execute(
        select(Person.household_id, func.count())
        .where(Person.household_id.in_(household_ids))
        .group_by(Person.household_id)
    )
    return {int(h): int(n) for h, n in rows if h is not None}


def delete_account(session: Session, ref: str) -> None:
    """Delete person ``ref``'s resident account, if any (their cookies then find nobody)."""
    session.execute(delete(ResidentAccount).where(ResidentAccount.person_ref == ref))


def delete_reports_of(session: Session, ref: str) -> int:
    """Delete every daily report of person ``ref``; returns how many."""
    return rows_affected(
        session.execute(delete(HealthReport).where(HealthReport.person_ref == ref))
    )


def purge_reports_before(session: Session, before: dt.date) -> int:
    """Delete health reports of days before ``before``, except flagged ones not yet followed
    up (still in the staff's queue); returns how many."""
    result = session.execute(
        delete(HealthReport).where(
            HealthReport.report_date < before,
            or_(HealthReport.flagged.is_(False), HealthReport.followed_up_at.is_not(None)),
        )
    )
    return rows_affected(result)


def household_members_born_on(session: Session, days: list[dt.date]) -> list[Person]:
    """The registered persons in a household born on one of ``days``."""
    return list(
        session.scalars(
            select(Person)
            .where(Person.birth_date.in_(days), Person.household_id.is_not(None))
            .order_by(Person.id)
        )
    )

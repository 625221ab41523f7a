"""A household member registered as a child is told when they turn 18 (成年提醒): their code
and their place in the household are theirs from now on; nobody is told twice."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.apps.residents.service import COMING_OF_AGE, tell_coming_of_age
from citybrain.core.audit.models import AuditEntry
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import HouseholdIn, PersonIn
from citybrain.core.people.service import create_household, register_person
from citybrain.kit.idcheck import make_resident_id
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of
from tests.factories import STREET_A, first_compound, make_user, next_synthetic


def _born(session: Session, registrar: object, birth: dt.date, household: int | None) -> str:
    synthetic = next_synthetic()
    masked, _ = register_person(
        session,
        registrar,  # type: ignore[arg-type]
        PersonIn(
            name=synthetic.name,
            id_number=make_resident_id("410105", birth, synthetic.birth_date.toordinal() % 999),
            phone=synthetic.phone,
            compound_code=None if household else first_compound(session, STREET_A),
            household_id=household,
        ),
    )
    person = session.scalars(select(Person).where(Person.ref == masked.ref)).one()
    return subject_of(person)


def _told(session: Session, subject: str) -> list[str]:
    return [n.text_zh for n in risk.notifications_of(session, subject) if n.kind == COMING_OF_AGE]


def test_members_turning_18_are_told_once_and_29_february_on_1_march(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    home = create_household(
        session, officer, HouseholdIn(compound_code=first_compound(session, STREET_A))
    ).id
    turning = _born(session, officer, dt.date(2008, 11, 25), home)
    tomorrow = _born(session, officer, dt.date(2008, 11, 26), home)
    alone = _born(session, officer, dt.date(2008, 11, 25), None)  # in no household
    leapling = _born(session, officer, dt.date(2008, 2, 29), home)

    assert tell_coming_of_age(session, dt.date(2026, 11, 25)) == 1
    (text,) = _told(session, turning)
    assert "年满18周岁" in text and "退出本户" in text
    assert _told(session, tomorrow) == [] and _told(session, alone) == []
    audit = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "residents.coming_of_age")
    ).one()
    assert audit.detail == {"told": 1, "day": "2026-11-25"}
    assert tell_coming_of_age(session, dt.date(2026, 11, 25)) == 0  # nobody told twice

    assert tell_coming_of_age(session, dt.date(2026, 2, 28)) == 0
    assert tell_coming_of_age(session, dt.date(2026, 3, 1)) == 1  # 2026 has no 29 February
    assert len(_told(session, leapling)) == 1

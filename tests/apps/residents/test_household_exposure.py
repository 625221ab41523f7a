"""A member who joins a household where a case lives is a close contact at once: adding them
from "my household", registering a household that includes a case found earlier, and a
resident without a household (a case) adding someone all assert the household contact in the
same transaction, so the code page shows it before any event is delivered."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import Actor
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import register_person
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.risk import service as risk
from citybrain.risk.models import Fact
from citybrain.risk.subjects import subject_of, subject_of_id_number
from citybrain.risk.tasks import on_person_registered
from citybrain.simulate.persons import SyntheticPerson
from tests.apps.residents.conftest import csrf, login, registered
from tests.factories import STREET_A, make_user, next_synthetic, next_synthetic_child

CASE_REPORT = Actor("system:analysis", "system", None)


def _person(session: Session, id_number: str) -> Person:
    bidx = blind_index().digest(id_number, "id_number")
    person = session.scalars(select(Person).where(Person.id_number_bidx == bidx)).first()
    assert person is not None
    return person


def _case(session: Session, subject: str) -> Fact:
    return risk.assert_fact(
        session,
        CASE_REPORT,
        subject=subject,
        kind="confirmed_case",
        source="analysis.case_report",
        evidence={"record_ids": [21]},
        valid_from=clock.now() - dt.timedelta(hours=2),
    )


def _household_facts(session: Session, person: Person) -> list[Fact]:
    return list(
        session.scalars(
            select(Fact).where(Fact.subject == subject_of(person), Fact.source == "household")
        )
    )


def _add(resident: TestClient, member: SyntheticPerson) -> None:
    token = csrf(resident, "/residents/household")
    added = resident.post(
        "/residents/household",
        data={"csrf_token": token, "name": member.name, "id_number": member.id_number},
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text


def _shows_close_contact(resident: TestClient, member: Person) -> None:
    page = resident.get(f"/residents/code?member={member.ref}").text
    assert 'data-colour="red"' in page and "密切接触者" in page
    assert "来源：同户家庭成员为病例" in page


def test_a_member_added_to_a_case_household_is_a_close_contact_at_once(
    resident: TestClient, session: Session, compound: str
) -> None:
    me = _person(session, registered(resident, compound).id_number)
    fact = _case(session, subject_of(me))
    newcomer = next_synthetic_child()
    _add(resident, newcomer)
    added = _person(session, newcomer.id_number)
    (derived,) = _household_facts(session, added)
    assert derived.kind == "close_contact" and derived.retracted_at is None
    assert derived.evidence == {"household_id": me.household_id, "case_fact_id": fact.id}
    assert risk.colour_of(session, subject_of(added)).colour == "red"
    _shows_close_contact(resident, added)
    # The registration event, delivered afterwards (even twice), adds nothing.
    event = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == "person.registered")
        .order_by(OutboxEvent.id.desc())
    ).first()
    assert event is not None and event.payload["person_ref"] == added.ref
    on_person_registered(session, event)
    on_person_registered(session, event)
    assert len(_household_facts(session, added)) == 1
    # Withdrawing the case withdraws the newcomer's contact too.
    risk.retract_fact(session, CASE_REPORT, fact.id, reason="检测报告录入错误")
    assert all(f.retracted_at is not None for f in _household_facts(session, added))
    assert risk.colour_of(session, subject_of(added)).colour == "green"


def test_registering_a_household_with_a_case_found_earlier_exposes_the_others(
    resident: TestClient, session: Session, compound: str
) -> None:
    member = next_synthetic_child()
    fact = _case(session, subject_of_id_number(member.id_number))
    me = _person(session, registered(resident, compound, members=[member]).id_number)
    (derived,) = _household_facts(session, me)
    assert derived.evidence == {"household_id": me.household_id, "case_fact_id": fact.id}
    page = resident.get("/residents/code").text
    assert 'data-colour="red"' in page and "密切接触者" in page


def test_a_case_without_a_household_adding_a_member_exposes_them(
    resident: TestClient, session: Session, compound: str
) -> None:
    street = make_user(session, "street_officer", STREET_A)
    alone = next_synthetic()
    register_person(
        session,
        street,
        PersonIn(
            name=alone.name, id_number=alone.id_number, phone=alone.phone, compound_code=compound
        ),
    )
    case = _person(session, alone.id_number)
    assert case.household_id is None
    fact = _case(session, subject_of(case))
    assert login(resident, alone).status_code == 303
    newcomer = next_synthetic_child()
    _add(resident, newcomer)
    added = _person(session, newcomer.id_number)
    assert added.household_id is not None and added.household_id == case.household_id
    (derived,) = _household_facts(session, added)
    assert derived.evidence == {"household_id": added.household_id, "case_fact_id": fact.id}
    _shows_close_contact(resident, added)


def test_a_released_case_exposes_nobody_who_joins_later(
    resident: TestClient, session: Session, compound: str
) -> None:
    me = _person(session, registered(resident, compound).id_number)
    _case(session, subject_of(me))
    risk.assert_fact(
        session,
        CASE_REPORT,
        subject=subject_of(me),
        kind="released",
        source="staff",
        evidence={},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    newcomer = next_synthetic_child()
    _add(resident, newcomer)
    added = _person(session, newcomer.id_number)
    assert _household_facts(session, added) == []
    assert risk.colour_of(session, subject_of(added)).colour == "green"

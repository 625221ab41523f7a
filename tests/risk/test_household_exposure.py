"""Joining a household where a case lives (同户暴露): whoever is registered into the household
after the case becomes a close contact from then, through the ``person.registered`` handler
(staff registration) or ``expose_to_household`` itself; withdrawing the case withdraws it; a
case withdrawn, ended or released before exposes nobody; a repeat asserts nothing twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import STREET_A, make_user, next_synthetic
from tests.risk.conftest import T0, Resident, household, resident

from citybrain.core.audit.service import Actor
from citybrain.core.events.dispatcher import default_registry
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import register_person
from citybrain.kit import clock
from citybrain.risk import service
from citybrain.risk.models import Fact
from citybrain.risk.subjects import subject_of_id_number
from citybrain.risk.tasks import on_person_registered

DOCTOR = Actor("user:900", "clinic_staff", STREET_A)
DAY = dt.timedelta(days=1)


def case_of(session: Session, member: Resident, at: dt.datetime, **extra: Any) -> Fact:
    return service.assert_fact(
        session,
        DOCTOR,
        subject=member.subject,
        kind=extra.pop("kind", "confirmed_case"),
        source="analysis.case_report",
        evidence={"record_ids": [11]},
        valid_from=at,
        **extra,
    )


def deliver_registration(session: Session, ref: str) -> None:
    """What the worker does after commit: hand the person's ``person.registered`` to risk."""
    session.flush()
    event = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == "person.registered")
        .order_by(OutboxEvent.id.desc())
    ).first()
    assert event is not None and event.payload["person_ref"] == ref
    on_person_registered(session, event)


def household_facts(session: Session, subject: str) -> list[Fact]:
    return list(
        session.scalars(
            select(Fact)
            .where(Fact.subject == subject, Fact.source == "household")
            .order_by(Fact.id)
        )
    )


def test_the_registration_event_reaches_risk() -> None:
    names = [s.name for s in default_registry.handlers_for("person.registered")]
    assert "risk.person_registered" in names


def test_staff_registering_someone_into_a_case_household_makes_them_a_close_contact(
    session: Session, at: Any
) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    (case,) = household(session, street, 1)
    fact = case_of(session, case, T0)
    at(T0 + 3 * DAY)
    joiner = resident(session, street, household_id=case.household_id)
    assert household_facts(session, joiner.subject) == []  # the handler has not run yet
    deliver_registration(session, joiner.ref)
    (derived,) = household_facts(session, joiner.subject)
    assert derived.kind == "close_contact" and derived.retracted_at is None
    assert derived.evidence == {"household_id": case.household_id, "case_fact_id": fact.id}
    assert derived.dedupe_key == f"household_case:{fact.id}"
    assert clock.as_utc(derived.valid_from) == T0 + 3 * DAY  # from joining, not before
    view = service.colour_of(session, joiner.subject)
    assert view.colour == "red" and view.reasons[0].rule_id == "close_contact"
    assert f"case_fact:{fact.id}" in view.reasons[0].evidence
    assert f"household:{case.household_id}" in view.reasons[0].evidence
    assert view.until == T0 + 17 * DAY

    # The event delivered twice, or the service called again: still one fact.
    deliver_registration(session, joiner.ref)
    person = session.scalars(select(Person).where(Person.ref == joiner.ref)).one()
    assert service.expose_to_household(session, DOCTOR, person) == []
    assert len(household_facts(session, joiner.subject)) == 1

    # Withdrawing the case withdraws what it caused for the late joiner too.
    service.retract_fact(session, DOCTOR, fact.id, reason="检测报告录入错误")
    (withdrawn,) = household_facts(session, joiner.subject)
    assert withdrawn.retracted_at is not None
    assert service.colour_of(session, joiner.subject).colour == "green"


def test_a_case_withdrawn_ended_or_released_before_exposes_nobody(
    session: Session, at: Any
) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    withdrawn, ended, released = (household(session, street, 1)[0] for _ in range(3))
    fact = case_of(session, withdrawn, T0)
    service.retract_fact(session, DOCTOR, fact.id, reason="检测报告录入错误")
    case_of(session, ended, T0, kind="asymptomatic", valid_until=T0 + 2 * DAY)
    case_of(session, released, T0)
    service.assert_fact(
        session,
        DOCTOR,
        subject=released.subject,
        kind="released",
        source="staff",
        evidence={},
        valid_from=T0 + DAY,
    )
    at(T0 + 3 * DAY)
    for member in (withdrawn, ended, released):
        joiner = resident(session, street, household_id=member.household_id)
        deliver_registration(session, joiner.ref)
        assert household_facts(session, joiner.subject) == []
        assert service.colour_of(session, joiner.subject).colour == "green"


def test_a_case_in_force_counts_but_a_contact_does_not_spread(session: Session, at: Any) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    case, contact = household(session, street, 2)
    fact = case_of(session, case, T0, kind="asymptomatic")
    assert len(household_facts(session, contact.subject)) == 1
    at(T0 + DAY)
    joiner = resident(session, street, household_id=case.household_id)
    deliver_registration(session, joiner.ref)
    # One contact fact, for the case only: the other member's close contact exposes nobody.
    (derived,) = household_facts(session, joiner.subject)
    assert derived.evidence["case_fact_id"] == fact.id
    assert len(household_facts(session, contact.subject)) == 1


def test_a_case_found_before_they_registered_exposes_the_household_they_join(
    session: Session, at: Any
) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    member, other = household(session, street, 2)
    synthetic = next_synthetic()
    subject = subject_of_id_number(synthetic.id_number)
    fact = service.assert_fact(
        session,
        DOCTOR,
        subject=subject,
        kind="confirmed_case",
        source="analysis.case_report",
        evidence={"record_ids": [12]},
        valid_from=T0,
    )
    at(T0 + DAY)
    masked, _ = register_person(
        session,
        street,
        PersonIn(
            name=synthetic.name,
            id_number=synthetic.id_number,
            household_id=member.household_id,
        ),
    )
    deliver_registration(session, masked.ref)
    for exposed in (member, other):
        (derived,) = household_facts(session, exposed.subject)
        assert derived.evidence == {"household_id": member.household_id, "case_fact_id": fact.id}
        assert service.colour_of(session, exposed.subject).colour == "red"
    assert household_facts(session, subject) == []


def test_a_household_contact_withdrawn_by_a_person_is_not_asserted_again(
    session: Session, at: Any
) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    (case,) = household(session, street, 1)
    case_of(session, case, T0)
    joiner = resident(session, street, household_id=case.household_id)
    deliver_registration(session, joiner.ref)
    (derived,) = household_facts(session, joiner.subject)
    service.retract_fact(session, DOCTOR, derived.id, reason="申诉成立：不在该户居住")
    deliver_registration(session, joiner.ref)  # delivered again, later
    (still,) = household_facts(session, joiner.subject)
    assert still.id == derived.id and still.retracted_at is not None
    assert service.colour_of(session, joiner.subject).colour == "green"

"""Facts make colours and tiers: one service, audited and announced, household contacts in the
same transaction, expiry without a stale red, and replay that proves every stored colour."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session
from tests.factories import STREET_A, STREET_B, first_compound, make_user, next_synthetic
from tests.risk.conftest import T0, audits, events, household, resident

from citybrain.core.audit.service import Actor
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import register_person
from citybrain.kit.errors import InvalidInput
from citybrain.risk import service
from citybrain.risk.engine import FactSnapshot, compute_colour
from citybrain.risk.models import Fact, PersonColour
from citybrain.risk.rules import packaged_rules_text, parse_rule_set
from citybrain.risk.rulesets import replay
from citybrain.risk.subjects import subject_of_id_number
from citybrain.risk.tasks import on_person_registered

DOCTOR = Actor("user:900", "clinic_staff", STREET_A)
DAY = dt.timedelta(days=1)


def assert_kind(session: Session, subject: str, kind: str, at: dt.datetime, **extra: Any) -> Fact:
    return service.assert_fact(
        session,
        DOCTOR,
        subject=subject,
        kind=kind,
        source=extra.pop("source", "staff"),
        evidence=extra.pop("evidence", {"record_ids": [1, 2]}),
        valid_from=at,
        **extra,
    )


def test_compute_colour_is_a_pure_function_of_facts_rules_and_time() -> None:
    rules = parse_rule_set(packaged_rules_text(), 1)
    facts = [
        FactSnapshot(1, "a" * 32, "risk_area_travel", T0, source="screening"),
        FactSnapshot(2, "a" * 32, "fever_visit", T0 + dt.timedelta(hours=2)),
    ]
    first = compute_colour(facts, rules, T0 + DAY)
    assert first == compute_colour(list(facts), rules, T0 + DAY)
    assert first.colour == "yellow"
    assert {r.rule_id for r in first.reasons} == {"risk_area_travel", "fever_visit"}
    assert first.until is None  # the fever visit lasts until a negative test
    tested = [*facts, FactSnapshot(3, "a" * 32, "negative_test", T0 + 2 * DAY)]
    assert compute_colour(tested, rules, T0 + 3 * DAY).colour == "green"
    # Before the test the same facts were yellow: time is an input like the facts.
    assert compute_colour(tested, rules, T0 + DAY).colour == "yellow"
    nothing = compute_colour([], rules, T0)
    assert (nothing.colour, [r.text_zh for r in nothing.reasons]) == ("green", ["无风险记录"])


def test_a_case_makes_the_household_close_contacts_in_one_transaction(
    session: Session, at: Any
) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    case, *others = household(session, street, 3)
    neighbour = resident(session, street)
    fact = assert_kind(session, case.subject, "confirmed_case", T0)
    colours = service.colours_of(session, [case.subject, *(o.subject for o in others)])
    assert {v.colour for v in colours.values()} == {"red"}
    for other in others:
        view = colours[other.subject]
        assert [r.rule_id for r in view.reasons] == ["close_contact"]
        assert f"case_fact:{fact.id}" in view.reasons[0].evidence
        assert f"household:{case.household_id}" in view.reasons[0].evidence
        assert "密切接触者" in view.reasons[0].text_zh and "2026-03-15" in view.reasons[0].text_zh
        assert view.until == T0 + 14 * DAY
    assert service.colour_of(session, neighbour.subject).colour == "green"
    derived = session.scalars(select(Fact).where(Fact.source == "household")).all()
    assert sorted(f.subject for f in derived) == sorted(o.subject for o in others)
    assert all(
        f.evidence == {"household_id": case.household_id, "case_fact_id": fact.id} for f in derived
    )
    asserted = audits(session, "risk.fact.assert")
    assert len(asserted) == 3 and asserted[0].actor == DOCTOR.ref
    changed = events(session, "risk.colour_changed")
    assert {(e["subject"], e["old"], e["new"]) for e in changed} == {
        (r.subject, "green", "red") for r in (case, *others)
    }
    # Withdrawing the case withdraws what it caused.
    service.retract_fact(session, DOCTOR, fact.id, reason="检测报告录入错误")
    assert {
        v.colour
        for v in service.colours_of(session, [case.subject, *(o.subject for o in others)]).values()
    } == {"green"}
    assert len(audits(session, "risk.fact.retract")) == 3


def test_a_red_never_outlives_its_end(session: Session, at: Any) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    contact = resident(session, street)
    assert_kind(session, contact.subject, "close_contact", T0 - 2 * DAY)
    view = service.colour_of(session, contact.subject)
    assert (view.colour, view.until) == ("red", T0 + 12 * DAY)
    at(T0 + 12 * DAY + dt.timedelta(seconds=1))
    # Nothing recomputed the stored row in between: the read does, and says green.
    stored = session.get(PersonColour, contact.subject)
    assert stored is not None and stored.colour == "red"
    assert service.colour_of(session, contact.subject).colour == "green"
    assert session.get(PersonColour, contact.subject).colour == "green"  # type: ignore[union-attr]
    assert events(session, "risk.colour_changed")[-1]["new"] == "green"


def test_facts_found_before_registration_count_once_the_person_registers(
    session: Session, at: Any
) -> None:
    at(T0)
    district = make_user(session, "district_officer", "410105")
    synthetic = next_synthetic()
    subject = subject_of_id_number(synthetic.id_number)
    assert_kind(session, subject, "confirmed_case", T0, source="analysis.case_report")
    assert service.colour_of(session, subject).colour == "red"
    compound = first_compound(session, STREET_B)
    assert service.tier_of(session, compound).tier == "green"
    masked, _ = register_person(
        session,
        district,
        PersonIn(name=synthetic.name, id_number=synthetic.id_number, compound_code=compound),
    )
    # The worker hands the registration event to risk; here the handler runs directly.
    event = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == "person.registered")
        .order_by(OutboxEvent.id.desc())
    ).first()
    assert event is not None and event.payload["person_ref"] == masked.ref
    on_person_registered(session, event)
    tier = service.tier_of(session, compound)
    assert tier.tier == "red" and tier.reasons[0].rule_id == "compound_case"


def test_compound_goes_red_then_yellow_then_green(session: Session, at: Any) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    compound = first_compound(session, STREET_A)
    case = resident(session, street, compound=compound)
    contact = resident(session, street, compound=compound)
    assert service.tier_of(session, compound).tier == "green"
    assert_kind(session, case.subject, "confirmed_case", T0)
    red = service.tier_of(session, compound)
    assert (red.tier, red.since, red.until) == ("red", T0, T0 + 14 * DAY)
    assert "确诊" in red.reasons[0].text_zh and "封闭" in red.reasons[0].text_zh
    assert events(session, "risk.tier_changed")[-1] == {
        "compound_code": compound,
        "old": "green",
        "new": "red",
        "rule_set_version": red.rule_set_version,
    }
    # The case goes to hospital; a close contact is isolated at home until day 16.
    at(T0 + 2 * DAY)
    assert_kind(session, case.subject, "released", T0 + 2 * DAY)
    assert_kind(session, contact.subject, "close_contact", T0)
    assert_kind(
        session,
        contact.subject,
        "in_quarantine",
        T0 + 2 * DAY,
        setting="home",
        valid_until=T0 + 16 * DAY,
    )
    # Still red: 14 days without a new case have not passed.
    assert service.tier_of(session, compound).tier == "red"
    at(T0 + 14 * DAY + dt.timedelta(minutes=1))
    yellow = service.tier_of(session, compound)
    assert (yellow.tier, yellow.since) == ("yellow", T0 + 14 * DAY + dt.timedelta(minutes=1))
    assert [r.rule_id for r in yellow.reasons] == ["compound_home_isolation"]
    assert "居家隔离" in yellow.reasons[0].text_zh
    at(T0 + 16 * DAY + dt.timedelta(minutes=1))
    assert service.tier_of(session, compound).tier == "green"
    assert [e["new"] for e in events(session, "risk.tier_changed")] == ["red", "yellow", "green"]


def test_replay_reproduces_every_colour_and_finds_a_tampered_one(session: Session, at: Any) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    family = household(session, street, 3)
    travellers = [resident(session, street) for _ in range(3)]
    assert_kind(session, family[0].subject, "asymptomatic", T0)
    for n, traveller in enumerate(travellers):
        assert_kind(
            session, traveller.subject, "risk_area_travel", T0 - n * DAY, source="screening"
        )
    assert_kind(session, travellers[0].subject, "negative_test", T0 + dt.timedelta(hours=1))
    at(T0 + DAY)
    clean = replay(session)
    assert clean.differences == 0 and clean.missing == 0
    assert clean.persons >= 6 and clean.compound_differences == 0
    # Someone edits a stored colour behind the service's back.
    session.execute(
        update(PersonColour)
        .where(PersonColour.subject == travellers[1].subject)
        .values(colour="red")
    )
    session.expire_all()
    tampered = replay(session)
    assert tampered.differences == 1 and tampered.examples == [travellers[1].subject]
    repaired = replay(session, repair=True)
    assert repaired.repaired == 1
    assert replay(session).differences == 0
    assert service.colour_of(session, travellers[1].subject).colour == "yellow"
    assert audits(session, "risk.replay")[-1].detail["differences"] == 0


def test_bad_facts_are_refused(session: Session) -> None:
    with pytest.raises(InvalidInput):
        assert_kind(session, "z" * 32, "close_contact", T0)
    with pytest.raises(InvalidInput, match="health and travel"):
        assert_kind(session, "a" * 32, "bank_deposit", T0)
    with pytest.raises(InvalidInput):
        assert_kind(session, "a" * 32, "close_contact", T0.replace(tzinfo=None))
    with pytest.raises(InvalidInput):
        assert_kind(session, "a" * 32, "close_contact", T0, setting="home")


def test_a_finding_asserted_twice_is_one_fact(session: Session) -> None:
    first = assert_kind(session, "b" * 32, "close_contact", T0, dedupe_key="trace:7")
    again = assert_kind(session, "b" * 32, "close_contact", T0, dedupe_key="trace:7")
    assert first.id == again.id
    assert len(session.scalars(select(Fact).where(Fact.subject == "b" * 32)).all()) == 1


def test_a_colour_read_is_one_statement(session: Session, at: Any) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    people = [resident(session, street) for _ in range(3)]
    for person in people:
        assert_kind(session, person.subject, "secondary_contact", T0)
    service.colour_of(session, "e" * 32)  # installs the rule set on a new database
    session.flush()
    statements: list[str] = []
    connection = session.connection()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(connection, "before_cursor_execute", count)
    try:
        assert service.colour_of(session, people[0].subject).colour == "yellow"
        assert len(statements) == 1
        assert service.colour_of(session, "d" * 32).colour == "green"  # no facts, no row
        assert len(statements) == 2
        statements.clear()
        views = service.colours_of(session, [p.subject for p in people])
        assert {v.colour for v in views.values()} == {"yellow"}
        assert len(statements) == 2  # the active version, then every row at once
    finally:
        event.remove(connection, "before_cursor_execute", count)

"""The cockpit's figures: after real service calls and delivery of their events to the real
handlers, the materialised figures equal a rebuild from the source tables and direct counts;
redelivery changes nothing; alerts name areas, never people."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.apps.cockpit import service
from citybrain.apps.cockpit.models import Alert, Figure, LeafValue
from citybrain.apps.residents.schemas import RegistrationIn
from citybrain.apps.residents.service import register_household, send_sms_code
from citybrain.core.geo.models import Compound
from citybrain.core.people.models import Household, Person
from citybrain.kit import clock
from citybrain.risk import service as risk
from citybrain.risk.models import CompoundTier, Fact, PersonColour
from tests.apps.cockpit.conftest import deliver
from tests.factories import (
    OTHER_DISTRICT_STREET,
    STREET_A,
    first_compound,
    make_user,
    next_synthetic,
)
from tests.risk.conftest import resident
from tests.sms_gateway import running_gateway

DISTRICT = STREET_A[:6]  # 金水区


def _snapshot(session: Session) -> dict[str, Any]:
    session.flush()
    leaves = {(r.area_code, r.measure, r.day): r.value for r in session.scalars(select(LeafValue))}
    figures = {
        (r.area_code, r.measure, r.day): r.value for r in session.scalars(select(Figure)) if r.value
    }
    return {"leaves": leaves, "figures": figures}


def _count(session: Session, statement: Any) -> int:
    return int(session.scalar(statement) or 0)


def test_incremental_figures_equal_rebuild_and_source_counts(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    far = make_user(session, "street_officer", OTHER_DISTRICT_STREET)
    case = resident(session, officer)
    contact = resident(session, officer)
    elsewhere = resident(session, far)
    actor = officer.actor
    risk.assert_fact(
        session,
        actor,
        subject=case.subject,
        kind="confirmed_case",
        source="staff",
        evidence={"record_ids": [1]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    risk.assert_fact(
        session,
        actor,
        subject=contact.subject,
        kind="close_contact",
        source="staff",
        evidence={"record_ids": [2]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    risk.assert_fact(
        session,
        actor,
        subject=contact.subject,
        kind="in_quarantine",
        source="staff",
        evidence={"record_ids": [3]},
        valid_from=clock.now() - dt.timedelta(hours=1),
        setting="home",
    )
    risk.assert_fact(
        session,
        far.actor,
        subject=elsewhere.subject,
        kind="secondary_contact",
        source="staff",
        evidence={"record_ids": [4]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    synthetic = next_synthetic()
    send_sms_code(session, synthetic.phone, client_ip="127.0.0.1")
    register_household(
        session,
        RegistrationIn(
            name=synthetic.name,
            id_number=synthetic.id_number,
            phone=synthetic.phone,
            sms_code=running_gateway().code_for(synthetic.phone),
            compound_code=first_compound(session, STREET_A),
            building="1",
            unit="1",
            room="101",
        ),
        client_ip="127.0.0.1",
    )
    # A resident nothing is known about, alone in a compound: a green code all the same.
    quiet = session.scalars(
        select(Compound.code).where(Compound.code.startswith(STREET_A)).order_by(Compound.code)
    ).all()[5]
    resident(session, officer, compound=quiet)
    assert deliver(session) > 0

    def value(area: str, key: str) -> int | None:
        return service.figure_value(session, area, key)

    assert value(quiet, "codes_green") == 1 and value(quiet, "codes_red") == 0

    # Direct counts from the source tables.
    confirmed = _count(
        session,
        select(func.count(func.distinct(Fact.subject)))
        .join(PersonColour, PersonColour.subject == Fact.subject)
        .where(
            Fact.kind == "confirmed_case",
            Fact.retracted_at.is_(None),
            PersonColour.area_code.startswith(DISTRICT),
        ),
    )
    assert confirmed == 1 and value(DISTRICT, "confirmed_total") == 1
    assert value("4101", "confirmed_today") == 1
    assert value(DISTRICT, "close_contacts") == 1
    assert value(DISTRICT, "close_contacts_controlled") == 1
    assert value(DISTRICT, "secondary_contacts") == 0
    assert value(OTHER_DISTRICT_STREET[:6], "secondary_contacts") == 1
    assert value("4101", "secondary_contacts_controlled") == 0
    # Green codes: the registered residents whose colour is green, or who have no colour row
    # (no fact about them); red and yellow: every subject placed in the area with that colour.
    colour_of = dict(session.execute(select(PersonColour.subject, PersonColour.colour)).all())
    residents = session.scalars(
        select(Person.id_number_bidx).where(Person.area_code.startswith("4101"))
    ).all()
    green = sum(1 for bidx in residents if colour_of.get(bidx[:32], "green") == "green")
    assert value("4101", "codes_green") == green
    assert green > 0 and any(bidx[:32] not in colour_of for bidx in residents)
    for colour in ("red", "yellow", "green"):
        if colour != "green":
            codes = _count(
                session,
                select(func.count())
                .select_from(PersonColour)
                .where(PersonColour.colour == colour, PersonColour.area_code.startswith("4101")),
            )
            assert value("4101", f"codes_{colour}") == codes
        # A compound the engine never had reason to compute is green.
        tiers = _count(
            session,
            select(func.count())
            .select_from(Compound)
            .outerjoin(CompoundTier, CompoundTier.compound_code == Compound.code)
            .where(func.coalesce(CompoundTier.tier, "green") == colour),
        )
        assert value("4101", f"compounds_{colour}") == tiers
    assert value("4101", "codes_red") >= 2  # the case and the close contact
    assert value("4101", "compounds_red") >= 1
    households_today = sum(
        1
        for created in session.scalars(
            select(Household.created_at).where(Household.compound_code.startswith(STREET_A))
        )
        if clock.as_utc(created).astimezone(clock.CHINA_TZ).date() == clock.today_local()
    )
    assert households_today >= 1 and value(STREET_A, "registrations_today") == households_today

    # At-least-once delivery: handling everything again changes nothing.
    before = _snapshot(session)
    session.info["cockpit_test_delivered"] = set()
    deliver(session)
    assert _snapshot(session) == before

    # A rebuild from the source tables gives the same figures.
    service.rebuild(session)
    assert _snapshot(session) == before

    # Retracting the case moves the figures back.
    fact = session.scalar(
        select(Fact).where(Fact.subject == case.subject, Fact.kind == "confirmed_case")
    )
    assert fact is not None
    risk.retract_fact(session, actor, fact.id, reason="病例报告有误，已核实撤销")
    deliver(session)
    assert value(DISTRICT, "confirmed_total") == 0
    retracted = _snapshot(session)
    service.rebuild(session)
    assert _snapshot(session) == retracted


def test_alerts_for_a_case_and_a_red_compound_carry_no_personal_data(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    case = resident(session, officer)
    risk.assert_fact(
        session,
        officer.actor,
        subject=case.subject,
        kind="confirmed_case",
        source="staff",
        evidence={"record_ids": [1]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    deliver(session)
    deliver(session)  # nothing new: no second alert
    rows = list(session.scalars(select(Alert).order_by(Alert.id)))
    kinds = [r.kind for r in rows]
    assert kinds.count("new_case") == 1
    assert kinds.count("compound_red") == 1
    compound = next(r for r in rows if r.kind == "compound_red")
    assert compound.area_code == case.area_code and len(compound.area_code) == 15
    for row in rows:
        assert row.area_code.startswith(STREET_A)
        text = row.title_zh + row.title_en
        assert case.ref not in text and case.subject not in text
        assert "金水区" in row.title_zh
    # Redelivering every event writes no second alert.
    session.info["cockpit_test_delivered"] = set()
    deliver(session)
    assert session.scalar(select(func.count()).select_from(Alert)) == len(rows)


def test_a_case_no_registry_places_counts_for_the_city_only(session: Session) -> None:
    officer = make_user(session, "city_commander", "4101")
    before_city = service.figure_value(session, "4101", "confirmed_total") or 0
    before_district = service.figure_value(session, DISTRICT, "confirmed_total") or 0
    # A subject known only from the lake: no compound, no registered person.
    risk.assert_fact(
        session,
        officer.actor,
        subject=f"{0xC1A0000 + 7:032x}",
        kind="confirmed_case",
        source="analysis.case_report",
        evidence={"case_key": 7},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    deliver(session)
    assert service.figure_value(session, "4101", "confirmed_total") == before_city + 1
    assert service.figure_value(session, DISTRICT, "confirmed_total") == before_district
    assert (service.figure_value(session, "4101", "codes_red") or 0) >= 1
    incremental = _snapshot(session)
    service.rebuild(session)
    assert _snapshot(session) == incremental

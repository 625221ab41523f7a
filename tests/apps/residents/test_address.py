"""A change of address (变更住址): the household moves, or corrects the compound chosen at
registration, all members together; never while someone's code is not green, nor into or out
of a compound under closure or control, whose gate lets only residents through."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import Compound
from citybrain.core.people import service as people_service
from citybrain.core.people.models import Household, Person
from citybrain.kit import clock
from citybrain.kit.crypto import field_cipher
from citybrain.risk import service as risk
from citybrain.risk.models import PersonColour
from citybrain.risk.subjects import subject_of
from tests.apps.residents.conftest import OTHER_COMMUNITY, csrf, person_by_id, registered
from tests.factories import first_compound, next_synthetic_child

ANALYSIS = Actor("system:analysis", "system", None)


def _person(session: Session, id_number: str) -> Person:
    person = person_by_id(session, id_number)
    assert person is not None
    return person


def _move(client: TestClient, compound: str, **fields: str) -> Any:
    data = {
        "csrf_token": csrf(client, "/residents/address"),
        "district": compound[:6],
        "street": compound[:9],
        "community": compound[:12],
        "compound_code": compound,
        "building": "8号楼",
        "unit": "1单元",
        "room": "1203",
    }
    data.update(fields)
    return client.post("/residents/address", data=data, follow_redirects=False)


def _assert(session: Session, person: Person, kind: str, days_ago: int) -> None:
    risk.assert_fact(
        session,
        ANALYSIS,
        subject=subject_of(person),
        kind=kind,
        source="analysis.case_report" if kind == "confirmed_case" else "analysis.contacts",
        evidence={"record_ids": [3]},
        valid_from=clock.now() - dt.timedelta(days=days_ago),
    )


def test_the_household_moves_together(
    resident: TestClient, session: Session, compound: str
) -> None:
    child = next_synthetic_child()
    me = registered(resident, compound, members=[child])
    member = _person(session, child.id_number)
    # An old close contact, long over: green, with a colour row that places the member.
    _assert(session, member, "close_contact", 30)
    assert session.get(PersonColour, subject_of(member)) is not None
    page = resident.get("/residents/address").text
    assert f'<option value="{compound}" selected' in page and 'value="3号楼"' in page
    assert 'data-testid="logout"' in page  # the resident's own header, as on every page
    new = first_compound(session, OTHER_COMMUNITY)
    moved = _move(resident, new)
    assert moved.status_code == 303, moved.text
    assert moved.headers["location"] == "/residents/household?moved=1"
    session.expire_all()
    mine, theirs = _person(session, me.id_number), _person(session, child.id_number)
    assert mine.area_code == theirs.area_code == new
    household = session.get(Household, mine.household_id)
    assert household is not None and household.compound_code == new
    assert household.unit_enc is not None
    unit = field_cipher().decrypt(household.unit_enc, people_service.UNIT_FIELD)
    assert unit == "8号楼/1单元/1203"
    colour_row = session.get(PersonColour, subject_of(theirs))
    assert colour_row is not None and colour_row.area_code == new
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "household.move")).one()
    assert (audit.detail["from"], audit.detail["to"], audit.detail["members"]) == (compound, new, 2)
    event = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "household.moved")).one()
    assert event.payload["from_compound"] == compound and event.payload["compound_code"] == new
    shown = resident.get("/residents/household?moved=1").text
    assert 'data-testid="household-moved"' in shown and "1203" in shown


def test_each_wrong_field_is_named_and_what_was_typed_stays(
    resident: TestClient, session: Session, compound: str
) -> None:
    me = registered(resident, compound)
    answer = _move(resident, compound[:12] + "999", room="", building="=A1")
    assert answer.status_code == 422
    page = html.unescape(answer.text)
    for field in ("compound_code", "room", "building"):
        assert f'data-testid="error-{field}"' in page, field
    assert 'value="=A1"' in html.unescape(answer.text)
    session.expire_all()
    assert _person(session, me.id_number).area_code == compound


def test_not_while_a_member_is_not_green(
    resident: TestClient, session: Session, compound: str
) -> None:
    contact = next_synthetic_child()
    me = registered(resident, compound, members=[contact])
    _assert(session, _person(session, contact.id_number), "close_contact", 1)
    refused = _move(resident, first_compound(session, OTHER_COMMUNITY))
    assert refused.status_code == 409 and "不是绿码" in html.unescape(refused.text)
    session.expire_all()
    assert _person(session, me.id_number).area_code == compound


def test_not_out_of_or_into_a_compound_under_control(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    me = registered(resident, compound)
    elsewhere = first_compound(session, OTHER_COMMUNITY)
    # A case lives in the compound moved to: it is closed (red).
    with TestClient(app, base_url="http://testserver") as neighbour:
        case = registered(neighbour, elsewhere)
    _assert(session, _person(session, case.id_number), "confirmed_case", 0)
    assert risk.tier_of(session, elsewhere).tier == "red"
    into = _move(resident, elsewhere)
    assert into.status_code == 409 and "封控" in html.unescape(into.text)
    assert 'data-testid="error-compound_code"' in into.text
    # A case in one's own compound: nobody registers their way out of it either.
    with TestClient(app, base_url="http://testserver") as next_door:
        sick = registered(next_door, compound)
    _assert(session, _person(session, sick.id_number), "confirmed_case", 0)
    calm = session.scalars(
        select(Compound.code)
        .where(Compound.code.startswith(compound[:12]), Compound.code != compound)
        .order_by(Compound.code)
    ).first()
    assert calm is not None and risk.tier_of(session, calm).tier == "green"
    out = _move(resident, calm)
    assert out.status_code == 409 and "封控" in html.unescape(out.text)
    session.expire_all()
    assert _person(session, me.id_number).area_code == compound

"""Green codes turned by hand (手工转码): a fact recorded by a person that would turn a green
code red or yellow states its basis, is marked with the colour it turned the code to, and
counts against the account's limit in 24 hours; past it the attempt is refused and audited.
Clinics' fever visits, and facts about people already red or yellow, are not turns."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import STREET_A, make_user
from tests.risk.conftest import T0, audits, resident
from tests.risk.test_web import bearer
from tests.web.conftest import csrf_of, log_in

from citybrain.kit.errors import InvalidInput, PermissionDenied
from citybrain.risk import service
from citybrain.risk.models import Fact
from citybrain.risk.settings import reset_risk_settings

HOUR = dt.timedelta(hours=1)


def _facts(session: Session, subject: str) -> list[Fact]:
    return list(session.scalars(select(Fact).where(Fact.subject == subject).order_by(Fact.id)))


def test_a_fact_that_turns_a_green_code_needs_its_basis_and_is_marked(
    session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    clinic = make_user(session, "clinic_staff", STREET_A)
    person, traveller, patient, later = (resident(session, officer) for _ in range(4))

    for note in ("", "  流调 "):  # nothing, or fewer than 4 characters once spaces are folded
        with pytest.raises(InvalidInput) as missing:
            service.record_fact_by_hand(
                session, officer, subject=person.subject, kind="close_contact", note=note
            )
        assert (missing.value.code, missing.value.field) == ("basis_required", "note")
        assert "由绿码转为红码" in missing.value.message_zh
    assert _facts(session, person.subject) == []
    assert service.colour_of(session, person.subject).colour == "green"

    contact = service.record_fact_by_hand(
        session, officer, subject=person.subject, kind="close_contact", note="流调报告 2026-031"
    )
    assert contact.turned_colour == "red" and contact.evidence == {"note": "流调报告 2026-031"}
    assert service.colour_of(session, person.subject).colour == "red"
    assert audits(session, "risk.fact.assert")[-1].detail["turned"] == "green→red"
    assert service.fact_out(contact).turned_colour == "red"

    # Already red: recording their quarantine turns nothing and needs no basis.
    quarantine = service.record_fact_by_hand(
        session,
        officer,
        subject=person.subject,
        kind="in_quarantine",
        setting="home",
        valid_until=T0 + 14 * 24 * HOUR,
    )
    assert quarantine.turned_colour is None
    assert "turned" not in audits(session, "risk.fact.assert")[-1].detail

    # The records it rests on are a basis too; a yellow turn is marked yellow.
    travel = service.record_fact_by_hand(
        session, officer, subject=traveller.subject, kind="risk_area_travel", record_ids=[7, 9]
    )
    assert travel.turned_colour == "yellow" and travel.evidence == {"record_ids": [7, 9]}

    # A clinic's fever visit is its own evidence: no note asked, not a turn.
    visit = service.record_fact_by_hand(
        session, clinic, subject=patient.subject, kind="fever_visit"
    )
    assert (visit.source, visit.turned_colour) == ("fever_clinic", None)
    assert service.colour_of(session, patient.subject).colour == "yellow"

    # A fact dated ahead is judged when it starts to count.
    with pytest.raises(InvalidInput) as ahead:
        service.record_fact_by_hand(
            session,
            officer,
            subject=later.subject,
            kind="close_contact",
            valid_from=T0 + 48 * HOUR,
        )
    assert ahead.value.code == "basis_required"


def test_one_account_turns_only_so_many_green_codes_by_hand_in_a_day(
    session: Session, at: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYBRAIN_RISK_HAND_TURN_DAILY_LIMIT", "2")
    reset_risk_settings()
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    people = [resident(session, officer) for _ in range(5)]

    def turn(who: Any, subject: str) -> Fact:
        return service.record_fact_by_hand(
            session, who, subject=subject, kind="close_contact", note="流调报告 2026-031"
        )

    first = turn(officer, people[0].subject)
    turn(officer, people[1].subject)
    # A withdrawn turn still counted: it happened.
    service.retract_fact(session, officer.actor, first.id, reason="录入错误，已核实")
    with pytest.raises(PermissionDenied) as too_many:
        turn(officer, people[2].subject)
    assert too_many.value.code == "hand_turn_daily_limit"
    assert "上限 2 人" in too_many.value.message_zh
    for keep in too_many.value.after_rollback:
        keep(session)
    refused = audits(session, "risk.fact.assert")[-1]
    assert refused.outcome == "denied" and refused.actor == officer.actor.ref
    assert refused.detail["reason"] == "daily_limit" and refused.detail["in_24h"] == 2
    assert _facts(session, people[2].subject) == []
    assert service.colour_of(session, people[2].subject).colour == "green"

    # What is not a turn goes on: the quarantine of someone already red.
    service.record_fact_by_hand(
        session, officer, subject=people[1].subject, kind="in_quarantine", setting="home"
    )
    # Another account has its own count; a day later the officer's starts again.
    turn(make_user(session, "street_officer", STREET_A), people[2].subject)
    at(T0 + 25 * HOUR)
    assert turn(officer, people[3].subject).turned_colour == "red"


def test_the_person_page_and_the_api_ask_for_the_basis_and_show_the_turn(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    officer = make_user(session, "street_officer", STREET_A, "turner")
    person, other, third = (resident(session, officer) for _ in range(3))
    page = f"/risk/persons/{person.ref}"
    log_in(client, "turner")

    def post(data: dict[str, str]) -> Any:
        return client.post(
            f"{page}/facts",
            data={**data, "csrf_token": csrf_of(client, page)},
            follow_redirects=False,
        )

    refused = post({"kind": "close_contact", "days": "14", "note": ""})
    assert refused.status_code == 422
    assert "由绿码转为红码" in refused.text
    # The form comes back as it was filled in.
    assert re.search(r'<option value="close_contact" selected>', refused.text)
    assert re.search(r'id="days"[^>]*value="14"', refused.text)
    assert _facts(session, person.subject) == []

    done = post({"kind": "close_contact", "days": "14", "note": "流调报告 2026-031"})
    assert done.status_code == 303
    fact = _facts(session, person.subject)[0]
    shown = client.get(page).text
    assert re.search(
        rf'data-testid="turned-{fact.id}"><span class="chip red">手工转码：绿码→红码', shown
    )
    assert "<div>依据：流调报告 2026-031</div>" in shown

    headers = bearer(session, officer.id)
    bare = client.post(
        "/api/v1/risk/facts",
        headers=headers,
        json={"person_ref": other.ref, "kind": "confirmed_case"},
    )
    assert bare.status_code == 422
    error = bare.json()["error"]
    assert (error["code"], error["field"]) == ("basis_required", "note")
    based = client.post(
        "/api/v1/risk/facts",
        headers=headers,
        json={"person_ref": other.ref, "kind": "confirmed_case", "note": "核酸报告 A-17"},
    )
    assert based.status_code == 201 and based.json()["turned_colour"] == "red"

    monkeypatch.setenv("CITYBRAIN_RISK_HAND_TURN_DAILY_LIMIT", "2")
    reset_risk_settings()
    over = client.post(
        "/api/v1/risk/facts",
        headers=headers,
        json={"person_ref": third.ref, "kind": "close_contact", "record_ids": [3]},
    )
    assert over.status_code == 403 and over.json()["error"]["code"] == "hand_turn_daily_limit"
    assert audits(session, "risk.fact.assert")[-1].outcome == "denied"
    assert _facts(session, third.subject) == []

"""The register of green codes turned by hand (手工转码台账, /risk/turns): who turned whose code
red or yellow, on what basis, in the last 1, 7 or 30 days of the jurisdiction, by account,
with the accounts that turned the most; exported masked; reading it audited; not for clinics."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session
from tests.factories import STREET_A, STREET_B, make_user
from tests.risk.conftest import T0, audits, resident
from tests.risk.test_web import bearer
from tests.web.conftest import csrf_of, log_in

from citybrain.risk import service

DAY = dt.timedelta(days=1)


def test_the_register_shows_each_turn_with_its_basis_and_who_by_account_and_window(
    client: TestClient, session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A, "turnera")
    colleague = make_user(session, "street_officer", STREET_A, "turnerb")
    neighbour = make_user(session, "street_officer", STREET_B, "turnerc")
    make_user(session, "clinic_staff", STREET_A, "turnclinic")
    first, second, third = (resident(session, officer) for _ in range(3))
    elsewhere = resident(session, neighbour)

    def turn(who: Any, subject: str, note: str) -> int:
        return service.record_fact_by_hand(
            session, who, subject=subject, kind="close_contact", note=note
        ).id

    one = turn(officer, first.subject, "流调报告 2026-031")
    at(T0 + dt.timedelta(hours=1))
    two = turn(officer, second.subject, "流调报告 2026-032")
    service.retract_fact(session, officer.actor, two, reason="录入错误，已核实")
    three = turn(colleague, third.subject, "通报 第12号")
    other = turn(neighbour, elsewhere.subject, "流调报告 2026-099")
    # Not turns: a quarantine of someone already red; facts from the analysis.
    service.record_fact_by_hand(
        session, officer, subject=first.subject, kind="in_quarantine", setting="home"
    )

    log_in(client, "turnera")
    page = client.get("/risk/turns")
    assert page.status_code == 200
    shown = re.findall(r'data-testid="turn-(\d+)"', page.text)
    assert shown == [str(three), str(two), str(one)]  # newest first; the next street's absent
    assert str(other) not in shown
    assert "共 3 条" in page.text
    card = page.text.split(f'data-testid="turn-{two}"')[1].split('class="card"')[0]
    assert "绿码→红码" in card and "已撤销" in card and "录入错误，已核实" in card
    assert "依据：流调报告 2026-032" in card
    assert "turnera" in card and f'href="/risk/persons/{second.ref}"' in card
    name = re.search(r'data-testid="turn-person">([^<·]+)', card)
    assert name is not None and "*" in name.group(1)  # masked
    accounts = re.findall(r'data-testid="account-turns"><a [^>]*>([^<]+)</a>：(\d+)', page.text)
    assert [(n.split("（")[1].rstrip("）"), int(c)) for n, c in accounts] == [
        ("turnera", 2),
        ("turnerb", 1),
    ]
    assert audits(session, "risk.turns.list")[-1].detail["results"] == 3

    by_account = client.get("/risk/turns?account=turnerb")
    assert re.findall(r'data-testid="turn-(\d+)"', by_account.text) == [str(three)]
    unknown = client.get("/risk/turns?account=nobody")
    assert unknown.status_code == 422 and "未找到该账号" in unknown.text

    exported = client.get("/risk/turns/export.xlsx?account=turnera")
    assert exported.status_code == 200
    sheet = load_workbook(io.BytesIO(exported.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == [two, one]
    assert all("*" in str(r[1]) for r in rows[1:]) and rows[1][5] == "流调报告 2026-032"
    assert audits(session, "risk.turns.export")[-1].detail["results"] == 2

    # Two days on, the last day holds none; the last seven all three.
    at(T0 + 2 * DAY)
    assert 'data-testid="no-turns"' in client.get("/risk/turns?days=1").text
    assert "共 3 条" in client.get("/risk/turns?days=7").text
    assert client.get("/risk/turns?days=3").status_code == 422

    client.post("/logout", data={"csrf_token": csrf_of(client, "/")})
    log_in(client, "turnclinic")
    assert client.get("/risk/turns").status_code == 403


def test_the_register_over_the_api(client: TestClient, session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    clinic = make_user(session, "clinic_staff", STREET_A)
    person = resident(session, officer)
    fact = service.record_fact_by_hand(
        session, officer, subject=person.subject, kind="risk_area_travel", record_ids=[4]
    )
    found = client.get("/api/v1/risk/turns?days=1", headers=bearer(session, officer.id))
    assert found.status_code == 200
    body = found.json()
    assert body["total"] == 1 and body["days"] == 1
    item = body["items"][0]
    assert item["fact"]["id"] == fact.id and item["fact"]["turned_colour"] == "yellow"
    assert "*" in item["person"]["name"] and item["fact"]["evidence"] == {"record_ids": [4]}
    assert body["by_account"] == [
        {"actor": officer.actor.ref, "name": item["recorded_by"], "turns": 1}
    ]
    other = client.get("/api/v1/risk/turns?actor=user:999999", headers=bearer(session, officer.id))
    assert other.json()["total"] == 0
    assert client.get("/api/v1/risk/turns", headers=bearer(session, clinic.id)).status_code == 403


def test_withdrawals_that_turn_a_code_green_are_listed_beside_the_turns_to_red(
    client: TestClient, session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A, "freeera")
    colleague = make_user(session, "street_officer", STREET_A, "freeerb")
    freed, still_red = (resident(session, officer) for _ in range(2))
    contact = service.record_fact_by_hand(
        session, officer, subject=freed.subject, kind="close_contact", note="流调报告 2026-040"
    )
    kept = service.record_fact_by_hand(
        session, officer, subject=still_red.subject, kind="close_contact", note="流调报告 2026-041"
    )
    service.record_fact_by_hand(
        session, officer, subject=still_red.subject, kind="risk_area_travel", record_ids=[7]
    )
    at(T0 + dt.timedelta(hours=1))
    service.retract_fact_by_hand(session, colleague, contact.id, reason="核实无接触史")
    # Still red from another fact: no turn to green, not listed.
    service.retract_fact_by_hand(session, colleague, kept.id, reason="核实无接触史")
    assert contact.freed_colour == "red" and kept.freed_colour is None
    retracted = audits(session, "risk.fact.retract")
    assert [a.detail.get("freed") for a in retracted[-2:]] == ["red→green", None]

    log_in(client, "freeera")
    page = client.get("/risk/turns?way=green")
    assert page.status_code == 200
    assert re.findall(r'data-testid="turn-(\d+)"', page.text) == [str(contact.id)]
    card = page.text.split(f'data-testid="turn-{contact.id}"')[1]
    assert f'data-testid="freed-{contact.id}">红码→绿码' in card and "核实无接触史" in card
    accounts = re.findall(r'data-testid="account-turns"><a [^>]*>([^<]+)</a>：(\d+)', page.text)
    assert [(n.split("（")[1].rstrip("）"), int(c)) for n, c in accounts] == [("freeerb", 1)]
    assert audits(session, "risk.turns.list")[-1].detail["way"] == "green"
    # The turn to red is still in its own list, marked withdrawn.
    reds = re.findall(r'data-testid="turn-(\d+)"', client.get("/risk/turns").text)
    assert str(contact.id) in reds
    person = client.get(f"/risk/persons/{freed.ref}").text
    assert f'data-testid="freed-{contact.id}"' in person and "撤销转绿：红码→绿码" in person

    sheet = load_workbook(
        io.BytesIO(client.get("/risk/turns/export.xlsx?way=green").content)
    ).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert [(r[0], r[4]) for r in rows[1:]] == [(contact.id, "红码→绿码")]

    api = client.get(
        "/api/v1/risk/turns?way=green&actor=" + colleague.actor.ref,
        headers=bearer(session, officer.id),
    ).json()
    assert api["way"] == "green" and [i["fact"]["id"] for i in api["items"]] == [contact.id]
    assert api["items"][0]["fact"]["freed_colour"] == "red"

"""The risk API (/api/v1/risk) and staff pages (/risk): roles, scope, two-person rules, and
forms that work without JavaScript."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session
from tests.factories import (
    STREET_A,
    STREET_B,
    TEST_ACTOR,
    first_compound,
    make_user,
    next_synthetic,
)
from tests.risk.conftest import audits, resident
from tests.risk.test_rules import rules_text
from tests.risk.test_rulesets import SECONDARY_RED
from tests.web.conftest import csrf_of, log_in

from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.service import issue_token
from citybrain.core.geo.models import Compound
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import register_person
from citybrain.kit import clock
from citybrain.risk import service


def bearer(session: Session, user_id: int) -> dict[str, str]:
    user = authz_repository.user_by_id(session, user_id)
    _token, secret = issue_token(session, TEST_ACTOR, name="test", user=user)
    return {"authorization": f"Bearer {secret}"}


def test_staff_see_colours_in_their_jurisdiction_only(client: TestClient, session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    service.assert_fact(
        session,
        officer.actor,
        subject=person.subject,
        kind="close_contact",
        source="staff",
        evidence={"record_ids": [7]},
        valid_from=clock.now(),
    )
    mine = client.get(f"/api/v1/risk/persons/{person.ref}", headers=bearer(session, officer.id))
    assert mine.status_code == 200
    body = mine.json()
    assert body["colour"]["colour"] == "red" and body["facts"][0]["kind"] == "close_contact"
    assert "密切接触者" in body["colour"]["reasons"][0]["text_zh"]
    outsider = make_user(session, "street_officer", STREET_B)
    other = client.get(f"/api/v1/risk/persons/{person.ref}", headers=bearer(session, outsider.id))
    assert other.status_code == 404
    by_subject = client.get(
        f"/api/v1/risk/subjects/{person.subject}", headers=bearer(session, outsider.id)
    )
    assert by_subject.status_code == 404
    viewed = [(a.actor, a.outcome) for a in audits(session, "risk.view")]
    assert viewed == [
        (officer.actor.ref, "ok"),
        (outsider.actor.ref, "denied"),
        (outsider.actor.ref, "denied"),
    ]


def test_clinic_staff_record_tests_but_not_contacts(client: TestClient, session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    clinic = make_user(session, "clinic_staff", STREET_A)
    headers = bearer(session, clinic.id)
    visit = client.post(
        "/api/v1/risk/facts",
        headers=headers,
        json={"person_ref": person.ref, "kind": "fever_visit"},
    )
    assert visit.status_code == 201 and visit.json()["source"] == "fever_clinic"
    assert service.colour_of(session, person.subject).colour == "yellow"
    refused = client.post(
        "/api/v1/risk/facts",
        headers=headers,
        json={"person_ref": person.ref, "kind": "close_contact"},
    )
    assert refused.status_code == 403
    nonsense = client.post(
        "/api/v1/risk/facts",
        headers=headers,
        json={"person_ref": person.ref, "kind": "bank_deposit"},
    )
    assert nonsense.status_code == 422


def test_rule_sets_over_the_api(client: TestClient, session: Session) -> None:
    proposer, first, second = (make_user(session, "city_commander", "4101") for _ in range(3))
    bad = client.post(
        "/api/v1/risk/rule-sets",
        headers=bearer(session, proposer.id),
        json={"yaml_text": rules_text("fact.deposit > 0")},
    )
    assert bad.status_code == 422 and "deposit" in bad.json()["error"]["message"]
    proposed = client.post(
        "/api/v1/risk/rule-sets",
        headers=bearer(session, proposer.id),
        json={"yaml_text": SECONDARY_RED, "note": "次密接改红"},
    )
    assert proposed.status_code == 201, proposed.text
    version = proposed.json()["version"]
    assert proposed.json()["dry_run"]["base_version"] == 1
    once = client.post(
        f"/api/v1/risk/rule-sets/{version}/approve", headers=bearer(session, first.id)
    )
    assert once.status_code == 200 and once.json()["status"] == "proposed"
    twice = client.post(
        f"/api/v1/risk/rule-sets/{version}/approve", headers=bearer(session, first.id)
    )
    assert twice.status_code == 409
    done = client.post(
        f"/api/v1/risk/rule-sets/{version}/approve", headers=bearer(session, second.id)
    )
    assert done.json()["status"] == "active" and len(done.json()["approvals"]) == 2
    listed = client.get("/api/v1/risk/rule-sets", headers=bearer(session, first.id)).json()
    assert [v["status"] for v in listed][:2] == ["active", "superseded"]
    officer = make_user(session, "district_officer", "410105")
    forbidden = client.post(
        "/api/v1/risk/rule-sets",
        headers=bearer(session, officer.id),
        json={"yaml_text": SECONDARY_RED},
    )
    assert forbidden.status_code == 403


def test_overrides_and_appeals_over_the_api(client: TestClient, session: Session) -> None:
    street = make_user(session, "street_officer", STREET_A)
    commander = make_user(session, "city_commander", "4101")
    person = resident(session, street)
    request = client.post(
        "/api/v1/risk/overrides",
        headers=bearer(session, commander.id),
        json={
            "person_ref": person.ref,
            "colour": "red",
            "legal_basis": "传染病防治法第三十九条",
            "reason": "待流调核实",
            "hours": 24,
        },
    )
    assert request.status_code == 201, request.text
    override_id = request.json()["id"]
    too_long = client.post(
        "/api/v1/risk/overrides",
        headers=bearer(session, commander.id),
        json={
            "person_ref": person.ref,
            "colour": "red",
            "legal_basis": "传染病防治法",
            "reason": "待流调核实",
            "hours": 96,
        },
    )
    assert too_long.status_code == 422
    alone = client.post(
        f"/api/v1/risk/overrides/{override_id}/approve", headers=bearer(session, commander.id)
    )
    assert alone.status_code == 403
    assert alone.json()["error"]["code"] == "override_needs_second_approver"
    assert audits(session, "risk.override.approve")[-1].outcome == "denied"
    second = make_user(session, "city_commander", "4101")
    applied = client.post(
        f"/api/v1/risk/overrides/{override_id}/approve", headers=bearer(session, second.id)
    )
    assert applied.status_code == 200 and applied.json()["status"] == "active"
    risk = client.get(
        f"/api/v1/risk/persons/{person.ref}", headers=bearer(session, street.id)
    ).json()
    assert risk["colour"]["overridden"] and risk["colour"]["reasons"][0]["rule_id"] == "override"

    appeal = service.file_appeal(
        session, TEST_ACTOR, subject=person.subject, text="我没有接触史", street_code=STREET_A
    )
    queue = client.get("/api/v1/risk/appeals", headers=bearer(session, street.id))
    assert [a["id"] for a in queue.json()] == [appeal.id]
    decided = client.post(
        f"/api/v1/risk/appeals/{appeal.id}/decide",
        headers=bearer(session, street.id),
        json={"outcome": "rejected", "note": "经核实存在接触史"},
    )
    assert decided.status_code == 200 and decided.json()["status"] == "rejected"
    assert client.get("/api/v1/risk/appeals", headers=bearer(session, street.id)).json() == []


def _form(client: TestClient, path: str, data: dict[str, Any], page: str) -> Any:
    return client.post(
        path, data={**data, "csrf_token": csrf_of(client, page)}, follow_redirects=False
    )


def test_a_clinic_finds_a_patient_by_id_number_in_its_jurisdiction_only(
    client: TestClient, session: Session
) -> None:
    """A fever clinic has the patient's ID card, not a reference: the look-up takes the ID
    number (searched in the jurisdiction and audited, never put in an address) and opens the
    person's page; the people search's person page links there too."""
    street = make_user(session, "street_officer", STREET_A)
    neighbour = make_user(session, "street_officer", STREET_B, "neighbour")
    clinic = make_user(session, "clinic_staff", STREET_A, "fevers")
    patient = next_synthetic()
    registered, _ = register_person(
        session,
        street,
        PersonIn(
            name=patient.name,
            id_number=patient.id_number,
            phone=patient.phone,
            compound_code=first_compound(session, STREET_A),
        ),
    )
    session.commit()
    log_in(client, "fevers")
    found = _form(client, "/risk/lookup", {"ref": patient.id_number.lower()}, "/risk")
    assert found.status_code == 303
    assert found.headers["location"] == f"/risk/persons/{registered.ref}"
    assert patient.id_number not in found.headers["location"]
    page = client.get(found.headers["location"])
    assert page.status_code == 200 and "发热门诊就诊" in page.text  # what a clinic records
    wrong = patient.id_number[:-1] + ("0" if patient.id_number[-1] != "0" else "1")
    invalid = _form(client, "/risk/lookup", {"ref": wrong}, "/risk")
    assert invalid.headers["location"] == "/risk?lookup=invalid"
    shown = client.get("/risk?lookup=invalid").text
    assert 'data-testid="lookup-error"' in shown and "校验位须正确" in shown
    person = client.get(f"/people/{registered.ref}").text
    assert f'href="/risk/persons/{registered.ref}"' in person
    client.post("/logout", data={"csrf_token": csrf_of(client, "/")})

    log_in(client, "neighbour")  # the next street: not theirs to find
    elsewhere = _form(client, "/risk/lookup", {"ref": patient.id_number}, "/risk")
    assert elsewhere.headers["location"] == "/risk?lookup=none"
    assert "辖区内未找到该身份证号码的登记人员" in client.get("/risk?lookup=none").text
    searched = [(a.actor, a.detail["results"]) for a in audits(session, "person.search")]
    assert searched == [(clinic.actor.ref, 1), (neighbour.actor.ref, 0)]


def test_staff_pages_in_chinese(client: TestClient, session: Session) -> None:
    make_user(session, "city_commander", "4101", "proposer")
    make_user(session, "city_commander", "4101", "first")
    street = make_user(session, "street_officer", STREET_A, "streetofficer")
    person = resident(session, street)
    session.commit()
    log_in(client, "proposer")
    overview = client.get("/risk")
    assert overview.status_code == 200 and "健康码风险管理" in overview.text
    proposed = _form(
        client, "/risk/rules", {"yaml_text": SECONDARY_RED, "note": "次密接改红"}, "/risk/rules"
    )
    assert proposed.status_code == 303
    refused = _form(
        client, "/risk/rules", {"yaml_text": rules_text("bank.deposit > 0")}, "/risk/rules"
    )
    assert refused.status_code == 422 and "bank" in refused.text
    rules = client.get("/risk/rules")
    assert "试运行" in rules.text and 'data-testid="approve-2"' not in rules.text  # own proposal
    client.post("/logout", data={"csrf_token": csrf_of(client, "/")})
    log_in(client, "first")
    rules = client.get("/risk/rules")
    assert 'data-testid="approve-2"' in rules.text
    approved = _form(client, "/risk/rules/2/approve", {}, "/risk/rules")
    assert approved.status_code == 303
    rules = client.get("/risk/rules").text
    assert re.search(r'data-testid="approvals-2">1 / 2', rules)
    assert "proposer（proposer）" in rules and "first（first）" in rules  # by name
    assert re.search(r'data-testid="status-2">待批准<', rules)
    client.post("/logout", data={"csrf_token": csrf_of(client, "/")})

    log_in(client, "streetofficer")
    page = client.get(f"/risk/persons/{person.ref}")
    assert page.status_code == 200 and "无风险记录" in page.text
    added = _form(
        client,
        f"/risk/persons/{person.ref}/facts",
        {"kind": "risk_area_travel", "note": "流调报告 2026-031"},
        f"/risk/persons/{person.ref}",
    )
    assert added.status_code == 303
    page = client.get(f"/risk/persons/{person.ref}")
    assert "黄码" in page.text and "中高风险地区旅居史" in page.text
    asked = _form(
        client,
        f"/risk/persons/{person.ref}/override",
        {
            "colour": "green",
            "legal_basis": "指挥部通告第5号",
            "reason": "已有阴性证明",
            "hours": "80",
        },
        f"/risk/persons/{person.ref}",
    )
    assert asked.status_code == 422 and "72" in asked.text
    assert client.get("/risk/appeals").status_code == 200
    assert client.get("/risk/overrides").status_code == 200


def test_the_appeals_page_filters_pages_and_exports_a_masked_workbook(
    client: TestClient, session: Session
) -> None:
    registrars = [make_user(session, "street_officer", s) for s in (STREET_A, STREET_A, STREET_B)]
    district = make_user(session, "district_officer", "410105", "districtofficer")
    filed = []
    for registrar in registrars:
        person = resident(session, registrar)
        fact = service.assert_fact(
            session,
            registrar.actor,
            subject=person.subject,
            kind="close_contact",
            source="analysis.contacts",
            evidence={"case_key": 9},
            valid_from=clock.now() - dt.timedelta(hours=2),
        )
        appeal = service.file_appeal(
            session,
            TEST_ACTOR,
            subject=person.subject,
            text='=HYPERLINK("http://x") 我没有接触史',
            street_code=person.area_code[:9],
        )
        filed.append((appeal, person, fact))
    filed[0][0].deadline = clock.now() - dt.timedelta(hours=1)  # past its deadline
    session.commit()
    log_in(client, "districtofficer")

    page = client.get("/risk/appeals")
    assert re.search(r'data-testid="view-open">待处理 3<', page.text)
    assert re.search(r'data-testid="view-overdue">已逾期 1<', page.text)
    assert f'href="/risk/persons/{filed[0][1].ref}"' in page.text  # the appellant, masked
    assert f'<option value="{filed[0][2].id}">#{filed[0][2].id} 密切接触者' in page.text
    shown = lambda text: set(map(int, re.findall(r'data-testid="appeal-(\d+)"', text)))  # noqa: E731
    assert shown(page.text) == {a.id for a, _, _ in filed}
    assert shown(client.get("/risk/appeals?status=overdue").text) == {filed[0][0].id}
    assert shown(client.get(f"/risk/appeals?street={STREET_B}").text) == {filed[2][0].id}
    outside = client.get("/risk/appeals?street=410102001")
    assert outside.status_code == 400 and "9位代码" in outside.text
    assert shown(outside.text) == {a.id for a, _, _ in filed}  # the whole queue instead

    export = client.get(f"/risk/appeals/export.xlsx?status=open&street={STREET_A}")
    assert export.status_code == 200 and export.headers["content-type"].startswith(
        "application/vnd.openxmlformats"
    )
    assert export.headers["cache-control"] == "no-store"
    assert "attachment" in export.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(export.content)).active
    assert sheet is not None
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:3] == ["编号", "街道", "申诉人"] and len(rows) == 3
    assert [r[0] for r in rows[1:]] == [filed[0][0].id, filed[1][0].id]
    assert all("*" in str(r[2]) for r in rows[1:]) and rows[1][7] == "是"
    cells = [str(v) for row in rows for v in row]
    assert not any("接触史" in v or "HYPERLINK" in v for v in cells)  # the texts stay out
    assert audits(session, "risk.appeal.export")[-1].detail["results"] == 2

    # Deciding from a filtered page goes back to the same filtered page.
    appeal, person, fact = filed[2]
    back = f"status=open&street={STREET_B}"
    decided = _form(
        client,
        f"/risk/appeals/{appeal.id}/decide?{back}",
        {"outcome": "upheld", "note": "核实无接触史", "action": "retract_fact", "fact_id": fact.id},
        f"/risk/appeals?{back}",
    )
    assert decided.status_code == 303 and decided.headers["location"] == f"/risk/appeals?{back}"
    session.expire_all()
    assert service.colour_of(session, person.subject).colour == "green"
    # Half a year after the decision the text is cleared; the page says so.
    with clock.shifted(dt.timedelta(days=181)):
        assert service.purge_expired_appeal_texts(session) == 1
    session.commit()
    decided_page = client.get(f"/risk/appeals?status=decided&street={STREET_B}").text
    assert f'data-testid="text-purged-{appeal.id}"' in decided_page
    assert "HYPERLINK" not in decided_page and "我没有接触史" not in decided_page

    # The same queue over the API: the views, one street, the counts.
    headers = bearer(session, district.id)
    overdue = client.get("/api/v1/risk/appeals?status=overdue", headers=headers).json()
    assert [a["id"] for a in overdue] == [filed[0][0].id] and "*" in overdue[0]["appellant"]["name"]
    summary = client.get("/api/v1/risk/appeals/summary", headers=headers).json()
    assert (summary["open"], summary["overdue"], summary["decided"]) == (2, 1, 1)
    assert [s["code"] for s in summary["streets"]] == [STREET_A]
    assert client.get("/api/v1/risk/appeals?street=4101", headers=headers).status_code == 422


def test_the_override_register_page_has_views_names_and_an_export(
    client: TestClient, session: Session
) -> None:
    officer = make_user(session, "street_officer", STREET_A, "zhangsan")
    make_user(session, "city_commander", "4101", "commanderwang")
    approver = make_user(session, "city_commander", "4101", "commanderli")
    rows, persons = [], []
    for _ in range(2):
        person = resident(session, officer)
        persons.append(person)
        rows.append(
            service.request_override(
                session,
                officer,
                subject=person.subject,
                colour="red",
                legal_basis="=传染病防治法第三十九条",
                reason="待流调核实",
                hours=24,
            )
        )
    service.approve_override(session, approver, rows[1].id)
    service.revoke_override(session, approver, rows[1].id)
    session.commit()
    log_in(client, "commanderwang")

    page = client.get("/risk/overrides")
    assert re.search(r'data-testid="view-open">待批准与生效中 1<', page.text)
    assert re.search(r'data-testid="view-ended">已结束 1<', page.text)
    assert f'data-testid="override-{rows[0].id}"' in page.text
    assert f'data-testid="override-{rows[1].id}"' not in page.text
    assert "zhangsan（zhangsan）" in page.text and "待批准" in page.text
    ended = client.get("/risk/overrides?view=ended")
    assert f'data-testid="override-{rows[1].id}"' in ended.text
    assert "已撤销" in ended.text and "commanderli（commanderli）" in ended.text

    export = client.get("/risk/overrides/export.xlsx?view=ended")
    assert export.status_code == 200
    sheet = load_workbook(io.BytesIO(export.content)).active
    assert sheet is not None
    table = [[c.value for c in row] for row in sheet.iter_rows()]
    assert len(table) == 2 and table[1][0] == rows[1].id and "*" in str(table[1][1])
    assert table[1][4] == "已撤销" and table[1][12] == "commanderli（commanderli）"
    assert table[1][5] == "'=传染病防治法第三十九条"  # a formula trigger made text
    assert audits(session, "risk.override.export")[-1].detail["results"] == 1

    # The person's page tells their manual colours with who did what, and who they are.
    history = client.get(f"/risk/persons/{persons[1].ref}").text
    assert re.search(r'data-testid="person-masked">\S*\*', history)
    assert 'data-testid="override-history"' in history
    assert "已撤销（commanderli（commanderli））" in history and "zhangsan（zhangsan）" in history

    api = client.get(
        "/api/v1/risk/overrides?view=ended", headers=bearer(session, approver.id)
    ).json()
    assert [o["id"] for o in api] == [rows[1].id] and api[0]["ended_by"] == approver.actor.ref
    assert (
        client.get(
            "/api/v1/risk/overrides?view=all", headers=bearer(session, approver.id)
        ).status_code
        == 422
    )


def test_the_overview_counts_codes_as_shown_and_lists_compounds_by_name(
    client: TestClient, session: Session
) -> None:
    officer = make_user(session, "street_officer", STREET_A, "overviewer")
    approver = make_user(session, "city_commander", "4101")
    case, overridden, _plain = (resident(session, officer) for _ in range(3))
    elsewhere = resident(session, make_user(session, "street_officer", STREET_B))
    for person in (case, elsewhere):
        service.assert_fact(
            session,
            officer.actor,
            subject=person.subject,
            kind="confirmed_case",
            source="staff",
            evidence={"record_ids": [1]},
            valid_from=clock.now(),
        )
    asked = service.request_override(
        session,
        officer,
        subject=overridden.subject,
        colour="yellow",
        legal_basis="指挥部通告第5号",
        reason="待核酸结果",
        hours=24,
    )
    service.approve_override(session, approver, asked.id)
    session.commit()
    log_in(client, "overviewer")

    page = client.get("/risk").text
    # As shown: the manual yellow counts yellow, and the resident nothing was ever asserted
    # about (no colour row) counts green; the other street's case is not counted.
    for colour, n in (("red", 1), ("yellow", 1), ("green", 1)):
        assert re.search(rf'data-testid="count-{colour}">{n}<', page), colour
    compound = session.get(Compound, case.area_code)
    assert compound is not None and compound.name in page
    assert f'href="/residents/staff/compounds/{compound.code}"' in page
    assert re.search(r'data-testid="tiers-red">红色（封闭） 1<', page)
    assert "compound-tiers" not in client.get("/risk?tier=yellow").text


def test_a_persons_page_says_who_recorded_and_who_withdrew_each_fact(
    client: TestClient, session: Session
) -> None:
    """The hotline's question, "who set my code?", answered on the page by name."""
    recorder = make_user(session, "street_officer", STREET_A, "recorderli")
    withdrawer = make_user(session, "street_officer", STREET_A, "withdrawerzhao")
    person = resident(session, recorder)
    kept = service.assert_fact(
        session,
        recorder.actor,
        subject=person.subject,
        kind="secondary_contact",
        source="staff",
        evidence={"record_ids": [3]},
        valid_from=clock.now(),
    )
    withdrawn = service.assert_fact(
        session,
        recorder.actor,
        subject=person.subject,
        kind="close_contact",
        source="staff",
        evidence={"record_ids": [4]},
        valid_from=clock.now(),
    )
    service.retract_fact(session, withdrawer.actor, withdrawn.id, reason="核实无接触史")
    session.commit()
    log_in(client, "withdrawerzhao")
    page = client.get(f"/risk/persons/{person.ref}").text
    shown = re.search(rf'data-testid="asserted-by-{kept.id}">([^<]+)<', page)
    assert shown is not None and "登记人：" in shown.group(1) and "（recorderli）" in shown.group(1)
    undone = re.search(rf'data-testid="retracted-by-{withdrawn.id}">([^<]+)<', page)
    assert undone is not None and "核实无接触史" in undone.group(1)
    assert "（withdrawerzhao）" in undone.group(1)

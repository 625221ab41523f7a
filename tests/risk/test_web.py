"""The risk API (/api/v1/risk) and staff pages (/risk): roles, scope, two-person rules, and
forms that work without JavaScript."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.factories import STREET_A, STREET_B, TEST_ACTOR, make_user
from tests.risk.conftest import audits, resident
from tests.risk.test_rules import rules_text
from tests.risk.test_rulesets import SECONDARY_RED
from tests.web.conftest import csrf_of, log_in

from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.service import issue_token
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
    assert re.search(r'data-testid="approvals-2">1 / 2', client.get("/risk/rules").text)
    client.post("/logout", data={"csrf_token": csrf_of(client, "/")})

    log_in(client, "streetofficer")
    page = client.get(f"/risk/persons/{person.ref}")
    assert page.status_code == 200 and "无风险记录" in page.text
    added = _form(
        client,
        f"/risk/persons/{person.ref}/facts",
        {"kind": "risk_area_travel"},
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

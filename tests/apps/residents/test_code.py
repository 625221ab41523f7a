"""The code page (我的健康码): a short-lived code signed afresh on every view, the colour and its
reasons from the risk engine, household members' codes only, and appeals from the page through
the street office's queue to an outcome shown to the person."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import Actor
from citybrain.core.people.models import Person
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.risk import service as risk
from citybrain.risk.models import Appeal
from citybrain.risk.schemas import DecideIn
from citybrain.risk.subjects import subject_of
from tests.apps.residents.conftest import csrf, registered
from tests.factories import STREET_A, make_user, next_synthetic_child

CONTACT_TRACING = Actor("system:analysis", "system", None)


def _person(session: Session, id_number: str) -> Person:
    bidx = blind_index().digest(id_number, "id_number")
    person = session.scalars(select(Person).where(Person.id_number_bidx == bidx)).first()
    assert person is not None
    return person


def _code_text(page: str) -> str:
    """The code the page gives its QR box to draw (static/code-qr.js draws it)."""
    match = re.search(r'<div class="qr"[^>]*data-code="([^"]+)"', page)
    assert match
    return match.group(1)


def test_every_view_signs_a_new_short_lived_code(
    resident: TestClient, session: Session, compound: str
) -> None:
    registered(resident, compound)
    first = resident.get("/residents/code")
    # Signatures are deterministic (RFC 6979): the same claims in the same second give the
    # same code; a view a moment later gives a new one.
    with clock.frozen(clock.now() + dt.timedelta(seconds=2)):
        second = resident.get("/residents/code")
    assert first.headers["cache-control"] == "no-store"
    assert _code_text(first.text) != _code_text(second.text)
    times = re.search(r"生成于 (\d\d:\d\d:\d\d) · 有效至 (\d\d:\d\d:\d\d)", second.text)
    assert times
    issued, expires = (dt.datetime.strptime(t, "%H:%M:%S") for t in times.groups())
    assert dt.timedelta(0) < (expires - issued) % dt.timedelta(days=1) <= dt.timedelta(minutes=5)
    fresh = resident.get("/residents/code/fresh")
    assert fresh.status_code == 200 and 'data-testid="code-card"' in fresh.text
    assert "<html" not in fresh.text  # a fragment for htmx
    assert "无风险记录" in first.text


def test_a_members_code_but_nobody_elses(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    child = next_synthetic_child()
    registered(resident, compound, members=[child])
    member = _person(session, child.id_number)
    page = resident.get(f"/residents/code?member={member.ref}")
    assert page.status_code == 200
    masked = child.name[0] + "*"
    assert f"{masked}" in page.text and child.name not in page.text
    with TestClient(app, base_url="http://testserver") as other_phone:
        stranger = _person(session, registered(other_phone, compound).id_number)
    assert resident.get(f"/residents/code?member={stranger.ref}").status_code == 404
    assert resident.get(f"/residents/code/fresh?member={stranger.ref}").status_code == 404


def test_red_with_reasons_then_an_appeal_to_its_outcome(
    resident: TestClient, session: Session, compound: str
) -> None:
    me = _person(session, registered(resident, compound).id_number)
    risk.assert_fact(
        session,
        CONTACT_TRACING,
        subject=subject_of(me),
        kind="close_contact",
        source="analysis.contacts",
        evidence={"run_id": 7},
        valid_from=clock.now() - dt.timedelta(days=1),
    )
    page = resident.get("/residents/code").text
    assert 'data-colour="red"' in page and "密切接触者" in page
    assert 'data-testid="reason-until"' in page
    token = csrf(resident, "/residents/code")
    short = resident.post("/residents/appeal", data={"csrf_token": token, "text": "不对"})
    assert short.status_code == 422 and 'data-testid="error-text"' in short.text
    assert ">不对</textarea>" in short.text
    filed = resident.post(
        "/residents/appeal",
        data={"csrf_token": token, "text": "我当天不在该地点，已做核酸检测阴性"},
        follow_redirects=False,
    )
    assert filed.status_code == 303
    shown = resident.get(filed.headers["location"]).text
    assert "申诉已提交" in shown and "处理中" in shown and "处理期限" in shown
    appeal = session.scalars(select(Appeal).where(Appeal.subject == subject_of(me))).one()
    assert appeal.street_code == compound[:9] and appeal.filed_by == f"resident:{me.ref}"
    officer = make_user(session, "street_officer", STREET_A)
    risk.decide_appeal(
        session,
        officer,
        appeal.id,
        DecideIn(outcome="rejected", note="接触记录核实无误"),
    )
    decided = resident.get("/residents/code").text
    assert "申诉不成立" in decided and 'data-testid="appeal-outcome"' in decided
    assert 'data-testid="risk-notice"' in decided


def test_the_newest_notice_stands_above_the_code_and_older_ones_fold_away(
    resident: TestClient, session: Session, compound: str
) -> None:
    me = _person(session, registered(resident, compound).id_number)
    start = clock.now()
    with clock.frozen(start):
        contact = risk.assert_fact(
            session,
            CONTACT_TRACING,
            subject=subject_of(me),
            kind="close_contact",
            source="analysis.contacts",
            evidence={"run_id": 7},
            valid_from=start - dt.timedelta(days=1),
        )
        assert risk.tell_colour_changed(session, subject_of(me), "green", "red")
    with clock.frozen(start + dt.timedelta(hours=1)):
        risk.retract_fact(session, CONTACT_TRACING, contact.id, reason="核实不在同一车厢")
        assert risk.tell_colour_changed(session, subject_of(me), "red", "green")
    page = resident.get("/residents/code").text
    newest = re.findall(r'data-testid="risk-notice">([^<]*)', page)
    assert len(newest) == 1 and "绿码" in newest[0] and "红码" not in newest[0]
    assert page.index('data-testid="risk-notice"') < page.index('data-testid="code-card"')
    older = re.search(
        r'data-testid="older-notices"><summary>([^<]*)</summary>(.*?)</details>', page, re.S
    )
    assert older is not None and older.group(1) == "更早的通知（1 条）"
    assert "已转为红码" in older.group(2)


def test_a_view_reads_the_rule_set_once_and_judges_all_by_the_one_in_force(
    resident: TestClient, session: Session, compound: str
) -> None:
    """The colour's read sees the rule set in force; the compound's tier and the household's
    colours are judged by the same, without reading it again, and follow a new version."""
    from sqlalchemy import event

    from citybrain.risk.rulesets import approve_rule_set, propose_rule_set
    from tests.risk.test_rulesets import SECONDARY_RED

    child = next_synthetic_child()
    registered(resident, compound, members=[child])
    member = _person(session, child.id_number)
    risk.assert_fact(
        session,
        CONTACT_TRACING,
        subject=subject_of(member),
        kind="secondary_contact",
        source="analysis.contacts",
        evidence={"case_key": 1},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        page = resident.get("/residents/code")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert page.status_code == 200
    assert sum("FROM rule_sets" in s for s in statements) == 1, statements
    assert "黄码" in page.text  # the member, a secondary contact, by version 1
    commanders = [make_user(session, "city_commander", "4101") for _ in range(3)]
    proposal = propose_rule_set(session, commanders[0], SECONDARY_RED)
    approve_rule_set(session, commanders[1], proposal.version)
    approve_rule_set(session, commanders[2], proposal.version)
    after = resident.get("/residents/code").text
    assert 'data-colour="green"' in after and "黄码" not in after and "红码" in after
    assert re.search(r'data-testid="tier"[^>]*data-tier="green"', after)

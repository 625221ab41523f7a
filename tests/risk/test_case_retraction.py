"""Withdrawing a diagnosis takes two people (撤销病例记录须两人办理): a confirmed case or an
asymptomatic infection withdrawn by hand is first asked for, and withdrawn only when another
account confirms within 72 hours; the one who asked cannot confirm; an appeal cannot do it
alone; other facts are withdrawn at once."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.factories import STREET_A, STREET_B, make_user
from tests.risk.conftest import T0, audits, household, resident
from tests.risk.test_web import bearer
from tests.web.conftest import csrf_of, log_in

from citybrain.core.audit.service import Actor
from citybrain.kit.errors import Conflict, InvalidInput
from citybrain.risk import service
from citybrain.risk.models import Fact
from citybrain.risk.schemas import DecideIn

HOUR = dt.timedelta(hours=1)


def _case(session: Session, who: Any, subject: str) -> Fact:
    return service.record_fact_by_hand(
        session, who, subject=subject, kind="confirmed_case", note="核酸报告 A-17"
    )


def test_a_case_is_withdrawn_by_two_people_and_its_household_contacts_with_it(
    session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    colleague = make_user(session, "street_officer", STREET_A)
    sick, partner = household(session, officer, 2)
    case = _case(session, officer, sick.subject)
    assert service.colour_of(session, partner.subject).colour == "red"  # household contact

    asked = service.retract_fact_by_hand(session, officer, case.id, reason="录入人员有误")
    assert asked.retracted_at is None and asked.retraction_requested_by == officer.actor.ref
    assert service.fact_out(asked).retraction_pending
    assert service.colour_of(session, sick.subject).colour == "red"  # still counts
    assert audits(session, "risk.fact.retract_request")[-1].object_id == str(case.id)

    with pytest.raises(Conflict) as alone:
        service.retract_fact_by_hand(session, officer, case.id, reason="我自己确认")
    assert alone.value.code == "retraction_needs_second_person"
    for keep in alone.value.after_rollback:
        keep(session)
    assert audits(session, "risk.fact.retract")[-1].outcome == "denied"

    at(T0 + 2 * HOUR)
    done = service.retract_fact_by_hand(session, colleague, case.id, reason="核实为同名误录")
    assert done.retracted_by == colleague.actor.ref
    assert done.retraction_reason == "录入人员有误（确认：核实为同名误录）"
    withdrawn = [a for a in audits(session, "risk.fact.retract") if a.object_id == str(case.id)]
    assert withdrawn[-1].outcome == "ok"
    assert withdrawn[-1].detail["requested_by"] == officer.actor.ref
    assert service.colour_of(session, sick.subject).colour == "green"
    assert service.colour_of(session, partner.subject).colour == "green"


def test_a_request_lapses_after_72_hours_and_other_facts_go_at_once(
    session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    colleague = make_user(session, "street_officer", STREET_A)
    person, contact = (resident(session, officer) for _ in range(2))
    case = _case(session, officer, person.subject)
    service.retract_fact_by_hand(session, officer, case.id, reason="录入人员有误")
    # Past 72 hours the request has lapsed: the next call asks again, in its own name.
    at(T0 + 73 * HOUR)
    again = service.retract_fact_by_hand(session, colleague, case.id, reason="重新申请撤销")
    assert again.retracted_at is None and again.retraction_requested_by == colleague.actor.ref
    assert not service.fact_out(_case(session, officer, contact.subject)).retraction_pending

    other = service.record_fact_by_hand(
        session, officer, subject=contact.subject, kind="close_contact", note="流调报告 2026-031"
    )
    gone = service.retract_fact_by_hand(session, officer, other.id, reason="核实无接触")
    assert gone.retracted_by == officer.actor.ref and gone.retraction_requested_by is None


def test_an_appeal_cannot_withdraw_a_case_alone(session: Session, at: Any) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    case = _case(session, officer, person.subject)
    appeal = service.file_appeal(
        session,
        Actor(f"resident:{person.ref}", "resident", person.area_code),
        subject=person.subject,
        text="我没有确诊，是同名误录",
        street_code=STREET_A,
    )
    with pytest.raises(InvalidInput) as refused:
        service.decide_appeal(
            session,
            officer,
            appeal.id,
            DecideIn(outcome="upheld", note="核实误录", action="retract_fact", fact_id=case.id),
        )
    assert refused.value.field == "fact_id" and "两人办理" in refused.value.message_zh


def test_the_person_page_and_the_api_ask_then_confirm(client: TestClient, session: Session) -> None:
    first = make_user(session, "street_officer", STREET_A, "askfirst")
    second = make_user(session, "street_officer", STREET_A, "asksecond")
    person = resident(session, first)
    case = _case(session, first, person.subject)
    page = f"/risk/persons/{person.ref}"

    log_in(client, "askfirst")
    shown = client.get(page).text
    assert "申请撤销" in shown and "须两人办理" in shown
    asked = client.post(
        f"{page}/facts/{case.id}/retract",
        data={"reason": "录入人员有误", "csrf_token": csrf_of(client, page)},
        follow_redirects=False,
    )
    assert asked.status_code == 303
    shown = client.get(page).text
    pending = re.search(rf'data-testid="retraction-pending-{case.id}">([^<]+)', shown)
    assert (
        pending is not None
        and "askfirst" in pending.group(1)
        and "待另一人确认" in pending.group(1)
    )
    assert f'data-testid="retract-form-{case.id}"' not in shown  # not for the one who asked

    api = client.post(
        f"/api/v1/risk/facts/{case.id}/retract",
        headers=bearer(session, first.id),
        json={"reason": "我自己确认"},
    )
    assert api.status_code == 409
    assert api.json()["error"]["code"] == "retraction_needs_second_person"
    confirmed = client.post(
        f"/api/v1/risk/facts/{case.id}/retract",
        headers=bearer(session, second.id),
        json={"reason": "核实为同名误录"},
    )
    assert confirmed.status_code == 200
    assert confirmed.json()["retracted_at"] is not None
    assert confirmed.json()["retraction_requested_by"] == first.actor.ref
    assert service.colour_of(session, person.subject).colour == "green"


def test_the_queue_lists_waiting_requests_in_the_jurisdiction_until_confirmed_declined_or_lapsed(
    session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    colleague = make_user(session, "street_officer", STREET_A)
    elsewhere = make_user(session, "street_officer", STREET_B)
    first, second, third = (resident(session, officer) for _ in range(3))
    cases = [_case(session, officer, p.subject) for p in (first, second, third)]
    for case in cases:
        service.retract_fact_by_hand(session, officer, case.id, reason="录入人员有误")
        at(T0 + HOUR)

    queue = service.retraction_requests(session, colleague)
    assert queue.total == 3 and [r.fact.id for r in queue.items] == [c.id for c in cases]
    assert officer.name in queue.items[0].requested_by
    assert queue.items[0].lapses_at == T0 + 72 * HOUR
    assert queue.items[0].person is not None and queue.items[0].person.ref == first.ref
    assert audits(session, "risk.retractions.list")[-1].actor == colleague.actor.ref
    assert service.retraction_requests(session, elsewhere).total == 0  # another street's

    # Turned down by another, taken back by the one who asked: the case counts on, and the
    # trail keeps who asked, why, who declined and why.
    service.decline_retraction_request(session, colleague, cases[0].id, reason="报告核实无误")
    service.decline_retraction_request(session, officer, cases[1].id, reason="申请填错人员")
    declined = audits(session, "risk.fact.retract_request_decline")
    assert [a.actor for a in declined] == [colleague.actor.ref, officer.actor.ref]
    assert declined[0].detail["requested_by"] == officer.actor.ref
    assert declined[0].detail["request_reason"] == "录入人员有误"
    assert service.colour_of(session, first.subject).colour == "red"
    assert not service.fact_out(cases[0]).retraction_pending
    assert [r.fact.id for r in service.retraction_requests(session, colleague).items] == [
        cases[2].id
    ]
    with pytest.raises(Conflict) as nothing:
        service.decline_retraction_request(session, colleague, cases[0].id, reason="再次驳回")
    assert nothing.value.code == "no_retraction_request"

    at(T0 + 75 * HOUR)  # the last request lapsed
    assert service.retraction_requests(session, colleague).total == 0


def test_the_second_person_confirms_from_the_queue_page(
    client: TestClient, session: Session
) -> None:
    asker = make_user(session, "street_officer", STREET_A, "queueasker")
    make_user(session, "street_officer", STREET_A, "queueconfirm")
    person, other = (resident(session, asker) for _ in range(2))
    case = _case(session, asker, person.subject)
    kept = _case(session, asker, other.subject)
    for fact in (case, kept):
        service.retract_fact_by_hand(session, asker, fact.id, reason="录入人员有误")

    log_in(client, "queueasker")
    mine = client.get("/risk/retractions").text
    assert f'data-testid="confirm-retraction-{case.id}"' not in mine  # not for the one who asked
    assert "撤回申请" in mine and 'href="/risk/retractions"' in mine  # in the risk menu

    log_in(client, "queueconfirm")
    reminder = re.search(
        r'data-testid="retractions-waiting"><a href="/risk/retractions">([^<]+)',
        client.get("/risk").text,
    )
    assert reminder is not None and reminder.group(1).startswith("2 条")
    page = client.get("/risk/retractions").text
    assert f'data-testid="confirm-retraction-{case.id}"' in page
    assert "queueasker" in page and "录入人员有误" in page
    declined = client.post(
        f"/risk/retractions/{kept.id}/decline",
        data={"reason": "报告核实无误", "csrf_token": csrf_of(client, "/risk/retractions")},
        follow_redirects=False,
    )
    assert declined.status_code == 303
    late = client.post(  # confirming what was turned down is refused, not asked anew
        f"/risk/retractions/{kept.id}/confirm",
        data={"reason": "核实为同名误录", "csrf_token": csrf_of(client, "/risk/retractions")},
    )
    assert late.status_code == 409 and "没有待确认的撤销申请" in late.text
    assert session.get(Fact, kept.id).retraction_requested_by is None  # type: ignore[union-attr]
    confirmed = client.post(
        f"/risk/retractions/{case.id}/confirm",
        data={"reason": "核实为同名误录", "csrf_token": csrf_of(client, "/risk/retractions")},
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    assert service.colour_of(session, person.subject).colour == "green"
    assert service.colour_of(session, other.subject).colour == "red"
    assert 'data-testid="no-retractions"' in client.get("/risk/retractions").text
    assert 'data-testid="retractions-waiting"' not in client.get("/risk").text

    api = client.get("/api/v1/risk/retraction-requests", headers=bearer(session, asker.id))
    assert api.status_code == 200 and api.json()["total"] == 0

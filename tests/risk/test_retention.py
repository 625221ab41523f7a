"""Facts about a person are not kept for ever (事实数据到期删除): once every fact lies past the
retention period and the code shows green with nothing set by hand, the facts and the stored
colour go; a case's record, a colour still shown, and anything recent stay; replay agrees."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories import STREET_A, make_user
from tests.risk.conftest import T0, audits, resident

from citybrain.core.audit.service import Actor
from citybrain.risk import service
from citybrain.risk.models import Fact, PersonColour
from citybrain.risk.rulesets import replay

ANALYSIS = Actor("system:analysis", "system", None)
DAY = dt.timedelta(days=1)


def _assert(session: Session, subject: str, kind: str, valid_from: dt.datetime) -> Fact:
    return service.assert_fact(
        session,
        ANALYSIS,
        subject=subject,
        kind=kind,
        source="analysis.case_report" if kind == "confirmed_case" else "analysis.contacts",
        evidence={"record_ids": [1]},
        valid_from=valid_from,
    )


def _facts(session: Session, subject: str) -> int:
    return int(session.scalar(select(func.count()).where(Fact.subject == subject)) or 0)


def test_the_facts_of_a_person_at_rest_go_and_everything_else_stays(
    session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    contact, case, recent, fever = (resident(session, officer) for _ in range(4))
    _assert(session, contact.subject, "close_contact", T0 - DAY)
    _assert(session, case.subject, "confirmed_case", T0 - DAY)
    _assert(session, case.subject, "released", T0 + 20 * DAY)
    # A fever visit with no negative test stays yellow however old it is.
    _assert(session, fever.subject, "fever_visit", T0)
    at(T0 + 100 * DAY)
    _assert(session, recent.subject, "close_contact", T0 + 99 * DAY)
    assert service.colour_of(session, contact.subject).colour == "green"

    # 180 days (the default) after the last of the contact's facts: nothing yet.
    at(T0 + 180 * DAY - dt.timedelta(hours=1))
    assert service.purge_expired_facts(session) == 0
    at(T0 + 181 * DAY)
    assert service.purge_expired_facts(session) == 1
    assert _facts(session, contact.subject) == 0
    assert session.get(PersonColour, contact.subject) is None
    assert service.colour_of(session, contact.subject).colour == "green"
    # The case's record stays, released or not; so do the yellow fever visit and recent facts.
    assert _facts(session, case.subject) == 2
    assert _facts(session, fever.subject) == 1
    assert service.colour_of(session, fever.subject).colour == "yellow"
    assert _facts(session, recent.subject) == 1
    purge = audits(session, "risk.facts_purge")[-1]
    assert purge.detail["deleted"] == 1 and purge.detail["retention_days"] == 180
    # Colours recomputed from what is left agree with what is stored.
    assert replay(session).differences == 0
    assert service.purge_expired_facts(session) == 0


def test_a_colour_set_by_hand_keeps_the_facts_under_it(session: Session, at: Any) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    approver = make_user(session, "city_commander", "4101")
    person = resident(session, officer)
    _assert(session, person.subject, "close_contact", T0 - DAY)
    at(T0 + 200 * DAY)
    request = service.request_override(
        session,
        officer,
        subject=person.subject,
        colour="yellow",
        legal_basis="《传染病防治法》第三十九条",
        reason="复核行程期间",
        hours=24,
    )
    service.approve_override(session, approver, request.id)
    assert service.purge_expired_facts(session) == 0
    assert _facts(session, person.subject) == 1
    # Once the manual colour ends, the person is at rest.
    at(T0 + 202 * DAY)
    assert service.purge_expired_facts(session) == 1

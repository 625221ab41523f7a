"""A manual colour needs two different people and a legal basis, is shown with its reason,
told to the person, audited, and ends by itself; an appeal goes through the street office's
queue to an outcome the person sees."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.factories import STREET_A, STREET_B, make_user
from tests.risk.conftest import T0, audits, events, resident

from citybrain.core.audit.service import Actor
from citybrain.kit.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from citybrain.risk import service
from citybrain.risk.models import Override
from citybrain.risk.schemas import DecideIn

HOUR = dt.timedelta(hours=1)
RESIDENT = Actor("resident:1", "resident", None)


def override_for(session: Session, requester: Any, subject: str, hours: int = 48) -> Override:
    return service.request_override(
        session,
        requester,
        subject=subject,
        colour="red",
        legal_basis="《传染病防治法》第三十九条",
        reason="疑似接触者，待核酸检测",
        hours=hours,
    )


def test_an_override_with_one_approver_is_refused(session: Session, at: Any) -> None:
    at(T0)
    commander = make_user(session, "city_commander", "4101")
    person = resident(session, make_user(session, "street_officer", STREET_A))
    request = override_for(session, commander, person.subject)
    with pytest.raises(PermissionDenied) as alone:
        service.approve_override(session, commander, request.id)
    error = alone.value
    assert error.code == "override_needs_second_approver"
    assert "两名不同人员" in error.message_zh and "two different people" in error.message_en
    # The refused attempt is kept in the audit log even though its transaction rolls back.
    for keep in error.after_rollback:
        keep(session)
    denied = audits(session, "risk.override.approve")[-1]
    assert (denied.outcome, denied.actor) == ("denied", commander.actor.ref)
    assert service.colour_of(session, person.subject).colour == "green"
    # A street officer may ask but not approve.
    officer = make_user(session, "street_officer", STREET_A)
    with pytest.raises(PermissionDenied):
        service.approve_override(session, officer, request.id)


def test_an_override_needs_a_legal_basis_and_lasts_72_hours_at_most(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    with pytest.raises(InvalidInput) as too_long:
        override_for(session, officer, person.subject, hours=73)
    assert too_long.value.field == "hours" and "72" in too_long.value.message_zh
    with pytest.raises(InvalidInput) as baseless:
        service.request_override(
            session,
            officer,
            subject=person.subject,
            colour="red",
            legal_basis=" ",
            reason="疑似接触者",
            hours=24,
        )
    assert baseless.value.field == "legal_basis"
    # Outside the officer's street the person does not exist for them.
    other = make_user(session, "street_officer", STREET_B)
    with pytest.raises(NotFound):
        override_for(session, other, person.subject)


def test_two_people_apply_an_override_that_is_shown_audited_told_and_expires(
    session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    approver = make_user(session, "city_commander", "4101")
    person = resident(session, officer)
    request = override_for(session, officer, person.subject, hours=48)
    assert service.colour_of(session, person.subject).colour == "green"
    at(T0 + HOUR)
    applied = service.approve_override(session, approver, request.id)
    assert (applied.status, applied.expires_at) == ("active", T0 + 49 * HOUR)
    view = service.colour_of(session, person.subject)
    assert (view.colour, view.overridden, view.until) == ("red", True, T0 + 49 * HOUR)
    reason = view.reasons[0]
    assert reason.rule_id == "override" and f"override:{request.id}" in reason.evidence
    assert "人工赋码" in reason.text_zh and "传染病防治法" in reason.text_zh
    assert officer.actor.ref in reason.text_zh and approver.actor.ref in reason.text_zh
    approved = audits(session, "risk.override.approve")[-1]
    assert approved.outcome == "ok" and approved.detail["requested_by"] == officer.actor.ref
    assert audits(session, "risk.override.request")[-1].actor == officer.actor.ref
    notice = events(session, "risk.override_applied")[-1]
    assert notice["subject"] == person.subject and notice["colour"] == "red"
    told = service.notifications_of(session, person.subject)
    assert told[0].kind == "override_applied" and "法律依据" in told[0].text_zh
    with pytest.raises(Conflict):
        service.approve_override(session, make_user(session, "city_commander", "4101"), request.id)
    # It ends by itself.
    at(T0 + 49 * HOUR + dt.timedelta(seconds=1))
    after = service.colour_of(session, person.subject)
    assert (after.colour, after.overridden) == ("green", False)
    assert session.get(Override, request.id).status == "expired"  # type: ignore[union-attr]
    assert audits(session, "risk.override.expire")[-1].object_id == str(request.id)
    assert events(session, "risk.colour_changed")[-1]["new"] == "green"


def test_an_appeal_runs_through_the_street_queue_to_an_outcome(session: Session, at: Any) -> None:
    at(T0)
    registrar = make_user(session, "street_officer", STREET_A)
    person = resident(session, registrar)
    fact = service.assert_fact(
        session,
        registrar.actor,
        subject=person.subject,
        kind="close_contact",
        source="analysis.contacts",
        evidence={"case_key": 5},
        valid_from=T0,
    )
    assert service.colour_of(session, person.subject).colour == "red"
    appeal = service.file_appeal(
        session,
        RESIDENT,
        subject=person.subject,
        text="当天我不在该车厢，有购票记录为证",
        street_code=person.area_code[:9],
    )
    assert (appeal.status, appeal.colour) == ("open", "red")
    assert appeal.deadline == T0 + 24 * HOUR
    with pytest.raises(Conflict):
        service.file_appeal(
            session, RESIDENT, subject=person.subject, text="再次申诉", street_code=STREET_A
        )
    # The street office sees it, another street's does not; the district sees its streets.
    street = make_user(session, "street_officer", STREET_A)
    queue = service.appeal_queue(session, street)
    assert [a.id for a in queue] == [appeal.id] and queue[0].text.startswith("当天我不在")
    assert service.appeal_queue(session, make_user(session, "street_officer", STREET_B)) == []
    assert appeal.id in [
        a.id
        for a in service.appeal_queue(session, make_user(session, "district_officer", "410105"))
    ]
    with pytest.raises(NotFound):
        service.decide_appeal(
            session,
            make_user(session, "street_officer", STREET_B),
            appeal.id,
            DecideIn(outcome="rejected", note="不在本街道"),
        )
    at(T0 + 30 * HOUR)
    assert service.appeal_queue(session, street)[0].overdue
    decided = service.decide_appeal(
        session,
        street,
        appeal.id,
        DecideIn(
            outcome="upheld",
            note="核实购票记录，不在同一车厢",
            action="retract_fact",
            fact_id=fact.id,
        ),
    )
    assert decided.status == "upheld" and decided.fact_id == fact.id
    assert service.colour_of(session, person.subject).colour == "green"
    mine = service.appeals_of(session, person.subject)
    assert mine[0].status == "upheld" and "申诉成立" in (mine[0].outcome_zh or "")
    assert service.notifications_of(session, person.subject)[0].kind == "appeal_decided"
    decision = audits(session, "risk.appeal.decide")[-1]
    assert decision.detail["outcome"] == "upheld" and decision.detail["overdue"] is True
    assert events(session, "risk.appeal_decided")[-1]["outcome"] == "upheld"
    assert audits(session, "risk.fact.retract")[-1].object_id == str(fact.id)
    assert service.appeal_queue(session, street) == []


def test_an_upheld_appeal_may_ask_for_an_override_which_still_needs_a_second_person(
    session: Session, at: Any
) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    person = resident(session, street)
    service.assert_fact(
        session,
        street.actor,
        subject=person.subject,
        kind="risk_area_travel",
        source="screening",
        evidence={},
        valid_from=T0,
    )
    appeal = service.file_appeal(
        session,
        RESIDENT,
        subject=person.subject,
        text="我只是过境，未下车",
        street_code=person.area_code[:9],
    )
    decided = service.decide_appeal(
        session,
        street,
        appeal.id,
        DecideIn(
            outcome="upheld",
            note="过境未停留",
            action="request_override",
            override_colour="green",
            legal_basis="《郑州市疫情防控指挥部通告》第5号",
            hours=24,
        ),
    )
    assert decided.override_id is not None
    assert service.colour_of(session, person.subject).colour == "yellow"
    service.approve_override(
        session, make_user(session, "city_commander", "4101"), decided.override_id
    )
    view = service.colour_of(session, person.subject)
    assert (view.colour, view.overridden) == ("green", True)
    again = service.file_appeal(
        session, RESIDENT, subject=person.subject, text="请彻底删除记录", street_code=STREET_A
    )
    with pytest.raises(InvalidInput):
        service.decide_appeal(
            session,
            street,
            again.id,
            DecideIn(outcome="rejected", note="记录属实，驳回", action="retract_fact"),
        )


def test_notifications_past_their_retention_are_purged_and_the_overrides_stay(
    session: Session, at: Any
) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    approver = make_user(session, "city_commander", "4101")
    person = resident(session, officer)
    applied = []
    # Two overrides 60 days apart, each told to the person.
    for start in (T0, T0 + dt.timedelta(days=60)):
        at(start)
        request = override_for(session, officer, person.subject, hours=24)
        applied.append(service.approve_override(session, approver, request.id).id)
        at(start + 25 * HOUR)  # it ran out (ended by the next read)
        assert service.colour_of(session, person.subject).overridden is False
    assert len(service.notifications_of(session, person.subject)) == 2
    # 91 days after the first: it is past the 90 days kept; the second is not.
    at(T0 + dt.timedelta(days=91))
    assert service.purge_expired_notifications(session) == 1
    left = service.notifications_of(session, person.subject)
    assert len(left) == 1 and left[0].kind == "override_applied"
    # The overrides themselves stay, with their audit rows.
    assert all(session.get(Override, override_id) is not None for override_id in applied)
    purge = audits(session, "risk.notifications_purge")[-1]
    assert purge.detail["deleted"] == 1 and purge.detail["retention_days"] == 90
    assert service.purge_expired_notifications(session) == 0
    assert len(audits(session, "risk.notifications_purge")) == 1

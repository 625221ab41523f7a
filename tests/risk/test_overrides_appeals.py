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
from citybrain.risk.settings import reset_risk_settings

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
    # Who did it, by unit, role and name, never an internal account reference.
    assert f"编号 {request.id}" in reason.text_zh
    assert f"由金水区经八路街道 街道防控专员 {officer.display_name}申请" in reason.text_zh
    approver_zh = f"郑州市 市指挥部指挥长 {approver.display_name}"
    assert f"、{approver_zh}批准" in reason.text_zh
    assert "user:" not in reason.text_zh and "user:" not in reason.text_en
    assert f"{officer.display_name}, Street officer, " in reason.text_en
    approved = audits(session, "risk.override.approve")[-1]
    assert approved.outcome == "ok" and approved.detail["requested_by"] == officer.actor.ref
    assert audits(session, "risk.override.request")[-1].actor == officer.actor.ref
    notice = events(session, "risk.override_applied")[-1]
    assert notice["subject"] == person.subject and notice["colour"] == "red"
    told = service.notifications_of(session, person.subject)
    assert told[0].kind == "override_applied" and "法律依据" in told[0].text_zh
    assert f"批准人：{approver_zh}" in told[0].text_zh and "user:" not in told[0].text_zh
    with pytest.raises(Conflict):
        service.approve_override(session, make_user(session, "city_commander", "4101"), request.id)
    # It ends by itself.
    at(T0 + 49 * HOUR + dt.timedelta(seconds=1))
    after = service.colour_of(session, person.subject)
    assert (after.colour, after.overridden) == ("green", False)
    assert session.get(Override, request.id).status == "expired"  # type: ignore[union-attr]
    assert audits(session, "risk.override.expire")[-1].object_id == str(request.id)
    assert events(session, "risk.colour_changed")[-1]["new"] == "green"


def test_one_person_turns_only_so_many_codes_by_hand_in_a_day(
    session: Session, at: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Manual colours are for single cases: past the day's limit a request, or an approval,
    is refused and the attempt audited; a change for many belongs in a rule version."""
    monkeypatch.setenv("CITYBRAIN_RISK_OVERRIDE_DAILY_LIMIT", "2")
    reset_risk_settings()
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    approver = make_user(session, "city_commander", "4101")
    people = [resident(session, officer) for _ in range(4)]
    first, second = (override_for(session, officer, p.subject) for p in people[:2])
    with pytest.raises(PermissionDenied) as too_many:
        override_for(session, officer, people[2].subject)
    assert too_many.value.code == "override_daily_limit"
    assert "上限 2 次" in too_many.value.message_zh and "rule version" in too_many.value.message_en
    for keep in too_many.value.after_rollback:
        keep(session)
    refused = audits(session, "risk.override.request")[-1]
    assert refused.outcome == "denied" and refused.detail["reason"] == "daily_limit"
    # The approver's own count: two approvals, then the third request (another requester's)
    # is refused for them.
    other = make_user(session, "district_officer", "410105")
    third = override_for(session, other, people[2].subject)
    for row in (first, second):
        service.approve_override(session, approver, row.id)
    with pytest.raises(PermissionDenied) as approver_limit:
        service.approve_override(session, approver, third.id)
    assert approver_limit.value.code == "override_daily_limit"
    assert "批准" in approver_limit.value.message_zh
    service.approve_override(session, make_user(session, "city_commander", "4101"), third.id)
    # A day later the count starts again.
    at(T0 + 25 * HOUR)
    assert override_for(session, officer, people[3].subject).status == "requested"


def test_the_override_register_shows_every_manual_colour_with_who_did_it(
    session: Session, at: Any
) -> None:
    """The register (人工赋码台账) keeps the ended ones too, names who requested, approved and
    ended each, shows the person masked, and stays inside the jurisdiction."""
    officer = make_user(session, "street_officer", STREET_A, "wang")
    approver = make_user(session, "city_commander", "4101", "lisi")
    made = []
    for hours, then in enumerate(("requested", "active", "revoked", "rejected")):
        at(T0 + hours * HOUR)
        person = resident(session, officer)
        row = override_for(session, officer, person.subject)
        if then in ("active", "revoked"):
            service.approve_override(session, approver, row.id)
        if then == "revoked":
            service.revoke_override(session, approver, row.id)
        if then == "rejected":
            service.reject_override(session, approver, row.id)
        made.append((row.id, person))
    ids = [i for i, _ in made]

    assert service.override_summary(session, approver) == {
        "open": 2,
        "requested": 1,
        "active": 1,
        "ended": 2,
    }
    assert [o.id for o in service.override_register(session, approver)] == [ids[1], ids[0]]
    assert [o.id for o in service.override_register(session, approver, view="requested")] == [
        ids[0]
    ]
    ended = service.override_register(session, approver, view="ended")
    assert [(o.id, o.status) for o in ended] == [(ids[3], "rejected"), (ids[2], "revoked")]
    assert ended[1].ended_by == approver.actor.ref
    assert ended[1].names[approver.actor.ref] == "lisi（lisi）"
    assert ended[1].names[officer.actor.ref] == "wang（wang）"
    assert ended[1].person is not None and ended[1].person.ref == made[2][1].ref
    assert "*" in ended[1].person.name
    assert audits(session, "risk.override.list")[-1].detail == {
        "view": "ended",
        "offset": 0,
        "results": 2,
    }
    assert [o.id for o in service.override_register(session, approver, offset=1, limit=1)] == [
        ids[0]
    ]

    elsewhere = make_user(session, "street_officer", STREET_B)
    assert service.override_summary(session, elsewhere) == dict.fromkeys(
        ("open", "requested", "active", "ended"), 0
    )
    assert service.override_register(session, elsewhere, view="ended") == []
    with pytest.raises(InvalidInput) as refused:
        service.override_register(session, approver, view="all")
    assert refused.value.field == "view"
    assert len(service.override_export(session, approver, view="ended")) == 2
    assert audits(session, "risk.override.export")[-1].detail["results"] == 2


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


def test_the_appeals_queue_filters_by_view_and_street_counts_and_pages(
    session: Session, at: Any
) -> None:
    """A district sees its streets' queue as a worklist: open, overdue and decided views, one
    street at a time, a page at a time, each appellant masked; the counts say how it stands."""
    registrar_a = make_user(session, "street_officer", STREET_A)
    registrar_b = make_user(session, "street_officer", STREET_B)
    filed = {}
    for key, registrar, hours in (("a1", registrar_a, 0), ("b1", registrar_b, 0),
                                  ("a2", registrar_a, 10), ("a3", registrar_a, 20)):  # fmt: skip
        at(T0 + hours * HOUR)
        person = resident(session, registrar)
        appeal = service.file_appeal(
            session,
            RESIDENT,
            subject=person.subject,
            text=f"申诉{key}：当天不在现场",
            street_code=person.area_code[:9],
        )
        filed[key] = (appeal.id, person)
    at(T0 + 30 * HOUR)  # a1 and b1 are past their 24 hours; a2 and a3 are not
    service.decide_appeal(
        session, registrar_a, filed["a3"][0], DecideIn(outcome="rejected", note="核实属实，驳回")
    )
    district = make_user(session, "district_officer", "410105")

    summary = service.appeal_summary(session, district)
    assert (summary.open, summary.overdue, summary.decided) == (3, 2, 1)
    assert [(s.code, s.open, s.overdue) for s in summary.streets] == [
        (STREET_A, 2, 1),
        (STREET_B, 1, 1),
    ]
    assert summary.streets[0].name == "经八路街道"
    one_street = service.appeal_summary(session, district, street=STREET_A)
    assert (one_street.open, one_street.overdue, one_street.decided) == (2, 1, 1)

    def ids(**filters: Any) -> list[int]:
        return [a.id for a in service.appeal_queue(session, district, **filters)]

    assert ids() == [filed["a1"][0], filed["b1"][0], filed["a2"][0]]  # nearest deadline first
    assert ids(status="overdue") == [filed["a1"][0], filed["b1"][0]]
    assert ids(status="decided") == [filed["a3"][0]]
    assert ids(street=STREET_B) == [filed["b1"][0]]
    assert ids(status="overdue", street=STREET_A) == [filed["a1"][0]]
    assert ids(offset=2, limit=1) == [filed["a2"][0]]
    assert audits(session, "risk.appeal.list")[-1].detail == {
        "status": "open",
        "offset": 2,
        "results": 1,
    }

    first = service.appeal_queue(session, district, limit=1)[0]
    assert first.appellant is not None and first.appellant.ref == filed["a1"][1].ref
    assert "*" in first.appellant.name and first.appellant.phone
    assert "****" in first.appellant.phone and first.appellant.compound_name

    # A street outside the jurisdiction, or a view that does not exist, is refused by name.
    for bad in ({"street": STREET_B}, {"street": "4101050"}, {"status": "late"}):
        with pytest.raises(InvalidInput) as refused:
            service.appeal_queue(session, registrar_a, **bad)
        assert refused.value.field == next(iter(bad))

    exported = service.appeal_export(session, district, status="decided")
    assert [a.id for a in exported] == [filed["a3"][0]] and exported[0].status == "rejected"
    assert audits(session, "risk.appeal.export")[-1].detail["results"] == 1


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


def test_appeal_texts_are_cleared_after_their_retention_and_the_outcomes_stay(
    session: Session, at: Any
) -> None:
    at(T0)
    street = make_user(session, "street_officer", STREET_A)
    decided, still_open = (resident(session, street) for _ in range(2))
    first = service.file_appeal(
        session, RESIDENT, subject=decided.subject, text="当天我在外地出差", street_code=STREET_A
    )
    service.file_appeal(
        session, RESIDENT, subject=still_open.subject, text="请核实我的行程", street_code=STREET_A
    )
    service.decide_appeal(session, street, first.id, DecideIn(outcome="rejected", note="记录属实"))
    # 180 days after the decision the text is kept; a day later it is cleared.
    at(T0 + dt.timedelta(days=180))
    assert service.purge_expired_appeal_texts(session) == 0
    at(T0 + dt.timedelta(days=181))
    assert service.purge_expired_appeal_texts(session) == 1
    (mine,) = service.appeals_of(session, decided.subject)
    assert (mine.text, mine.text_purged, mine.status) == ("", True, "rejected")
    assert "申诉不成立" in (mine.outcome_zh or "")
    # An open appeal keeps its text however old; a second run clears nothing more.
    (other,) = service.appeals_of(session, still_open.subject)
    assert other.text == "请核实我的行程" and not other.text_purged
    assert service.purge_expired_appeal_texts(session) == 0
    purge = audits(session, "risk.appeal_texts_purge")[-1]
    assert purge.detail["deleted"] == 1 and purge.detail["retention_days"] == 180

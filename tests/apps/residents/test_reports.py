"""Daily health reports (每日健康打卡): one per person per day, correctable the same day, for
oneself or a household member; fever or symptoms flag it for staff and never become a risk
fact."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.apps.residents import service
from citybrain.apps.residents.models import HealthReport
from citybrain.apps.residents.schemas import HealthReportIn
from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.models import Person
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.kit.errors import NotFound
from citybrain.risk.models import Fact
from tests.apps.residents.conftest import csrf, registered
from tests.factories import next_synthetic_child


def _person(session: Session, id_number: str) -> Person:
    bidx = blind_index().digest(id_number, "id_number")
    person = session.scalars(select(Person).where(Person.id_number_bidx == bidx)).first()
    assert person is not None
    return person


def _post(client: TestClient, **data: Any) -> Any:
    data["csrf_token"] = csrf(client, "/residents/report")
    return client.post("/residents/report", data=data, follow_redirects=False)


def test_one_report_per_person_per_day_corrected_the_same_day(
    resident: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    me = _person(session, person.id_number)
    first = _post(resident, person_ref=me.ref, temperature="36.6", whereabouts="home")
    assert first.status_code == 303
    assert "已保存今日打卡" in resident.get(first.headers["location"]).text
    report = session.scalars(select(HealthReport).where(HealthReport.person_ref == me.ref)).one()
    assert (report.temperature, report.flagged, report.corrections) == (36.6, False, 0)
    assert report.report_date == clock.today_local() and report.area_code == compound

    # The same day: a second report corrects the first, it does not add one.
    again = _post(
        resident,
        person_ref=me.ref,
        temperature="38.2",
        symptoms=["cough", "fatigue"],
        whereabouts="away",
    )
    assert again.status_code == 303
    rows = session.scalars(select(HealthReport).where(HealthReport.person_ref == me.ref)).all()
    assert len(rows) == 1
    session.refresh(rows[0])
    assert (rows[0].temperature, rows[0].flagged, rows[0].corrections) == (38.2, True, 1)
    assert rows[0].symptoms == ["cough", "fatigue"] and rows[0].whereabouts == "away"
    page = resident.get("/residents/report").text
    assert "今日已打卡" in page and "社区工作人员会与您联系" in page
    assert 'value="38.2"' in page

    # The next day is a new report.
    tomorrow = clock.now() + dt.timedelta(days=1)
    with clock.frozen(tomorrow):
        service.submit_report(
            session,
            me,
            HealthReportIn(person_ref=me.ref, temperature="36.5", whereabouts="home"),
        )
    count = session.scalar(
        select(func.count()).select_from(HealthReport).where(HealthReport.person_ref == me.ref)
    )
    assert count == 2


def test_a_flagged_report_is_not_a_risk_fact(
    resident: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    me = _person(session, person.id_number)
    facts_before = session.scalar(select(func.count()).select_from(Fact))
    _post(resident, person_ref=me.ref, temperature="39.0", whereabouts="home")
    report = session.scalars(select(HealthReport).where(HealthReport.person_ref == me.ref)).one()
    assert report.flagged
    assert session.scalar(select(func.count()).select_from(Fact)) == facts_before
    event = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == "residents.health_report.submitted")
    ).all()[-1]
    assert event.payload["flagged"] is True and event.payload["person_ref"] == me.ref
    assert "risk.fact_asserted" not in {
        e.topic for e in session.scalars(select(OutboxEvent).where(OutboxEvent.key == me.ref))
    }
    # The code stays as the facts say: green.
    assert 'data-colour="green"' in resident.get("/residents/code").text


def test_report_for_a_household_member_but_nobody_else(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    child = next_synthetic_child()
    person = registered(resident, compound, members=[child])
    me, member = _person(session, person.id_number), _person(session, child.id_number)
    ok = _post(resident, person_ref=member.ref, temperature="36.8", whereabouts="home")
    assert ok.status_code == 303
    report = session.scalars(
        select(HealthReport).where(HealthReport.person_ref == member.ref)
    ).one()
    assert report.reported_by == me.ref
    with TestClient(app, base_url="http://testserver") as other_phone:
        stranger = registered(other_phone, compound)
    other = _person(session, stranger.id_number)
    with pytest.raises(NotFound):
        service.submit_report(
            session,
            me,
            HealthReportIn(person_ref=other.ref, temperature="36.5", whereabouts="home"),
        )


@pytest.mark.parametrize(
    ("temperature", "whereabouts", "symptoms", "field", "words"),
    [
        ("", "home", [], "temperature", "请填写体温"),
        ("abc", "home", [], "temperature", "体温须为数字"),
        ("45", "home", [], "temperature", "体温应在34.0–43.0℃之间"),
        ("36.5", "", [], "whereabouts", "请选择今天在家还是外出"),
        ("36.5", "home", ["plague"], "symptoms", "症状选项无效"),
    ],
)
def test_report_errors_name_the_field_and_keep_the_input(
    resident: TestClient,
    session: Session,
    compound: str,
    temperature: str,
    whereabouts: str,
    symptoms: list[str],
    field: str,
    words: str,
) -> None:
    person = registered(resident, compound)
    me = _person(session, person.id_number)
    bad = _post(
        resident,
        person_ref=me.ref,
        temperature=temperature,
        whereabouts=whereabouts,
        symptoms=symptoms,
    )
    assert bad.status_code == 422
    assert f'data-testid="error-{field}"' in bad.text and words in bad.text
    if temperature:
        assert f'value="{temperature}"' in bad.text
    assert (
        session.scalars(select(HealthReport).where(HealthReport.person_ref == me.ref)).first()
        is None
    )


def test_reports_past_their_retention_are_purged_unless_still_awaiting_follow_up(
    resident: TestClient, session: Session, compound: str
) -> None:
    me = _person(session, registered(resident, compound).id_number)
    today = clock.today_local()
    # Days back, flagged, followed up: two old ones go; an old flagged one nobody has followed
    # up yet stays in the staff's queue; the one on the last kept day stays.
    for days, flagged, followed in ((31, False, False), (40, True, True), (45, True, False)):
        session.add(
            HealthReport(
                person_ref=me.ref,
                report_date=today - dt.timedelta(days=days),
                area_code=compound,
                temperature=38.0 if flagged else 36.5,
                symptoms=["cough"] if flagged else [],
                whereabouts="home",
                flagged=flagged,
                reported_by=me.ref,
                corrections=0,
                created_at=clock.now(),
                updated_at=clock.now(),
                followed_up_at=clock.now() if followed else None,
                followed_up_by="staff" if followed else None,
            )
        )
    service.submit_report(
        session, me, HealthReportIn(person_ref=me.ref, temperature="36.6", whereabouts="home")
    )
    with clock.frozen(clock.now() + dt.timedelta(days=30)):
        assert service.purge_expired_reports(session) == 2
    left = session.scalars(
        select(HealthReport.report_date).where(HealthReport.person_ref == me.ref)
    ).all()
    assert sorted(left) == [today - dt.timedelta(days=45), today]
    audit = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "residents.reports_purge")
    ).one()
    assert audit.detail["deleted"] == 2 and audit.detail["retention_days"] == 30
    with clock.frozen(clock.now() + dt.timedelta(days=30)):
        assert service.purge_expired_reports(session) == 0

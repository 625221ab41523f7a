"""Freshness and stale-source alerts from the intake ledger, closed-loop times from traces
and their facts, and ``citybrain cockpit rebuild`` as a real process on a migrated database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.analysis.models import ContactTrace
from citybrain.apps.cockpit import service
from citybrain.apps.cockpit.models import Alert, Figure
from citybrain.core.audit.service import Actor
from citybrain.core.geo.models import Place
from citybrain.datahub.catalog import catalog
from citybrain.datahub.models import IntakeFile
from citybrain.healthcode import cards
from citybrain.healthcode.codes import verify_card
from citybrain.healthcode.keys import trust_list
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.kit.errors import PermissionDenied
from citybrain.risk import service as risk
from citybrain.risk.settings import reset_risk_settings
from tests.apps.cockpit.conftest import deliver
from tests.cli.test_cli import cli_env, run  # noqa: F401 - fixture
from tests.factories import STREET_A, make_person, make_user
from tests.risk.conftest import resident

STAFF = Actor("user:77", "street_officer", None)


def _ledger(session: Session, category: str, accepted: int, at: dt.datetime, n: int) -> None:
    # A row of the data centre's intake ledger, as its ingestion writes one per file.
    session.add(
        IntakeFile(
            file_id=f"F{n:08d}",
            sha256="0" * 64,
            category=category,
            name=f"{category}_{n}.csv",
            size_bytes=100,
            status="ingested",
            received=accepted,
            accepted=accepted,
            ingested_at=at,
        )
    )
    session.flush()


# Noon in Zhengzhou: what a test puts "minutes ago" falls on the day the cockpit counts (a real
# clock just after local midnight would put it on yesterday).
NOON = dt.datetime(2026, 3, 10, 12, 0, tzinfo=clock.CHINA_TZ).astimezone(dt.UTC)


def test_freshness_counts_today_and_a_stale_feed_alerts_once(session: Session) -> None:
    with clock.frozen(NOON):
        _ledger_and_freshness(session, NOON)


def _ledger_and_freshness(session: Session, now: dt.datetime) -> None:
    _ledger(session, "rail_ticket", 120, now - dt.timedelta(hours=60), 1)
    _ledger(session, "fever_visit", 7, now - dt.timedelta(minutes=5), 2)
    _ledger(session, "fever_visit", 5, now - dt.timedelta(minutes=1), 3)
    service.source_ingested(session, "rail_ticket")
    service.source_ingested(session, "fever_visit")
    rows = {f.category: f for f in service.freshness(session)}
    assert rows["fever_visit"].records_today == 12 and not rows["fever_visit"].stale
    assert rows["rail_ticket"].records_today == 0 and rows["rail_ticket"].stale
    assert service.figure_value(session, "4101", "fever_visits_today") == 12
    alerted = service.check_freshness(session)
    assert alerted == ["rail_ticket"]
    assert service.check_freshness(session) == []  # once per lapse
    alert = session.scalar(select(Alert).where(Alert.kind == "source_stale"))
    assert alert is not None and alert.area_code == "4101"
    assert "铁路" in alert.title_zh or "rail" in alert.title_en


def test_a_feed_that_never_sends_anything_is_alerted_once_its_interval_after_first_watched(
    session: Session,
) -> None:
    feeds = {c: s for c, s in catalog().items() if s.is_feed and s.stale_after_hours}
    daily = {c for c, s in feeds.items() if s.stale_after_hours <= 24}
    assert "lab_test" in daily and "rail_ticket" in feeds
    with clock.frozen(NOON):
        # The first look finds nothing from anyone: too early to tell a silent feed.
        assert service.check_freshness(session) == []
    later = NOON + dt.timedelta(hours=25)
    with clock.frozen(later):
        _ledger(session, "lab_test", 3, later - dt.timedelta(hours=1), 1)
        service.source_ingested(session, "lab_test")
        alerted = service.check_freshness(session)
        # Every feed due within a day and silent since the first look; not the one that came,
        # not those with longer intervals, not our own apps' categories.
        assert set(alerted) == daily - {"lab_test"} and alerted
        assert service.check_freshness(session) == []  # once
        titles = session.scalars(select(Alert.title_zh).where(Alert.kind == "source_stale"))
        assert all("未接入" in t for t in titles)
    with clock.frozen(NOON + dt.timedelta(days=15)):
        # Now the longer intervals have passed too, and the feed that came has lapsed.
        alerted = set(service.check_freshness(session))
        assert alerted == set(feeds) - daily | {"lab_test"}


def test_loop_times_from_a_trace_and_its_contact_facts(session: Session) -> None:
    with clock.frozen(NOON):
        _trace_and_its_contact_fact(session, NOON)


def _trace_and_its_contact_fact(session: Session, now: dt.datetime) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    contact = resident(session, officer)
    session.add(
        ContactTrace(
            case_key=424242,
            found_at=now - dt.timedelta(minutes=40),
            arrived_at=now - dt.timedelta(minutes=30),
            traced_at=now - dt.timedelta(minutes=20),
            seconds=600.0,
            close_contacts=1,
            secondary_contacts=0,
            result_path="contacts/case_424242.parquet",
        )
    )
    session.flush()
    risk.assert_fact(
        session,
        officer.actor,
        subject=contact.subject,
        kind="close_contact",
        source="analysis.contacts",
        evidence={"case_key": 424242},
        valid_from=now - dt.timedelta(hours=2),
        dedupe_key="trace:424242",
    )
    deliver(session)
    loop = service.overview(session, officer, None).loop
    assert loop.cases == 1
    assert loop.arrival_to_contacts_min == pytest.approx(10.0, abs=0.1)
    assert loop.contacts_to_codes_min == pytest.approx(20.0, abs=0.5)
    # The last step: the contact is not under control yet; then the street records them in
    # home isolation 45 minutes after their code changed.
    assert (loop.close_contacts, loop.contacts_controlled, loop.codes_to_control_min) == (
        1,
        0,
        None,
    )
    with clock.frozen(now + dt.timedelta(minutes=45)):
        isolated = risk.assert_fact(
            session,
            officer.actor,
            subject=contact.subject,
            kind="in_quarantine",
            source="staff",
            evidence={},
            valid_from=clock.now(),
            setting="home",
        )
        deliver(session)
    loop = service.overview(session, officer, None).loop
    assert (loop.close_contacts, loop.contacts_controlled) == (1, 1)
    assert loop.codes_to_control_min == pytest.approx(45.0, abs=0.5)
    # A withdrawn record of it takes the step back.
    risk.retract_fact(session, officer.actor, isolated.id, reason="登记有误")
    deliver(session)
    loop = service.overview(session, officer, None).loop
    assert (loop.contacts_controlled, loop.codes_to_control_min) == (0, None)
    assert loop.arrival_to_codes_min == pytest.approx(30.0, abs=0.5)


@pytest.mark.slow
def test_rebuild_command_prints_counts_and_fills_the_figures(
    cli_env: dict[str, str],  # noqa: F811 - fixture
) -> None:
    run(cli_env, "geo", "load")
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    try:
        with database.unit_of_work() as session:
            for n in range(3):
                risk.assert_fact(
                    session,
                    STAFF,
                    subject=f"{n + 1:x}" * 32,
                    kind="confirmed_case",
                    source="staff",
                    evidence={"record_ids": [n]},
                    valid_from=clock.now() - dt.timedelta(hours=1),
                    compound_code="410105001001001",
                )
        result = run(cli_env, "cockpit", "rebuild")
        counts = json.loads(result.stdout.strip().splitlines()[-1])
        assert counts["leaf_values"] >= 2 and counts["figures"] > 0
        with database.unit_of_work() as session:
            total = session.scalar(
                select(Figure.value).where(
                    Figure.area_code == "410105",
                    Figure.measure == "confirmed_total",
                    Figure.day == clock.today_local(),
                )
            )
        assert total == 3
    finally:
        database.dispose()


def test_a_street_with_appeals_past_their_deadline_is_alerted_once_a_day(
    session: Session,
) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    with clock.frozen(NOON):
        for _ in range(2):
            person = resident(session, officer)
            risk.file_appeal(
                session,
                Actor("resident:1"),
                subject=person.subject,
                text="当天不在现场，请核实",
                street_code=STREET_A,
            )
        assert service.check_overdue_appeals(session) == []  # within their 24 hours
    with clock.frozen(NOON + dt.timedelta(hours=25)):
        assert service.check_overdue_appeals(session) == [STREET_A]
        assert service.check_overdue_appeals(session) == []  # once a day a street
        alert = session.scalar(select(Alert).where(Alert.kind == "appeal_overdue"))
        assert alert is not None and alert.area_code == STREET_A
        assert alert.title_zh == "申诉逾期未处理：金水区经八路街道（2 件）"
    with clock.frozen(NOON + dt.timedelta(hours=49)):
        assert service.check_overdue_appeals(session) == [STREET_A]  # the next day, again


def test_close_contacts_not_under_control_past_the_deadline_alert_their_street_once_a_day(
    session: Session,
) -> None:
    officer = make_user(session, "street_officer", STREET_A)

    def fact(subject: str, kind: str, **extra: object) -> None:
        risk.assert_fact(
            session,
            officer.actor,
            subject=subject,
            kind=kind,
            source="analysis.contacts",
            evidence={"record_ids": [1]},
            valid_from=clock.now() - dt.timedelta(hours=1),
            **extra,  # type: ignore[arg-type]
        )

    with clock.frozen(NOON):
        contacts = [resident(session, officer) for _ in range(3)]
        for contact in contacts:
            fact(contact.subject, "close_contact")
        fact("ef" * 16, "close_contact")  # found by the analysis, placed nowhere
        assert service.check_uncontrolled_contacts(session) == []  # just found
    with clock.frozen(NOON + dt.timedelta(hours=6)):
        fact(contacts[0].subject, "in_quarantine", setting="home")
    with clock.frozen(NOON + dt.timedelta(hours=13)):  # past the 12 hours
        assert service.check_uncontrolled_contacts(session) == ["4101", STREET_A]
        assert service.check_uncontrolled_contacts(session) == []  # once a day an area
        titles = dict(
            session.execute(
                select(Alert.area_code, Alert.title_zh).where(Alert.kind == "contacts_uncontrolled")
            ).all()
        )
        # Two of the street's three: the one in home isolation is under control.
        assert titles[STREET_A] == "密接超12小时未管控：金水区经八路街道（2 人）"
        assert titles["4101"] == "密接超12小时未管控：未落位（1 人）"
    with clock.frozen(NOON + dt.timedelta(hours=40)):  # the day after
        for contact in contacts[1:]:
            fact(contact.subject, "in_quarantine", setting="facility")
        assert service.check_uncontrolled_contacts(session) == ["4101"]


def test_an_account_refused_one_more_hand_turned_code_is_alerted_by_name_once_a_day(
    session: Session, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("CITYBRAIN_RISK_HAND_TURN_DAILY_LIMIT", "1")
    reset_risk_settings()
    request.addfinalizer(reset_risk_settings)  # the next test reads the default again
    officer = make_user(session, "street_officer", STREET_A, "turns")
    people = [resident(session, officer) for _ in range(3)]

    def turn(subject: str) -> None:
        risk.record_fact_by_hand(
            session, officer, subject=subject, kind="close_contact", note="流调报告 2026-031"
        )

    def refused(subject: str) -> None:
        with pytest.raises(PermissionDenied) as limit:
            turn(subject)
        for keep in limit.value.after_rollback:
            keep(session)

    with clock.frozen(NOON):
        turn(people[0].subject)
        deliver(session)
        assert session.scalars(select(Alert).where(Alert.kind == "hand_turn_limit")).all() == []
        refused(people[1].subject)
        refused(people[2].subject)
        deliver(session)
        alerts = session.scalars(select(Alert).where(Alert.kind == "hand_turn_limit")).all()
        assert [(a.area_code, a.title_zh) for a in alerts] == [
            (
                STREET_A,
                f"手工转码达到上限：金水区经八路街道 街道防控专员 {officer.display_name}"
                "（24小时内已转 1 人）",
            )
        ]
        # The person it tried to turn is not named.
        assert people[1].ref not in alerts[0].title_zh


def test_an_account_turning_many_codes_green_by_hand_is_alerted_by_name_once_a_day(
    session: Session, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("CITYBRAIN_RISK_HAND_FREE_DAILY_ALERT", "2")
    reset_risk_settings()
    request.addfinalizer(reset_risk_settings)
    officer = make_user(session, "street_officer", STREET_A, "frees")
    people = [resident(session, officer) for _ in range(3)]
    with clock.frozen(NOON):
        contacts = [
            risk.record_fact_by_hand(
                session, officer, subject=p.subject, kind="close_contact", note="流调报告 2026-050"
            )
            for p in people
        ]
        risk.retract_fact_by_hand(session, officer, contacts[0].id, reason="核实无接触史")
        deliver(session)
        assert session.scalars(select(Alert).where(Alert.kind == "hand_free_many")).all() == []
        for contact in contacts[1:]:  # no refusal past the number: only the alert
            risk.retract_fact_by_hand(session, officer, contact.id, reason="核实无接触史")
        assert all(c.retracted_at is not None for c in contacts)
        deliver(session)
        alerts = session.scalars(select(Alert).where(Alert.kind == "hand_free_many")).all()
        assert [(a.area_code, a.title_zh) for a in alerts] == [
            (
                STREET_A,
                f"手工转绿较多：金水区经八路街道 街道防控专员 {officer.display_name}"
                "（24小时内撤销事实转绿 2 人）",
            )
        ]
        assert all(p.ref not in alerts[0].title_zh for p in people)


def test_an_ended_card_shown_at_a_gate_alerts_the_holders_street_once_a_day(
    session: Session,
) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    masked, person = make_person(session, officer)
    printable = cards.issue_by_staff(session, officer, masked.ref)
    cards.end_by_staff(session, officer, printable.card.id, "lost")
    verified = verify_card(printable.text, trust_list(session))
    gates = session.scalars(select(Place.code).where(Place.compound_code == masked.area_code)).all()
    assert len(gates) >= 2
    deliver(session)
    # Shown at two gates: one alert for the street that day, naming nobody.
    for gate in gates[:2]:
        assert cards.note_presentation(session, officer.actor, verified, gate, "exit")
    deliver(session)
    alerts = session.scalars(select(Alert).where(Alert.kind == "card_presented")).all()
    assert [(a.area_code, a.title_zh) for a in alerts] == [
        (STREET_A, "已挂失或作废的纸质健康卡在闸机被出示：金水区经八路街道（请社区核实）")
    ]
    assert person.name not in alerts[0].title_zh and person.id_number[-4:] not in alerts[0].title_zh
    # The next day, again.
    with clock.shifted(dt.timedelta(days=1)):
        cards.note_presentation(session, officer.actor, verified, gates[0], "entry")
        deliver(session)
    assert session.scalar(select(func.count()).where(Alert.kind == "card_presented")) == 2

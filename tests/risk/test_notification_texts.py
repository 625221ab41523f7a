"""A person is told by text message too: each notification (a manual colour applied or ended,
an appeal decided) goes to the phone they registered, once, through the city's SMS platform
(a real HTTP server standing in for it at the wire); no phone on record is settled as such,
and a platform that refuses is tried again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import STREET_A, first_compound, make_user, next_synthetic
from tests.risk.conftest import audits, events, resident
from tests.sms_gateway import FakeSmsGateway

from citybrain.core.authz.principal import Principal
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.jobs import get_queue, reset_queue
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import PHONE_FIELD, register_person
from citybrain.kit.crypto import field_cipher
from citybrain.kit.db import Database, use_database
from citybrain.kit.sms import SmsNotSent
from citybrain.risk import service
from citybrain.risk.models import RiskNotification
from citybrain.risk.subjects import subject_of
from citybrain.risk.tasks import on_person_notified, text_notification


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[None]:
    reset_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield
    reset_queue()


@pytest.fixture
def hierarchy(fresh_database: Database) -> None:
    """The city's areas and places in the test's own database."""
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)


@pytest.fixture
def gateway(sms_gateway: FakeSmsGateway) -> Iterator[FakeSmsGateway]:
    sms_gateway.refuse_with = None
    yield sms_gateway
    sms_gateway.refuse_with = None


def _override(session: Session, officer: Principal, approver: Principal, subject: str) -> int:
    asked = service.request_override(
        session,
        officer,
        subject=subject,
        colour="red",
        legal_basis="《传染病防治法》第三十九条",
        reason="待流调核实",
        hours=24,
    )
    service.approve_override(session, approver, asked.id)
    return asked.id


def _staff(session: Session) -> tuple[Principal, Principal]:
    """A street officer who requests manual colours and a commander who approves them."""
    return make_user(session, "street_officer", STREET_A), make_user(
        session, "city_commander", "4101"
    )


def _latest_notification(session: Session) -> int:
    notified = events(session, service.TOPIC_PERSON_NOTIFIED)[-1]
    return int(notified["notification_id"])


def test_a_notification_reaches_the_registered_phone_once(
    fresh_database: Database, gateway: FakeSmsGateway, queue: None, hierarchy: None
) -> None:
    with fresh_database.unit_of_work() as session:
        officer, approver = _staff(session)
        person = resident(session, officer)
        row = session.scalars(select(Person).where(Person.ref == person.ref)).one()
        assert row.phone_enc is not None
        phone = field_cipher().decrypt(row.phone_enc, PHONE_FIELD)
        override_id = _override(session, officer, approver, person.subject)
        applied = _latest_notification(session)
        # The announcement carries the notification's id, nothing personal.
        event = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == service.TOPIC_PERSON_NOTIFIED)
        ).one()
        assert event.payload == {"notification_id": applied, "kind": "override_applied"}
        on_person_notified(session, event)
        assert get_queue().pending_count() == 1

    with use_database(fresh_database):
        assert text_notification.call_local(applied) == "sent"
        assert text_notification.call_local(applied) == "nothing_to_send"  # a second run
    sent = gateway.sent_to(phone)
    assert len(sent) == 1 and sent[0].text.startswith("【城市大脑】您的健康码已被人工调整为红码")
    assert "《传染病防治法》第三十九条" in sent[0].text

    # A platform that refuses: the job fails (to be retried) and nothing is settled.
    with fresh_database.unit_of_work() as session:
        service.revoke_override(session, approver, override_id)
        ended = _latest_notification(session)
    gateway.refuse_with = 503
    with use_database(fresh_database), pytest.raises(SmsNotSent):
        text_notification.call_local(ended)
    with fresh_database.unit_of_work() as session:
        waiting = session.get(RiskNotification, ended)
        assert waiting is not None and waiting.texted_at is None
    gateway.refuse_with = None
    with use_database(fresh_database):
        assert text_notification.call_local(ended) == "sent"
    assert "人工调整已撤销" in gateway.sent_to(phone)[-1].text and len(gateway.sent_to(phone)) == 2

    with fresh_database.unit_of_work() as session:
        settled = session.scalars(select(RiskNotification).order_by(RiskNotification.id)).all()
        assert [(n.text_outcome, n.texted_at is not None) for n in settled] == [
            ("sent", True),
            ("sent", True),
        ]
        texted = audits(session, "risk.notification.text")
        assert [(a.object_id, a.detail["outcome"]) for a in texted] == [
            (str(applied), "sent"),
            (str(ended), "sent"),
        ]
        assert phone not in str([a.detail for a in texted])


def test_a_person_with_no_phone_on_record_is_settled_as_such(
    fresh_database: Database, gateway: FakeSmsGateway, queue: None, hierarchy: None
) -> None:
    with fresh_database.unit_of_work() as session:
        officer, approver = _staff(session)
        synthetic = next_synthetic()
        masked, _ = register_person(
            session,
            officer,
            PersonIn(
                name=synthetic.name,
                id_number=synthetic.id_number,
                compound_code=first_compound(session, STREET_A),
            ),
        )
        row = session.scalars(select(Person).where(Person.ref == masked.ref)).one()
        _override(session, officer, approver, subject_of(row))
        notification_id = _latest_notification(session)
    before = len(gateway.messages)
    with use_database(fresh_database):
        assert text_notification.call_local(notification_id) == "nothing_to_send"
    assert len(gateway.messages) == before
    with fresh_database.unit_of_work() as session:
        settled = session.get(RiskNotification, notification_id)
        assert settled is not None and settled.text_outcome == "no_phone"
        assert audits(session, "risk.notification.text")[-1].outcome == "failed"

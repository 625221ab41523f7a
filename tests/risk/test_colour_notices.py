"""A person is told when the rules turn their code (赋码变更通知): to red or yellow with the
reason and what to do, back to green; never for a subject the registry does not hold, and not
twice for a manual colour, whose applying and revoking tell the person themselves."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import STREET_A, make_user
from tests.risk.conftest import resident

from citybrain.core.events.models import OutboxEvent
from citybrain.kit import clock
from citybrain.risk import service
from citybrain.risk.models import RiskNotification
from citybrain.risk.tasks import on_colour_changed


def _handled(session: Session) -> None:
    """Hand the colour changes not yet handled to the handler, as the dispatcher would (in
    the test's transaction)."""
    session.flush()
    done: set[int] = session.info.setdefault("colour_notices_done", set())
    for event in session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == service.TOPIC_COLOUR_CHANGED)
        .order_by(OutboxEvent.id)
    ):
        if event.id not in done:
            done.add(event.id)
            on_colour_changed(session, event)


def _told(session: Session, subject: str) -> list[tuple[str, str]]:
    rows = session.scalars(
        select(RiskNotification)
        .where(RiskNotification.subject == subject)
        .order_by(RiskNotification.id)
    )
    return [(n.kind, n.text_zh) for n in rows]


def test_a_person_is_told_when_the_rules_turn_their_code_and_when_it_is_green_again(
    session: Session,
) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    contact = service.assert_fact(
        session,
        officer.actor,
        subject=person.subject,
        kind="close_contact",
        source="analysis.contacts",
        evidence={"record_ids": [5]},
        valid_from=clock.now() - dt.timedelta(hours=2),
    )
    _handled(session)
    ((kind, text),) = _told(session, person.subject)
    assert kind == "colour_changed" and text.startswith("您的健康码已转为红码（密切接触者")
    assert "请立即居家" in text and "申诉" in text
    # The same message goes to their phone, as every notification does.
    notification = session.scalars(select(RiskNotification)).one()
    sms = service.text_to_send(session, notification.id)
    assert sms is not None and sms.text.startswith("【城市大脑】您的健康码已转为红码")

    service.retract_fact(session, officer.actor, contact.id, reason="核实无接触")
    _handled(session)
    assert _told(session, person.subject)[-1] == ("colour_changed", "您的健康码已恢复为绿码。")

    # Nobody to tell for a subject no registry holds (no code page, no phone).
    stranger = "cd" * 16
    service.assert_fact(
        session,
        officer.actor,
        subject=stranger,
        kind="secondary_contact",
        source="analysis.contacts",
        evidence={"record_ids": [6]},
        valid_from=clock.now(),
    )
    _handled(session)
    assert _told(session, stranger) == []


def test_a_manual_colour_tells_the_person_once_not_twice(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    commander = make_user(session, "city_commander", "4101")
    person = resident(session, officer)
    asked = service.request_override(
        session,
        officer,
        subject=person.subject,
        colour="yellow",
        legal_basis="《传染病防治法》第三十九条",
        reason="待流调核实",
        hours=24,
    )
    service.approve_override(session, commander, asked.id)
    _handled(session)
    service.revoke_override(session, commander, asked.id)
    _handled(session)
    assert [kind for kind, _ in _told(session, person.subject)] == [
        "override_applied",
        "override_ended",
    ]

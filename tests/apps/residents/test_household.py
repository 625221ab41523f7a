"""Taking a member out of one's household (移出家庭成员): a member the household registered
is withdrawn from the registry, so the ID is free for its holder; a member who logs in
themselves stays registered on their own; nobody else can be removed."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.apps.residents.models import HealthReport
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.models import Household
from citybrain.kit import clock
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of
from tests.apps.residents.conftest import consented, csrf, login, person_by_id, registered
from tests.factories import next_synthetic_adult, next_synthetic_child


def _remove(client: TestClient, ref: str) -> Any:
    token = csrf(client, "/residents/household")
    return client.post(
        "/residents/household/remove",
        data={"csrf_token": token, "member": ref},
        follow_redirects=False,
    )


def test_a_member_the_household_registered_is_withdrawn_and_may_register_themself(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    added = next_synthetic_child()
    me = registered(resident, compound, members=[added])
    member = person_by_id(session, added.id_number)
    assert member is not None
    token = csrf(resident, "/residents/report")
    reported = resident.post(
        "/residents/report",
        data={
            "csrf_token": token,
            "person_ref": member.ref,
            "temperature": "36.6",
            "whereabouts": "home",
        },
        follow_redirects=False,
    )
    assert reported.status_code == 303
    ref = member.ref
    # The page asks first, saying what removing does.
    asked = html.unescape(resident.get(f"/residents/household?remove={ref}").text)
    assert 'data-testid="confirm-remove"' in asked and "将被删除" in asked
    done = _remove(resident, ref)
    assert done.status_code == 303
    assert done.headers["location"] == "/residents/household?removed=withdrawn"
    session.expire_all()
    assert person_by_id(session, added.id_number) is None
    # The household still lives there: its flat stays.
    mine = person_by_id(session, me.id_number)
    assert mine is not None and mine.household_id is not None
    household = session.get(Household, mine.household_id)
    assert household is not None and household.unit_enc is not None
    assert (
        session.scalars(select(HealthReport).where(HealthReport.person_ref == ref)).first() is None
    )
    page = resident.get("/residents/household?removed=withdrawn").text
    assert 'data-testid="member-removed"' in page and page.count('data-testid="member-row"') == 1
    withdrawn = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "person.withdraw")
    ).one()
    assert withdrawn.object_id == ref and withdrawn.actor.startswith("resident:")
    event = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == "person.withdrawn")
    ).one()
    assert event.payload["person_ref"] == ref and "id_number" not in event.payload
    # The ID is free again: its holder registers on their own.
    with TestClient(app, base_url="http://testserver") as own_phone:
        registered(own_phone, compound, added)
    assert person_by_id(session, added.id_number) is not None


def test_a_member_who_logs_in_themself_stays_registered_outside_the_household(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    grown_up = next_synthetic_adult()
    registered(resident, compound, members=[grown_up], member_phone=[grown_up.phone])
    assert consented(resident, session, grown_up).status_code == 303
    with TestClient(app, base_url="http://testserver") as their_phone:
        assert login(their_phone, grown_up).status_code == 303
    member = person_by_id(session, grown_up.id_number)
    assert member is not None and member.household_id is not None
    asked = html.unescape(resident.get(f"/residents/household?remove={member.ref}").text)
    assert "仍保留其本人的登记" in asked
    done = _remove(resident, member.ref)
    assert done.headers["location"] == "/residents/household?removed=left"
    session.expire_all()
    still = person_by_id(session, grown_up.id_number)
    assert still is not None and still.household_id is None
    assert (
        session.scalars(select(AuditEntry).where(AuditEntry.action == "person.leave_household"))
        .one()
        .object_id
        == member.ref
    )
    with TestClient(app, base_url="http://testserver") as their_phone:
        assert login(their_phone, grown_up).status_code == 303


def test_nobody_removes_themself_or_someone_outside_their_household(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    me = registered(resident, compound)
    with TestClient(app, base_url="http://testserver") as other_phone:
        stranger = registered(other_phone, compound)
    mine, theirs = person_by_id(session, me.id_number), person_by_id(session, stranger.id_number)
    assert mine is not None and theirs is not None
    assert _remove(resident, mine.ref).status_code == 422
    assert _remove(resident, theirs.ref).status_code == 404
    # Asking to remove a stranger shows no confirmation at all.
    page = resident.get(f"/residents/household?remove={theirs.ref}").text
    assert 'data-testid="confirm-remove"' not in page
    session.expire_all()
    assert person_by_id(session, stranger.id_number) is not None


def test_a_member_whose_code_is_not_green_stays(
    resident: TestClient, session: Session, compound: str
) -> None:
    """A case or a contact must stay reachable where they live: the household cannot erase
    them, nor lower the compound's tier by doing so."""
    sick = next_synthetic_child()
    registered(resident, compound, members=[sick])
    member = person_by_id(session, sick.id_number)
    assert member is not None
    risk.assert_fact(
        session,
        Actor("system:analysis", "system", None),
        subject=subject_of(member),
        kind="confirmed_case",
        source="analysis.case_report",
        evidence={"record_ids": [7]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    refused = _remove(resident, member.ref)
    assert refused.status_code == 409 and "不是绿码" in html.unescape(refused.text)
    session.expire_all()
    assert person_by_id(session, sick.id_number) is not None
    assert risk.tier_of(session, compound).tier == "red"


def _leave(client: TestClient) -> Any:
    token = csrf(client, "/residents/household")
    return client.post(
        "/residents/household/leave", data={"csrf_token": token}, follow_redirects=False
    )


def test_a_member_withdraws_their_consent_by_leaving_the_household(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    """Consent is the member's to withdraw: they leave themselves (退出本户); the household no
    longer sees their code. Nobody leaves a household with members none can log in for, and a
    case or a contact stays put."""
    me = registered(resident, compound)
    assert _leave(resident).status_code == 422  # nobody else in the household
    grown_up = next_synthetic_adult()
    token = csrf(resident, "/residents/household")
    resident.post(
        "/residents/household",
        data={
            "csrf_token": token,
            "name": grown_up.name,
            "id_number": grown_up.id_number,
            "phone": grown_up.phone,
        },
    )
    assert consented(resident, session, grown_up).status_code == 303
    member = person_by_id(session, grown_up.id_number)
    assert member is not None and member.household_id is not None
    household_id = member.household_id
    assert resident.get(f"/residents/code?member={member.ref}").status_code == 200
    with TestClient(app, base_url="http://testserver") as their_phone:
        assert login(their_phone, grown_up).status_code == 303
        asked = html.unescape(their_phone.get("/residents/household?leave=1").text)
        assert 'data-testid="confirm-leave"' in asked and "家人不能再查看您的健康码" in asked
        left = _leave(their_phone)
        assert left.status_code == 303 and left.headers["location"] == "/residents/household?left=1"
        page = their_phone.get("/residents/household?left=1").text
        assert 'data-testid="household-left"' in page
        assert page.count('data-testid="member-row"') == 1
    session.expire_all()
    gone = person_by_id(session, grown_up.id_number)
    assert gone is not None and gone.household_id is None and gone.area_code == compound
    assert resident.get(f"/residents/code?member={member.ref}").status_code == 404
    (entry,) = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "person.leave_household")
    ).all()
    assert entry.detail == {"household_id": household_id, "reason": "left_by_self"}
    assert entry.actor == f"resident:{member.ref}"
    # A child nobody else can log in for keeps the registrant in the household.
    child = next_synthetic_child()
    resident.post(
        "/residents/household",
        data={"csrf_token": token, "name": child.name, "id_number": child.id_number},
    )
    refused = _leave(resident)
    assert refused.status_code == 409 and "都不能自行登录" in html.unescape(refused.text)
    # Nor does someone whose code is not green leave.
    mine = person_by_id(session, me.id_number)
    assert mine is not None
    risk.assert_fact(
        session,
        Actor("system:analysis", "system", None),
        subject=subject_of(mine),
        kind="close_contact",
        source="analysis.contacts",
        evidence={"record_ids": [8]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    assert _leave(resident).status_code == 409
    session.expire_all()
    still = person_by_id(session, me.id_number)
    assert still is not None and still.household_id is not None

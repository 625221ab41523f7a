"""Withdrawing one's own registration (注销本人登记): the resident's name, ID, phone, daily
reports and account leave the service, the session ends, an emptied household's invitations go
with them, and the ID is free to register again; refused while the code is not green or while
the household holds members nobody else can log in for."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.apps.residents.models import HealthReport, ResidentAccount
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor
from citybrain.core.people.models import Household
from citybrain.kit import clock
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of
from tests.apps.residents.conftest import (
    consented,
    csrf,
    invitation_of,
    login,
    person_by_id,
    registered,
)
from tests.factories import SyntheticPerson, next_synthetic_adult, next_synthetic_child


def _deregister(client: TestClient) -> Any:
    token = csrf(client, "/residents/household")
    return client.post(
        "/residents/household/deregister", data={"csrf_token": token}, follow_redirects=False
    )


def _add_member(client: TestClient, member: SyntheticPerson, phone: str = "") -> None:
    token = csrf(client, "/residents/household")
    added = client.post(
        "/residents/household",
        data={
            "csrf_token": token,
            "name": member.name,
            "id_number": member.id_number,
            "phone": phone,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text


def test_a_resident_withdraws_their_own_registration_and_may_register_again(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    me = registered(resident, compound)
    mine = person_by_id(session, me.id_number)
    assert mine is not None and mine.household_id is not None
    ref, household_id = mine.ref, mine.household_id
    token = csrf(resident, "/residents/report")
    reported = resident.post(
        "/residents/report",
        data={"csrf_token": token, "temperature": "36.5", "whereabouts": "home"},
        follow_redirects=False,
    )
    assert reported.status_code == 303
    assert session.scalars(select(HealthReport).where(HealthReport.person_ref == ref)).first()
    # An adult invited into the household, still awaiting their consent.
    invited = next_synthetic_adult()
    _add_member(resident, invited, invited.phone)
    assert invitation_of(session, invited.id_number) is not None
    # The page asks first, saying what goes and what stays.
    asked = html.unescape(resident.get("/residents/household?deregister=1").text)
    assert 'data-testid="confirm-deregister"' in asked and "将从居民健康登记中删除" in asked
    done = _deregister(resident)
    assert done.status_code == 303 and done.headers["location"] == "/residents?deregistered=1"
    assert 'data-testid="deregistered"' in resident.get("/residents?deregistered=1").text
    # The session ended with the registration.
    assert resident.get("/residents/code", follow_redirects=False).status_code == 303
    session.expire_all()
    assert person_by_id(session, me.id_number) is None
    assert session.get(ResidentAccount, ref) is None
    assert (
        session.scalars(select(HealthReport).where(HealthReport.person_ref == ref)).first() is None
    )
    assert invitation_of(session, invited.id_number) is None
    household = session.get(Household, household_id)
    assert household is not None and household.unit_enc is None
    (entry,) = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "person.withdraw")
    ).all()
    assert entry.object_id == ref and entry.actor == f"resident:{ref}"
    assert entry.detail == {"reason": "deregistered_by_self"}
    # The ID is free: the same person registers again and logs in.
    with TestClient(app, base_url="http://testserver") as again:
        registered(again, compound, me)
        assert login(again, me).status_code == 303
    session.expire_all()
    assert person_by_id(session, me.id_number) is not None


def test_withdrawing_is_refused_for_a_case_or_contact_and_beside_members_nobody_else_holds(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    me = registered(resident, compound)
    child = next_synthetic_child()
    _add_member(resident, child)
    refused = _deregister(resident)
    assert refused.status_code == 409
    assert "都不能自行登录" in html.unescape(refused.text) and "再注销" in html.unescape(
        refused.text
    )
    # With another adult who logs in themself, the household stays in their hands.
    grown_up = next_synthetic_adult()
    _add_member(resident, grown_up, grown_up.phone)
    assert consented(resident, session, grown_up).status_code == 303
    with TestClient(app, base_url="http://testserver") as their_phone:
        assert login(their_phone, grown_up).status_code == 303
        assert _deregister(resident).status_code == 303
        session.expire_all()
        assert person_by_id(session, me.id_number) is None
        kept = [person_by_id(session, p.id_number) for p in (grown_up, child)]
        assert all(p is not None and p.household_id is not None for p in kept)
        page = their_phone.get("/residents/household").text
        assert page.count('data-testid="member-row"') == 2
        # Not while one's code is not green: a contact stays where the community finds them.
        holder = kept[0]
        assert holder is not None
        risk.assert_fact(
            session,
            Actor("system:analysis", "system", None),
            subject=subject_of(holder),
            kind="close_contact",
            source="analysis.contacts",
            evidence={"record_ids": [9]},
            valid_from=clock.now() - dt.timedelta(hours=1),
        )
        refused = _deregister(their_phone)
        assert refused.status_code == 409 and "不是绿码" in html.unescape(refused.text)
    session.expire_all()
    assert person_by_id(session, grown_up.id_number) is not None
    withdrawn = session.scalars(select(AuditEntry).where(AuditEntry.action == "person.withdraw"))
    assert len(withdrawn.all()) == 1

"""A registered resident takes a new phone as their own (更换手机号): someone who changed
numbers, or who was registered without a phone of their own (a child by a guardian, an elder)
and could therefore never log in. The proof is registration's: the code texted to the new
phone and the identity service's word that the number is in their name, with the registered
name; the old phone and every earlier session stop working."""

from __future__ import annotations

import html
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.apps.residents.models import ResidentLoginFailure
from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.kit.crypto import blind_index
from citybrain.kit.masking import mask_phone
from citybrain.simulate.persons import SyntheticPerson
from tests.apps.residents.conftest import code_sent_to, csrf, login, person_by_id, registered
from tests.factories import next_synthetic, next_synthetic_child
from tests.identity_service import FakeIdentityService
from tests.sms_gateway import running_gateway

PATH = "/residents/phone"


def change_phone(client: TestClient, person: SyntheticPerson, phone: str, **overrides: str) -> Any:
    """Ask for a code on the new phone and take it (``sms_code=`` overrides the code)."""
    data = {"name": person.name, "id_number": person.id_number, "phone": phone}
    data.update(overrides)
    if "sms_code" not in overrides:
        data["sms_code"] = code_sent_to(client, phone, PATH)
    data["csrf_token"] = csrf(client, PATH)
    return client.post(PATH, data=data, follow_redirects=False)


def _phone_holds(session: Session, person: SyntheticPerson, phone: str | None) -> bool:
    found = person_by_id(session, person.id_number)
    assert found is not None
    session.refresh(found)
    if phone is None:
        return found.phone_bidx is None
    return found.phone_bidx == blind_index().digest(phone, "phone")


def test_a_member_registered_without_a_phone_takes_their_own_and_logs_in(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    child = next_synthetic_child()
    registered(resident, compound, members=[child])
    assert _phone_holds(session, child, None)
    # Without a phone on record they cannot log in at all; the household page says how to.
    assert login(staff, child).status_code == 401
    assert resident.get("/residents/household").text.count('data-testid="member-no-phone"') == 1
    link = staff.get("/residents/login").text
    assert f'href="{PATH}"' in link and "登记时未留本人手机号" in link

    texts = len(running_gateway().sent_to(child.phone))
    answer = change_phone(staff, child, child.phone)
    assert answer.status_code == 303, answer.text
    assert len(running_gateway().sent_to(child.phone)) == texts + 1  # the code; no old phone
    assert answer.headers["location"] == "/residents/code?phone_changed=1"
    page = staff.get(answer.headers["location"]).text
    assert "手机号已更换，已为您登录" in page and html.escape(child.name) in page
    assert _phone_holds(session, child, child.phone)
    me = person_by_id(session, child.id_number)
    assert me is not None
    changed = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "person.change_phone", AuditEntry.object_id == me.ref
        )
    ).one()
    assert changed.detail == {"had_phone": False}
    assert child.phone not in str(changed.detail)
    event = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == "person.phone_changed")
    ).one()
    assert event.payload["person_ref"] == me.ref and child.phone not in str(event.payload)
    # From now on the phone logs them in like anyone.
    staff.cookies.clear()
    assert login(staff, child).status_code == 303
    assert 'data-testid="member-no-phone"' not in resident.get("/residents/household").text


def test_a_new_number_ends_the_old_ones_sessions_and_logins(
    resident: TestClient,
    staff: TestClient,
    session: Session,
    compound: str,
    identity_service: FakeIdentityService,
) -> None:
    person = registered(resident, compound)
    assert resident.get("/residents/code", follow_redirects=False).status_code == 200
    assert (
        'href="/residents/phone" data-testid="change-phone"'
        in resident.get("/residents/household").text
    )  # their own row offers it
    new_phone = next_synthetic().phone
    # Not yet in their name with the carriers: refused on the phone, counted, nothing changed.
    refused = change_phone(staff, person, new_phone)
    assert refused.status_code == 422
    assert "实名核验未通过" in refused.text
    assert _phone_holds(session, person, person.phone)
    identity_service.number_changed(person.id_number, new_phone)
    before = len(running_gateway().sent_to(person.phone))
    answer = change_phone(staff, person, new_phone)
    assert answer.status_code == 303, answer.text
    assert _phone_holds(session, person, new_phone)
    # Whoever holds the old phone is told, once, and not the new number in full.
    told = [m.text for m in running_gateway().sent_to(person.phone)[before:]]
    assert len(told) == 1
    assert mask_phone(new_phone) in told[0] and "如非本人操作" in told[0]
    assert new_phone not in told[0]
    # The old phone's session is over, and the old phone no longer logs in.
    assert resident.get("/residents/code", follow_redirects=False).status_code == 303
    assert staff.get("/residents/code", follow_redirects=False).status_code == 200
    assert login(resident, person).status_code == 401
    assert login(resident, person, phone=new_phone).status_code == 303


def test_a_wrong_name_an_unknown_id_or_code_changes_nothing_and_counts(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    """The identity service is asked first, so a wrong name says only that the real-name
    check failed: whether an ID is registered is told to its holder alone."""
    person = registered(resident, compound)
    stranger = next_synthetic()  # never registered
    wrong_name = change_phone(staff, person, person.phone, name=stranger.name)
    assert wrong_name.status_code == 422 and "实名核验未通过" in wrong_name.text
    assert "未找到" not in wrong_name.text
    unknown = change_phone(staff, stranger, stranger.phone)
    assert unknown.status_code == 401
    assert "未找到以该身份证号码和姓名登记的居民" in unknown.text
    bad_code = change_phone(staff, person, person.phone, sms_code="000000")
    assert bad_code.status_code == 422 and "验证码" in bad_code.text
    failures = session.scalar(select(func.count()).select_from(ResidentLoginFailure))
    assert failures == 2  # the name and the ID; a wrong code counts against the code's tries
    assert _phone_holds(session, person, person.phone)
    refused = session.scalars(
        select(AuditEntry.detail).where(
            AuditEntry.action == "residents.login", AuditEntry.outcome == "denied"
        )
    ).all()
    assert sorted(d["reason"] for d in refused) == ["identity_mismatch", "unknown"]

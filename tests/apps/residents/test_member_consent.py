"""Adults join a household only with their own consent (成年家庭成员本人确认): a code texted to
their phone that they pass on, or the community's staff after seeing them in person. Until
then nothing of theirs is registered: the household cannot see their code, a case among its
members does not make them a contact, and their ID stays free for them."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.apps.residents.models import MemberInvitation
from citybrain.apps.residents.service import (
    INVITED_ID,
    purge_lapsed_invitations,
    reseal_invitations,
)
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import Compound
from citybrain.core.people.models import Person
from citybrain.kit import clock
from citybrain.kit.crypto import FieldCipher
from citybrain.kit.keys import get_keyring
from citybrain.kit.masking import mask_name
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of
from citybrain.simulate.persons import SyntheticPerson
from tests.apps.residents.conftest import (
    OTHER_COMMUNITY,
    code_sent_to,
    csrf,
    invitation_of,
    person_by_id,
    registered,
)
from tests.factories import first_compound, make_user, next_synthetic_adult
from tests.identity_service import FakeIdentityService
from tests.sms_gateway import running_gateway
from tests.web.conftest import log_in

CASE_REPORT = Actor("system:analysis", "system", None)


def _me(session: Session, person: SyntheticPerson) -> Person:
    found = person_by_id(session, person.id_number)
    assert found is not None
    return found


def _case(session: Session, person: Person) -> None:
    risk.assert_fact(
        session,
        CASE_REPORT,
        subject=subject_of(person),
        kind="confirmed_case",
        source="analysis.case_report",
        evidence={"record_ids": [1]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )


def _act(client: TestClient, invitation_id: int, action: str, **extra: str) -> Any:
    data = {"csrf_token": csrf(client, "/residents/household"), "action": action, **extra}
    return client.post(
        f"/residents/household/invitations/{invitation_id}", data=data, follow_redirects=False
    )


def compound_name(session: Session, code: str) -> str:
    compound = session.get(Compound, code)
    assert compound is not None
    return compound.name


def _actions(session: Session, action: str) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_an_adult_entered_at_registration_waits_and_is_exposed_only_after_consenting(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    adult = next_synthetic_adult()
    response_person = registered(resident, compound, members=[adult], member_phone=[adult.phone])
    me = _me(session, response_person)
    # Registered themselves; the adult is not: only an invitation, encrypted.
    assert person_by_id(session, adult.id_number) is None
    invitation = invitation_of(session, adult.id_number)
    assert invitation is not None and invitation.household_id == me.household_id
    assert adult.name.encode() not in invitation.name_enc
    invited = _actions(session, "residents.member.invite")
    assert len(invited) == 1 and adult.id_number not in str(invited[0].detail)
    # A case in the household now does not make the adult anything.
    _case(session, me)
    page = html.unescape(resident.get("/residents/household?invited=1").text)
    assert 'data-testid="member-invited"' in page
    assert page.count('data-testid="member-row"') == 1
    assert page.count('data-testid="pending-member"') == 1
    assert mask_name(adult.name) in page and adult.name not in page
    assert adult.phone[:3] + "****" + adult.phone[-4:] in page
    # The adult's own phone gets a text saying who asks, where, and what it lets them see.
    sent = _act(resident, invitation.id, "send_code")
    assert sent.status_code == 200 and 'data-testid="consent-sent"' in sent.text
    (text,) = [m.text for m in running_gateway().sent_to(adult.phone)]
    registrant = _me(session, response_person)
    assert mask_name(response_person.name) in text and "家庭成员" in text
    assert "查看您的健康码" in text and "如不认识对方" in text
    assert response_person.name not in text and registrant.ref not in text
    # A wrong code is refused beside the member, and counted.
    right = running_gateway().code_for(adult.phone)
    wrong = "000000" if right != "000000" else "111111"
    refused = _act(resident, invitation.id, "confirm", sms_code=wrong)
    assert refused.status_code == 422 and "验证码不正确，还可再试4次" in html.unescape(refused.text)
    assert person_by_id(session, adult.id_number) is None
    joined = _act(resident, invitation.id, "confirm", sms_code=right)
    assert joined.status_code == 303
    assert joined.headers["location"] == "/residents/household?confirmed=1"
    session.expire_all()
    member = _me(session, adult)
    assert member.household_id == me.household_id and member.area_code == compound
    assert invitation_of(session, adult.id_number) is None
    # Joining a household with a case in force makes them a close contact, now.
    assert risk.colour_of(session, subject_of(member)).colour != "green"
    (confirm,) = _actions(session, "residents.member.confirm")
    assert confirm.detail == {"invitation_id": invitation.id, "via": "sms"}
    assert confirm.actor == f"resident:{me.ref}"
    event = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == "residents.household.member_added")
    ).one()
    assert event.payload["person_ref"] == member.ref
    page = resident.get("/residents/household?confirmed=1").text
    assert page.count('data-testid="member-row"') == 2
    assert 'data-testid="pending-member"' not in page
    assert resident.get(f"/residents/code?member={member.ref}").status_code == 200


def test_a_login_code_does_not_pass_as_consent(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    """A code texted for logging in says it is for logging in; passed on, it must not enter
    its holder in someone's household."""
    adult = next_synthetic_adult()
    registered(resident, compound, members=[adult], member_phone=[adult.phone])
    invitation = invitation_of(session, adult.id_number)
    assert invitation is not None
    with TestClient(app, base_url="http://testserver") as elsewhere:
        login_code = code_sent_to(elsewhere, adult.phone, "/residents/login")
    refused = _act(resident, invitation.id, "confirm", sms_code=login_code)
    assert refused.status_code == 422
    assert "验证码已失效或尚未获取" in html.unescape(refused.text)
    assert person_by_id(session, adult.id_number) is None


def test_an_adult_is_invited_only_on_a_phone_in_their_own_name(
    resident: TestClient,
    session: Session,
    compound: str,
    identity_service: FakeIdentityService,
) -> None:
    adult, other = next_synthetic_adult(), next_synthetic_adult()
    registered(resident, compound)
    token = csrf(resident, "/residents/household")
    form = {"csrf_token": token, "name": adult.name, "id_number": adult.id_number}
    refused = resident.post("/residents/household", data={**form, "phone": other.phone})
    assert refused.status_code == 422
    page = html.unescape(refused.text)
    assert 'data-testid="error-name"' in page and "须填写其本人名下的手机号码" in page
    assert identity_service.checks[-1].phone == other.phone
    assert invitation_of(session, adult.id_number) is None
    ok = resident.post(
        "/residents/household", data={**form, "phone": adult.phone}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/residents/household?invited=1"
    assert person_by_id(session, adult.id_number) is None
    assert invitation_of(session, adult.id_number) is not None
    # Asked twice, the second is refused: one invitation a household per adult.
    again = resident.post("/residents/household", data={**form, "phone": adult.phone})
    assert again.status_code == 422 and "已在等待本人确认" in again.text


def test_an_adult_without_a_phone_is_confirmed_in_person_by_the_compound_staff(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    adult = next_synthetic_adult()
    registrant = registered(resident, compound, members=[adult])
    invitation = invitation_of(session, adult.id_number)
    assert invitation is not None and invitation.phone_enc is None
    page = html.unescape(resident.get("/residents/household").text)
    assert 'data-testid="pending-in-person"' in page
    # Who entered them is said, masked, to the household and to the staff who will check.
    added_by = f"由{mask_name(registrant.name)}添加"
    assert added_by in page
    assert _act(resident, invitation.id, "send_code").status_code == 422
    # Staff of another community see nothing of it and cannot confirm it.
    elsewhere = make_user(session, "grid_worker", OTHER_COMMUNITY)
    log_in(staff, elsewhere.name)
    other_compound = first_compound(session, OTHER_COMMUNITY)
    listed = staff.get(f"/residents/staff/compounds/{other_compound}?tab=residents").text
    assert 'data-testid="pending-member"' not in listed
    path = f"/residents/staff/invitations/{invitation.id}/confirm"
    token = csrf(staff, f"/residents/staff/compounds/{other_compound}?tab=residents")
    denied = staff.post(path, data={"csrf_token": token, "compound": compound, "seen": "yes"})
    assert denied.status_code == 404
    (attempt,) = _actions(session, "residents.member.confirm")
    assert attempt.outcome == "denied" and attempt.object_id == str(invitation.id)
    staff.cookies.clear()
    worker = make_user(session, "grid_worker", compound[:12])
    log_in(staff, worker.name)
    # The compounds' list says where someone waits to be seen.
    overview = html.unescape(
        staff.get(f"/residents/staff?name={compound_name(session, compound)}").text
    )
    assert 'data-testid="row-awaiting"' in overview and "1人待确认" in overview
    residents_tab = f"/residents/staff/compounds/{compound}?tab=residents"
    listed = html.unescape(staff.get(residents_tab).text)
    assert listed.count('data-testid="pending-member"') == 1
    assert mask_name(adult.name) in listed and adult.id_number not in listed
    assert added_by in listed
    token = csrf(staff, residents_tab)
    unticked = staff.post(path, data={"csrf_token": token, "compound": compound})
    assert unticked.status_code == 422 and "当面核对本人及其身份证" in html.unescape(unticked.text)
    assert person_by_id(session, adult.id_number) is None
    done = staff.post(
        path,
        data={"csrf_token": token, "compound": compound, "seen": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "member_confirmed=1" in done.headers["location"]
    overview = staff.get(f"/residents/staff?name={compound_name(session, compound)}").text
    assert 'data-testid="row-awaiting"' not in overview
    session.expire_all()
    member = _me(session, adult)
    assert member.household_id == invitation.household_id and member.phone_enc is None
    confirm = _actions(session, "residents.member.confirm")[-1]
    assert confirm.detail == {"invitation_id": invitation.id, "via": "in_person"}
    assert confirm.actor.startswith("user:")


def test_withdrawn_lapsed_and_overtaken_invitations(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    withdrawn, lapsing, own = (next_synthetic_adult() for _ in range(3))
    registered(
        resident,
        compound,
        members=[withdrawn, lapsing, own],
        member_phone=[withdrawn.phone, lapsing.phone, own.phone],
    )
    first = invitation_of(session, withdrawn.id_number)
    assert first is not None
    gone = _act(resident, first.id, "withdraw")
    assert gone.headers["location"] == "/residents/household?withdrawn=1"
    session.expire_all()
    assert invitation_of(session, withdrawn.id_number) is None
    assert len(_actions(session, "residents.member.uninvite")) == 1
    # The invited adult's ID is theirs meanwhile: they register on their own, and the
    # invitation can no longer be confirmed.
    with TestClient(app, base_url="http://testserver") as their_phone:
        registered(their_phone, compound, own)
    overtaken = invitation_of(session, own.id_number)
    assert overtaken is not None
    sent = _act(resident, overtaken.id, "send_code")
    assert sent.status_code == 200
    refused = _act(
        resident, overtaken.id, "confirm", sms_code=running_gateway().code_for(own.phone)
    )
    assert refused.status_code == 409 and "已登记" in html.unescape(refused.text)
    # Seven days without consent: no longer shown, then purged, the purge audited.
    later = clock.now() + dt.timedelta(days=7, minutes=1)
    with clock.frozen(later):
        assert 'data-testid="pending-member"' not in resident.get("/residents/household").text
        assert purge_lapsed_invitations(session) == 2
    assert invitation_of(session, lapsing.id_number) is None
    assert session.scalars(select(MemberInvitation)).first() is None
    (purge,) = _actions(session, "residents.invitations_purge")
    assert purge.detail is not None and purge.detail["deleted"] == 2


def test_a_household_moving_takes_its_invitations_along(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    adult = next_synthetic_adult()
    registered(resident, compound, members=[adult])
    target = first_compound(session, OTHER_COMMUNITY)
    token = csrf(resident, "/residents/address")
    moved = resident.post(
        "/residents/address",
        data={
            "csrf_token": token,
            "compound_code": target,
            "building": "1号楼",
            "unit": "1单元",
            "room": "101",
        },
        follow_redirects=False,
    )
    assert moved.status_code == 303, moved.text
    session.expire_all()
    invitation = invitation_of(session, adult.id_number)
    assert invitation is not None and invitation.compound_code == target
    worker = make_user(session, "grid_worker", target[:12])
    log_in(staff, worker.name)
    listed = staff.get(f"/residents/staff/compounds/{target}?tab=residents").text
    assert listed.count('data-testid="pending-member"') == 1


def test_invitations_are_resealed_after_a_field_key_rotation(
    resident: TestClient, session: Session, compound: str
) -> None:
    adult = next_synthetic_adult()
    registered(resident, compound, members=[adult], member_phone=[adult.phone])
    ring = get_keyring()
    new_key = b"\x07" * 32
    rotated = FieldCipher({"k9": new_key, **ring.field_keys}, "k9")
    assert reseal_invitations(session, CASE_REPORT, rotated) == 1
    invitation = invitation_of(session, adult.id_number)
    assert invitation is not None and invitation.phone_enc is not None
    new_only = FieldCipher({"k9": new_key}, "k9")
    assert new_only.decrypt(invitation.id_number_enc, INVITED_ID) == adult.id_number
    assert new_only.key_id(invitation.phone_enc) == "k9"
    (entry,) = _actions(session, "residents.invitations_reseal")
    assert entry.object_id == "k9" and entry.detail == {"resealed": 1}
    assert reseal_invitations(session, CASE_REPORT, rotated) == 0


def _add(client: TestClient, member: SyntheticPerson, name: str | None = None) -> Any:
    token = csrf(client, "/residents/household")
    data = {"csrf_token": token, "name": name or member.name, "id_number": member.id_number}
    return client.post("/residents/household", data=data, follow_redirects=False)


def test_an_adult_who_registered_themself_moves_in_on_their_consent(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    """Two adults who each registered (each with a household of one) become one household:
    the consent is asked on the phone the invited adult registered, never one typed for them."""
    me = _me(session, registered(resident, compound))
    spouse, stranger = next_synthetic_adult(), next_synthetic_adult()
    with TestClient(app, base_url="http://testserver") as their_phone:
        registered(their_phone, compound, spouse)
        elsewhere = first_compound(session, OTHER_COMMUNITY)
        registered(their_phone, elsewhere, stranger)
    theirs = _me(session, spouse)
    own_household = theirs.household_id
    assert own_household is not None and own_household != me.household_id
    # The name must be the registered one (counted, like a wrong name at login).
    wrong = _add(resident, spouse, name=stranger.name)
    assert wrong.status_code == 422 and "姓名与该身份证号码登记的姓名不一致" in wrong.text
    # Someone registered in another compound changes their address first.
    away = _add(resident, stranger)
    assert away.status_code == 422 and "变更到本小区" in html.unescape(away.text)
    invited = _add(resident, spouse)
    assert invited.headers["location"] == "/residents/household?invited=1"
    invitation = invitation_of(session, spouse.id_number)
    assert invitation is not None and invitation.person_ref == theirs.ref
    assert invitation.phone_enc is None
    page = html.unescape(resident.get("/residents/household").text)
    assert spouse.phone[:3] + "****" + spouse.phone[-4:] in page
    assert _act(resident, invitation.id, "send_code").status_code == 200
    code = running_gateway().code_for(spouse.phone)
    joined = _act(resident, invitation.id, "confirm", sms_code=code)
    assert joined.status_code == 303, joined.text
    session.expire_all()
    moved = _me(session, spouse)
    assert moved.household_id == me.household_id and moved.area_code == compound
    (entry,) = _actions(session, "person.join_household")
    assert entry.detail == {"from": own_household, "to": me.household_id, "reason": "consent_sms"}
    assert _actions(session, "residents.member.confirm")[-1].detail == {
        "invitation_id": invitation.id,
        "via": "sms",
        "registered": True,
    }
    assert resident.get(f"/residents/code?member={moved.ref}").status_code == 200
    again = _add(resident, spouse)
    assert again.status_code == 422 and "该成员已在本户" in again.text


def test_a_registered_adult_whose_code_is_not_green_does_not_move_in(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    me = _me(session, registered(resident, compound))
    contact = next_synthetic_adult()
    with TestClient(app, base_url="http://testserver") as their_phone:
        registered(their_phone, compound, contact)
    invited = _add(resident, contact)
    assert invited.status_code == 303
    invitation = invitation_of(session, contact.id_number)
    assert invitation is not None
    risk.assert_fact(
        session,
        CASE_REPORT,
        subject=subject_of(_me(session, contact)),
        kind="close_contact",
        source="analysis.contacts",
        evidence={"record_ids": [2]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    assert _act(resident, invitation.id, "send_code").status_code == 200
    code = running_gateway().code_for(contact.phone)
    refused = _act(resident, invitation.id, "confirm", sms_code=code)
    assert refused.status_code == 409 and "不是绿码" in html.unescape(refused.text)
    session.expire_all()
    assert _me(session, contact).household_id != me.household_id
    assert invitation_of(session, contact.id_number) is not None

"""Resident registration and login: every field's error named, nothing typed lost, a household
registered through the core registry, login back in by blind index, rate limits, and an ID
already registered never handing its person's data to someone else."""

from __future__ import annotations

import html

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.apps.residents import sessions
from citybrain.apps.residents.models import ResidentAccount, ResidentLoginFailure
from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.models import Household, Person
from citybrain.kit.crypto import blind_index
from citybrain.kit.idcheck import check_character
from tests.apps.residents.conftest import COMMUNITY, csrf, form_of, login, register, registered
from tests.factories import next_synthetic, next_synthetic_child


def _person(session: Session, id_number: str) -> Person | None:
    bidx = blind_index().digest(id_number, "id_number")
    return session.scalars(select(Person).where(Person.id_number_bidx == bidx)).first()


def _count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_empty_form_names_every_missing_field(resident: TestClient, compound: str) -> None:
    token = csrf(resident)
    response = resident.post("/residents/register", data={"csrf_token": token, "action": "submit"})
    assert response.status_code == 422
    page = response.text
    for field, words in {
        "name": "请填写姓名",
        "id_number": "请填写身份证号码",
        "phone": "请填写手机号码",
        "compound_code": "请选择所在小区",
        "building": "请填写楼栋",
        "room": "请填写门牌号",
    }.items():
        assert f'data-testid="error-{field}"' in page, field
        assert words in page, words
    # The unit is optional: no error for it.
    assert 'data-testid="error-unit"' not in page
    assert 'data-testid="form-errors"' in page


def test_each_wrong_value_says_what_is_wrong_and_nothing_typed_is_lost(
    resident: TestClient, session: Session, compound: str
) -> None:
    person = next_synthetic()
    wrong_check = "X" if person.id_number[-1] != "X" else "0"
    bad_id = person.id_number[:17] + wrong_check
    member = next_synthetic()
    response, _ = register(
        resident,
        compound,
        person,
        members=[member],
        name="张3",
        id_number=bad_id,
        phone="12345678901",
        member_id_number=["41010519850314123"],
        building="3号楼",
        room="5/01",
    )
    assert response.status_code == 422
    page = html.unescape(response.text)
    expected = check_character(bad_id[:17])
    assert f"身份证号码校验码错误：末位应为{expected}" in page
    assert "姓名不能包含数字" in page
    assert "手机号码号段123无效" in page
    assert "家庭成员1：身份证号码应为18位，实际为17位" in page
    assert "门牌号只能包含" in page
    # Everything typed comes back, the wrong values too, so the resident fixes rather than
    # retypes.
    for typed in ("张3", bad_id, "12345678901", member.name, "41010519850314123", "3号楼", "5/01"):
        assert f'value="{typed}"' in page, typed
    # The compound chosen stays chosen, its lists filled.
    assert f'<option value="{compound}" selected' in page
    assert f'<option value="{compound[:12]}" selected' in page
    assert _person(session, person.id_number) is None


def test_a_name_that_is_a_spreadsheet_formula_is_refused(
    resident: TestClient, compound: str
) -> None:
    response, _ = register(resident, compound, name="=HYPERLINK")
    assert response.status_code == 422
    assert 'data-testid="error-name"' in response.text


def test_registration_creates_the_household_in_the_registry(
    resident: TestClient, session: Session, compound: str
) -> None:
    members = [next_synthetic_child(), next_synthetic_child()]
    response, person = register(resident, compound, members=members)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/residents/code?registered=1"
    assert sessions.COOKIE in response.headers["set-cookie"]
    assert "Path=/residents" in response.headers["set-cookie"]
    me = _person(session, person.id_number)
    assert me is not None and me.area_code == compound and me.household_id is not None
    household = session.get(Household, me.household_id)
    assert household is not None and household.compound_code == compound
    registered = session.scalars(select(Person).where(Person.household_id == me.household_id))
    assert {p.ref for p in registered} == {
        me.ref,
        *(p.ref for p in (_person(session, m.id_number) for m in members) if p),
    }
    assert session.get(ResidentAccount, me.ref) is not None
    event = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == "residents.household.registered")
    ).one()
    assert event.payload["person_refs"][0] == me.ref and len(event.payload["person_refs"]) == 3
    audit = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "residents.register")
    ).one()
    assert audit.actor == "resident:self-service" and audit.area_code == compound
    # Nothing personal in the audit row or the event.
    assert person.name not in str(audit.detail) and person.phone not in str(event.payload)


def test_add_member_slot_keeps_what_was_typed(resident: TestClient, compound: str) -> None:
    person = next_synthetic()
    data = form_of(person, compound, [next_synthetic()], action="add_member")
    data["csrf_token"] = csrf(resident)
    page = resident.post("/residents/register", data=data).text
    assert 'data-testid="member-2"' in page
    assert f'value="{person.id_number}"' in page and f'value="{person.phone}"' in page


def test_picker_cascades_and_searches(resident: TestClient, compound: str) -> None:
    streets = resident.get("/residents/picker", params={"district": compound[:6]}).text
    assert f'<option value="{compound[:9]}"' in streets
    assert "请先选择街道" in streets
    chosen = resident.get(
        "/residents/picker",
        params={"district": compound[:6], "street": compound[:9], "community": compound[:12]},
    ).text
    assert f'<option value="{compound}"' in chosen
    # Changing the district drops a street that is not in it.
    moved = resident.get(
        "/residents/picker", params={"district": "410102", "street": compound[:9]}
    ).text
    assert f'value="{compound[:9]}"' not in moved
    # A compound found by name fixes the levels above it.
    found = resident.get("/residents/picker", params={"compound_code": compound}).text
    assert f'<option value="{compound[:6]}" selected' in found
    assert f'<option value="{compound[:9]}" selected' in found
    search = resident.get(
        "/residents/picker/compounds", params={"district": "410105", "compound_q": "zzzz不存在"}
    ).text
    assert 'data-testid="no-match"' in search


def test_log_back_in_by_id_phone_and_name(
    resident: TestClient, session: Session, compound: str
) -> None:
    response, person = register(resident, compound)
    assert response.status_code == 303
    resident.post("/residents/logout", data={"csrf_token": csrf(resident, "/residents/code")})
    assert resident.get("/residents/code", follow_redirects=False).headers["location"] == (
        "/residents/login"
    )
    wrong = login(resident, person, phone="13800000000")
    assert wrong.status_code == 401
    assert "与登记信息不符" in wrong.text
    # The answer does not say which of the three was wrong, and keeps what was typed.
    for field in ("name", "id_number", "phone"):
        assert f'data-testid="error-{field}"' not in wrong.text
    assert f'value="{person.id_number}"' in wrong.text
    ok = login(resident, person)
    assert ok.status_code == 303 and ok.headers["location"] == "/residents/code"
    page = resident.get("/residents/code")
    assert page.status_code == 200 and person.name in page.text
    me = _person(session, person.id_number)
    assert me is not None
    # A successful login forgets the failures of that ID.
    key = me.id_number_bidx[:32]
    assert (
        _count(session, ResidentLoginFailure) == 0
        or not session.scalars(
            select(ResidentLoginFailure).where(ResidentLoginFailure.key == key)
        ).first()
    )


def test_logout_ends_a_copied_cookie(resident: TestClient, app: object, compound: str) -> None:
    registered(resident, compound)
    cookie = resident.cookies.get(sessions.COOKIE)
    assert cookie
    resident.post("/residents/logout", data={"csrf_token": csrf(resident, "/residents/code")})
    with TestClient(app, base_url="http://testserver") as thief:  # type: ignore[arg-type]
        thief.cookies.set(sessions.COOKIE, cookie, path="/residents")
        assert thief.get("/residents/code", follow_redirects=False).status_code == 303


def test_failed_logins_are_rate_limited(
    resident: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    resident.cookies.clear()
    for _ in range(5):
        assert login(resident, person, phone="13800000000").status_code == 401
    blocked = login(resident, person)
    assert blocked.status_code == 429
    assert "尝试次数过多" in blocked.text
    denied = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "residents.login", AuditEntry.outcome == "denied")
        .order_by(AuditEntry.seq.desc())
    ).first()
    assert denied is not None and denied.detail["reason"] == "rate_limited"


def test_format_errors_do_not_count_against_the_limit(resident: TestClient, compound: str) -> None:
    person = registered(resident, compound)
    resident.cookies.clear()
    for _ in range(6):
        typo = login(resident, person, id_number=person.id_number[:17])
        assert typo.status_code == 422 and 'data-testid="error-id_number"' in typo.text
    assert login(resident, person).status_code == 303


def test_a_registered_id_never_hands_its_person_to_someone_else(
    resident: TestClient, app: object, session: Session, compound: str
) -> None:
    response, owner = register(resident, compound, building="7号楼", room="1203")
    assert response.status_code == 303
    owner_row = _person(session, owner.id_number)
    assert owner_row is not None
    persons_before = _count(session, Person)
    with TestClient(app, base_url="http://testserver") as other:  # type: ignore[arg-type]
        impostor = next_synthetic()
        attempt, _ = register(
            other, compound, impostor, id_number=owner.id_number, name=impostor.name
        )
        assert attempt.status_code == 422
        page = html.unescape(attempt.text)
        assert "该身份证号码已登记" in page and "登记时的手机号码和姓名" in page
        assert 'data-testid="error-id_number"' in page
        # Nothing of the registered person shows: not their name (even masked), phone,
        # address or where they live.
        assert owner.name not in page and owner.name[0] + "*" not in page
        assert owner.phone not in page and owner.phone[-4:] not in page
        assert "1203" not in page and "7号楼" not in page
        assert sessions.COOKIE not in attempt.headers.get("set-cookie", "")
        assert _count(session, Person) == persons_before
        # The mismatch counts like a failed login.
        assert session.scalars(
            select(ResidentLoginFailure).where(
                ResidentLoginFailure.key == owner_row.id_number_bidx[:32]
            )
        ).first()
        # The owner, registering again on a new phone with the same phone and name, is simply
        # logged in; nothing changes.
        again, _ = register(other, compound, owner, building="9号楼")
        assert again.status_code == 303
        assert again.headers["location"] == "/residents/code?existing=1"
        assert _count(session, Person) == persons_before
        assert "已登记过" in other.get("/residents/code?existing=1").text


def test_a_member_already_registered_is_refused_without_details(
    resident: TestClient, app: object, session: Session, compound: str
) -> None:
    first, owner = register(resident, compound)
    assert first.status_code == 303
    with TestClient(app, base_url="http://testserver") as other:  # type: ignore[arg-type]
        response, _ = register(other, compound, members=[owner])
        assert response.status_code == 422
        page = html.unescape(response.text)
        assert "家庭成员1：该身份证号码已登记" in page
        assert 'data-testid="error-members-1-id_number"' in page
        assert owner.phone not in page


def test_add_a_member_later(resident: TestClient, session: Session, compound: str) -> None:
    person = registered(resident, compound)
    member = next_synthetic_child()
    token = csrf(resident, "/residents/household")
    bad = resident.post(
        "/residents/household",
        data={"csrf_token": token, "name": member.name, "id_number": "123", "phone": ""},
    )
    assert bad.status_code == 422 and "身份证号码应为18位" in bad.text
    assert f'value="{member.name}"' in bad.text
    ok = resident.post(
        "/residents/household",
        data={"csrf_token": token, "name": member.name, "id_number": member.id_number},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    me, added = _person(session, person.id_number), _person(session, member.id_number)
    assert me is not None and added is not None and added.household_id == me.household_id
    page = resident.get("/residents/household").text
    # Another member is shown masked: surname kept, ID 4101**********1234 style.
    assert member.name not in page and member.id_number not in page
    assert member.id_number[:4] + "*" * 10 + member.id_number[-4:] in page
    assert COMMUNITY[:9] in compound


def test_pages_speak_english_second(resident: TestClient, compound: str) -> None:
    page = resident.get("/residents/register?lang=en").text
    assert "<h1>Register</h1>" in page and "Resident ID number" in page
    token = csrf(resident)
    response = resident.post(
        "/residents/register", data={"csrf_token": token, "action": "submit", "phone": "12"}
    )
    assert "mobile number must have 11 digits, got 2" in response.text
    assert "choose your compound" in response.text

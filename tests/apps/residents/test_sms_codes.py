"""One-time codes by text message (短信验证码): registering and logging in need the code the
SMS platform delivered to the phone typed; wrong, spent, stale and expired codes are refused
with their reason; asking is limited; only hashes are kept; a platform that is down is said
so; and without the code a registered ID never shows whether phone and name matched."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.apps.residents import sessions
from citybrain.apps.residents.models import ResidentLoginFailure, ResidentSmsCode
from citybrain.apps.residents.sms_codes import MAX_ATTEMPTS
from citybrain.apps.residents.tasks import purge_old_sms_codes
from citybrain.core.audit.models import AuditEntry
from citybrain.core.people.models import Person
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.kit.db import Database, use_database
from tests.apps.residents.conftest import (
    code_sent_to,
    csrf,
    form_of,
    login,
    register,
    registered,
    send_code,
)
from tests.factories import next_synthetic
from tests.sms_gateway import TOKEN, FakeSmsGateway


@pytest.fixture
def gateway(sms_gateway: FakeSmsGateway) -> Iterator[FakeSmsGateway]:
    yield sms_gateway
    sms_gateway.refuse_with = None


def _persons(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Person)) or 0)


def _codes_of(session: Session, phone: str) -> list[ResidentSmsCode]:
    key = blind_index().digest(phone, "phone")
    return list(
        session.scalars(
            select(ResidentSmsCode)
            .where(ResidentSmsCode.phone_key == key)
            .order_by(ResidentSmsCode.id)
        )
    )


def _post_registration(client: TestClient, compound: str, person: object, code: str) -> object:
    data = form_of(person, compound)  # type: ignore[arg-type]
    data.update(sms_code=code, csrf_token=csrf(client))
    return client.post("/residents/register", data=data, follow_redirects=False)


def test_the_code_reaches_the_phone_and_only_its_hash_is_kept(
    resident: TestClient, session: Session, compound: str, gateway: FakeSmsGateway
) -> None:
    person = next_synthetic()
    answer = send_code(resident, person.phone)
    assert answer.status_code == 200
    masked = person.phone[:3] + "****" + person.phone[-4:]
    assert "验证码已发送至" + masked in answer.text
    message = gateway.sent_to(person.phone)[-1]
    assert message.authorization == f"Bearer {TOKEN}"
    code = gateway.code_for(person.phone)
    # The code reaches the phone only: the page says where it went, not what it is.
    notice = re.search(r'data-testid="code-sent">([^<]*)<', answer.text)
    assert notice and notice.group(1) == f"验证码已发送至{masked}，5分钟内有效。"
    assert f'value="{code}"' not in answer.text
    assert "【城市大脑】" in message.text and "请勿告诉他人" in message.text
    [row] = _codes_of(session, person.phone)
    kept = " ".join(str(v) for v in (row.phone_key, row.code_hash, row.client_ip))
    assert person.phone not in kept and code not in kept
    assert row.expires_at - row.sent_at == dt.timedelta(minutes=5)
    audit = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "residents.sms_code")
    ).first()
    assert audit is not None and person.phone not in str(audit.detail)


def test_registration_needs_the_code_and_keeps_what_was_typed(
    resident: TestClient, session: Session, compound: str
) -> None:
    person, before = next_synthetic(), _persons(session)
    response, _ = register(resident, compound, person, sms_code="")
    assert response.status_code == 422
    page = html.unescape(response.text)
    assert 'data-testid="error-sms_code"' in page and "请填写短信验证码" in page
    assert f'value="{person.id_number}"' in page and f'value="{person.phone}"' in page
    assert _persons(session) == before
    typo, _ = register(resident, compound, person, sms_code="12a45")
    assert "验证码为6位数字" in html.unescape(typo.text)
    never_sent, _ = register(resident, compound, person, sms_code="123456")
    assert "验证码已失效或尚未获取" in html.unescape(never_sent.text)
    assert _persons(session) == before
    # With the code it registers, and the code is spent by it.
    code = code_sent_to(resident, person.phone)
    ok = _post_registration(resident, compound, person, code)
    assert ok.status_code == 303  # type: ignore[attr-defined]
    assert _persons(session) > before
    assert _codes_of(session, person.phone)[-1].used_at is not None


def test_wrong_tries_count_although_the_attempt_rolls_back(
    resident: TestClient, session: Session, compound: str
) -> None:
    person = next_synthetic()
    code = code_sent_to(resident, person.phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for left in range(MAX_ATTEMPTS - 1, 0, -1):
        answer, _ = register(resident, compound, person, sms_code=wrong)
        assert answer.status_code == 422
        assert f"验证码不正确，还可再试{left}次" in html.unescape(answer.text)
    last, _ = register(resident, compound, person, sms_code=wrong)
    assert "验证码不正确，请重新获取" in html.unescape(last.text)
    assert _codes_of(session, person.phone)[-1].attempts == MAX_ATTEMPTS
    # Spent by the wrong tries: the right code no longer works; a new one does.
    spent, _ = register(resident, compound, person, sms_code=code)
    assert "验证码输错次数过多" in html.unescape(spent.text)
    assert _persons_with(session, person.id_number) == 0
    fresh = _post_registration(resident, compound, person, code_sent_to(resident, person.phone))
    assert fresh.status_code == 303  # type: ignore[attr-defined]


def _persons_with(session: Session, id_number: str) -> int:
    bidx = blind_index().digest(id_number, "id_number")
    query = select(func.count()).select_from(Person).where(Person.id_number_bidx == bidx)
    return int(session.scalar(query) or 0)


def test_only_the_latest_unexpired_unused_code_counts(
    resident: TestClient, compound: str, gateway: FakeSmsGateway
) -> None:
    person = registered(resident, compound)
    resident.cookies.clear()
    first = code_sent_to(resident, person.phone, "/residents/login")
    second = code_sent_to(resident, person.phone, "/residents/login")
    if first != second:
        stale = login(resident, person, sms_code=first)
        assert stale.status_code == 422 and "验证码不正确" in html.unescape(stale.text)
    assert login(resident, person, sms_code=second).status_code == 303
    resident.cookies.clear()
    # Spent by that login.
    again = login(resident, person, sms_code=second)
    assert "验证码已失效" in html.unescape(again.text)
    # Expired after five minutes.
    late = code_sent_to(resident, person.phone, "/residents/login")
    with clock.frozen(clock.now() + dt.timedelta(minutes=5, seconds=1)):
        expired = login(resident, person, sms_code=late)
    assert expired.status_code == 422 and "验证码已失效" in html.unescape(expired.text)
    assert sessions.COOKIE not in expired.headers.get("set-cookie", "")


def test_login_needs_the_code_of_the_registered_phone(
    resident: TestClient, compound: str, gateway: FakeSmsGateway
) -> None:
    person = registered(resident, compound)
    resident.cookies.clear()
    bare = login(resident, person, sms_code="")
    assert bare.status_code == 422 and "请填写短信验证码" in html.unescape(bare.text)
    assert sessions.COOKIE not in bare.headers.get("set-cookie", "")
    # A code of another phone proves that phone, not the registered one.
    other = "13900000000"
    code_sent_to(resident, other, "/residents/login")
    mismatch = login(resident, person, phone=other, sms_code=gateway.code_for(other))
    assert mismatch.status_code == 401
    ok = login(resident, person)
    assert ok.status_code == 303 and ok.headers["location"] == "/residents/code"


def test_without_the_code_a_registered_id_does_not_show_a_match(
    resident: TestClient, app: object, session: Session, compound: str
) -> None:
    owner = registered(resident, compound)
    with TestClient(app, base_url="http://testserver") as other:  # type: ignore[arg-type]
        # Right phone and name but no code, and wrong phone and name: the same answer.
        matched, _ = register(other, compound, owner, sms_code="")
        impostor = next_synthetic()
        mismatched, _ = register(other, compound, impostor, id_number=owner.id_number, sms_code="")
        for answer in (matched, mismatched):
            page = html.unescape(answer.text)
            assert answer.status_code == 422
            assert "该身份证号码已登记" in page and "请填写短信验证码" in page
        errors = re.compile(r'data-testid="error-([\w-]+)"')
        assert errors.findall(matched.text) == errors.findall(mismatched.text)
        # Both count against the ID's limit alike, so the lockout does not tell them apart.
        key = blind_index().digest(owner.id_number, "id_number")[:32]
        failures = select(func.count()).where(ResidentLoginFailure.key == key)
        assert session.scalar(failures) == 2
        # With the code of the registered phone, the owner is simply logged in.
        again, _ = register(other, compound, owner)
        assert again.headers["location"] == "/residents/code?existing=1"


def test_asking_too_often_is_refused(
    resident: TestClient, settings_env: Callable[[str, str | None], None]
) -> None:
    phone, start = next_synthetic().phone, clock.now()
    settings_env("CITYBRAIN_SMS_RESEND_SECONDS", "60")
    with clock.frozen(start):
        assert send_code(resident, phone).status_code == 200
    with clock.frozen(start + dt.timedelta(seconds=45)):
        soon = send_code(resident, phone)
    assert soon.status_code == 429
    assert "验证码已发送，请15秒后再重新获取" in html.unescape(soon.text)
    later = start + dt.timedelta(seconds=61)
    with clock.frozen(later):
        assert send_code(resident, phone).status_code == 200
    settings_env("CITYBRAIN_SMS_RESEND_SECONDS", "0")
    settings_env("CITYBRAIN_SMS_CODES_PER_PHONE_PER_DAY", "3")
    with clock.frozen(later):
        assert send_code(resident, phone).status_code == 200
        day = send_code(resident, phone)
        assert day.status_code == 429
        assert "今天获取验证码的次数已达上限" in html.unescape(day.text)
        settings_env("CITYBRAIN_SMS_CODES_PER_ADDRESS_PER_HOUR", "3")
        address = send_code(resident, next_synthetic().phone)
        assert address.status_code == 429
        assert "获取验证码过于频繁" in html.unescape(address.text)


def test_a_platform_that_is_down_is_said_so_and_nothing_is_kept(
    resident: TestClient, session: Session, gateway: FakeSmsGateway
) -> None:
    phone = next_synthetic().phone
    gateway.refuse_with = 500
    answer = send_code(resident, phone)
    assert answer.status_code == 503
    assert "短信发送失败，请稍后再试" in html.unescape(answer.text)
    assert _codes_of(session, phone) == []
    bad = send_code(resident, "12345")
    assert bad.status_code == 422 and 'data-testid="error-phone"' in bad.text


def test_enter_in_a_field_submits_the_form_not_get_a_code(resident: TestClient) -> None:
    # A form's first submit button answers Enter: it must be the main action on both forms.
    first_button = re.compile(r'<button[^>]*type="submit"[^>]*name="action" value="([\w]+)"')
    for path in ("/residents/register", "/residents/login"):
        form = resident.get(path).text.split("<form", 1)[1]
        found = first_button.search(form)
        assert found and found.group(1) == "submit", path


def test_codes_are_purged_a_day_after_they_were_sent(fresh_database: Database) -> None:
    now = clock.now()
    with fresh_database.unit_of_work() as session:
        for hours, key in ((25, "old"), (23, "recent")):
            sent = now - dt.timedelta(hours=hours)
            session.add(
                ResidentSmsCode(
                    phone_key=key,
                    code_hash="0" * 64,
                    client_ip="127.0.0.1",
                    sent_at=sent,
                    expires_at=sent + dt.timedelta(minutes=5),
                    attempts=0,
                )
            )
    with use_database(fresh_database):
        assert purge_old_sms_codes() == 1
    with fresh_database.unit_of_work() as session:
        assert session.scalars(select(ResidentSmsCode.phone_key)).all() == ["recent"]

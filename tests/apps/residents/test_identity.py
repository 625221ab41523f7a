"""Real-name verification (实名核验): knowing someone's name and ID number is not enough to
register as them, or to add them as a household member and read their code. The city's
identity service is a real HTTP server at the wire (tests/identity_service.py) that knows the
synthetic population."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.apps.residents.models import ResidentLoginFailure
from citybrain.core.audit.models import AuditEntry
from tests.apps.residents.conftest import code_sent_to, csrf, person_by_id, register, registered
from tests.factories import next_synthetic, next_synthetic_child
from tests.identity_service import TOKEN, FakeIdentityService

SetEnv = Callable[[str, str | None], None]


def _failures(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ResidentLoginFailure)) or 0)


@pytest.fixture
def down(identity_service: FakeIdentityService) -> Iterator[FakeIdentityService]:
    identity_service.refuse_with = 503
    yield identity_service
    identity_service.refuse_with = None


def test_someone_elses_id_under_another_name_is_refused_and_the_code_kept(
    resident: TestClient, session: Session, compound: str, identity_service: FakeIdentityService
) -> None:
    victim, impostor = next_synthetic(), next_synthetic()
    code = code_sent_to(resident, impostor.phone)
    before = len(identity_service.checks)
    refused, _ = register(resident, compound, impostor, id_number=victim.id_number, sms_code=code)
    assert refused.status_code == 422
    page = html.unescape(refused.text)
    assert 'data-testid="error-id_number"' in page and "实名核验未通过" in page
    assert person_by_id(session, victim.id_number) is None
    # The service was asked the three factors, with its token; the failure counts against the
    # rate limit, like a failed login, and is audited without the data.
    [check] = identity_service.checks[before:]
    assert (check.name, check.id_number, check.phone) == (
        impostor.name,
        victim.id_number,
        impostor.phone,
    )
    assert check.authorization == f"Bearer {TOKEN}"
    assert _failures(session) == 1
    denied = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "residents.login").order_by(AuditEntry.seq)
    ).all()[-1]
    assert denied.outcome == "denied" and denied.detail["reason"] == "identity_mismatch"
    assert victim.id_number not in str(denied.detail) and impostor.name not in str(denied.detail)
    # Corrected, the same code (not spent by the refusal) registers the impostor as themself.
    ok, _ = register(resident, compound, impostor, sms_code=code)
    assert ok.status_code == 303, ok.text
    assert person_by_id(session, impostor.id_number) is not None


def test_a_phone_registered_to_someone_else_is_refused(
    resident: TestClient, session: Session, compound: str
) -> None:
    """The carriers' real-name record ties a phone to its holder: proving that one holds a
    phone (the code) does not make it one's own."""
    person, relative = next_synthetic(), next_synthetic()
    response, _ = register(
        resident,
        compound,
        person,
        phone=relative.phone,
        sms_code=code_sent_to(resident, relative.phone),
    )
    assert response.status_code == 422
    assert "手机号码" in html.unescape(response.text) and "实名核验未通过" in response.text
    assert person_by_id(session, person.id_number) is None


def test_a_member_under_another_name_is_refused_on_their_own_field(
    resident: TestClient, session: Session, compound: str, identity_service: FakeIdentityService
) -> None:
    person, member, stranger = next_synthetic(), next_synthetic_child(), next_synthetic()
    before = len(identity_service.checks)
    response, _ = register(
        resident,
        compound,
        person,
        members=[member],
        member_name=["", stranger.name],
        member_id_number=["", member.id_number],
        member_phone=["", ""],
    )
    assert response.status_code == 422
    page = html.unescape(response.text)
    # The blank first slot keeps its place: the error is on member 2, where it was typed.
    assert 'data-testid="error-members-2-name"' in page
    assert "家庭成员2：姓名与身份证号码不一致" in page
    assert 'data-testid="error-id_number"' not in page
    assert (
        person_by_id(session, person.id_number) is None
        and person_by_id(session, member.id_number) is None
    )
    asked = identity_service.checks[before:]
    # A member is checked on name and ID only: members need no phone of their own.
    assert [(c.id_number, c.phone) for c in asked] == [
        (person.id_number, person.phone),
        (member.id_number, None),
    ]


def test_a_member_added_later_is_checked_too(
    resident: TestClient, session: Session, compound: str
) -> None:
    registered(resident, compound)
    member, stranger = next_synthetic_child(), next_synthetic()
    token = csrf(resident, "/residents/household")
    refused = resident.post(
        "/residents/household",
        data={"csrf_token": token, "name": stranger.name, "id_number": member.id_number},
    )
    assert refused.status_code == 422
    assert 'data-testid="error-name"' in refused.text and "实名核验未通过" in refused.text
    assert person_by_id(session, member.id_number) is None and _failures(session) == 1
    ok = resident.post(
        "/residents/household",
        data={"csrf_token": token, "name": member.name, "id_number": member.id_number},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and person_by_id(session, member.id_number) is not None


def test_testing_names_against_an_id_is_cut_off(
    resident: TestClient, session: Session, compound: str, settings_env: SetEnv
) -> None:
    """The form must not become a way to try names against an ID number at will."""
    settings_env("CITYBRAIN_LOGIN_MAX_FAILURES", "2")
    victim = next_synthetic()
    for _ in range(2):
        impostor = next_synthetic()
        answer, _ = register(resident, compound, impostor, id_number=victim.id_number)
        assert answer.status_code == 422
    # The right name now, but the ID is locked for the window: refused before any check.
    last, _ = register(resident, compound, victim)
    assert last.status_code == 429 and "尝试次数过多" in last.text
    assert person_by_id(session, victim.id_number) is None


def test_when_the_service_is_down_nothing_is_registered(
    resident: TestClient, session: Session, compound: str, down: FakeIdentityService
) -> None:
    response, person = register(resident, compound)
    assert response.status_code == 503
    assert "实名核验服务暂时不可用" in html.unescape(response.text)
    assert person_by_id(session, person.id_number) is None and _failures(session) == 0

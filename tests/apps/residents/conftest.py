"""Fixtures of the residents app: the real app on the test's transaction, a phone-like
resident client (no staff session), and helpers to register through the real form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.apps.residents.models import MemberInvitation
from citybrain.core.people.models import Person
from citybrain.kit.crypto import blind_index
from citybrain.kit.db import Database
from citybrain.simulate.persons import SyntheticPerson
from citybrain.web.app import create_app
from tests.factories import STREET_A, first_compound, next_synthetic
from tests.sms_gateway import running_gateway

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
# A community of 经八路街道 (金水区) and one of another street of the same district.
COMMUNITY = STREET_A + "003"
OTHER_COMMUNITY = "410105002001"


@pytest.fixture
def app(database: Database, session: Session) -> FastAPI:
    application = create_app(database)
    application.state.test_session = session
    return application


@pytest.fixture
def resident(app: FastAPI) -> Iterator[TestClient]:
    """A resident's browser: no staff session, its own cookies."""
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def staff(app: FastAPI) -> Iterator[TestClient]:
    """A staff member's browser."""
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def compound(session: Session) -> str:
    return first_compound(session, COMMUNITY)


def csrf(client: TestClient, path: str = "/residents/register") -> str:
    page = client.get(path)
    match = CSRF.search(page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def form_of(
    person: SyntheticPerson,
    compound: str,
    members: list[SyntheticPerson] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The registration form as a phone would post it."""
    data: dict[str, Any] = {
        "action": "submit",
        "name": person.name,
        "id_number": person.id_number,
        "phone": person.phone,
        "district": compound[:6],
        "street": compound[:9],
        "community": compound[:12],
        "compound_code": compound,
        "building": "3号楼",
        "unit": "2单元",
        "room": "501",
        "member_name": [m.name for m in members or []],
        "member_id_number": [m.id_number for m in members or []],
        "member_phone": ["" for _ in members or []],
    }
    data.update(overrides)
    return data


def send_code(client: TestClient, phone: str, path: str = "/residents/register") -> Any:
    """Press "get a code" (获取验证码) on the form at ``path`` for ``phone``."""
    data = {"action": "send_code", "phone": phone, "csrf_token": csrf(client, path)}
    return client.post(path, data=data)


def code_sent_to(client: TestClient, phone: str, path: str = "/residents/register") -> str:
    """Ask for a code on the form at ``path`` and read it off the SMS platform."""
    answer = send_code(client, phone, path)
    assert answer.status_code == 200, answer.text
    return running_gateway().code_for(phone)


def register(
    client: TestClient,
    compound: str,
    person: SyntheticPerson | None = None,
    members: list[SyntheticPerson] | None = None,
    **overrides: Any,
) -> tuple[Any, SyntheticPerson]:
    """Ask for the code, then post the registration form with it; returns the response (not
    followed) and the person. No code is asked for when ``sms_code=`` or ``phone=`` is
    given (a wrong phone gets none)."""
    person = person or next_synthetic()
    data = form_of(person, compound, members, **overrides)
    if "sms_code" not in overrides and "phone" not in overrides:
        data["sms_code"] = code_sent_to(client, str(data["phone"]))
    data["csrf_token"] = csrf(client)
    response = client.post("/residents/register", data=data, follow_redirects=False)
    return response, person


def login(client: TestClient, person: SyntheticPerson, **overrides: str) -> Any:
    """Ask for the code and log in with it (``sms_code=`` overrides it, asking for none)."""
    data = {"name": person.name, "id_number": person.id_number, "phone": person.phone}
    data.update(overrides)
    if "sms_code" not in overrides:
        data["sms_code"] = code_sent_to(client, data["phone"], "/residents/login")
    data["csrf_token"] = csrf(client, "/residents/login")
    return client.post("/residents/login", data=data, follow_redirects=False)


def registered(
    client: TestClient,
    compound: str,
    person: SyntheticPerson | None = None,
    members: list[SyntheticPerson] | None = None,
    **overrides: Any,
) -> SyntheticPerson:
    """Register successfully (the client is then logged in as the person)."""
    response, person = register(client, compound, person, members, **overrides)
    assert response.status_code == 303, response.text
    return person


def person_by_id(session: Session, id_number: str) -> Person | None:
    """The registered person holding ``id_number`` (found by its blind index), if any."""
    bidx = blind_index().digest(id_number, "id_number")
    return session.scalars(select(Person).where(Person.id_number_bidx == bidx)).first()


def invitation_of(session: Session, id_number: str) -> MemberInvitation | None:
    """The invitation awaiting the consent of the adult holding ``id_number``, if any."""
    bidx = blind_index().digest(id_number, "id_number")
    return session.scalars(
        select(MemberInvitation).where(MemberInvitation.id_number_bidx == bidx)
    ).first()


def consented(client: TestClient, session: Session, member: SyntheticPerson) -> Any:
    """The invited adult's consent, as the household page asks for it: text the code to their
    phone, read it off the SMS platform (they pass it on), enter it. Returns the response."""
    invitation = invitation_of(session, member.id_number)
    assert invitation is not None, "no invitation awaits this member"
    path = f"/residents/household/invitations/{invitation.id}"
    token = csrf(client, "/residents/household")
    sent = client.post(path, data={"csrf_token": token, "action": "send_code"})
    assert sent.status_code == 200, sent.text
    code = running_gateway().code_for(member.phone)
    data = {"csrf_token": token, "action": "confirm", "sms_code": code}
    return client.post(path, data=data, follow_redirects=False)

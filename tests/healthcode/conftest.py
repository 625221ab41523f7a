"""Fixtures of the health-code tests: the app on the test's transaction, a compound with a
resident, its gate and a device token for the gate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.authz.principal import Principal
from citybrain.core.authz.service import issue_token
from citybrain.core.geo.models import PLACE_COMPOUND_GATE, PLACE_VENUE, Place
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.people.models import Person
from citybrain.healthcode.codes import issue_code
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.risk.service import assert_fact
from citybrain.web.app import create_app
from tests.factories import PASSWORD, STREET_A, TEST_ACTOR, make_person, make_user


@pytest.fixture
def app(database: Database, session: Session) -> FastAPI:
    application = create_app(database)
    application.state.test_session = session
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@dataclass
class Gate:
    """A compound, one resident, its gate with a device token, and a venue with one."""

    officer: Principal
    compound: str
    gate: Place
    gate_token: str
    venue: Place
    venue_token: str
    resident: Person


@dataclass(frozen=True)
class StaffedGate:
    """For the browser tests: a resident of a compound, its gate, gate staff who may scan
    there, and a green code of the resident."""

    resident_ref: str
    compound: str
    gate_code: str
    code: str


def staffed_gate(database: Database, username: str) -> StaffedGate:
    """Load the hierarchy into ``database`` (committed: a real server serves it) and make a
    resident, their compound's gate and ``checkpoint_staff`` user ``username`` there."""
    with database.unit_of_work() as session:
        load_hierarchy(session)
    with database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A)
        resident = person_row(session, make_person(session, officer)[0].ref)
        gate = session.scalar(
            select(Place).where(
                Place.compound_code == resident.area_code, Place.kind == PLACE_COMPOUND_GATE
            )
        )
        assert gate is not None
        make_user(session, "checkpoint_staff", gate.area_code, username)
        code = issue_code(session, resident.ref, "green").text
        return StaffedGate(resident.ref, resident.area_code, gate.code, code)


def log_in_to_gate_page(page: Any, base: str, username: str) -> None:
    """Open the gate page in ``page`` (Playwright), signing in as ``username`` on the way."""
    page.goto(f"{base}/healthcode/gate")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_test_id("gate-title").wait_for()


def type_code(page: Any, code: str) -> Any:
    """Type ``code`` into the gate page and press Enter, as a scanner wedge does; the verdict
    (a Playwright locator)."""
    page.get_by_test_id("code-input").fill(code)
    page.get_by_test_id("code-input").press("Enter")
    return page.get_by_test_id("verdict")


def person_row(session: Session, ref: str) -> Person:
    person = session.scalar(select(Person).where(Person.ref == ref))
    assert person is not None
    return person


def make_red(session: Session, person: Person, compound: str | None = None) -> None:
    """Assert a confirmed case about ``person`` (red code; a red compound where they live)."""
    assert_fact(
        session,
        TEST_ACTOR,
        subject=person.id_number_bidx[:32],
        kind="confirmed_case",
        source="test",
        evidence={"test": 1},
        valid_from=clock.now() - dt.timedelta(hours=1),
        compound_code=compound,
    )


@pytest.fixture
def gate(session: Session) -> Gate:
    officer = make_user(session, "street_officer", STREET_A)
    masked, _ = make_person(session, officer)
    resident = person_row(session, masked.ref)
    compound = resident.area_code
    place = session.scalar(
        select(Place).where(Place.compound_code == compound, Place.kind == PLACE_COMPOUND_GATE)
    )
    assert place is not None, "the hierarchy has a gate for every compound"
    venue = session.scalar(
        select(Place).where(Place.kind == PLACE_VENUE, Place.area_code.startswith(STREET_A))
    )
    assert venue is not None
    _, gate_token = issue_token(session, TEST_ACTOR, name="gate-1", device_place_code=place.code)
    _, venue_token = issue_token(session, TEST_ACTOR, name="venue-1", device_place_code=venue.code)
    session.flush()
    return Gate(officer, compound, place, gate_token, venue, venue_token, resident)

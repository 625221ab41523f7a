"""Helpers for the risk tests: synthetic residents (optionally in one household) and their
subjects, and the clock moved by hand."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import first_compound, next_synthetic
from tests.web.conftest import app, client  # noqa: F401 - fixtures for the web tests
from tests.web.test_browser import browser  # noqa: F401 - fixture for the browser test

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz.principal import Principal
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import HouseholdIn, PersonIn
from citybrain.core.people.service import create_household, register_person
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.risk.settings import reset_risk_settings
from citybrain.risk.subjects import subject_of

T0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Zhengzhou


@dataclass
class Resident:
    """A registered synthetic person and their risk subject."""

    ref: str
    subject: str
    area_code: str
    household_id: int | None
    id_number: str = ""  # synthetic, for the tests that hand lists of numbers over


def resident(
    session: Session,
    registrar: Principal,
    *,
    compound: str | None = None,
    household_id: int | None = None,
) -> Resident:
    """Register a new synthetic person (in ``compound`` or the registrar's first one)."""
    synthetic = next_synthetic()
    code = None if household_id else (compound or first_compound(session, registrar.area_code))
    masked, created = register_person(
        session,
        registrar,
        PersonIn(
            name=synthetic.name,
            id_number=synthetic.id_number,
            phone=synthetic.phone,
            compound_code=code,
            household_id=household_id,
        ),
    )
    assert created
    person = session.scalars(select(Person).where(Person.ref == masked.ref)).one()
    return Resident(
        masked.ref, subject_of(person), person.area_code, person.household_id, synthetic.id_number
    )


def household(
    session: Session, registrar: Principal, members: int, compound: str | None = None
) -> list[Resident]:
    """A household of ``members`` registered persons in one compound."""
    code = compound or first_compound(session, registrar.area_code)
    opened = create_household(session, registrar, HouseholdIn(compound_code=code))
    return [resident(session, registrar, household_id=opened.id) for _ in range(members)]


def audits(session: Session, action: str) -> list[AuditEntry]:
    """Audit rows of ``action``, oldest first."""
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        )
    )


def events(session: Session, topic: str) -> list[dict[str, Any]]:
    """Payloads of the outbox events of ``topic``, oldest first."""
    session.flush()
    return [
        e.payload
        for e in session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == topic).order_by(OutboxEvent.id)
        )
    ]


@pytest.fixture
def at() -> Iterator[Any]:
    """Move the clock by hand: ``at(moment)`` freezes it there until the test ends."""
    stack: list[Any] = []

    def move(moment: dt.datetime) -> None:
        while stack:
            stack.pop().__exit__(None, None, None)
        frozen = clock.frozen(moment)
        frozen.__enter__()
        stack.append(frozen)

    yield move
    while stack:
        stack.pop().__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _fresh_risk_settings() -> Iterator[None]:
    reset_risk_settings()
    yield
    reset_risk_settings()


@dataclass
class GateWriter:
    """How often a gate's scan writer found SQLite's write lock free (``taken``)."""

    taken: int = 0


@contextmanager
def a_gate_writing(database: Database) -> Iterator[GateWriter]:
    """Beside the block, a gate's scan writer as ``healthcode.writer`` behaves on SQLite: it
    looks for the write lock every 2 ms and never waits for it (``BEGIN IMMEDIATE`` with no
    busy timeout). A long job in the block must leave it free now and then."""
    seen = GateWriter()
    done = threading.Event()

    def look() -> None:
        raw = sqlite3.connect(database.url.removeprefix("sqlite:///"), timeout=0)
        try:
            while not done.is_set():
                try:
                    raw.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:  # busy: look again in 2 ms
                    time.sleep(0.002)
                    continue
                raw.execute("COMMIT")
                seen.taken += 1
                time.sleep(0.002)
        finally:
            raw.close()

    thread = threading.Thread(target=look)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(5)

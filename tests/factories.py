"""Factories for tests: users of every role, synthetic persons in real compounds."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import Actor
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.service import create_user, principal_for
from citybrain.core.geo.models import Compound
from citybrain.core.people.schemas import PersonIn, PersonMasked
from citybrain.core.people.service import register_person
from citybrain.kit import clock
from citybrain.simulate.persons import SyntheticPerson, generate_persons

TEST_ACTOR = Actor("test", "test", None)
PASSWORD = "test-password-1"
_counter = itertools.count(1)
# The synthetic population the tests draw from; the stand-in for the city's identity service
# (tests/identity_service.py) knows exactly these people, as the population registry would.
POPULATION_SIZE = 50_000
POPULATION_SEED = 424242
_people = generate_persons(POPULATION_SIZE, seed=POPULATION_SEED)

# Two streets of 金水区 and one of 中原区, with a community each.
STREET_A = "410105001"  # 经八路街道
STREET_B = "410105002"
OTHER_DISTRICT_STREET = "410102001"


def make_user(
    session: Session, role: str, area_code: str, username: str | None = None
) -> Principal:
    """A user with ``role`` over ``area_code``; returns their principal."""
    user = create_user(
        session,
        TEST_ACTOR,
        username=username or f"user{next(_counter)}",
        password=PASSWORD,
        role=role,
        area_code=area_code,
    )
    return principal_for(user)


def first_compound(session: Session, area_code: str) -> str:
    """The first compound (by code) inside ``area_code``."""
    code = session.scalar(
        select(Compound.code).where(Compound.code.startswith(area_code)).order_by(Compound.code)
    )
    assert code is not None, f"no compound in {area_code}"
    return code


def next_synthetic() -> SyntheticPerson:
    """A synthetic person not used before in this test run."""
    return next(_people)


def next_synthetic_child() -> SyntheticPerson:
    """A synthetic person under 16 today (a child a guardian registers), not used before."""
    today = clock.today_local()
    born_after = today.replace(year=today.year - 16)
    return next(p for p in _people if p.birth_date > born_after)


def next_synthetic_adult() -> SyntheticPerson:
    """A synthetic person of 20 or over today, not used before."""
    today = clock.today_local()
    born_before = today.replace(year=today.year - 20) - dt.timedelta(days=1)
    return next(p for p in _people if p.birth_date < born_before)


def make_person(
    session: Session, registrar: Principal, area_code: str | None = None
) -> tuple[PersonMasked, SyntheticPerson]:
    """Register a new synthetic person in the first compound of ``area_code``."""
    synthetic = next_synthetic()
    compound = first_compound(session, area_code or registrar.area_code)
    person, created = register_person(
        session,
        registrar,
        PersonIn(
            name=synthetic.name,
            id_number=synthetic.id_number,
            phone=synthetic.phone,
            compound_code=compound,
        ),
    )
    assert created
    return person, synthetic

"""Fixtures of the cockpit page's browser tests: a served city with a few cases, the
background worker delivering events, and users of the command centre and of one district."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from citybrain.core.audit.service import Actor
from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.service import issue_token
from citybrain.core.geo.models import LEVEL_STREET, Area
from citybrain.core.geo.repository import district_polygons
from citybrain.core.geo.service import load_hierarchy
from citybrain.kit import clock
from citybrain.kit.db import Database, use_database
from citybrain.risk import service as risk
from citybrain.risk.models import CompoundTier, Fact, PersonColour
from citybrain.web.app import create_app
from tests.factories import PASSWORD, TEST_ACTOR, first_compound, make_user
from tests.risk.conftest import resident
from tests.web.test_browser import serving

HEALTH_COMMISSION = Actor("agency:health_commission", "agency", None)
COMMANDER = "cockpit_commander"
DISTRICT_OFFICER = "cockpit_district"
OFFICER_DISTRICT = "410105"  # 金水区
OTHER_DISTRICT = "410102"  # 中原区
WALL = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}
# The machine is shared (2 cores, a benchmark beside): the first render gets time; the
# live update is held to the issue's 5 seconds.
FIRST_RENDER_MS = 30_000


@dataclass
class CockpitCity:
    """A served city for the cockpit's browser tests."""

    base: str
    database: Database
    commander_token: str
    spare_ref: str  # a registered person in OTHER_DISTRICT with nothing on record yet
    spare_compound: str

    def api(self, path: str, **params: Any) -> Any:
        """GET a cockpit API path as the commander; the JSON body."""
        response = httpx.get(
            f"{self.base}{path}",
            params=params,
            headers={"authorization": f"Bearer {self.commander_token}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()


def polygon_codes() -> list[str]:
    """The adcodes of the district polygons the platform ships (the 12 administrative units)."""
    return sorted(str(f["properties"]["adcode"]) for f in district_polygons()["features"])


def count_facts(database: Database, kind: str, area: str) -> int:
    """Persons with a standing (not withdrawn) fact of ``kind`` in ``area``, straight from the
    facts table: the fact's compound, else the compound the person's colour is kept for."""
    place = func.coalesce(Fact.compound_code, PersonColour.area_code)
    with database.unit_of_work() as session:
        return int(
            session.scalar(
                select(func.count(func.distinct(Fact.subject)))
                .select_from(Fact)
                .outerjoin(PersonColour, PersonColour.subject == Fact.subject)
                .where(
                    Fact.kind == kind,
                    Fact.retracted_at.is_(None),
                    place.startswith(area),
                )
            )
            or 0
        )


def count_colours(database: Database, colour: str, area: str) -> int:
    """Persons of ``area`` whose code is ``colour`` (a manual colour wins), from person_colours."""
    effective = func.coalesce(PersonColour.override_colour, PersonColour.colour)
    with database.unit_of_work() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(PersonColour)
                .where(effective == colour, PersonColour.area_code.startswith(area))
            )
            or 0
        )


def count_tiers(database: Database, tier: str, area: str) -> int:
    """Compounds of ``area`` in ``tier``, from compound_tiers."""
    with database.unit_of_work() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(CompoundTier)
                .where(CompoundTier.tier == tier, CompoundTier.compound_code.startswith(area))
            )
            or 0
        )


def streets_of(database: Database, district: str) -> int:
    """How many streets (街道/乡镇) the hierarchy has in ``district``."""
    with database.unit_of_work() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Area)
                .where(Area.parent_code == district, Area.level == LEVEL_STREET)
            )
            or 0
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def _confirm(database: Database, subject: str) -> None:
    with database.unit_of_work() as session:
        risk.assert_fact(
            session,
            HEALTH_COMMISSION,
            subject=subject,
            kind="confirmed_case",
            source="analysis.case_report",
            evidence={"record_ids": [1]},
            valid_from=clock.now(),
        )


@pytest.fixture
def cockpit_city(fresh_database: Database) -> Iterator[CockpitCity]:
    """The hierarchy; a commander (city) and a district officer (金水区); a confirmed case
    in each of two districts and a close contact in 金水区; the app served with its
    background worker (event delivery), until the cockpit's figures show the cases."""
    database = fresh_database
    with database.unit_of_work() as session:
        load_hierarchy(session)
    with database.unit_of_work() as session:
        commander = make_user(session, "city_commander", "4101", COMMANDER)
        make_user(session, "district_officer", OFFICER_DISTRICT, DISTRICT_OFFICER)
        other = first_compound(session, OTHER_DISTRICT)
        mine = first_compound(session, OFFICER_DISTRICT)
        case_other = resident(session, commander, compound=other)
        case_mine = resident(session, commander, compound=mine)
        contact = resident(session, commander, compound=mine)
        spare = resident(session, commander, compound=other)
        user = authz_repository.user_by_id(session, commander.id)
        _token, secret = issue_token(session, TEST_ACTOR, name="cockpit-test", user=user)
    _confirm(database, case_other.subject)
    _confirm(database, case_mine.subject)
    with database.unit_of_work() as session:
        risk.assert_fact(
            session,
            HEALTH_COMMISSION,
            subject=contact.subject,
            kind="close_contact",
            source="analysis.contact_trace",
            evidence={"record_ids": [2]},
            valid_from=clock.now(),
        )
    # The background worker finds the database the way a server process does.
    with use_database(database), serving(create_app(database, background=True)) as base:
        city = CockpitCity(base, database, secret, spare.ref, other)
        # The figures are pre-aggregated from events: wait for the worker to deliver them.
        wait_until(
            lambda: _figure(city.api("/api/v1/cockpit/overview"), "confirmed_total") == 2,
            60,
            "the seeded cases reach the cockpit's figures",
        )
        yield city


def _figure(overview: dict[str, Any], key: str) -> int | None:
    for figure in overview["figures"]:
        if figure["key"] == key:
            value = figure["value"]
            return None if value is None else int(value)
    raise AssertionError(f"figure {key} missing from the overview")


def open_cockpit(
    browser: Any, base: str, username: str, viewport: dict[str, int], **context: Any
) -> Any:
    """A new page logged in as ``username`` showing /cockpit, after its first complete
    render (``document.body.dataset.ready``)."""
    page = browser.new_context(viewport=viewport, locale="zh-CN", **context).new_page()
    page.goto(f"{base}/login?next=/cockpit")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/cockpit", timeout=FIRST_RENDER_MS)
    page.wait_for_function(
        # A function, not an expression: the page's CSP forbids eval of strings.
        "() => document.body.dataset.ready === '1' && window.cockpit.ready === true",
        timeout=FIRST_RENDER_MS,
    )
    return page

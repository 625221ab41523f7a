"""The trajectory API and page for the city command centre, on a small simulated city taken in
and linked: who may read a trajectory, the purpose every read must state, the audit trail, the
page grouped by day, its CSV export, and the page in headless Chromium on a desk and a phone."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from citybrain.analysis.linkage import link
from citybrain.analysis.timeline import ACTION, EXPORT_ACTION, timeline
from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz import repository
from citybrain.core.authz.service import issue_token
from citybrain.core.geo.service import load_hierarchy
from citybrain.datahub import lake, routes
from citybrain.datahub.service import Intake
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.conftest import DatabaseFactory
from tests.datahub.feeds import rail_rows, travellers, write_rail
from tests.factories import PASSWORD, TEST_ACTOR, make_user
from tests.web.conftest import csrf_of, log_in
from tests.web.test_browser import ARTIFACTS, serving
from tests.web.test_browser import browser as browser  # the fixture

# An agency wrote a formula where a station belongs: the export must not let Excel run it.
FORMULA_STATION = "=1+2"
USERS = {
    "commander": ("city_commander", "4101"),
    "district_commander": ("city_commander", "410105"),
    "district_officer": ("district_officer", "410105"),
    "data_officer": ("data_officer", "4101"),
}


@dataclass
class Site:
    database: Database
    paths: lake.LakePaths
    users: dict[str, int]
    person: int  # someone with records on several days
    formula_record: int  # the ticket with the formula for a station

    def app(self) -> FastAPI:
        application = create_app(self.database)
        application.dependency_overrides[routes.lake_paths] = lambda: self.paths
        return application

    def bearer(self, who: str) -> dict[str, str]:
        with self.database.unit_of_work() as session:
            user = repository.user_by_id(session, self.users[who])
            assert user is not None
            _token, secret = issue_token(session, TEST_ACTOR, name="test", user=user)
        return {"authorization": f"Bearer {secret}"}

    def audit(self, action: str = ACTION) -> list[AuditEntry]:
        with self.database.unit_of_work() as session:
            return list(
                session.scalars(
                    select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
                )
            )


@pytest.fixture(scope="module")
def site(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from tests.simulate.conftest import geo_input

    root = tmp_path_factory.mktemp("timeline-web")
    feeds = root / "feeds"
    run_simulation(SimulationConfig(people=1000, days=3, seed=5), geo_input(), feeds, root / "t")
    rows = rail_rows(travellers(2, seed=41), dt.date(2020, 1, 11), seed=41)
    rows[0] = rows[0].replace(",武汉,", f",{FORMULA_STATION},")
    write_rail(feeds, dt.date(2020, 1, 11), rows, suffix="_extra")
    database = database_factory.new_database()
    with database.unit_of_work() as session:
        load_hierarchy(session)
    with database.unit_of_work() as session:
        users = {
            name: make_user(session, role, area, name).id for name, (role, area) in USERS.items()
        }
    paths = lake.LakePaths(root / "var")
    Intake(paths).ingest_folder(database, feeds)
    keys = link(paths, database).path
    con = duckdb.connect()
    busiest = con.execute(
        f"""
        SELECT k.person_key FROM read_parquet('{paths.lake}/*/*/*/*.parquet',
                                              hive_partitioning = true, union_by_name = true) l
        JOIN read_parquet('{keys}') k USING (record_id)
        GROUP BY 1 ORDER BY count(DISTINCT l.day) DESC, count(*) DESC, 1 LIMIT 1
        """
    ).fetchall()[0][0]
    formula = con.execute(
        f"""
        SELECT record_id FROM read_parquet('{paths.kind_dir("travel")}/*/*/*.parquet')
        WHERE origin = '{FORMULA_STATION}'
        """
    ).fetchall()[0][0]
    con.close()
    yield Site(database, paths, users, int(busiest), int(formula))
    database.dispose()


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(site.app(), base_url="http://testserver") as test_client:
        yield test_client


API = "/api/v1/analysis/timeline"


def test_the_commander_reads_a_trajectory_and_the_read_is_audited(
    site: Site, client: TestClient
) -> None:
    before = len(site.audit())
    answer = client.get(
        API, params={"person_key": site.person, "purpose": "流调"}, headers=site.bearer("commander")
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = timeline(site.paths, site.database, site.person).to_pylist()
    assert body["person_key"] == site.person and body["count"] == len(expected) > 0
    assert body["more"] is False
    assert [i["record_id"] for i in body["items"]] == [r["record_id"] for r in expected]
    assert all(i["category_name"] and i["rule"] for i in body["items"])
    assert len({i["day"] for i in body["items"]}) >= 2
    (entry,) = site.audit()[before:]
    assert (entry.actor, entry.outcome, entry.purpose) == (
        f"user:{site.users['commander']}",
        "ok",
        "流调",
    )
    assert entry.object_type == "person_key" and entry.object_id == str(site.person)
    assert entry.detail["rows"] == len(expected)


def test_a_record_id_and_a_window_narrow_the_read(site: Site, client: TestClient) -> None:
    everything = timeline(site.paths, site.database, site.person).to_pylist()
    day = everything[-1]["day"]
    record = everything[-1]["record_id"]
    answer = client.get(
        API,
        params={"record_id": record, "since": day.isoformat(), "purpose": "密接排查", "limit": 2},
        headers=site.bearer("commander"),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["person_key"] == site.person and body["record_id"] == record
    assert body["since"] == day.isoformat() and body["count"] <= 2
    assert all(i["day"] >= day.isoformat() for i in body["items"])
    in_window = [r for r in everything if r["day"] >= day]
    assert body["more"] == (len(in_window) > 2)


@pytest.mark.parametrize("who", ["district_commander", "district_officer", "data_officer"])
def test_other_roles_and_district_accounts_are_refused_and_that_is_audited(
    site: Site, client: TestClient, who: str
) -> None:
    before = len(site.audit())
    answer = client.get(
        API, params={"person_key": site.person, "purpose": "流调"}, headers=site.bearer(who)
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "permission_denied"
    (entry,) = site.audit()[before:]
    assert (entry.actor, entry.outcome) == (f"user:{site.users[who]}", "denied")


def test_a_purpose_is_required(site: Site, client: TestClient) -> None:
    headers = site.bearer("commander")
    before = len(site.audit())
    missing = client.get(API, params={"person_key": site.person}, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "purpose"
    blank = client.get(API, params={"person_key": site.person, "purpose": "   "}, headers=headers)
    assert blank.status_code == 422 and blank.json()["error"]["field"] == "purpose"
    both = client.get(
        API, params={"person_key": site.person, "record_id": 1, "purpose": "流调"}, headers=headers
    )
    assert both.status_code == 422
    assert site.audit()[before:] == []  # nothing was read
    assert client.get(API, params={"person_key": site.person, "purpose": "流调"}).status_code == 401


def test_an_unknown_person_is_404_and_the_attempt_is_audited(
    site: Site, client: TestClient
) -> None:
    before = len(site.audit())
    answer = client.get(
        API, params={"person_key": 3, "purpose": "流调"}, headers=site.bearer("commander")
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_person"
    (entry,) = site.audit()[before:]
    assert (entry.object_id, entry.outcome, entry.purpose) == ("3", "failed", "流调")


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr class="entry" data-record="(\d+)"', html)


def test_the_page_shows_the_timeline_by_day_and_exports_it(site: Site, client: TestClient) -> None:
    log_in(client, "commander")
    form = client.get("/analysis/timeline")
    assert form.status_code == 200 and "个人轨迹" in form.text
    token = csrf_of(client, "/analysis/timeline")
    fields: dict[str, Any] = {
        "csrf_token": token,
        "by": "person",
        "ref": str(site.person),
        "purpose": "流调",
    }
    page = client.post("/analysis/timeline", data=fields)
    assert page.status_code == 200, page.text
    expected = timeline(site.paths, site.database, site.person).to_pylist()
    assert _rows(page.text) == [str(r["record_id"]) for r in expected]
    days = re.findall(r'<tbody data-day="([0-9-]+)">', page.text)
    assert days == sorted({r["day"].isoformat() for r in expected})
    assert 'data-testid="audited"' in page.text and "流调" in page.text
    assert site.audit()[-1].actor == f"user:{site.users['commander']}"
    # Without the CSRF token the query is refused; an unknown key is said on the form.
    assert client.post("/analysis/timeline", data={**fields, "csrf_token": "x"}).status_code == 403
    unknown = client.post("/analysis/timeline", data={**fields, "ref": "3"})
    assert unknown.status_code == 404 and 'data-testid="timeline-error"' in unknown.text
    no_purpose = client.post("/analysis/timeline", data={**fields, "purpose": ""})
    assert no_purpose.status_code == 422 and 'data-testid="purpose-error"' in no_purpose.text
    # The export: by record id, the formula an agency wrote neutralised, and audited.
    exported = client.post(
        "/analysis/timeline.csv",
        data={**fields, "by": "record", "ref": str(site.formula_record), "purpose": "数据核查"},
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert table[0][:3] == ["日期", "开始时间", "结束时间"]
    ticket = next(r for r in table[1:] if r[8] == str(site.formula_record))
    assert ticket[6].startswith("'" + FORMULA_STATION + " → ")
    entry = site.audit(EXPORT_ACTION)[-1]
    assert (entry.purpose, entry.detail["record_id"]) == ("数据核查", site.formula_record)


def test_the_page_is_refused_to_other_roles(site: Site, client: TestClient) -> None:
    log_in(client, "district_officer")
    assert client.get("/analysis/timeline").status_code == 403


@pytest.fixture
def live(site: Site) -> Iterator[str]:
    with serving(site.app()) as base:
        yield base


@pytest.mark.browser
def test_the_page_in_chromium_on_a_desk_and_a_phone(site: Site, live: str, browser: object) -> None:
    from playwright.sync_api import Browser, Page, expect

    assert isinstance(browser, Browser)
    ARTIFACTS.mkdir(exist_ok=True)
    expected = timeline(site.paths, site.database, site.person).to_pylist()

    def look_up(page: Page) -> None:
        page.goto(f"{live}/login")
        page.fill("#username", "commander")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page.get_by_test_id("home-title")).to_be_visible()
        page.goto(f"{live}/analysis/timeline")
        expect(page.locator("h1")).to_have_text("个人轨迹")
        page.fill("#ref", str(site.person))
        page.fill("#purpose", "流调")
        page.get_by_test_id("show").click()
        expect(page.get_by_test_id("audited")).to_contain_text("流调")
        expect(page.locator("tr.entry")).to_have_count(len(expected))

    desk = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    look_up(desk)
    first_day = expected[0]["day"].isoformat()
    expect(desk.locator(f'tbody[data-day="{first_day}"] th.day')).to_contain_text(first_day)
    desk.screenshot(path=str(ARTIFACTS / "timeline-desktop.png"), full_page=True)
    with desk.expect_download() as download:
        desk.get_by_test_id("export").click()
    assert download.value.suggested_filename == f"timeline-{site.person}.csv"
    desk.close()

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN"
    )
    page = phone.new_page()
    look_up(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the timeline is {width}px wide on a 390px phone"
    page.screenshot(path=str(ARTIFACTS / "timeline-phone.png"), full_page=True)
    phone.close()

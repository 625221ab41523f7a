"""Headless Chromium: a data-centre officer watches the board and reviews the quarantine, on a
desk and on a phone (no sideways scrolling)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citybrain.core.geo.service import load_hierarchy
from citybrain.datahub import lake, routes
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.datahub.webkit import ingest, rail_file
from tests.factories import PASSWORD, make_user
from tests.web.test_browser import ARTIFACTS, serving
from tests.web.test_browser import browser as browser  # the fixture

pytestmark = pytest.mark.browser


@pytest.fixture
def datahub_server(fresh_database: Database, tmp_path: Path) -> Iterator[str]:
    paths = lake.LakePaths(tmp_path / "data")
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        make_user(session, "data_officer", "4101", "dataofficer")
        ingest(session, paths, rail_file(6), "rail_ticket/rail_ticket_20200121.csv")
    app = create_app(fresh_database)
    app.dependency_overrides[routes.lake_paths] = lambda: paths
    with serving(app) as base:
        yield base


def _log_in(page: object, base: str) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{base}/login")
    page.fill("#username", "dataofficer")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("home-title")).to_be_visible()


def test_officer_filters_the_board_and_reviews_masked_rows(
    datahub_server: str, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    _log_in(page, datahub_server)
    page.click("header nav a[href='/datahub']")
    expect(page.locator("h1")).to_have_text("数据汇聚状态")
    expect(page.locator("[data-testid=status-table] tbody tr")).to_have_count(42)
    page.select_option("#agency", "铁路")
    page.click("[data-testid=board-filter] button[type=submit]")
    expect(page.locator("[data-testid=status-table] tbody tr")).to_have_count(2)
    expect(page.locator("tr[data-code=rail_ticket]")).to_contain_text("正常")
    page.screenshot(path=str(ARTIFACTS / "datahub-board-desktop.png"), full_page=True)
    page.click("tr[data-code=rail_ticket] a[href^='/datahub/quarantine']")
    expect(page.locator("[data-testid=raw]")).to_have_count(2)
    expect(page.locator("[data-testid=raw]").first).to_contain_text("**********")
    table = page.get_by_test_id("quarantine-table")
    expect(table.get_by_text("身份证号码校验码错误")).to_be_visible()
    page.get_by_test_id("lang-switch").click()
    expect(page.locator("h1")).to_have_text("Quarantined rows")


@pytest.mark.parametrize("path", ["/datahub", "/datahub/files", "/datahub/quarantine"])
def test_datahub_pages_fit_a_phone(datahub_server: str, browser: object, path: str) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN"
    )
    page = context.new_page()
    _log_in(page, datahub_server)
    page.goto(f"{datahub_server}{path}")
    assert page.locator("table.dh").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{path} is {width}px wide on a 390px phone"
    name = path.strip("/").replace("/", "-")
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    context.close()

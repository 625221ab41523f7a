"""The risk staff pages in headless Chromium on a phone: a second commander approves a rule
version from its dry run, a street officer reads a person's colour and reasons and decides
an appeal. Nothing is wider than the screen."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from tests.factories import PASSWORD, STREET_A, make_user
from tests.risk.conftest import resident
from tests.risk.test_rulesets import SECONDARY_RED
from tests.web.test_browser import ARTIFACTS, serving

from citybrain.core.audit.service import Actor
from citybrain.core.geo.service import load_hierarchy
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.risk import service
from citybrain.risk.rulesets import propose_rule_set
from citybrain.web.app import create_app

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def town(fresh_database: Database) -> Iterator[dict[str, Any]]:
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        proposer = make_user(session, "city_commander", "4101", "proposer")
        make_user(session, "city_commander", "4101", "approver")
        street = make_user(session, "street_officer", STREET_A, "street")
        person = resident(session, street)
        service.assert_fact(
            session,
            street.actor,
            subject=person.subject,
            kind="secondary_contact",
            source="analysis.contacts",
            evidence={"case_key": 42, "record_ids": [1, 2]},
            valid_from=clock.now() - dt.timedelta(hours=3),
        )
        service.file_appeal(
            session,
            Actor("resident:1"),
            subject=person.subject,
            text="那天我在家，没有去过该场所",
            street_code=STREET_A,
        )
        propose_rule_set(session, proposer, SECONDARY_RED, note="次密接改为红码")
    with serving(create_app(fresh_database)) as base:
        yield {"base": base, "ref": person.ref}


def _log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def _fits(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_risk_pages_on_a_phone(town: dict[str, Any], browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    ARTIFACTS.mkdir(exist_ok=True)
    base = town["base"]
    context = browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
    page = context.new_page()
    _log_in(page, base, "approver")
    page.get_by_test_id("nav-risk").click()
    expect(page.locator("h1")).to_have_text("健康码风险管理")
    page.goto(f"{base}/risk/rules")
    expect(page.get_by_test_id("changed-2")).to_have_text("1")
    expect(page.get_by_test_id("dry-run-2")).to_contain_text("金水区")
    _fits(page)
    page.screenshot(path=str(ARTIFACTS / "risk-rules-phone.png"), full_page=True)
    page.get_by_test_id("approve-2").click()
    expect(page.get_by_test_id("approvals-2")).to_contain_text("1 / 2")
    expect(page.get_by_test_id("status-2")).to_have_text("待批准")
    expect(page.get_by_test_id("approve-2")).to_have_count(0)  # not twice
    context.close()

    context = browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
    page = context.new_page()
    _log_in(page, base, "street")
    page.goto(f"{base}/risk/persons/{town['ref']}")
    expect(page.get_by_test_id("colour")).to_have_text("黄码")
    expect(page.get_by_test_id("reasons")).to_contain_text("次密切接触者")
    _fits(page)
    page.screenshot(path=str(ARTIFACTS / "risk-person-phone.png"), full_page=True)
    page.goto(f"{base}/risk/appeals")
    card = page.locator("[data-testid^=appeal-]").first
    expect(card).to_contain_text("那天我在家")
    expect(page.get_by_test_id("view-open")).to_have_text("待处理 1")
    expect(card.locator("[data-testid^=appellant-]")).to_contain_text("*")
    _fits(page)
    card.locator("summary").click()
    facts = card.locator("select[name=fact_id] option")
    expect(facts.nth(1)).to_contain_text("次密切接触者")
    card.locator("input[value=rejected]").check()
    card.locator("input[name=note]").fill("经核实有到访记录")
    card.locator("button[type=submit]").click()
    expect(page.get_by_test_id("no-appeals")).to_be_visible()
    page.goto(f"{base}/risk/appeals?status=decided")
    expect(page.locator("[data-testid^=appeal-]").first).to_contain_text("申诉不成立")
    context.close()

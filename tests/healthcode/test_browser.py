"""The gate page in headless Chromium on a phone-sized screen, against a real server (scans go
through the real group-commit writer): a green resident passes, then after a confirmed case
the same code is turned back at the closed compound's gate."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from citybrain.core.geo.models import PLACE_COMPOUND_GATE, Place
from citybrain.core.geo.service import load_hierarchy
from citybrain.healthcode.codes import issue_code
from citybrain.healthcode.models import Scan
from citybrain.healthcode.writer import close_writers
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.factories import PASSWORD, STREET_A, make_person, make_user
from tests.healthcode.conftest import make_red, person_row
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
__all__ = ["browser"]


def test_gate_page_on_a_phone(fresh_database: Database, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A)
        resident = person_row(session, make_person(session, officer)[0].ref)
        gate = session.scalar(
            select(Place).where(
                Place.compound_code == resident.area_code, Place.kind == PLACE_COMPOUND_GATE
            )
        )
        assert gate is not None
        make_user(session, "checkpoint_staff", gate.area_code, "gatekeeper")
        code = issue_code(session, resident.ref, "green").text
        gate_code, compound = gate.code, resident.area_code
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with serving(create_app(fresh_database)) as base:
            page = browser.new_page(
                viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True
            )
            page.goto(f"{base}/healthcode/gate")
            page.fill("#username", "gatekeeper")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.get_by_test_id("gate-title")).to_have_text("门岗扫码")
            page.select_option("#place_code", gate_code)
            # A scanner wedge types the code and presses Enter.
            page.get_by_test_id("code-input").fill(code)
            page.get_by_test_id("code-input").press("Enter")
            verdict = page.get_by_test_id("verdict")
            expect(verdict).to_have_attribute("data-verdict", "pass")
            expect(verdict).to_contain_text("通行")
            expect(page.get_by_test_id("reason")).to_have_text("绿码，请通行")
            # The page is ready for the next person: the field is empty and focused.
            expect(page.get_by_test_id("code-input")).to_be_focused()
            expect(page.get_by_test_id("code-input")).to_have_value("")
            box = verdict.bounding_box()
            assert box is not None and box["width"] <= 390
            page.screenshot(path=str(ARTIFACTS / "healthcode-gate-pass-phone.png"), full_page=True)

            with fresh_database.unit_of_work() as session:
                make_red(session, person_row(session, resident.ref), compound)
            page.check("input[name=direction][value=exit]")
            page.get_by_test_id("code-input").fill(code)
            page.get_by_test_id("scan-button").click()
            expect(verdict).to_have_attribute("data-verdict", "deny")
            expect(verdict).to_contain_text("禁止通行")
            expect(page.get_by_test_id("reason")).to_have_text("小区封闭管理（红色），禁止外出")
            page.screenshot(path=str(ARTIFACTS / "healthcode-gate-deny-phone.png"), full_page=True)
            page.close()
    finally:
        close_writers()
    with fresh_database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Scan)) == 2

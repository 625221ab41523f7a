"""The gate page in headless Chromium on a phone-sized screen, against a real server (scans go
through the real group-commit writer): a green resident passes, then after a confirmed case
the same code is turned back at the closed compound's gate."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from citybrain.healthcode.models import Scan
from citybrain.healthcode.writer import close_writers
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.healthcode.conftest import (
    log_in_to_gate_page,
    make_red,
    person_row,
    staffed_gate,
    type_code,
)
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
__all__ = ["browser"]


def test_gate_page_on_a_phone(fresh_database: Database, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    staffed = staffed_gate(fresh_database, "gatekeeper")
    code, gate_code, compound = staffed.code, staffed.gate_code, staffed.compound
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with serving(create_app(fresh_database)) as base:
            page = browser.new_page(
                viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True
            )
            log_in_to_gate_page(page, base, "gatekeeper")
            expect(page.get_by_test_id("gate-title")).to_have_text("门岗扫码")
            page.select_option("#place_code", gate_code)
            # A scanner wedge types the code and presses Enter.
            verdict = type_code(page, code)
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
                make_red(session, person_row(session, staffed.resident_ref), compound)
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

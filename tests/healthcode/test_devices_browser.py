"""The device page in headless Chromium on a phone-sized screen: grid staff enrol a gate's
device, read its token once, renew it and withdraw it, each after confirming."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from citybrain.core.authz.models import ApiToken
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.factories import PASSWORD, make_user
from tests.healthcode.conftest import staffed_gate
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
__all__ = ["browser"]


def test_device_page_on_a_phone(fresh_database: Database, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    staffed = staffed_gate(fresh_database, "gatekeeper")
    with fresh_database.unit_of_work() as session:
        make_user(session, "grid_worker", staffed.compound[:12], "gridworker")
    ARTIFACTS.mkdir(exist_ok=True)
    with serving(create_app(fresh_database)) as base:
        page = browser.new_page(
            viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True
        )
        page.goto(f"{base}/healthcode/devices")
        page.fill("#username", "gridworker")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.get_by_test_id("enrol").locator("summary").click()
        page.fill("#name", "南门1号闸机")
        page.fill("#place_code", staffed.gate_code)
        page.select_option("#days", "30")
        page.get_by_role("button", name="登记并生成令牌").click()
        token = page.get_by_test_id("device-token")
        expect(token).to_contain_text("cbt_")
        expect(page.get_by_test_id("device-token-qr").locator("svg")).to_be_visible()
        # Nothing is wider than the phone's screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        page.screenshot(
            path=str(ARTIFACTS / "healthcode-devices-enrolled-phone.png"), full_page=True
        )
        secret = token.inner_text().strip()

        page.goto(f"{base}/healthcode/devices")
        expect(page.get_by_test_id("devices")).to_contain_text("南门1号闸机")
        assert secret not in page.content()
        # Renewed (same token), after a card that says what it does.
        page.locator("[data-testid^=renew-]").first.click()
        expect(page.get_by_test_id("renew-confirm")).to_contain_text("设备无需重新配置")
        page.select_option("#renew-days", "365")
        page.get_by_test_id("renew-yes").click()
        expect(page.get_by_test_id("device-renewed")).to_contain_text("设备已续期：南门1号闸机")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator("[data-testid^=withdraw-]").first.click()
        expect(page.get_by_test_id("withdraw-confirm")).to_contain_text("南门1号闸机")
        page.get_by_test_id("withdraw-yes").click()
        expect(page.get_by_test_id("device-withdrawn")).to_contain_text("设备已停用：南门1号闸机")
        expect(page.get_by_test_id("no-devices")).to_be_visible()
        page.screenshot(
            path=str(ARTIFACTS / "healthcode-devices-withdrawn-phone.png"), full_page=True
        )
        page.close()
    with fresh_database.unit_of_work() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "南门1号闸机")).one()
        assert row.revoked_at is not None and row.device_place_code == staffed.gate_code

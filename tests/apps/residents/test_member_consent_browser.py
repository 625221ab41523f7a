"""An adult member's consent on a phone, in headless Chromium: the resident registers with an
adult in the household, lands on "my household" with the adult awaiting consent, texts them
the code, enters it, and the adult joins; an adult without a phone is confirmed by the grid
worker in person, on the compound's residents tab."""

from __future__ import annotations

import re

import pytest

from citybrain.kit.db import Database
from tests.apps.residents.test_browser import PHONE, choose_compound, city, staff_desk
from tests.factories import next_synthetic, next_synthetic_adult
from tests.sms_gateway import running_gateway
from tests.web.test_browser import ARTIFACTS, browser

pytestmark = pytest.mark.browser
__all__ = ["browser", "city"]  # fixtures shared with the residents' acceptance test


def test_an_adult_member_consents_from_their_own_phone(
    city: tuple[str, str], browser: object, fresh_database: Database
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    base, compound = city
    ARTIFACTS.mkdir(exist_ok=True)
    me, adult, elder = next_synthetic(), next_synthetic_adult(), next_synthetic_adult()
    context = browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base}/residents/register")
    page.fill("#name", me.name)
    page.fill("#id_number", me.id_number)
    page.fill("#phone", me.phone)
    choose_compound(page, compound)
    page.fill("#building", "3号楼")
    page.fill("#unit", "2单元")
    page.fill("#room", "501")
    page.fill("#member-1-name", adult.name)
    page.fill("#member-1-id_number", adult.id_number)
    page.fill("#member-1-phone", adult.phone)
    # A second adult, an elder without a phone: the community confirms them in person.
    page.get_by_test_id("add-member").click()
    page.fill("#member-2-name", elder.name)
    page.fill("#member-2-id_number", elder.id_number)
    page.get_by_test_id("send-code").click()
    expect(page.get_by_test_id("code-sent")).to_be_visible()
    page.fill("#sms_code", running_gateway().code_for(me.phone))
    page.get_by_test_id("register-submit").click()

    # Registered; the adult awaits their consent on "my household".
    page.wait_for_url(re.compile(r"/residents/household\?invited=2$"), timeout=30_000)
    expect(page.get_by_test_id("member-invited")).to_be_visible()
    expect(page.get_by_test_id("member-row")).to_have_count(1)
    expect(page.get_by_test_id("pending-member")).to_have_count(2)
    pending = page.get_by_test_id("pending-member").filter(
        has_text=adult.phone[:3] + "****" + adult.phone[-4:]
    )
    expect(pending).to_have_count(1)
    expect(pending).not_to_contain_text(adult.name)
    pending.get_by_test_id("send-consent-code").click()
    expect(page.get_by_test_id("consent-sent")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "residents-member-consent.png"), full_page=True)
    # The adult reads the code off their phone and tells it.
    page.get_by_test_id("consent-code").fill(running_gateway().code_for(adult.phone))
    page.get_by_test_id("confirm-member").click()
    page.wait_for_url(re.compile(r"/residents/household\?confirmed=1$"))
    expect(page.get_by_test_id("member-confirmed")).to_be_visible()
    expect(page.get_by_test_id("member-row")).to_have_count(2)
    expect(page.get_by_test_id("pending-member")).to_have_count(1)
    expect(page.get_by_test_id("pending-in-person")).to_be_visible()
    context.close()

    # The grid worker sees the elder, masked, and confirms after checking their ID card.
    staff, desk = staff_desk(browser, base, "gridworker")
    desk.goto(f"{base}/residents/staff/compounds/{compound}?tab=residents")
    waiting = desk.get_by_test_id("pending-member")
    expect(waiting).to_have_count(1)
    expect(waiting).not_to_contain_text(elder.name)
    waiting.get_by_test_id("confirm-in-person").click()
    expect(desk.get_by_test_id("pending-member").locator(".problem")).to_contain_text(
        "当面核对本人及其身份证"
    )
    desk.get_by_test_id("pending-member").get_by_test_id("seen-box").check()
    assert desk.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    desk.screenshot(path=str(ARTIFACTS / "residents-staff-confirm-member.png"), full_page=True)
    desk.get_by_test_id("pending-member").get_by_test_id("confirm-in-person").click()
    desk.wait_for_url(re.compile(r"member_confirmed=1"))
    expect(desk.get_by_test_id("member-confirmed")).to_be_visible()
    expect(desk.get_by_test_id("pending-member")).to_have_count(0)
    expect(desk.get_by_test_id("resident-row")).to_have_count(3)
    staff.close()

"""A new phone on a phone, in headless Chromium: a child registered by a guardian without a
phone of their own opens the login page, follows "手机号已更换，或登记时未留本人手机号？",
asks for a code on their own phone, enters it and is logged in to their code page; later they
withdraw their own registration (注销登记) from 我的家庭."""

from __future__ import annotations

import re

import httpx
import pytest

from citybrain.kit.db import Database
from tests.apps.residents.conftest import CSRF, form_of
from tests.apps.residents.test_browser import PHONE, city
from tests.factories import next_synthetic, next_synthetic_child
from tests.sms_gateway import running_gateway
from tests.web.test_browser import ARTIFACTS, browser

pytestmark = pytest.mark.browser
__all__ = ["browser", "city"]  # fixtures shared with the residents' acceptance test


def test_a_child_without_a_phone_of_their_own_takes_theirs_on_a_phone(
    city: tuple[str, str], browser: object, fresh_database: Database
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    base, compound = city
    guardian, child = next_synthetic(), next_synthetic_child()
    with httpx.Client(base_url=base) as household:
        token = CSRF.search(household.get("/residents/register").text)
        assert token is not None
        sent = household.post(
            "/residents/register",
            data={"action": "send_code", "phone": guardian.phone, "csrf_token": token.group(1)},
        )
        assert sent.status_code == 200
        form = form_of(guardian, compound, [child])
        form |= {"sms_code": running_gateway().code_for(guardian.phone)}
        form |= {"csrf_token": token.group(1)}
        registered = household.post("/residents/register", data=form, follow_redirects=False)
        assert registered.status_code == 303, registered.text

    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base}/residents/login")
    page.get_by_test_id("phone-change-link").click()
    page.wait_for_url(f"{base}/residents/phone")
    page.fill("#name", child.name)
    page.fill("#id_number", child.id_number)
    page.fill("#phone", child.phone)
    page.get_by_test_id("send-code").click()
    expect(page.get_by_test_id("code-sent")).to_be_visible()
    page.fill("#sms_code", running_gateway().code_for(child.phone))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "residents-phone-change.png"), full_page=True)
    page.get_by_test_id("phone-submit").click()
    page.wait_for_url(re.compile(r"/residents/code\?phone_changed=1$"))
    expect(page.get_by_test_id("phone-changed-notice")).to_be_visible()
    expect(page.locator("body")).to_contain_text(child.name)
    # Grown up and moving away, they withdraw their own registration from 我的家庭: the page
    # asks first, on a phone screen, and the front page then says it is gone.
    page.goto(f"{base}/residents/household")
    page.get_by_test_id("deregister").click()
    expect(page.get_by_test_id("confirm-deregister")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "residents-deregister.png"), full_page=True)
    page.get_by_test_id("confirm-deregister-button").click()
    page.wait_for_url(re.compile(r"/residents\?deregistered=1$"))
    expect(page.get_by_test_id("deregistered")).to_be_visible()
    page.goto(f"{base}/residents/household")
    page.wait_for_url(re.compile(r"/residents/login"))
    context.close()

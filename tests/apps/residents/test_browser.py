"""The acceptance test of issue 5 in headless Chromium on a phone: a resident registers with a
household member and sees a green code; the health commission reports the member as a
confirmed case; the resident's code page then shows red with the reason, the QR code itself
now says red, and the compound shows red (on the code page and on the staff page)."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import select

from citybrain.core.audit.service import Actor
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.people.models import Person
from citybrain.healthcode import keys
from citybrain.healthcode.codes import verify_code
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.kit.db import Database
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of
from citybrain.web.app import create_app
from tests.apps.residents.conftest import COMMUNITY, registered
from tests.factories import (
    PASSWORD,
    first_compound,
    make_user,
    next_synthetic,
    next_synthetic_child,
)
from tests.sms_gateway import running_gateway
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the Chromium fixture, shared with the shell's browser tests
PHONE = {"width": 390, "height": 844}
HEALTH_COMMISSION = Actor("agency:health_commission", "agency", None)


@pytest.fixture
def city(fresh_database: Database) -> Iterator[tuple[str, str]]:
    """A served city: the hierarchy, a grid worker of the community; yields (base URL,
    compound code)."""
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        make_user(session, "grid_worker", COMMUNITY, "gridworker")
        compound = first_compound(session, COMMUNITY)
    with serving(create_app(fresh_database)) as base:
        yield base, compound


def _qr_text(box: Any) -> str:
    """Read the QR code as the screen shows it: a screenshot of the box it is drawn in,
    decoded by zxing-cpp, an independent decoder. A box the page draws in the browser
    (static/code-qr.js) must show what it was given to draw (``data-code``)."""
    shot = Image.open(io.BytesIO(box.screenshot())).convert("L")
    found = zxingcpp.read_barcodes(shot, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, "the QR on the page does not read"
    assert found[0].text == box.get_attribute("data-code")
    return str(found[0].text)


def segno_qr_text(svg: str) -> str:
    """Read a QR the server drew (segno's SVG, e.g. a place-code poster): its path back to a
    module matrix, then zxing-cpp (an independent decoder) on the pixels."""
    width = int(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    scale = int(re.search(r"scale\((\d+)\)", svg).group(1))  # type: ignore[union-attr]
    path = re.search(r' d="([^"]+)"', svg).group(1)  # type: ignore[union-attr]
    size = width // scale
    modules = np.zeros((size, size), dtype=np.uint8)
    x = y = 0.0
    for command, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", path):
        if command == "M":
            x, y = float(a), float(b)
        elif command == "m":
            x, y = x + float(a), y + float(b)
        else:
            length = int(float(a))
            modules[int(y), int(x) : int(x) + length] = 1
            x += length
    pixels = np.kron(1 - modules, np.ones((8, 8), dtype=np.uint8)) * 255
    found = zxingcpp.read_barcodes(pixels.astype(np.uint8), formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, "the QR on the page does not read"
    return str(found[0].text)


def staff_desk(browser: Any, base: str, username: str) -> tuple[Any, Any]:
    """A staff member logged in on a phone screen: (browser context, page at the home page)."""
    staff = browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
    desk = staff.new_page()
    desk.goto(f"{base}/login")
    desk.fill("#username", username)
    desk.fill("#password", PASSWORD)
    desk.click("button[type=submit]")
    desk.wait_for_url(f"{base}/")
    return staff, desk


def choose_compound(page: Any, compound: str) -> None:
    """Pick ``compound`` on the registration form: each choice fills the next list from the
    server (htmx swaps the picker)."""
    from playwright.sync_api import expect

    page.select_option("#district", compound[:6])
    expect(page.locator("#street")).to_be_enabled()
    page.select_option("#street", compound[:9])
    expect(page.locator("#community")).to_be_enabled()
    page.select_option("#community", compound[:12])
    expect(page.locator(f"#compound_code option[value='{compound}']")).to_have_count(1)
    page.select_option("#compound_code", compound)


def _verify(database: Database, text: str) -> Any:
    with database.unit_of_work() as session:
        return verify_code(text, keys.trust_list(session))


def test_register_see_green_then_red_after_a_household_case(
    city: tuple[str, str], browser: object, fresh_database: Database
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    base, compound = city
    ARTIFACTS.mkdir(exist_ok=True)
    me, member = next_synthetic(), next_synthetic_child()
    # A phone's screen: two device pixels to a CSS pixel, as the gate's camera sees it.
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, locale="zh-CN", device_scale_factor=2
    )
    page = context.new_page()

    # Register on a phone: self, the compound through the cascading lists, one member.
    page.goto(f"{base}/residents")
    page.get_by_test_id("go-register").click()
    page.fill("#name", me.name)
    page.fill("#id_number", me.id_number)
    page.fill("#phone", "1234")  # a typo, to see the error and keep everything else
    choose_compound(page, compound)
    expect(page.locator("#district")).to_have_value(compound[:6])
    page.fill("#building", "3号楼")
    page.fill("#unit", "2单元")
    page.fill("#room", "501")
    page.fill("#member-1-name", member.name)
    page.fill("#member-1-id_number", member.id_number)
    page.get_by_test_id("register-submit").click()
    page.wait_for_load_state()
    expect(page.get_by_test_id("error-phone")).to_contain_text("手机号码应为11位，实际为4位")
    # Nothing typed is lost: the names, the ID, the chosen compound, the member.
    expect(page.locator("#name")).to_have_value(me.name)
    expect(page.locator("#id_number")).to_have_value(me.id_number)
    expect(page.locator("#compound_code")).to_have_value(compound)
    expect(page.locator("#member-1-id_number")).to_have_value(member.id_number)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "residents-register-error-phone.png"), full_page=True)
    page.fill("#phone", me.phone)
    # The phone is proven with the code the SMS platform delivers to it (获取验证码).
    page.get_by_test_id("send-code").click()
    expect(page.get_by_test_id("code-sent")).to_contain_text(me.phone[:3] + "****" + me.phone[-4:])
    expect(page.locator("#member-1-id_number")).to_have_value(member.id_number)
    expect(page.locator("#compound_code")).to_have_value(compound)
    page.fill("#sms_code", running_gateway().code_for(me.phone))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.locator("#sms_code").locator("xpath=../..").screenshot(
        path=str(ARTIFACTS / "residents-register-code-sent.png")
    )
    page.get_by_test_id("register-submit").click()

    # Green: nothing on record.
    # The machine may be busy (2 cores, a benchmark beside): wait for the page generously.
    page.wait_for_url(re.compile(r"/residents/code\?registered=1$"), timeout=30_000)
    card = page.get_by_test_id("code-card")
    expect(page.get_by_test_id("registered-notice")).to_be_visible()
    expect(card).to_have_attribute("data-colour", "green")
    expect(page.get_by_test_id("colour-word")).to_have_text("绿码")
    expect(page.get_by_test_id("reasons")).to_contain_text("无风险记录")
    expect(page.get_by_test_id("tier")).to_have_attribute("data-tier", "green")
    expect(page.get_by_test_id("member-colour")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    green = _verify(fresh_database, _qr_text(page.get_by_test_id("qr")))
    assert green.colour == "green"
    page.screenshot(path=str(ARTIFACTS / "residents-code-green.png"), full_page=True)

    # The health commission reports the household member as a confirmed case.
    index = blind_index()
    with fresh_database.unit_of_work() as session:
        case = session.scalars(
            select(Person).where(
                Person.id_number_bidx == index.digest(member.id_number, "id_number")
            )
        ).one()
        risk.assert_fact(
            session,
            HEALTH_COMMISSION,
            subject=subject_of(case),
            kind="confirmed_case",
            source="analysis.case_report",
            evidence={"record_ids": [101]},
            valid_from=clock.now() - dt.timedelta(hours=2),
        )

    # The resident's code is red now, with the reason in plain words and until when.
    page.reload()
    expect(card).to_have_attribute("data-colour", "red")
    expect(page.get_by_test_id("colour-word")).to_have_text("红码")
    reason = page.get_by_test_id("reason").first
    expect(reason).to_contain_text("密切接触者")
    expect(page.get_by_test_id("reason-until").first).to_be_visible()
    # The compound is closed (red) because a case lives there.
    expect(page.get_by_test_id("tier")).to_have_attribute("data-tier", "red")
    expect(page.get_by_test_id("compound-tier")).to_contain_text("封控小区")
    # The member, masked, shows red too; the code itself says red, freshly signed for me.
    expect(page.get_by_test_id("member-colour").filter(has_text="红码")).to_have_count(2)
    red = _verify(fresh_database, _qr_text(page.get_by_test_id("qr")))
    assert red.colour == "red" and red.person_ref == green.person_ref
    assert red.issued_at >= green.issued_at
    # Refreshed in place (htmx swaps the card in): the new code is drawn as well.
    shown = page.get_by_test_id("qr").get_attribute("data-code")
    page.wait_for_timeout(1_100)  # a code signed in the same second would be the same
    page.get_by_test_id("refresh-code").click()
    expect(page.get_by_test_id("qr")).not_to_have_attribute("data-code", shown or "")
    fresh = page.get_by_test_id("qr").get_attribute("data-code") or ""
    expect(page.get_by_test_id("qr")).to_have_attribute("data-drawn", fresh)
    assert _verify(fresh_database, _qr_text(page.get_by_test_id("qr"))).colour == "red"
    # An appeal can be filed from here.
    expect(page.get_by_test_id("appeal-form")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "residents-code-red.png"), full_page=True)
    context.close()

    # The compound's staff see it red too.
    staff, desk = staff_desk(browser, base, "gridworker")
    desk.get_by_test_id("nav-residents").click()
    desk.locator(f"[data-code='{compound}'] a").click()
    expect(desk.get_by_test_id("tier")).to_have_attribute("data-tier", "red")
    desk.get_by_test_id("tab-residents").click()
    expect(desk.get_by_test_id("resident-colour").filter(has_text="红码")).to_have_count(2)
    expect(desk.get_by_test_id("resident-id").first).to_have_text(re.compile(r"^\d{4}\*{10}"))
    desk.screenshot(path=str(ARTIFACTS / "residents-staff-red.png"), full_page=True)
    staff.close()


def test_without_script_the_server_draws_the_code(
    city: tuple[str, str], browser: object, fresh_database: Database
) -> None:
    """A phone with script switched off still shows a code a gate can read: the server's
    drawing of a newly signed code (the <noscript> image), never cached."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    base, compound = city
    with httpx.Client(base_url=base) as phone:
        registered(phone, compound)
        cookies = [{"name": c.name, "value": c.value or "", "url": base} for c in phone.cookies.jar]
        assert phone.get("/residents/code/qr.svg").headers["cache-control"] == "no-store"
    assert httpx.get(f"{base}/residents/code/qr.svg").status_code == 401
    context = browser.new_context(
        viewport=PHONE,
        is_mobile=True,
        locale="zh-CN",
        device_scale_factor=2,
        java_script_enabled=False,
    )
    context.add_cookies(cookies)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(f"{base}/residents/code")
    image = page.get_by_test_id("qr-image")
    expect(image).to_be_visible()
    page.wait_for_load_state("load")
    shot = Image.open(io.BytesIO(image.screenshot())).convert("L")
    found = zxingcpp.read_barcodes(shot, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1
    code = _verify(fresh_database, str(found[0].text))
    assert code.colour == "green"
    page.screenshot(path=str(ARTIFACTS / "residents-code-no-script.png"), full_page=True)
    context.close()

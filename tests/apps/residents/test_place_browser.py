"""Place codes (场所码) end to end, in headless Chromium on phones: a street officer finds a
venue and opens its printable code; what the QR on the poster says (read back with zxing-cpp)
is a link a resident's phone opens; not logged in, the resident logs in with the SMS code and
lands back on the place; confirming records the visit, and the result is shown big for the
door. A tampered link is refused with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

from citybrain.core.geo.models import Place
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import register_person
from citybrain.healthcode.models import Scan
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.apps.residents.test_browser import PHONE, segno_qr_text, staff_desk
from tests.factories import STREET_A, first_compound, make_user, next_synthetic
from tests.sms_gateway import running_gateway
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
__all__ = ["browser"]


@pytest.fixture
def town(fresh_database: Database) -> Iterator[dict[str, str]]:
    """A served city with a street officer, a venue in the street and a registered resident."""
    resident = next_synthetic()
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A, "streetstaff")
        register_person(
            session,
            officer,
            PersonIn(
                name=resident.name,
                id_number=resident.id_number,
                phone=resident.phone,
                compound_code=first_compound(session, STREET_A),
            ),
        )
        venue = session.scalars(
            select(Place)
            .where(Place.kind == "venue", Place.area_code.startswith(STREET_A))
            .order_by(Place.code)
        ).first()
        assert venue is not None
        place = {"code": venue.code, "name": venue.name}
    with serving(create_app(fresh_database)) as base:
        yield {
            "base": base,
            "place": place["code"],
            "place_name": place["name"],
            "name": resident.name,
            "id_number": resident.id_number,
            "phone": resident.phone,
        }


def test_a_resident_checks_in_at_a_venue_by_its_printed_code(
    town: dict[str, str], browser: object, fresh_database: Database
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    ARTIFACTS.mkdir(exist_ok=True)
    base = town["base"]

    # The street officer prints the venue's code.
    staff, desk = staff_desk(browser, base, "streetstaff")
    desk.get_by_test_id("nav-place-codes").click()
    desk.fill("#q", town["place_name"][:4])
    desk.select_option("#kind", "venue")
    desk.get_by_test_id("place-filter").locator("button").click()
    desk.get_by_test_id(f"print-{town['place']}").click()
    expect(desk.get_by_test_id("poster-name")).to_have_text(town["place_name"])
    assert desk.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    desk.screenshot(path=str(ARTIFACTS / "place-code-poster-phone.png"), full_page=True)
    link = segno_qr_text(desk.get_by_test_id("poster-qr").inner_html())
    staff.close()
    assert link.startswith(f"{base}/residents/place?c=CBP1%3A")

    # The resident's phone opens the link: log in first, then back to the place.
    phone = browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
    page = phone.new_page()
    page.goto(link)
    expect(page.get_by_test_id("login-then-place")).to_be_visible()
    page.fill("#name", town["name"])
    page.fill("#id_number", town["id_number"])
    page.fill("#phone", town["phone"])
    page.get_by_test_id("send-code").click()
    expect(page.get_by_test_id("code-sent")).to_be_visible()
    page.fill("#sms_code", running_gateway().code_for(town["phone"]))
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("place-name")).to_have_text(town["place_name"])
    expect(page.get_by_test_id("place-colour")).to_have_text("绿码")
    with page.expect_response(lambda r: r.url.endswith("/residents/place")) as answered:
        page.get_by_test_id("place-confirm").click()
    assert answered.value.status == 200
    result = page.get_by_test_id("checkin-result")
    expect(result).to_have_attribute("data-passed", "true")
    expect(page.get_by_test_id("checkin-place")).to_have_text(town["place_name"])
    expect(page.get_by_test_id("checkin-decision")).to_have_text("可以进入")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "place-check-in-phone.png"), full_page=True)

    with fresh_database.unit_of_work() as session:
        visits = session.scalars(select(Scan).where(Scan.place_code == town["place"])).all()
        assert [(v.method, v.direction, v.decision) for v in visits] == [("place", "visit", "pass")]

    # A link whose code was changed on the way is refused, with the reason.
    code = parse_qs(urlsplit(link).query)["c"][0]
    flipped = code[:-6] + ("A" if code[-6] != "A" else "B") + code[-5:]
    page.goto(f"{base}/residents/place?{urlencode({'c': flipped})}")
    expect(page.get_by_test_id("place-refused")).to_contain_text("场所码无效")
    phone.close()

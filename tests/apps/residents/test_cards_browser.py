"""A printed health card (纸质健康卡) from issue to gate, in headless Chromium on phone-sized
screens against a real server: a grid worker issues a card from the compound's residents tab;
its QR, read off the screen by zxing-cpp, is scanned at the gate page, which passes the holder
by their current colour and asks the gate staff to check the ID card against the masked name
and ID tail; offline the card is not passed (no colour to go by) and nothing is queued; once
reported lost, every copy is refused."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import select

from citybrain.core.geo.models import PLACE_COMPOUND_GATE, Place
from citybrain.core.geo.service import load_hierarchy
from citybrain.healthcode.codes import verify_card
from citybrain.healthcode.keys import trust_list
from citybrain.kit.db import Database
from citybrain.kit.masking import mask_name
from citybrain.web.app import create_app
from tests.apps.residents.conftest import COMMUNITY
from tests.apps.residents.test_browser import PHONE, staff_desk
from tests.factories import make_person, make_user
from tests.healthcode.conftest import log_in_to_gate_page, type_code
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
__all__ = ["browser"]


def test_a_card_is_issued_scanned_at_the_gate_and_refused_once_lost(
    fresh_database: Database, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        worker = make_user(session, "grid_worker", COMMUNITY, "cardworker")
        masked, elder = make_person(session, worker)
        # Two neighbours without a phone of their own, for the sheet of cards below.
        for _ in range(2):
            make_person(session, worker, masked.area_code)
        compound = masked.area_code
        gate = session.scalar(
            select(Place).where(Place.compound_code == compound, Place.kind == PLACE_COMPOUND_GATE)
        )
        assert gate is not None
        gate_code = gate.code
        gate_name = gate.name
        make_user(session, "checkpoint_staff", gate.area_code, "cardgate")
    ARTIFACTS.mkdir(exist_ok=True)
    with serving(create_app(fresh_database)) as base:
        staff, desk = staff_desk(browser, base, "cardworker")
        desk.goto(f"{base}/residents/staff/compounds/{compound}?tab=residents")
        desk.get_by_test_id("issue-card").first.click()
        desk.wait_for_url("**/residents/staff/cards/*")
        expect(desk.get_by_test_id("card-issued")).to_be_visible()
        expect(desk.get_by_test_id("card-holder")).to_have_text(mask_name(elder.name))
        expect(desk.get_by_test_id("card-id-tail")).to_have_text(elder.id_number[-4:])
        desk.screenshot(path=str(ARTIFACTS / "health-card-phone.png"), full_page=True)
        shot = Image.open(io.BytesIO(desk.get_by_test_id("card-qr").screenshot())).convert("L")
        found = zxingcpp.read_barcodes(shot, formats=zxingcpp.BarcodeFormat.QRCode)
        assert len(found) == 1, "the card's QR does not read off the screen"
        text = str(found[0].text)
        assert text.startswith("CBK1:")
        # Printed, the card is the size of an ID card (85.6 × 54 mm = 323.5 × 204 CSS px), its
        # QR 36 mm wide, and it reads at a printer's resolution (4 dots per CSS px, 384 dpi).
        printer = browser.new_context(
            storage_state=staff.storage_state(), device_scale_factor=4, locale="zh-CN"
        )
        sheet = printer.new_page()
        sheet.emulate_media(media="print")
        sheet.goto(desk.url)
        box = sheet.get_by_test_id("health-card").bounding_box()
        assert box is not None and abs(box["width"] - 323.5) < 2 and abs(box["height"] - 204) < 2
        qr_box = sheet.locator("[data-testid=card-qr] svg").bounding_box()
        assert qr_box is not None and abs(qr_box["width"] - 136) < 2
        printed = Image.open(io.BytesIO(sheet.get_by_test_id("card-qr").screenshot())).convert("L")
        again = zxingcpp.read_barcodes(printed, formats=zxingcpp.BarcodeFormat.QRCode)
        assert len(again) == 1
        with fresh_database.sessions() as session:
            trust = trust_list(session)
            # Printed again, signed afresh: the same card.
            same = verify_card(again[0].text, trust)
            first = verify_card(text, trust)
            assert (same.person_ref, same.card_no) == (first.person_ref, first.card_no)
            assert first.person_ref == masked.ref
        sheet.get_by_test_id("health-card").screenshot(
            path=str(ARTIFACTS / "health-card-print.png")
        )
        printer.close()

        # At the compound's gate, on the gate worker's phone.
        at_gate = browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
        page = at_gate.new_page()
        log_in_to_gate_page(page, base, "cardgate")
        page.select_option("#place_code", gate_code)
        page.wait_for_function("() => localStorage.getItem('citybrain.gate.trust') !== null")
        verdict = type_code(page, text)
        expect(verdict).to_have_attribute("data-verdict", "pass")
        check = page.get_by_test_id("card-check")
        expect(check).to_contain_text("纸质健康卡：请核对身份证")
        expect(page.get_by_test_id("card-holder")).to_have_text(mask_name(elder.name))
        expect(page.get_by_test_id("card-id-tail")).to_have_text(elder.id_number[-4:])
        expect(page.get_by_test_id("colour")).to_contain_text("绿码")
        page.screenshot(path=str(ARTIFACTS / "health-card-gate.png"))
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, "the gate page is wider than the phone"

        # Offline the card has no colour to go by: turned back, not queued.
        at_gate.set_offline(True)
        type_code(page, text)
        expect(verdict).to_have_attribute("data-verdict", "deny")
        expect(verdict).to_have_attribute("data-refused", "card_offline")
        expect(page.get_by_test_id("reason")).to_contain_text("纸质健康卡须联网核验")
        expect(page.get_by_test_id("offline-queue")).to_have_attribute("data-count", "0")
        at_gate.set_offline(False)

        # Reported lost by the grid worker: refused at the gate from the next scan.
        desk.get_by_test_id("end-card-button").click()
        desk.wait_for_url("**card_ended=1")
        expect(desk.get_by_test_id("card-ended")).to_be_visible()
        type_code(page, text)
        expect(verdict).to_have_attribute("data-verdict", "deny")
        expect(verdict).to_contain_text("挂失")
        expect(verdict).to_contain_text("请核实持卡人身份")
        expect(page.get_by_test_id("card-check")).to_have_count(0)
        at_gate.close()
        # The community sees where the lost card turned up, on its residents tab and the
        # card's page.
        desk.reload()
        expect(desk.get_by_test_id("presented-card")).to_contain_text(gate_name)
        desk.get_by_test_id("presented-cards").screenshot(
            path=str(ARTIFACTS / "health-card-presented-tab.png")
        )
        desk.get_by_test_id("presented-card").get_by_role("link").click()
        expect(desk.get_by_test_id("ended-card-status")).to_contain_text("此卡已挂失")
        expect(desk.get_by_test_id("presentation-row")).to_have_count(1)
        expect(desk.get_by_test_id("presentation-row")).to_contain_text(gate_name)
        desk.screenshot(path=str(ARTIFACTS / "health-card-presented.png"), full_page=True)
        assert desk.evaluate(
            "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        ), "the ended card's page is wider than the phone"
        desk.goto(f"{base}/residents/staff/compounds/{compound}?tab=residents")

        # A sheet for everyone who never logs in and holds no card: the elder (whose card was
        # lost) and the two neighbours; printed on A4, two across.
        desk.get_by_test_id("issue-needing-cards").click()
        desk.wait_for_url("**/cards/sheet?ids=*")
        expect(desk.get_by_test_id("health-card")).to_have_count(3)
        printer = browser.new_context(
            storage_state=staff.storage_state(), device_scale_factor=2, locale="zh-CN"
        )
        sheet = printer.new_page()
        sheet.emulate_media(media="print")
        sheet.goto(desk.url)
        boxes = [b.bounding_box() for b in sheet.get_by_test_id("health-card").all()]
        assert all(b is not None for b in boxes)
        first, second, third = (b for b in boxes if b is not None)
        assert abs(first["y"] - second["y"]) < 1 and second["x"] > first["x"] + 300
        assert third["y"] > first["y"] + 200 and abs(third["x"] - first["x"]) < 1
        sheet.screenshot(path=str(ARTIFACTS / "health-card-sheet.png"), full_page=True)
        printer.close()
        staff.close()

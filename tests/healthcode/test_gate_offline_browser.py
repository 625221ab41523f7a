"""The gate page without network, in headless Chromium on a phone-sized screen against a real
server: the page keeps the trust list while online; offline it verifies a code in the browser
(WebCrypto), passes by the colour in the code and queues the scan, refuses a code with one
character changed; back online the queue is uploaded and recorded as an offline scan, and a
person red by then is flagged for follow-up."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from citybrain.healthcode.codes import HEALTH_PREFIX, issue_code
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
from tests.healthcode.test_offline_scans import recolour
from tests.moved_clock import on_tests_clock
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
__all__ = ["browser"]


def _one_character_changed(code: str) -> str:
    at = len(HEALTH_PREFIX) + (len(code) - len(HEALTH_PREFIX)) // 2
    other = next(c for c in BASE45 if c != code[at] and c not in " %")
    return code[:at] + other + code[at + 1 :]


def test_the_gate_page_verifies_offline_and_uploads_when_back_online(
    fresh_database: Database, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    staffed = staffed_gate(fresh_database, "offline-gate")
    code, gate_code, compound = staffed.code, staffed.gate_code, staffed.compound
    with fresh_database.unit_of_work() as session:
        resident = person_row(session, staffed.resident_ref)
        red = issue_code(session, resident.ref, "red").text
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with serving(create_app(fresh_database)) as base:
            context = browser.new_context(
                viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True
            )
            on_tests_clock(context)
            page = context.new_page()
            log_in_to_gate_page(page, base, "offline-gate")
            expect(page.get_by_test_id("gate-title")).to_have_text("门岗扫码")
            # Online, the page keeps the trust list for later.
            # A function, not an expression: the page's CSP forbids eval of strings.
            page.wait_for_function("() => localStorage.getItem('citybrain.gate.trust') !== null")
            page.select_option("#place_code", gate_code)
            queue = page.get_by_test_id("offline-queue")
            expect(queue).to_have_attribute("data-count", "0")

            context.set_offline(True)
            expect(page.get_by_test_id("network-state")).to_contain_text("离线")
            verdict = type_code(page, code)
            expect(verdict).to_have_attribute("data-verdict", "pass")
            expect(verdict).to_have_attribute("data-offline", "true")
            expect(page.get_by_test_id("reason")).to_have_text("绿码，请通行")
            expect(page.get_by_test_id("offline-banner")).to_have_text(
                "离线核验：按码内颜色判断，联网后上传"
            )
            expect(queue).to_have_attribute("data-count", "1")
            expect(queue).to_contain_text("待上传 1 条")
            expect(page.get_by_test_id("code-input")).to_be_focused()
            expect(page.get_by_test_id("code-input")).to_have_value("")
            page.screenshot(path=str(ARTIFACTS / "healthcode-gate-offline-pass.png"))

            # One character changed: refused here, not queued.
            type_code(page, _one_character_changed(code))
            expect(verdict).to_have_attribute("data-verdict", "deny")
            # (A deflate stream with a changed byte fails its checksum: nearly always the encoding.)
            expect(verdict).to_have_attribute(
                "data-refused", re.compile("^(bad_encoding|malformed|bad_signature)$")
            )
            expect(verdict).to_contain_text("码无效")
            expect(queue).to_have_attribute("data-count", "1")
            page.screenshot(path=str(ARTIFACTS / "healthcode-gate-offline-refused.png"))
            # A red code turned green in its payload, signature kept: WebCrypto refuses it.
            type_code(page, recolour(red, "green"))
            expect(verdict).to_have_attribute("data-refused", "bad_signature")
            expect(page.get_by_test_id("reason")).to_have_text("码无效：签名无效，码可能被篡改")
            expect(queue).to_have_attribute("data-count", "1")
            with fresh_database.unit_of_work() as session:
                assert session.scalar(select(func.count()).select_from(Scan)) == 0
                # Meanwhile the person became a confirmed case: red now.
                make_red(session, person_row(session, resident.ref), compound)

            context.set_offline(False)
            expect(queue).to_have_attribute("data-count", "0")
            summary = page.get_by_test_id("offline-summary")
            expect(summary).to_contain_text("记录 1 条")
            expect(page.get_by_test_id("offline-flagged")).to_contain_text(
                "离线放行但当前非绿码（当前红码）"
            )
            page.screenshot(path=str(ARTIFACTS / "healthcode-gate-offline-uploaded.png"))
            context.close()
    finally:
        close_writers()
    with fresh_database.unit_of_work() as session:
        scans = session.scalars(select(Scan)).all()
        assert [(s.person_ref, s.colour, s.colour_source, s.decision) for s in scans] == [
            (resident.ref, "green", "offline", "pass")
        ]
        assert scans[0].place_code == gate_code and scans[0].offline_key is not None

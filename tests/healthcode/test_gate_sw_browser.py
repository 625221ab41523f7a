"""The gate page opens again with the server out of reach: its service worker keeps the page and
its scripts (network first), so a gate whose phone reloaded the page while the network was down
still verifies codes and queues the scans, and uploads them once the server answers again."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from citybrain.healthcode.models import Scan
from citybrain.healthcode.writer import close_writers
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.healthcode.conftest import log_in_to_gate_page, staffed_gate, type_code
from tests.moved_clock import on_tests_clock
from tests.web.test_browser import ARTIFACTS, browser, serving

pytestmark = pytest.mark.browser
__all__ = ["browser"]
KEPT_PAGE = """async () => {
  const cache = await caches.open("citybrain-gate-v1");
  const page = await cache.match("/healthcode/gate");
  const script = await cache.match("/static/gate-offline.js");
  return Boolean(page && script);
}"""


def test_the_gate_page_reopens_from_its_service_worker_while_the_server_is_down(
    fresh_database: Database, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    staffed = staffed_gate(fresh_database, "sw-gate")
    code, gate_code = staffed.code, staffed.gate_code
    ARTIFACTS.mkdir(exist_ok=True)
    app = create_app(fresh_database)
    try:
        with serving(app) as base:
            port = urlparse(base).port
            context = browser.new_context(
                viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True
            )
            on_tests_clock(context)
            page = context.new_page()
            log_in_to_gate_page(page, base, "sw-gate")
            expect(page.get_by_test_id("gate-title")).to_have_text("门岗扫码")
            # A function, not an expression: the page's CSP forbids eval of strings.
            page.wait_for_function("() => localStorage.getItem('citybrain.gate.trust') !== null")
            page.wait_for_function("() => navigator.serviceWorker.controller !== null")
            # Loaded once more under the worker: the page and its script are kept.
            page.reload()
            expect(page.get_by_test_id("gate-title")).to_be_visible()
            deadline = time.monotonic() + 10
            while not page.evaluate(KEPT_PAGE):  # a promise: evaluate awaits it
                assert time.monotonic() < deadline, "the service worker kept no page"
                time.sleep(0.1)
        # The server is gone: nothing answers on that port any more.
        page.reload()
        expect(page.get_by_test_id("gate-title")).to_have_text("门岗扫码")
        page.select_option("#place_code", gate_code)
        verdict = type_code(page, code)
        expect(verdict).to_have_attribute("data-verdict", "pass")
        expect(verdict).to_have_attribute("data-offline", "true")
        queue = page.get_by_test_id("offline-queue")
        expect(queue).to_have_attribute("data-count", "1")
        page.screenshot(path=str(ARTIFACTS / "healthcode-gate-server-down.png"))
        with fresh_database.unit_of_work() as session:
            assert session.scalars(select(Scan)).all() == []
        # The server is back on the same address: the page uploads on load.
        with serving(app, port) as base:
            page.goto(f"{base}/healthcode/gate")
            expect(page.get_by_test_id("offline-queue")).to_have_attribute("data-count", "0")
            expect(page.get_by_test_id("offline-summary")).to_contain_text("记录 1 条")
            context.close()
    finally:
        close_writers()
    with fresh_database.unit_of_work() as session:
        scans = session.scalars(select(Scan)).all()
        assert [(s.person_ref, s.place_code, s.colour_source, s.decision) for s in scans] == [
            (staffed.resident_ref, gate_code, "offline", "pass")
        ]

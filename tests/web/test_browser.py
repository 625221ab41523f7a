"""Headless Chromium against a real server: log in, see the home page, on a desk and a phone."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from citybrain.core.geo.service import load_hierarchy
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.factories import PASSWORD, STREET_A, make_person, make_user

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """``app`` served by uvicorn on ``port`` (a free local one by default) in a thread: its base
    URL, until exit."""
    port = port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(fresh_database: Database) -> Iterator[str]:
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A, "browser")
        for _ in range(3):
            make_person(session, officer)
    with serving(create_app(fresh_database)) as base:
        yield base


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or not shutil.which("chromium"):
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required in CI (scripts/system-deps.sh installs it)")
        pytest.skip("Debian chromium is not installed (run scripts/system-deps.sh as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_login_and_home_page_in_chromium(live_server: str, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page.goto(f"{live_server}/")
    expect(page).to_have_url(f"{live_server}/login?next=/")
    page.fill("#username", "browser")
    page.fill("#password", "wrong-password-0")
    page.click("button[type=submit]")
    expect(page.get_by_test_id("login-error")).to_contain_text("用户名或密码错误")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("home-title")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("街道防控专员")
    expect(page.get_by_test_id("area")).to_contain_text("经八路街道")
    expect(page.get_by_test_id("persons-count")).to_have_text("3")
    page.screenshot(path=str(ARTIFACTS / "home-desktop.png"), full_page=True)

    # People search through htmx, masked; then the English switch.
    page.click("a[href='/people']")
    expect(page.get_by_test_id("result-total")).to_contain_text("3")
    assert page.locator("[data-testid=people-table] tbody tr").count() == 3
    # A search goes by form post through htmx: the URL never shows what was searched for.
    page.fill("#q", "no-such-name")
    page.click("main form button[type=submit]")
    expect(page.get_by_test_id("result-total")).to_contain_text("0")
    assert "no-such-name" not in page.url
    page.get_by_test_id("lang-switch").click()
    expect(page.locator("h1")).to_have_text("Search people")


def test_a_second_tap_on_a_form_is_not_sent(live_server: str, browser: object) -> None:
    """A double tap on a form's button sends the form once; its button rests, then wakes."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page.goto(f"{live_server}/login")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.fill("#username", "browser")
    page.fill("#password", "wrong-password-0")
    # The second tap lands in a later task, once the first request is on its way.
    page.evaluate(
        """() => {
            const button = document.querySelector("button[type=submit]");
            button.click();
            setTimeout(() => button.click(), 0);
        }"""
    )
    expect(page.get_by_test_id("login-error")).to_contain_text("用户名或密码错误")
    assert posts == [f"{live_server}/login"]
    # The answer is a fresh page: its button is free at once.
    expect(page.locator("button[type=submit]")).to_be_enabled()


def test_home_page_fits_a_phone(live_server: str, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN"
    )
    page = context.new_page()
    page.goto(f"{live_server}/login")
    page.fill("#username", "browser")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("home-title")).to_be_visible()
    # Nothing wider than the screen: no sideways scrolling on a phone.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    page.screenshot(path=str(ARTIFACTS / "home-phone.png"), full_page=True)
    context.close()

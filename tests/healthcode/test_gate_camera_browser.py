"""Camera scanning on the gate page, in headless Chromium on a phone-sized screen against a real
server: Chromium's fake camera shows a resident's QR (a Y4M video written here), the page reads
it with jsQR and submits it as the scanner wedge would, and the gate answers 通行 and records the
scan; a QR that is not a citybrain code is not submitted."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from citybrain.healthcode.models import Scan
from citybrain.healthcode.qr import BORDER, qr
from citybrain.healthcode.writer import close_writers
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.healthcode.conftest import log_in_to_gate_page, staffed_gate
from tests.web.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serving

pytestmark = pytest.mark.browser
WIDTH, HEIGHT = 640, 480
PHONE = {"width": 390, "height": 844}


def write_y4m(path: Path, text: str, frames: int = 20) -> Path:
    """A still video of the QR of ``text`` (black on white, centred, quiet zone included) in
    YUV4MPEG2 4:2:0, the format Chromium's fake camera reads."""
    rows = [list(row) for row in qr(text).matrix_iter(scale=1, border=BORDER)]
    modules = len(rows)
    scale = (HEIGHT - 40) // modules
    assert scale >= 3, "the QR must fit the frame with a few pixels a module"
    left, top = (WIDTH - modules * scale) // 2, (HEIGHT - modules * scale) // 2
    white_row = b"\xff" * WIDTH
    luma = bytearray(white_row * HEIGHT)
    for y, row in enumerate(rows):
        line = bytearray(white_row)
        for x, dark in enumerate(row):
            if dark:
                start = left + x * scale
                line[start : start + scale] = b"\x00" * scale
        for dy in range(scale):
            at = (top + y * scale + dy) * WIDTH
            luma[at : at + WIDTH] = line
    chroma = b"\x80" * ((WIDTH // 2) * (HEIGHT // 2))
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + bytes(luma) + chroma + chroma)
    return path


@contextmanager
def camera_browser(video: Path) -> Iterator[Any]:
    """Headless Chromium whose camera shows ``video`` (and never asks for permission)."""
    if not Path(CHROMIUM).exists() or not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (run scripts/system-deps.sh as root)")
    from playwright.sync_api import sync_playwright

    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            launched.close()


def _open_gate_page(browser: Any, base: str, username: str, place_code: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
    context.grant_permissions(["camera"], origin=base)
    page = context.new_page()
    log_in_to_gate_page(page, base, username)
    page.select_option("#place_code", place_code)
    return context, page


def test_the_phone_camera_reads_a_code_and_the_gate_answers(
    fresh_database: Database, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    staffed = staffed_gate(fresh_database, "camera-gate")
    person_ref, gate_code, code = staffed.resident_ref, staffed.gate_code, staffed.code
    video = write_y4m(tmp_path / "green-code.y4m", code)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with camera_browser(video) as browser, serving(create_app(fresh_database)) as base:
            context, page = _open_gate_page(browser, base, "camera-gate", gate_code)
            start = page.get_by_test_id("camera-start")
            # The camera section is shown by its script once it has loaded: wait for that.
            expect(start).to_be_visible()
            expect(start).to_have_text("摄像头扫码")
            expect(page.get_by_test_id("camera-box")).to_be_hidden()
            # A thumb can hit it: the whole width, at least 44 CSS pixels high.
            button = start.bounding_box()
            assert button is not None and button["height"] >= 44 and button["width"] >= 300
            start.tap()

            verdict = page.get_by_test_id("verdict")
            expect(verdict).to_have_attribute("data-verdict", "pass", timeout=15_000)
            expect(verdict).to_contain_text("通行")
            expect(page.get_by_test_id("reason")).to_have_text("绿码，请通行")
            # The answer in sight, above the camera (not scrolled away to the code field).
            expect(verdict).to_be_in_viewport()
            # The camera stays on for the next person, its box within the screen.
            expect(page.get_by_test_id("camera-stop")).to_be_visible()
            frame = page.get_by_test_id("camera-box").bounding_box()
            assert frame is not None
            assert frame["x"] >= 0 and frame["x"] + frame["width"] <= PHONE["width"]
            assert frame["height"] <= PHONE["height"] * 0.6
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            page.screenshot(path=str(ARTIFACTS / "gate-camera-phone.png"))

            # Still over the same code: not sent again.
            page.wait_for_timeout(1500)
            with fresh_database.unit_of_work() as session:
                scans = session.scalars(select(Scan)).all()
                assert [(s.person_ref, s.place_code, s.decision) for s in scans] == [
                    (person_ref, gate_code, "pass")
                ]

            # 停止 releases the camera; a new page load keeps it off.
            page.get_by_test_id("camera-stop").tap()
            expect(page.get_by_test_id("camera-box")).to_be_hidden()
            assert page.evaluate("() => document.querySelector('video').srcObject === null")
            page.reload()
            expect(page.get_by_test_id("camera-start")).to_be_visible()
            expect(page.get_by_test_id("camera-box")).to_be_hidden()

            # Camera on when the page loads anew (the answer as a new page): it starts by itself.
            page.get_by_test_id("camera-start").tap()
            expect(page.get_by_test_id("camera-stop")).to_be_visible()
            page.reload()
            expect(page.get_by_test_id("camera-stop")).to_be_visible(timeout=10_000)
            expect(page.get_by_test_id("camera-status")).to_have_attribute("data-state", "reading")
            context.close()
    finally:
        close_writers()


def test_a_qr_that_is_not_a_health_code_is_not_submitted(
    fresh_database: Database, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    gate_code = staffed_gate(fresh_database, "camera-gate").gate_code
    video = write_y4m(tmp_path / "hello.y4m", "HELLO")
    try:
        with camera_browser(video) as browser, serving(create_app(fresh_database)) as base:
            context, page = _open_gate_page(browser, base, "camera-gate", gate_code)
            page.get_by_test_id("camera-start").tap()
            status = page.get_by_test_id("camera-status")
            expect(status).to_contain_text("不是健康码", timeout=15_000)
            page.wait_for_timeout(1000)
            expect(page.get_by_test_id("verdict")).to_have_count(0)
            expect(page.get_by_test_id("code-input")).to_have_value("")
            context.close()

            # A browser without a camera API: no camera button, the form as before.
            bare = browser.new_context(
                viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True
            )
            bare.add_init_script(
                "Object.defineProperty(navigator, 'mediaDevices', {value: undefined})"
            )
            page = bare.new_page()
            log_in_to_gate_page(page, base, "camera-gate")
            expect(page.get_by_test_id("code-input")).to_be_visible()
            expect(page.get_by_test_id("camera")).to_be_hidden()
            bare.close()
    finally:
        close_writers()
    with fresh_database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Scan)) == 0

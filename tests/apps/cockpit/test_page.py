"""The cockpit page's shell (/cockpit): who may open it, what it loads (nothing from a CDN),
the words it states, Chinese first with the English switch."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import STREET_A, make_user
from tests.web.conftest import log_in

CONFIG = re.compile(r'<script type="application/json" id="cockpit-config">(.*?)</script>', re.S)


def test_the_cockpit_needs_a_login_and_the_permission(client: TestClient, session: Session) -> None:
    anonymous = client.get("/cockpit", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=/cockpit"
    make_user(session, "clinic_staff", STREET_A, "cockpit_clinic")
    log_in(client, "cockpit_clinic")
    refused = client.get("/cockpit")
    assert refused.status_code == 403
    # Nor is it offered in their navigation.
    assert 'href="/cockpit"' not in client.get("/").text


def test_the_shell_loads_echarts_locally_and_states_the_zones_and_attribution(
    client: TestClient, session: Session
) -> None:
    make_user(session, "city_commander", "4101", "cockpit_shell")
    log_in(client, "cockpit_shell")
    assert 'data-testid="nav-cockpit"' in client.get("/").text
    page = client.get("/cockpit")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert 'lang="zh-CN"' in html and "疫情态势领导驾驶舱" in html
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', html)
    assert scripts == ["/static/vendor/echarts.min.js", "/static/cockpit/cockpit.js"]
    assert "cdn" not in html.lower() and "https://" not in html
    assert "经开区、高新区、航空港区无行政区划多边形，单列显示" in html
    assert "© OpenStreetMap contributors, via geoBoundaries" in html and "ODbL" in html
    for option in ("confirmed", "contacts_managed", "red_yellow_compounds", "screening_backlog"):
        assert f'<option value="{option}">' in html
    match = CONFIG.search(html)
    assert match
    config = json.loads(match.group(1))
    assert config["root"] == {"code": "4101", "name": "郑州市", "level": "city"}
    assert config["words"]["not_built"] == "尚未接入 not connected yet"
    assert config["words"]["live"] == "实时 live"
    # The files the page loads are served from this server.
    for path in [*scripts, "/static/cockpit/cockpit.css"]:
        assert client.get(path).status_code == 200, path
    english = client.get("/cockpit?lang=en").text
    assert 'lang="en"' in english and "Leadership cockpit" in english


def test_a_district_officer_page_starts_at_their_district(
    client: TestClient, session: Session
) -> None:
    make_user(session, "district_officer", "410105", "cockpit_jinshui")
    log_in(client, "cockpit_jinshui")
    html = client.get("/cockpit").text
    match = CONFIG.search(html)
    assert match
    assert json.loads(match.group(1))["root"]["code"] == "410105"
    assert 'data-testid="root-area">金水区<' in html

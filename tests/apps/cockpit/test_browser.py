"""The acceptance tests of issue 6 in headless Chromium: the wall-screen cockpit shows the 12
district polygons (read from the ECharts instance) and figures that match the database; a
confirmed case asserted through the API reaches the map and the alert feed within 5 seconds;
a district officer sees their district only, on a phone too. Screenshots go to
test-artifacts/ for review."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.cockpit.browser_fixtures import (
    COMMANDER,
    DISTRICT_OFFICER,
    OFFICER_DISTRICT,
    OTHER_DISTRICT,
    PHONE,
    WALL,
    CockpitCity,
    cockpit_city,
    count_colours,
    count_facts,
    count_tiers,
    open_cockpit,
    polygon_codes,
    streets_of,
)
from tests.datahub.feeds import rail_rows, travellers, write_rail
from tests.factories import TEST_ACTOR
from tests.web.test_browser import ARTIFACTS, browser

pytestmark = pytest.mark.browser
__all__ = ["browser", "cockpit_city"]  # fixtures, shared with other modules

# JavaScript read from the page: the map series as ECharts holds it, the registered map's
# regions, and a figure's text.
SERIES = "() => window.cockpit.chart.getOption().series[0].data.map(d => [d.name, d.value])"
REGIONS = """() => {
  const map = window.echarts.getMap(window.cockpit.mapName);
  const geo = map.geoJSON || map.geoJson;
  return geo.features.map(f => String(f.properties.adcode));
}"""


def _map_values(page: Any) -> dict[str, float]:
    return {str(name): float(value) for name, value in page.evaluate(SERIES)}


def _shown(page: Any, key: str) -> str:
    return str(page.get_by_test_id(f"value-{key}").inner_text()).strip()


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_wall_screen_shows_the_twelve_districts_and_the_database_figures(
    cockpit_city: CockpitCity, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    city = cockpit_city
    database = city.database
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_cockpit(browser, city.base, COMMANDER, WALL)

    # The map: 12 polygons, registered with ECharts and drawn as the series' regions.
    polygons = polygon_codes()
    assert len(polygons) == 12
    assert sorted(page.evaluate(REGIONS)) == polygons
    values = _map_values(page)
    assert sorted(values) == polygons
    # Coloured by confirmed cases: the districts' values are the facts in their compounds.
    assert values[OTHER_DISTRICT] == count_facts(database, "confirmed_case", OTHER_DISTRICT) == 1
    assert values[OFFICER_DISTRICT] == count_facts(database, "confirmed_case", OFFICER_DISTRICT)
    assert sum(values.values()) == 2
    # The three development zones are listed beside the map, and the page says why.
    expect(page.get_by_test_id("zone-list").locator("li")).to_have_count(3)
    for zone in ("410171", "410172", "410173"):
        expect(page.get_by_test_id(f"zone-{zone}")).to_be_visible()
    expect(page.get_by_test_id("zones-note")).to_have_text(
        "经开区、高新区、航空港区无行政区划多边形，单列显示"
    )
    expect(page.get_by_test_id("attribution")).to_contain_text("© OpenStreetMap contributors")

    # Figures: every figure of the API on the page; the counted ones equal the source tables.
    overview = city.api("/api/v1/cockpit/overview")
    assert overview["area"]["code"] == "4101"
    for figure in overview["figures"]:
        shown = _shown(page, figure["key"])
        if figure["source"] == "not_built":
            # Never a made-up zero: a dash with the reason.
            assert shown == "—", figure["key"]
            expect(page.get_by_test_id(f"value-{figure['key']}")).to_have_attribute(
                "title", "尚未接入 not connected yet"
            )
        else:
            assert _number(shown) == figure["value"], figure["key"]
    assert _number(_shown(page, "confirmed_total")) == count_facts(
        database, "confirmed_case", "4101"
    )
    assert _number(_shown(page, "close_contacts")) == count_facts(database, "close_contact", "4101")
    assert _number(_shown(page, "codes_red")) == count_colours(database, "red", "4101") > 0
    assert _number(_shown(page, "compounds_red")) == count_tiers(database, "red", "4101") > 0
    tiers = page.get_by_test_id("tiers").locator("[data-colour=red]")
    expect(tiers).to_have_attribute("data-value", str(count_tiers(database, "red", "4101")))

    # The trend toggle redraws the sparklines with 30 points.
    page.get_by_test_id("trend-30").click()
    expect(page.get_by_test_id("trend-30")).to_have_attribute("aria-pressed", "true")
    points = page.evaluate(
        "() => document.querySelector('[data-testid=figure-confirmed_total] polyline')"
        ".getAttribute('points').split(' ').length"
    )
    assert points == 30
    page.get_by_test_id("trend-14").click()

    # Live and fresh: the stream is connected, the freshness panel lists the sources.
    expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("live-word")).to_have_text("实时 live")
    freshness = city.api("/api/v1/cockpit/freshness")
    expect(page.get_by_test_id("freshness").locator("tr")).to_have_count(len(freshness))
    stale = sum(1 for source in freshness if source["stale"])
    expect(page.get_by_test_id("freshness").locator("tr.stale")).to_have_count(stale)

    # A wall screen shows it all without scrolling sideways; the screenshot is for review.
    assert page.evaluate("document.documentElement.scrollWidth") <= WALL["width"]
    page.screenshot(path=str(ARTIFACTS / "cockpit-wall-1920x1080.png"))

    # Another measure: red and yellow compounds, as compound_tiers has them.
    page.get_by_test_id("measure").select_option("red_yellow_compounds")
    expected = count_tiers(database, "red", OTHER_DISTRICT) + count_tiers(
        database, "yellow", OTHER_DISTRICT
    )
    assert expected > 0
    page.wait_for_function(
        """([code, expected]) => window.cockpit.chart.getOption().series[0].data
             .some(d => d.name === code && d.value === expected)""",
        arg=[OTHER_DISTRICT, expected],
        timeout=10_000,
    )
    page.get_by_test_id("measure").select_option("confirmed")

    # Drill-down by a click on a polygon: the district's streets, one street's communities,
    # then back to the city by the breadcrumb.
    current = page.get_by_test_id("breadcrumb").locator("[aria-current=page]")
    # The map redraws (animated) after the measure changed back: a click that lands while it
    # does is lost, so the polygon's centre is found again and clicked until the map follows.
    for _ in range(3):
        if current.inner_text().strip() != "郑州市":
            break  # an earlier click did land
        point = page.evaluate(
            """code => {
              const chart = window.cockpit.chart;
              const region = chart.getModel().getSeriesByIndex(0).coordinateSystem.getRegion(code);
              const [x, y] = chart.convertToPixel({seriesIndex: 0}, region.getCenter());
              const box = chart.getDom().getBoundingClientRect();
              return [box.left + x, box.top + y];
            }""",
            OTHER_DISTRICT,
        )
        page.mouse.click(point[0], point[1])
        try:
            expect(current).to_have_text("中原区", timeout=3_000)
            break
        except AssertionError:
            continue
    expect(current).to_have_text("中原区")
    expect(page.get_by_test_id("drill")).to_be_visible()
    rows = page.get_by_test_id("drill-rows").locator("tr")
    expect(rows).to_have_count(streets_of(database, OTHER_DISTRICT))
    codes = rows.evaluate_all("rows => rows.map(r => r.dataset.code)")
    assert all(code.startswith(OTHER_DISTRICT) and len(code) == 9 for code in codes)
    # Sorted by value, largest first: the street of the case heads the list.
    assert codes[0] == city.spare_compound[:9]
    assert page.evaluate(REGIONS) == [OTHER_DISTRICT]
    page.get_by_test_id("sort-value").click()  # smallest first now: the case's street last
    expect(rows.last).to_have_attribute("data-code", city.spare_compound[:9])
    page.get_by_test_id("sort-value").click()
    expect(rows.first).to_have_attribute("data-code", city.spare_compound[:9])
    rows.first.locator("button").click()
    expect(current).to_have_attribute("data-code", city.spare_compound[:9])
    # The crumb moves at the click; the list follows when the street's answer is in.
    street = city.spare_compound[:9]
    expect(rows.first).to_have_attribute("data-code", re.compile(rf"^{street}\d{{3}}$"))
    codes = rows.evaluate_all("rows => rows.map(r => r.dataset.code)")
    assert codes and all(code.startswith(street) for code in codes)
    page.get_by_test_id("breadcrumb").locator("button").first.click()
    expect(page.get_by_test_id("drill")).to_be_hidden()
    assert sorted(_map_values(page)) == polygons
    # The development zones drill down from their list.
    page.get_by_test_id("zone-410171").locator("button").click()
    expect(current).to_contain_text("经济技术开发区")
    expect(page.get_by_test_id("no-polygon")).to_be_visible()
    expect(rows.first).to_have_attribute("data-code", re.compile(r"^410171\d{3}$"))
    codes = rows.evaluate_all("rows => rows.map(r => r.dataset.code)")
    assert codes and all(code.startswith("410171") and len(code) == 9 for code in codes)
    page.context.close()


def test_a_case_asserted_through_the_api_reaches_map_and_alerts_within_five_seconds(
    cockpit_city: CockpitCity, browser: object
) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    city = cockpit_city
    page = open_cockpit(browser, city.base, COMMANDER, WALL)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=live]').dataset.state === 'live'",
        timeout=10_000,
    )
    before = _map_values(page)[OTHER_DISTRICT]
    alerts_before = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=alerts] li[data-id]')]"
        ".map(li => li.dataset.id)"
    )

    started = time.monotonic()
    response = httpx.post(
        f"{city.base}/api/v1/risk/facts",
        headers={"authorization": f"Bearer {city.commander_token}"},
        json={"person_ref": city.spare_ref, "kind": "confirmed_case", "note": "核酸报告 A-17"},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    remaining_ms = max(100, int((5 - (time.monotonic() - started)) * 1000))
    page.wait_for_function(
        """([code, expected]) => {
          const data = window.cockpit.chart.getOption().series[0].data;
          const found = data.find(d => d.name === code);
          return found && found.value === expected;
        }""",
        arg=[OTHER_DISTRICT, before + 1],
        timeout=remaining_ms,
    )
    remaining_ms = max(100, int((5 - (time.monotonic() - started)) * 1000))
    page.wait_for_function(
        """([seen, district]) => [...document.querySelectorAll('[data-testid=alerts] li[data-id]')]
             .some(li => !seen.includes(li.dataset.id) && li.dataset.area.startsWith(district))""",
        arg=[alerts_before, OTHER_DISTRICT],
        timeout=remaining_ms,
    )
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the case reached the screen after {elapsed:.1f} s"
    # The newest alert is first, about the district of the case, with no personal data.
    first = page.get_by_test_id("alerts").locator("li").first
    assert first.get_attribute("data-area", timeout=1000).startswith(OTHER_DISTRICT)
    assert "确诊" in first.inner_text() or "病例" in first.inner_text()
    assert _number(_shown(page, "confirmed_total")) == 3
    page.context.close()


def test_a_district_officer_sees_only_their_district_even_on_a_phone(
    cockpit_city: CockpitCity, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    city = cockpit_city
    database = city.database
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_cockpit(browser, city.base, DISTRICT_OFFICER, PHONE, is_mobile=True)

    expect(page.get_by_test_id("root-area")).to_have_text("金水区")
    # The map holds their district's polygon only, no development zones.
    assert page.evaluate(REGIONS) == [OFFICER_DISTRICT]
    assert list(_map_values(page)) == [OFFICER_DISTRICT]
    expect(page.get_by_test_id("zones")).to_be_hidden()
    # Their streets are listed, and only theirs.
    codes = (
        page.get_by_test_id("drill-rows")
        .locator("tr")
        .evaluate_all("rows => rows.map(r => r.dataset.code)")
    )
    assert codes and all(code.startswith(OFFICER_DISTRICT) for code in codes)
    crumbs = page.get_by_test_id("breadcrumb").locator("[data-code]")
    expect(crumbs).to_have_count(1)
    # Their figures: the cases of their district (one), not the city's (two).
    mine = count_facts(database, "confirmed_case", OFFICER_DISTRICT)
    assert mine == 1 < count_facts(database, "confirmed_case", "4101")
    assert _number(_shown(page, "confirmed_total")) == mine
    assert _number(_shown(page, "codes_red")) == count_colours(database, "red", OFFICER_DISTRICT)
    # No alert from another district.
    areas = (
        page.get_by_test_id("alerts")
        .locator("li[data-area]")
        .evaluate_all("items => items.map(li => li.dataset.area)")
    )
    assert all(area.startswith(OFFICER_DISTRICT) for area in areas)
    # The city's figures are refused to them, whatever the page asks.
    city_answer = page.request.get(f"{city.base}/api/v1/cockpit/overview?area=4101")
    assert city_answer.status == 403
    # A phone: one column, nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "cockpit-district-phone.png"), full_page=True)
    page.context.close()


def test_the_demo_replay_is_paused_and_sped_up_from_the_header(
    cockpit_city: CockpitCity, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    from citybrain.web import demo

    assert isinstance(browser, Browser)
    city = cockpit_city
    # No demo playing: no clock in the header.
    page = open_cockpit(browser, city.base, COMMANDER, WALL)
    page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("demo-clock")).to_be_hidden()
    page.context.close()

    # A replay of two days of railway tickets, the first taken in.
    feeds = tmp_path / "feeds"
    first, second = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    people = travellers(20)
    write_rail(feeds, first, rail_rows(people[:10], first))
    write_rail(feeds, second, rail_rows(people[10:], second))
    player = demo.DemoPlayer(
        city.database, feeds, tmp_path / "delivered", day_seconds=600, actor=TEST_ACTOR
    )
    player.release_next()
    demo.install(player)
    try:
        page = open_cockpit(browser, city.base, COMMANDER, PHONE, is_mobile=True)
        clock_bar = page.get_by_test_id("demo-clock")
        expect(clock_bar).to_be_visible()
        expect(page.get_by_test_id("demo-day")).to_have_text("第 1/2 天 · 2026-11-01")
        pause = page.get_by_test_id("demo-pause")
        expect(pause).to_have_text("暂停")
        pause.click()
        expect(pause).to_have_text("继续")
        expect(page.get_by_test_id("demo-day")).to_contain_text("已暂停")
        assert player.paused is True
        # The select shows its new value at once; the server's answer comes after.
        with page.expect_response(
            lambda r: r.url.endswith("/api/v1/demo/clock") and r.request.method == "POST"
        ) as answered:
            page.get_by_test_id("demo-speed").select_option("4")
        assert answered.value.ok and answered.value.json()["speed"] == 4.0
        assert player.speed == 4.0
        expect(page.get_by_test_id("demo-speed")).to_have_value("4")
        pause.click()
        expect(pause).to_have_text("暂停")
        assert player.paused is False
        # The next day arrives: the header follows within its poll (5 s).
        player.release_next()
        expect(page.get_by_test_id("demo-day")).to_have_text(
            "第 2/2 天 · 2026-11-02 · 回放结束", timeout=8000
        )
        expect(pause).to_be_disabled()
        # Nothing wider than the phone's screen with the clock in the header.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(ARTIFACTS / "cockpit-demo-clock-phone.png"))
        page.context.close()
    finally:
        demo.install(None)

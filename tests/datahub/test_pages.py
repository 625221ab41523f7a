"""The data staff's pages: the status board (filters, totals, stale flagged, CSV export), the
ledger, and the quarantine (masked on screen, audited, exported only with a purpose)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from citybrain.datahub import lake, pages
from citybrain.kit import clock
from citybrain.kit.i18n import catalog
from tests.datahub.feeds import RAIL_HEADER, rail_rows, travellers
from tests.datahub.webkit import (
    app_fixture,  # noqa: F401 - fixture
    bad_id_number,
    client_fixture,  # noqa: F401 - fixture
    ingest,
    last_audit,
    paths_fixture,  # noqa: F401 - fixture
    rail_file,
)
from tests.factories import STREET_A, make_user
from tests.web.conftest import csrf_of, log_in

FORMULA = '=HYPERLINK("http://evil.example","x")'


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr class="[^"]*" data-code="([a-z_]+)"', html)


def _csv(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_street_officer_may_not_open_the_data_centre(client: TestClient, session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    log_in(client, officer.name)
    home = client.get("/")
    assert 'href="/datahub"' not in home.text
    for path in ("/datahub", "/datahub/files", "/datahub/status.csv"):
        assert client.get(path).status_code == 403, path
    refused = client.get("/datahub/quarantine")
    assert refused.status_code == 403
    denial = last_audit(session, "datahub.quarantine.view")
    assert (denial.outcome, denial.actor) == ("denied", f"user:{officer.id}")


def test_status_board_lists_all_categories_filters_totals_and_flags_stale_rows(
    client: TestClient, session: Session, paths: lake.LakePaths
) -> None:
    old = ingest(session, paths, rail_file(4), "rail_ticket/rail_ticket_20200121.csv")
    clean = rail_file(3, seed=7, bad_id=False, bad_time=False, dup=False)
    ingest(session, paths, clean, "rail_ticket/rail_ticket_20200122.csv")
    commander = make_user(session, "city_commander", "4101")
    log_in(client, commander.name)
    home = client.get("/")
    assert 'href="/datahub"' in home.text and "数据汇聚状态" in home.text
    assert 'href="/datahub/quarantine"' not in home.text  # the commander may not read raw rows
    board = client.get("/datahub")
    assert board.status_code == 200
    codes = _rows(board.text)
    assert len(codes) == 42 and codes[0] == "rail_ticket"
    assert 'data-code="rail_ticket" data-state="ok"' in board.text
    # Three days on without a file the railway is overdue (stale after 48 hours): flagged.
    with clock.frozen(clock.now() + dt.timedelta(days=3)):
        later = client.get("/datahub")
    assert re.search(r'<tr class="stale" data-code="rail_ticket" data-state="stale">', later.text)
    assert 'data-code="flight_manifest" data-state="no_data"' in later.text
    assert 'data-code="fever_visit" data-state="awaiting_app"' in later.text
    railway = client.get("/datahub", params={"agency": "铁路"})
    assert _rows(railway.text) == ["rail_ticket", "rail_gate"]
    totals = re.search(r'data-testid="totals">(.*?)</tr>', railway.text, re.S)
    assert totals is not None
    figures = re.findall(r'class="num"[^>]*>(\d+)</td>', totals.group(1))
    assert figures == ["2", str(old.accepted + 3), "2", "1"]  # files, records, quarantine, dup
    only_no_data = client.get("/datahub", params={"state": "no_data"})
    assert only_no_data.status_code == 200 and "rail_ticket" not in _rows(only_no_data.text)
    english = client.get("/datahub", params={"lang": "en"})
    assert "Data intake status" in english.text and "railway" in english.text


def test_status_export_is_csv_with_formulas_neutralised(
    client: TestClient, session: Session, paths: lake.LakePaths
) -> None:
    ingest(session, paths, rail_file(2), f"{FORMULA}.csv")
    officer = make_user(session, "data_officer", "4101")
    log_in(client, officer.name)
    response = client.get("/datahub/status.csv", params={"agency": "铁路"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = _csv(response.content)
    assert rows[0][:3] == ["类别代码", "报送机构", "数据类别"]
    assert len(rows) == 3
    tickets = next(r for r in rows if r[0] == "rail_ticket")
    assert tickets[14] == "'" + FORMULA + ".csv"
    assert tickets[-1] == "正常"


def test_ledger_filters_by_category_and_pages(
    client: TestClient, session: Session, paths: lake.LakePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        body = rail_file(2, seed=20 + i, bad_id=False, bad_time=False, dup=False)
        ingest(session, paths, body, f"rail_ticket_2020012{i}.csv")
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    officer = make_user(session, "data_officer", "4101")
    log_in(client, officer.name)
    first = client.get("/datahub/files", params={"category": "rail_ticket"})
    assert first.status_code == 200
    assert first.text.count("data-file=") == 2 and 'data-testid="next-page"' in first.text
    assert "rail_ticket_20200122.csv" in first.text  # newest first
    second = client.get("/datahub/files", params={"category": "rail_ticket", "page": 2})
    assert second.text.count("data-file=") == 1 and "rail_ticket_20200120.csv" in second.text
    other = client.get("/datahub/files", params={"category": "flight_manifest"})
    assert other.text.count("data-file=") == 0 and "暂无汇聚记录" in other.text
    assert client.get("/datahub/files", params={"category": "nope"}).status_code == 404


def test_quarantine_page_masks_rows_audits_and_exports_with_a_purpose(
    client: TestClient, session: Session, paths: lake.LakePaths
) -> None:
    people = travellers(3, seed=3)
    good = rail_rows(people, dt.date(2020, 1, 21), seed=3)
    cells = good[0].split(",")
    bad_id = bad_id_number(cells[2])
    cells[2] = bad_id
    broken = f"{FORMULA},身份证"  # a row cut short, starting with a formula
    body = ("\n".join([RAIL_HEADER, ",".join(cells), good[1], broken]) + "\n").encode("gbk")
    result = ingest(session, paths, body, "rail_ticket_20200121.csv")
    assert (result.quarantined, result.accepted) == (2, 1)
    officer = make_user(session, "data_officer", "4101")
    log_in(client, officer.name)
    assert 'href="/datahub/quarantine"' in client.get("/").text
    page = client.get("/datahub/quarantine", params={"category": "rail_ticket"})
    assert page.status_code == 200
    assert bad_id not in page.text
    assert bad_id[:4] + "*" * 10 + bad_id[-4:] in page.text
    assert people[0].name not in page.text and people[0].phone not in page.text
    assert "身份证号码校验码错误" in page.text and "行格式错误（列数不符）" in page.text
    view = last_audit(session, "datahub.quarantine.view")
    assert (view.outcome, view.detail["rows"], view.detail["plain"]) == ("ok", 2, False)
    by_reason = client.get("/datahub/quarantine", params={"reason": "malformed_row"})
    assert by_reason.text.count('data-testid="raw"') == 1
    by_file = client.get("/datahub/quarantine", params={"file_id": result.file_id})
    assert by_file.text.count('data-testid="raw"') == 2
    assert client.get("/datahub/quarantine", params={"file_id": "zz"}).status_code == 422

    token = csrf_of(client, "/datahub/quarantine")
    form = {"category": "rail_ticket", "file_id": "", "reason": "", "csrf_token": token}
    forged = client.post("/datahub/quarantine/export.csv", data={**form, "csrf_token": "x"})
    assert forged.status_code == 403
    no_purpose = client.post("/datahub/quarantine/export.csv", data=form)
    assert no_purpose.status_code == 422 and 'data-testid="export-error"' in no_purpose.text
    exported = client.post(
        "/datahub/quarantine/export.csv", data={**form, "purpose": "退回铁路部门更正"}
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = _csv(exported.content)
    assert rows[0][0] == "类别" and len(rows) == 3
    assert bad_id in rows[1][-1]  # the agency gets its row back as sent
    assert rows[2][-1] == "'" + broken  # a formula never runs in the agency's spreadsheet
    export = last_audit(session, "datahub.quarantine.export")
    assert (export.purpose, export.detail["rows"], export.actor) == (
        "退回铁路部门更正",
        2,
        f"user:{officer.id}",
    )


def test_commander_is_refused_the_quarantine_and_the_refusal_is_audited(
    client: TestClient, session: Session
) -> None:
    commander = make_user(session, "city_commander", "4101")
    log_in(client, commander.name)
    assert client.get("/datahub").status_code == 200
    assert client.get("/datahub/quarantine").status_code == 403
    token = csrf_of(client, "/datahub")
    export = client.post(
        "/datahub/quarantine/export.csv", data={"csrf_token": token, "purpose": "退回机构更正"}
    )
    assert export.status_code == 403
    denial = last_audit(session, "datahub.quarantine.export")
    assert (denial.outcome, denial.actor) == ("denied", f"user:{commander.id}")


def test_labels_the_pages_look_up_exist_in_both_languages() -> None:
    keys = {*pages.STATE_KEYS.values(), *pages.CHANNEL_KEYS.values(), *pages.STATUS_KEYS.values()}
    for lang in ("zh-CN", "en"):
        assert keys <= set(catalog(lang)), lang

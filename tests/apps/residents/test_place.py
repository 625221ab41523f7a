"""Checking in at a place (扫场所码) without a browser: the link asks a stranger to log in and
brings them back, the login goes back only to this site's residents pages (no open redirect),
and a code that is not a place code is refused by name."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.geo.models import Place
from citybrain.healthcode.codes import issue_code, issue_place_code, place_code_url
from citybrain.healthcode.models import Scan
from tests.apps.residents.conftest import csrf, login, registered


def test_the_link_logs_in_first_then_records_the_visit(
    resident: TestClient, session: Session, compound: str
) -> None:
    venue = session.scalars(
        select(Place).where(Place.kind == "venue", Place.area_code.startswith(compound[:9]))
    ).first()
    assert venue is not None
    link = place_code_url("http://testserver", issue_place_code(session, venue.code).text)
    person = registered(resident, compound)
    resident.post("/residents/logout", data={"csrf_token": csrf(resident, "/residents/code")})

    away = resident.get(link, follow_redirects=False)
    assert away.status_code == 303
    target = urlsplit(away.headers["location"])
    assert target.path == "/residents/login"
    back = parse_qs(target.query)["next"][0]
    assert back == link.removeprefix("http://testserver")
    assert "请先登录" in resident.get(away.headers["location"]).text
    # The login form carries it; logging in goes back to the place.
    answer = login(resident, person, next=back)
    assert answer.status_code == 303 and answer.headers["location"] == back
    page = resident.get(back)
    assert page.status_code == 200 and venue.name in page.text and "确认登记" in page.text
    c = parse_qs(urlsplit(link).query)["c"][0]
    done = resident.post("/residents/place", data={"c": c, "csrf_token": csrf(resident, back)})
    assert done.status_code == 200 and "已登记" in done.text and "可以进入" in done.text
    # A second tap shows the same visit; nothing is recorded twice.
    again = resident.post("/residents/place", data={"c": c, "csrf_token": csrf(resident, back)})
    assert again.status_code == 200 and "无需重复登记" in again.text
    visit = session.scalars(select(Scan).where(Scan.place_code == venue.code)).one()
    assert (visit.method, visit.direction) == ("place", "visit")

    # Only this site's residents pages are places to go back to after a login.
    for elsewhere in ("https://evil.example/x", "//evil.example/x", "/residents//evil", "/admin"):
        assert (
            resident.get(
                "/residents/login", params={"next": elsewhere}, follow_redirects=False
            ).headers["location"]
            == "/residents/code"
        )
    # A health code is not a place code.
    wrong = resident.get(
        "/residents/place", params={"c": issue_code(session, "ab" * 16, "green").text}
    )
    assert wrong.status_code == 422 and "场所码无效" in wrong.text

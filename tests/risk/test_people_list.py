"""The red and yellow list (/risk/people, 红黄码人员): who shows red or yellow in a
jurisdiction, red first, whether each is under control (an ``in_quarantine`` fact in force),
filtered by colour, control and area, exported masked, audited; a clinic does not get it."""

from __future__ import annotations

import datetime as dt
import io
import re

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import STREET_A, STREET_B, first_compound, make_user
from tests.risk.conftest import audits, resident
from tests.risk.test_web import bearer
from tests.web.conftest import csrf_of, log_in

from citybrain.core.authz.models import User
from citybrain.core.geo.models import Compound
from citybrain.kit import clock
from citybrain.risk import service
from citybrain.risk.models import Fact

UNREGISTERED = "ab" * 16  # a subject the analysis found who is in no registry


def _listed(text: str) -> list[str]:
    """The cards of a list page, each as its colour and the masked name or 未登记."""
    cards = re.findall(
        r'data-testid="coloured-person">\s*<div><span class="chip (\w+)">.*?'
        r'(?:data-testid="person-row">([^<·]+)|data-testid="unregistered">)',
        text,
        re.S,
    )
    return [f"{colour}:{(name or '未登记').strip()}" for colour, name in cards]


def test_the_red_and_yellow_list_filters_exports_and_stays_in_the_jurisdiction(
    client: TestClient, session: Session
) -> None:
    officer = make_user(session, "street_officer", STREET_A, "streetlist")
    make_user(session, "clinic_staff", STREET_A, "cliniclist")
    now = clock.now()

    def fact(subject: str, kind: str, **extra: object) -> None:
        service.assert_fact(
            session,
            officer.actor,
            subject=subject,
            kind=kind,
            source="staff",
            evidence={"record_ids": [1]},
            valid_from=now,
            **extra,  # type: ignore[arg-type]
        )

    contact, secondary, isolated = (resident(session, officer) for _ in range(3))
    fact(contact.subject, "close_contact")
    fact(secondary.subject, "secondary_contact")
    fact(isolated.subject, "close_contact")
    fact(isolated.subject, "in_quarantine", setting="home")
    fact(UNREGISTERED, "close_contact", compound_code=first_compound(session, STREET_A))
    neighbour = make_user(session, "street_officer", STREET_B)
    fact(resident(session, neighbour).subject, "close_contact")
    session.commit()

    log_in(client, "streetlist")
    assert 'href="/risk/people?control=uncontrolled"' in client.get("/").text
    overview = client.get("/risk")
    assert 'href="/risk/people?colour=red"' in overview.text
    page = client.get("/risk/people")
    assert page.status_code == 200
    listed = _listed(page.text)
    # Four in the street (not the next street's contact), red first, every name masked.
    assert len(listed) == 4 and "第 1 / 1 页，共 4 条" in page.text
    assert [c.split(":")[0] for c in listed] == ["red", "red", "red", "yellow"]
    assert "red:未登记" in listed
    placed = session.get(Compound, first_compound(session, STREET_A))
    assert placed is not None  # the unregistered contact is placed by name
    assert f'data-testid="unregistered">未登记人员（市级核查） · {placed.name} ' in page.text
    assert all("*" in c for c in listed if not c.endswith("未登记"))
    assert page.text.count('data-testid="controlled"') == 1 and "已管控 · 居家隔离" in page.text
    assert f'href="/risk/persons/{contact.ref}"' in page.text

    uncontrolled = client.get("/risk/people?control=uncontrolled")
    assert len(_listed(uncontrolled.text)) == 3
    assert f"/risk/persons/{isolated.ref}" not in uncontrolled.text
    controlled = client.get("/risk/people?control=controlled")
    assert [f"/risk/persons/{isolated.ref}" in controlled.text, len(_listed(controlled.text))] == [
        True,
        1,
    ]
    yellow = client.get("/risk/people?colour=yellow")
    assert len(_listed(yellow.text)) == 1 and f"/risk/persons/{secondary.ref}" in yellow.text
    # Narrowed to one community of the street, chosen by name from the street's communities.
    community = first_compound(session, STREET_A)[:12]
    assert re.search(rf'<option value="{community}" >[^<]+社区', page.text)
    assert len(_listed(client.get("/risk/people", params={"area": community}).text)) == 4
    other = re.findall(rf'<option value="({STREET_A}\d{{3}})"', page.text)
    assert len(other) > 1 and not _listed(
        client.get("/risk/people", params={"area": next(c for c in other if c != community)}).text
    )
    outside = client.get(f"/risk/people?area={STREET_B}")
    assert outside.status_code == 422 and "辖区内" in outside.text
    assert not _listed(outside.text)

    # The same list through the API, for a city's own grid apps.
    api = client.get(
        "/api/v1/risk/people",
        params={"control": "uncontrolled"},
        headers=bearer(session, officer.id),
    )
    assert api.status_code == 200 and api.json()["total"] == 3
    assert [i["colour"] for i in api.json()["items"]] == ["red", "red", "yellow"]
    assert all("*" in i["person"]["name"] for i in api.json()["items"] if i["person"])
    assert all(not i["controlled"] for i in api.json()["items"])
    clinic = session.scalar(select(User.id).where(User.username == "cliniclist"))
    assert clinic is not None
    assert client.get("/api/v1/risk/people", headers=bearer(session, clinic)).status_code == 403

    export = client.get("/risk/people/export.xlsx?control=uncontrolled")
    assert export.status_code == 200 and export.headers["cache-control"] == "no-store"
    sheet = load_workbook(io.BytesIO(export.content)).active
    assert sheet is not None
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:5] == ["本人", "身份证号码", "手机", "小区", "颜色"]
    assert len(rows) == 4 and all(r[7] == "未管控" for r in rows[1:])
    assert all("*" in str(r[1]) for r in rows[1:] if r[1])  # ID numbers masked
    assert "密切接触者" in "".join(str(r[5]) for r in rows[1:])
    assert audits(session, "risk.people.export")[-1].detail["results"] == 3
    assert [a.detail["results"] for a in audits(session, "risk.people.list")][:1] == [4]

    # Working down the uncontrolled list: record one in quarantine from the list itself, and
    # come back to the list as it was filtered.
    assert uncontrolled.text.count('data-testid="quarantine-form"') == 2  # registered only
    form = {
        "csrf_token": csrf_of(client, "/risk/people?control=uncontrolled"),
        "kind": "in_quarantine",
        "setting": "facility",
        "days": "14",
        "back": "/risk/people?control=uncontrolled",
    }
    # The form says how long, 14 days unless changed: a quarantine without an end would keep
    # the code red until someone remembered to record the release.
    assert 'name="days" value="14"' in uncontrolled.text
    done = client.post(f"/risk/persons/{contact.ref}/facts", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == form["back"]
    assert len(_listed(client.get(form["back"]).text)) == 2
    assert "已管控 · 集中隔离" in client.get("/risk/people?control=controlled").text
    ends = session.scalar(
        select(Fact.valid_until).where(
            Fact.subject == contact.subject, Fact.kind == "in_quarantine"
        )
    )
    assert ends is not None
    assert abs(clock.as_utc(ends) - (clock.now() + dt.timedelta(days=14))) < dt.timedelta(minutes=5)
    # An answer goes back only to the list, never elsewhere; a quarantine recorded with no
    # days (as the person's page allows) ends after 14 all the same.
    form |= {"back": "https://elsewhere.example/risk/people", "setting": "home", "days": ""}
    done = client.post(f"/risk/persons/{secondary.ref}/facts", data=form, follow_redirects=False)
    assert done.headers["location"] == f"/risk/persons/{secondary.ref}"
    ends = session.scalar(
        select(Fact.valid_until).where(
            Fact.subject == secondary.subject, Fact.kind == "in_quarantine"
        )
    )
    assert ends is not None
    assert abs(clock.as_utc(ends) - (clock.now() + dt.timedelta(days=14))) < dt.timedelta(minutes=5)

    log_in(client, "cliniclist")
    assert client.get("/risk/people").status_code == 403
    assert 'href="/risk/people' not in client.get("/risk").text
    assert 'href="/risk/people' not in client.get("/").text

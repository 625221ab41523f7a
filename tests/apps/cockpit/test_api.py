"""The cockpit's JSON API: the contract's shapes, the viewer's jurisdiction (403 outside it),
the map's children and polygons, alerts and freshness."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from citybrain.apps.cockpit.service import FIGURES
from citybrain.kit import clock
from citybrain.risk import service as risk
from tests.apps.cockpit.conftest import bearer, deliver
from tests.factories import OTHER_DISTRICT_STREET, STREET_A, make_user
from tests.risk.conftest import resident

DISTRICT = STREET_A[:6]


def _seed_case(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    case = resident(session, officer)
    risk.assert_fact(
        session,
        officer.actor,
        subject=case.subject,
        kind="confirmed_case",
        source="staff",
        evidence={"record_ids": [1]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    deliver(session)


def test_overview_follows_the_contract_and_the_city_sees_everything(
    client: TestClient, session: Session
) -> None:
    _seed_case(session)
    commander = make_user(session, "city_commander", "4101")
    headers = bearer(session, commander.id)
    body = client.get("/api/v1/cockpit/overview", headers=headers).json()
    assert body["area"]["code"] == "4101" and body["area"]["level"] == "city"
    assert [f["key"] for f in body["figures"]] == [k for k, _, _, _ in FIGURES]
    figures = {f["key"]: f for f in body["figures"]}
    assert figures["confirmed_total"]["value"] == 1
    assert figures["confirmed_today"]["trend14"][-1] == 1
    assert len(figures["confirmed_total"]["trend14"]) == 14
    assert len(figures["confirmed_total"]["trend30"]) == 30
    assert figures["key_persons_screened"] == {
        **figures["key_persons_screened"],
        "value": None,
        "source": "not_built",
    }
    assert body["tiers"]["red"] == figures["compounds_red"]["value"] >= 1
    assert set(body["loop"]) >= {"arrival_to_contacts_min", "contacts_to_codes_min", "cases"}
    district = client.get(
        "/api/v1/cockpit/overview", params={"area": DISTRICT}, headers=headers
    ).json()
    assert {f["key"]: f["value"] for f in district["figures"]}["confirmed_total"] == 1

    city_map = client.get(
        "/api/v1/cockpit/map", params={"measure": "confirmed"}, headers=headers
    ).json()
    assert city_map["level"] == "district" and len(city_map["areas"]) == 15
    assert sum(a["has_polygon"] for a in city_map["areas"]) == 12
    by_code = {a["code"]: a["value"] for a in city_map["areas"]}
    assert by_code[DISTRICT] == 1 and by_code[OTHER_DISTRICT_STREET[:6]] == 0
    streets = client.get(
        "/api/v1/cockpit/map",
        params={"measure": "red_yellow_compounds", "area": DISTRICT},
        headers=headers,
    ).json()
    assert streets["level"] == "street"
    assert {a["code"]: a["value"] for a in streets["areas"]}[STREET_A] >= 1
    backlog = client.get(
        "/api/v1/cockpit/map", params={"measure": "screening_backlog"}, headers=headers
    ).json()
    assert all(a["value"] is None for a in backlog["areas"])
    assert (
        client.get(
            "/api/v1/cockpit/map", params={"measure": "nonsense"}, headers=headers
        ).status_code
        == 422
    )

    alerts = client.get("/api/v1/cockpit/alerts", headers=headers).json()
    assert {a["kind"] for a in alerts} >= {"new_case", "compound_red"}
    assert all(a["area_code"].startswith(STREET_A) and a["area_name"] for a in alerts)
    fresh = client.get("/api/v1/cockpit/freshness", headers=headers).json()
    assert len(fresh) == 42
    rail = next(f for f in fresh if f["category"] == "rail_ticket")
    assert rail["last_received_at"] is None and rail["stale"] is True


def test_a_district_officer_sees_their_district_only(client: TestClient, session: Session) -> None:
    _seed_case(session)
    officer = make_user(session, "district_officer", DISTRICT)
    headers = bearer(session, officer.id)
    mine = client.get("/api/v1/cockpit/overview", headers=headers)
    assert mine.status_code == 200 and mine.json()["area"]["code"] == DISTRICT
    for area in ("4101", OTHER_DISTRICT_STREET[:6], OTHER_DISTRICT_STREET):
        for path in ("overview", "map", "alerts"):
            refused = client.get(f"/api/v1/cockpit/{path}", params={"area": area}, headers=headers)
            assert refused.status_code == 403, (path, area)
    street = client.get("/api/v1/cockpit/overview", params={"area": STREET_A}, headers=headers)
    assert street.status_code == 200
    streets = client.get("/api/v1/cockpit/map", headers=headers).json()
    assert streets["area"]["code"] == DISTRICT
    assert all(a["code"].startswith(DISTRICT) for a in streets["areas"])
    # Someone without the permission (a checkpoint's staff) gets nothing.
    gate = make_user(session, "checkpoint_staff", STREET_A)
    assert (
        client.get("/api/v1/cockpit/overview", headers=bearer(session, gate.id)).status_code == 403
    )
    assert client.get("/api/v1/cockpit/overview").status_code == 401

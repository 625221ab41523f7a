"""Who prints which place codes (场所码): the compounds' staff every place of their area; an
enterprise's admin only the area's shops, markets and restaurants; a school's admin only its
schools. Compound gates, checkpoints, hospitals and fever clinics are not theirs: a code posted
there records who passed."""

from __future__ import annotations

import html

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.geo.models import Place
from tests.factories import STREET_A, make_user
from tests.web.conftest import log_in


def _place(session: Session, kind: str, subkind: str | None = None) -> Place:
    statement = select(Place).where(Place.area_code.startswith(STREET_A), Place.kind == kind)
    if subkind is not None:
        statement = statement.where(Place.subkind == subkind)
    found = session.scalars(statement.order_by(Place.code)).first()
    assert found is not None, (kind, subkind)
    return found


def _listed(client: TestClient) -> str:
    page = client.get("/healthcode/place-codes?page=1")
    assert page.status_code == 200
    return html.unescape(page.text)


def test_enterprise_and_school_admins_print_only_their_sort_of_venue(
    client: TestClient, session: Session
) -> None:
    gate = _place(session, "compound_gate")
    market = _place(session, "venue", "market")
    school = _place(session, "venue", "school")
    clinic = _place(session, "venue", "fever_clinic")
    make_user(session, "enterprise_admin", STREET_A, "firm")
    make_user(session, "school_admin", STREET_A, "school")
    make_user(session, "street_officer", STREET_A, "street")

    log_in(client, "firm")
    listed = _listed(client)
    assert market.name in listed and gate.name not in listed
    assert school.name not in listed and clinic.name not in listed
    assert client.get(f"/healthcode/place-codes/{market.code}").status_code == 200
    for other in (gate, school, clinic):
        assert client.get(f"/healthcode/place-codes/{other.code}").status_code == 404, other.kind
        api = client.get(f"/api/v1/healthcode/place-codes/{other.code}")
        assert api.status_code == 404, other.kind
    client.cookies.clear()

    log_in(client, "school")
    listed = _listed(client)
    assert school.name in listed and market.name not in listed and gate.name not in listed
    assert client.get(f"/healthcode/place-codes/{school.code}").status_code == 200
    assert client.get(f"/healthcode/place-codes/{market.code}").status_code == 404
    client.cookies.clear()

    # The street's own staff print every place of the street, the compounds' gates included.
    log_in(client, "street")
    assert gate.name in _listed(client)
    for place in (gate, market, school, clinic):
        assert client.get(f"/healthcode/place-codes/{place.code}").status_code == 200
    issued = session.scalars(
        select(AuditEntry.object_id).where(AuditEntry.action == "healthcode.place_code.issue")
    ).all()
    assert sorted(issued) == sorted(
        [market.code, school.code, gate.code, market.code, school.code, clinic.code]
    )

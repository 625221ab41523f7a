import csv
import io
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz import repository
from citybrain.core.authz.service import issue_token
from tests.factories import STREET_A, STREET_B, TEST_ACTOR, first_compound, make_person, make_user
from tests.web.conftest import csrf_of, log_in


def _bearer(session: Session, user_id: int) -> dict[str, str]:
    user = repository.user_by_id(session, user_id)
    _token, secret = issue_token(session, TEST_ACTOR, name="test", user=user)
    return {"authorization": f"Bearer {secret}"}


def _last(session: Session, action: str) -> AuditEntry:
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq.desc())
    ).first()
    assert entry is not None
    return entry


def test_street_officer_gets_404_for_another_street_and_it_is_audited(
    client: TestClient, session: Session
) -> None:
    district = make_user(session, "district_officer", "410105")
    person, _ = make_person(session, district, STREET_A)
    outsider = make_user(session, "street_officer", STREET_B)
    response = client.get(f"/api/v1/people/{person.ref}", headers=_bearer(session, outsider.id))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "person_not_found"
    denial = _last(session, "person.view")
    assert (denial.outcome, denial.object_id, denial.actor) == (
        "denied",
        person.ref,
        f"user:{outsider.id}",
    )
    insider = make_user(session, "street_officer", STREET_A)
    ok = client.get(f"/api/v1/people/{person.ref}", headers=_bearer(session, insider.id))
    assert ok.status_code == 200 and ok.json()["id_number"].count("*") == 10


def test_api_registration_validates_and_unmask_is_audited(
    client: TestClient, session: Session
) -> None:
    grid = make_user(session, "grid_worker", STREET_A + "003")
    headers = _bearer(session, grid.id)
    compound = first_compound(session, grid.area_code)
    bad = client.post(
        "/api/v1/people",
        headers=headers,
        json={"name": "王五", "id_number": "410105198503141230", "compound_code": compound},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "id_number"
    assert "校验码" in bad.json()["error"]["message"]
    _, synthetic = make_person(session, grid)
    found = client.get("/api/v1/people", headers=headers, params={"phone": synthetic.phone})
    ref = found.json()["items"][0]["ref"]
    refused = client.post(f"/api/v1/people/{ref}/unmask", headers=headers, json={"purpose": ""})
    assert refused.status_code == 422
    plain = client.post(
        f"/api/v1/people/{ref}/unmask", headers=headers, json={"purpose": "核实密接联系方式"}
    )
    assert plain.status_code == 200 and plain.json()["id_number"] == synthetic.id_number
    entry = _last(session, "person.unmask")
    assert entry.purpose == "核实密接联系方式" and entry.object_id == ref


def test_people_pages_search_show_masked_unmask_and_export(
    client: TestClient, session: Session
) -> None:
    grid = make_user(session, "grid_worker", STREET_A + "003", "gridpages")
    _, synthetic = make_person(session, grid)
    log_in(client, "gridpages")
    token = csrf_of(client, "/people")
    page = client.post("/people", data={"q": synthetic.id_number, "csrf_token": token})
    assert page.status_code == 200
    table = page.text.split('data-testid="people-table"')[1]
    assert synthetic.id_number not in table and synthetic.phone not in table
    assert synthetic.id_number[:4] + "*" * 10 + synthetic.id_number[-4:] in table
    partial = client.post(
        "/people", data={"q": synthetic.phone, "csrf_token": token}, headers={"hx-request": "true"}
    )
    assert "<html" not in partial.text and "people-table" in partial.text
    match = re.search(r'href="/people/([0-9a-f]{32})"', partial.text)
    assert match
    ref = match.group(1)
    # Searching needs the form's token: a forged cross-site post is refused.
    assert client.post("/people", data={"q": synthetic.phone}).status_code == 403
    # Browsing the jurisdiction without a query is a plain GET.
    listing = client.get("/people")
    assert ref in listing.text
    detail = client.get(f"/people/{ref}")
    assert "查看明文" in detail.text and synthetic.phone not in detail.text
    unmasked = client.post(
        f"/people/{ref}/unmask",
        data={"purpose": "上门核实", "csrf_token": token},
        headers={"hx-request": "true"},
    )
    assert synthetic.id_number in unmasked.text and "上门核实" in unmasked.text
    assert "<html" not in unmasked.text
    # Without htmx the same post renders the whole page.
    full = client.post(f"/people/{ref}/unmask", data={"purpose": "上门核实", "csrf_token": token})
    assert "<html" in full.text and synthetic.phone in full.text
    export = client.post("/people/export.csv", data={"q": synthetic.name, "csrf_token": token})
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["编号", "姓名", "身份证号"]
    assert any(r[0] == ref for r in rows[1:])
    assert synthetic.id_number not in export.text
    assert export.headers["cache-control"] == "no-store"  # personal data: never cached


def test_registration_form_names_the_bad_field(client: TestClient, session: Session) -> None:
    make_user(session, "street_officer", STREET_A, "formuser")
    log_in(client, "formuser")
    token = csrf_of(client, "/people/new")
    response = client.post(
        "/people/new",
        data={
            "name": "赵六",
            "id_number": "41010519850314123",
            "phone": "",
            "compound_code": first_compound(session, STREET_A),
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert "18位" in response.text and "field-error" in response.text
    assert 'value="赵六"' in response.text

"""Pages for compound and community staff: scoped to their jurisdiction, masked, flagged
reports first, entries and exits, passes only for closed or controlled compounds, and Excel
exports with formulas neutralised."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import Place
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import register_person
from citybrain.healthcode.models import HouseholdPass, Scan
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of
from tests.apps.residents.conftest import COMMUNITY, OTHER_COMMUNITY, csrf, registered
from tests.factories import STREET_A, make_user, next_synthetic, next_synthetic_child
from tests.web.conftest import log_in

MASKED_ID = re.compile(r"\b\d{4}\*{10}[\dX]{4}\b")
MASKED_PHONE = re.compile(r"\b1\d{2}\*{4}\d{4}\b")
HEALTH_COMMISSION = Actor("agency:health_commission", "agency", None)


def _person(session: Session, id_number: str) -> Person:
    bidx = blind_index().digest(id_number, "id_number")
    person = session.scalars(select(Person).where(Person.id_number_bidx == bidx)).first()
    assert person is not None
    return person


def _staff(session: Session, client: TestClient, role: str, area: str) -> Any:
    user = make_user(session, role, area)
    log_in(client, user.name)
    return user


def _report(client: TestClient, ref: str, temperature: str, **extra: Any) -> None:
    data = {
        "csrf_token": csrf(client, "/residents/report"),
        "person_ref": ref,
        "temperature": temperature,
        "whereabouts": "home",
        **extra,
    }
    assert client.post("/residents/report", data=data, follow_redirects=False).status_code == 303


def _confirm_case(session: Session, person: Person) -> None:
    """The health commission's case report, as its feed would assert it."""
    risk.assert_fact(
        session,
        HEALTH_COMMISSION,
        subject=subject_of(person),
        kind="confirmed_case",
        source="analysis.case_report",
        evidence={"record_ids": [1]},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )


def test_a_grid_worker_sees_their_compound_masked_and_another_sees_nothing(
    resident: TestClient, staff: TestClient, app: Any, session: Session, compound: str
) -> None:
    member = next_synthetic_child()
    person = registered(resident, compound, members=[member], building="5号楼", room="602")
    _staff(session, staff, "grid_worker", COMMUNITY)

    overview = staff.get("/residents/staff").text
    assert f'data-code="{compound}"' in overview
    page = staff.get(f"/residents/staff/compounds/{compound}?tab=residents")
    assert page.status_code == 200
    text = page.text
    assert len(MASKED_ID.findall(text)) == 2 and len(MASKED_PHONE.findall(text)) == 1
    for plain in (person.id_number, member.id_number, person.phone, person.name):
        assert plain not in text, plain
    # The room is masked in the unit cell ("602" alone could turn up inside a random ref).
    assert "单元 602" not in text and "5号楼 2单元 ***" in text
    listing = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "residents.list")
    ).all()[-1]
    assert listing.object_id == compound and listing.detail["results"] == 2

    with TestClient(app, base_url="http://testserver") as outsider:
        _staff(session, outsider, "grid_worker", OTHER_COMMUNITY)
        assert f'data-code="{compound}"' not in outsider.get("/residents/staff").text
        for path in (
            f"/residents/staff/compounds/{compound}?tab=residents",
            f"/residents/staff/compounds/{compound}?tab=reports",
            f"/residents/staff/compounds/{compound}/export.xlsx?list=residents",
            f"/api/v1/residents/compounds/{compound}/residents",
        ):
            response = outsider.get(path, headers={"accept": "application/json"})
            assert response.status_code == 404, path
            assert person.name not in response.text
        denied = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "residents.compound.view")
            .order_by(AuditEntry.seq.desc())
        ).first()
        assert denied is not None and denied.outcome == "denied"

    with TestClient(app, base_url="http://testserver") as officer:
        _staff(session, officer, "street_officer", STREET_A)
        assert officer.get(f"/api/v1/residents/compounds/{compound}/residents").status_code == 200


def test_roles_without_the_permission_are_refused(staff: TestClient, session: Session) -> None:
    _staff(session, staff, "clinic_staff", COMMUNITY)
    assert staff.get("/residents/staff").status_code == 403


def test_todays_reports_flagged_first_and_followed_up(
    resident: TestClient, staff: TestClient, app: Any, session: Session, compound: str
) -> None:
    sick = registered(resident, compound)
    _report(resident, _person(session, sick.id_number).ref, "38.5", symptoms=["cough"])
    with TestClient(app, base_url="http://testserver") as neighbour:
        well = registered(neighbour, compound)
        _report(neighbour, _person(session, well.id_number).ref, "36.4")
    _staff(session, staff, "grid_worker", COMMUNITY)
    page = staff.get(f"/residents/staff/compounds/{compound}?tab=reports").text
    flags = re.findall(r'data-testid="report-row"[^>]*data-flagged="(\w+)"', page)
    assert flags == ["true", "false"]
    assert "咳嗽" in page and "待跟进" in page
    only = staff.get(f"/residents/staff/compounds/{compound}?tab=reports&flagged=true").text
    assert re.findall(r'data-flagged="(\w+)"', only) == ["true"]
    report_id = re.search(r"/residents/staff/reports/(\d+)/follow-up", page)
    assert report_id
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token
    done = staff.post(
        f"/residents/staff/reports/{report_id.group(1)}/follow-up",
        data={"csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "已跟进" in staff.get(f"/residents/staff/compounds/{compound}?tab=reports").text
    overview = staff.get("/residents/staff").text
    row = overview.split(f'data-code="{compound}"')[1].split("</tr>")[0]
    assert re.findall(r"<td>(\d+)</td>", row) == ["2", "2"]


def test_entries_and_exits_of_the_compound_gates(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    person = _person(session, registered(resident, compound).id_number)
    gate = session.scalars(select(Place).where(Place.compound_code == compound)).first()
    assert gate is not None
    # Earlier today (local), at any hour: the page shows today's entries and exits.
    today = dt.datetime.combine(clock.today_local(), dt.time(), tzinfo=clock.CHINA_TZ)
    elapsed = clock.now() - today
    for direction, share in (("exit", 0.4), ("entry", 0.8)):
        session.add(
            Scan(
                method="gate",
                place_code=gate.code,
                person_ref=person.ref,
                subject=subject_of(person),
                direction=direction,
                colour="green",
                colour_source="online",
                decision="pass",
                reason="ok",
                scanned_at=today + elapsed * share,
                batch="test",
            )
        )
    session.flush()
    _staff(session, staff, "grid_worker", COMMUNITY)
    page = staff.get(f"/residents/staff/compounds/{compound}?tab=scans").text
    assert page.count(gate.name) == 2
    assert page.index("<td>进</td>") < page.index("<td>出</td>")  # newest first
    exits = staff.get(f"/residents/staff/compounds/{compound}?tab=scans&direction=exit").text
    assert exits.count(gate.name) == 1


def test_passes_only_for_closed_or_controlled_compounds_and_announced(
    resident: TestClient, staff: TestClient, app: Any, session: Session, compound: str
) -> None:
    member = next_synthetic_child()
    person = registered(resident, compound, members=[member])
    me = _person(session, person.id_number)
    assert me.household_id is not None
    _staff(session, staff, "grid_worker", COMMUNITY)
    today = clock.today_local()
    form = {
        "household_id": str(me.household_id),
        "valid_from": today.isoformat(),
        "valid_until": (today + dt.timedelta(days=2)).isoformat(),
        "reason": "supplies",
    }
    page = staff.get(f"/residents/staff/compounds/{compound}?tab=passes").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token
    green = staff.post(
        f"/residents/staff/compounds/{compound}/passes",
        data={**form, "csrf_token": token.group(1)},
    )
    assert green.status_code == 422 and "无需出入证" in green.text
    assert f'value="{form["valid_until"]}"' in green.text

    _confirm_case(session, _person(session, member.id_number))
    assert risk.tier_of(session, compound).tier == "red"
    too_long = staff.post(
        f"/residents/staff/compounds/{compound}/passes",
        data={
            **form,
            "valid_until": (today + dt.timedelta(days=20)).isoformat(),
            "csrf_token": token.group(1),
        },
    )
    assert too_long.status_code == 422 and 'data-testid="error-valid_until"' in too_long.text
    issued = staff.post(
        f"/residents/staff/compounds/{compound}/passes",
        data={**form, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert issued.status_code == 303
    item = session.scalars(
        select(HouseholdPass).where(HouseholdPass.household_id == me.household_id)
    ).one()
    # The pass is the gate's (healthcode): audited and announced there.
    event = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == "healthcode.pass_issued")
    ).one()
    assert event.payload["pass_id"] == item.id and me.ref in event.payload["person_refs"]
    assert len(event.payload["person_refs"]) == 2
    issued_audit = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "healthcode.pass_issue")
    ).one()
    assert issued_audit.object_id == str(item.id) and issued_audit.detail["tier"] == "red"
    assert "采购生活物资" in resident.get("/residents/household").text

    # Listed on the page, in the JSON API and in the Excel export.
    listed = staff.get(f"/residents/staff/compounds/{compound}?tab=passes").text
    assert f"/residents/staff/passes/{item.id}/revoke" in listed and "采购生活物资" in listed
    api = staff.get(f"/api/v1/residents/compounds/{compound}/passes?active_only=true").json()
    assert [(p["id"], p["active"], p["members"]) for p in api] == [(item.id, True, 2)]
    sheet = load_workbook(
        io.BytesIO(
            staff.get(f"/residents/staff/compounds/{compound}/export.xlsx?list=passes").content
        )
    ).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == 2 and rows[1][0] == item.id and rows[1][5] == "采购生活物资"

    # Staff of another community cannot revoke it: the same 404 as no such pass, audited.
    with TestClient(app, base_url="http://testserver") as outsider:
        _staff(session, outsider, "grid_worker", OTHER_COMMUNITY)
        page = outsider.get("/residents/staff").text
        outsider_token = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert outsider_token
        refused = outsider.post(
            f"/residents/staff/passes/{item.id}/revoke",
            data={"csrf_token": outsider_token.group(1)},
            follow_redirects=False,
        )
        assert refused.status_code == 404
        denied = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "healthcode.pass_revoke")
            .order_by(AuditEntry.seq.desc())
        ).first()
        assert denied is not None and denied.outcome == "denied"
    session.refresh(item)
    assert item.revoked_at is None

    revoked = staff.post(
        f"/residents/staff/passes/{item.id}/revoke",
        data={"csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    assert session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == "healthcode.pass_revoked")
    ).one()
    session.refresh(item)
    assert item.revoked_at is not None
    assert staff.get(f"/api/v1/residents/compounds/{compound}/passes?active_only=true").json() == []
    again = staff.post(
        f"/residents/staff/passes/{item.id}/revoke",
        data={"csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert again.status_code == 422


def test_excel_export_neutralises_formulas(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    registered(resident, compound)
    worker = _staff(session, staff, "grid_worker", COMMUNITY)
    # Staff registration (core.people) takes any name without digits: one that a spreadsheet
    # would run as a formula must reach the workbook as text.
    synthetic = next_synthetic()
    register_person(
        session,
        worker,
        PersonIn(
            name="=HYPERLINK",
            id_number=synthetic.id_number,
            phone=synthetic.phone,
            compound_code=compound,
        ),
    )
    session.flush()
    response = staff.get(f"/residents/staff/compounds/{compound}/export.xlsx?list=residents")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows() for cell in row if cell.value is not None]
    assert not [c for c in cells if c.data_type == "f"]
    names = [c.value for c in cells if c.column == 1]
    formula_name = [v for v in names if isinstance(v, str) and v.startswith("'=")]
    assert formula_name == ["'=********K"]
    assert not [v for v in names if isinstance(v, str) and v.startswith("=")]
    ids = [c.value for c in cells if c.column == 2][1:]
    assert len(ids) == 2 and all(MASKED_ID.fullmatch(str(v)) for v in ids)
    exported = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "residents.export")
    ).all()[-1]
    assert exported.detail == {"list": "residents", "rows": 2}
    reports = staff.get(f"/residents/staff/compounds/{compound}/export.xlsx?list=reports")
    assert reports.status_code == 200

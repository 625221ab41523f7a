"""Scanning devices (场所设备): staff enrol a device for a place of their area (its token shown
once), list their area's devices, export the list and withdraw a device, after which its scans
are refused; all scoped to the jurisdiction, audited and announced."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.healthcode import devices
from citybrain.healthcode.codes import issue_code
from citybrain.kit import clock
from citybrain.kit.errors import InvalidInput, NotFound, PermissionDenied
from tests.factories import make_user
from tests.healthcode.conftest import Gate
from tests.web.conftest import csrf_of, log_in

TOKEN = re.compile(r'data-testid="device-token"[^>]*>([^<]+)<')


def _scan(client: TestClient, session: Session, gate: Gate, token: str) -> int:
    answer = client.post(
        "/api/v1/scans",
        json={"code": issue_code(session, gate.resident.ref, "green").text, "direction": "entry"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return answer.status_code


def test_an_enrolled_device_scans_as_its_place_until_withdrawn(
    client: TestClient, session: Session, gate: Gate
) -> None:
    device, secret = devices.enrol_device(
        session, gate.officer, place_code=gate.gate.code, name=" 东门 1号闸机 ", days=90
    )
    assert device.name == "东门 1号闸机" and device.status == "active"
    assert secret.startswith(device.prefix) and len(secret) > len(device.prefix) + 20
    assert _scan(client, session, gate, secret) == 200
    total, listed = devices.list_devices(session, gate.officer, query="东门")
    assert total == 1 and listed[0].id == device.id
    assert secret not in repr(listed[0])
    issued = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "token.issue", AuditEntry.object_id == str(device.id)
        )
    ).one()
    assert issued.actor == gate.officer.actor.ref
    enrolled = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == devices.TOPIC_DEVICE_ENROLLED)
    ).one()
    assert enrolled.payload == {"token_id": device.id, "place_code": gate.gate.code}

    gone = devices.withdraw_device(session, gate.officer, device.id)
    assert gone.status == "withdrawn"
    assert _scan(client, session, gate, secret) == 401
    assert devices.list_devices(session, gate.officer, query="东门")[0] == 0
    assert devices.list_devices(session, gate.officer, query="东门", status="withdrawn")[0] == 1
    assert session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == devices.TOPIC_DEVICE_WITHDRAWN)
    ).one()
    with pytest.raises(InvalidInput):
        devices.withdraw_device(session, gate.officer, device.id)


def test_devices_are_scoped_to_the_jurisdiction(session: Session, gate: Gate) -> None:
    device, _ = devices.enrol_device(
        session, gate.officer, place_code=gate.gate.code, name="gate", days=30
    )
    outsider = make_user(session, "street_officer", "410105002")
    assert all(d.id != device.id for d in devices.list_devices(session, outsider, status="all")[1])
    with pytest.raises(NotFound):
        devices.withdraw_device(session, outsider, device.id)
    with pytest.raises(NotFound):
        devices.enrol_device(session, outsider, place_code=gate.gate.code, name="x", days=30)
    # Staff who scan do not enrol devices; nor do an area's enterprise and school admins,
    # though they print its place codes (a gate's device decides who goes in and out).
    for role in ("checkpoint_staff", "enterprise_admin", "school_admin"):
        with pytest.raises(PermissionDenied):
            devices.list_devices(session, make_user(session, role, gate.gate.area_code))


def test_every_wrong_field_is_named(session: Session, gate: Gate) -> None:
    with pytest.raises(devices.DeviceInvalid) as wrong:
        devices.enrol_device(session, gate.officer, place_code="", name="  ", days=7)
    assert set(wrong.value.problems) == {"name", "days", "place_code"}


def test_the_page_enrols_shows_the_token_once_exports_and_withdraws(
    client: TestClient, session: Session, gate: Gate
) -> None:
    worker = make_user(session, "grid_worker", gate.compound[:12])
    log_in(client, worker.name)
    assert client.get("/healthcode/devices").status_code == 200
    token = csrf_of(client, "/healthcode/devices")
    answer = client.post(
        "/healthcode/devices",
        data={"name": "西门闸机", "place_code": gate.gate.code, "days": "30", "csrf_token": token},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    match = TOKEN.search(answer.text)
    assert match is not None
    secret = match.group(1)
    assert _scan(client, session, gate, secret) == 200
    listing = client.get("/healthcode/devices?q=西门")
    assert "西门闸机" in listing.text and secret not in listing.text
    row = re.search(r'data-testid="device-(\d+)"', listing.text)
    assert row is not None
    device_id = int(row.group(1))

    book = load_workbook(io.BytesIO(client.get("/healthcode/devices/export.xlsx?q=西门").content))
    sheet = book.active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][0] == "西门闸机" and rows[1][3] == gate.gate.code
    assert all(secret not in str(cell) for row in rows for cell in row)

    # The list's link asks first; the confirmation posts.
    asked = client.get(f"/healthcode/devices?q=西门&withdraw={device_id}")
    assert 'data-testid="withdraw-confirm"' in asked.text
    done = client.post(f"/healthcode/devices/{device_id}/withdraw", data={"csrf_token": token})
    assert done.status_code == 200 and 'data-testid="device-withdrawn"' in done.text
    assert _scan(client, session, gate, secret) == 401

    # A wrong form keeps what was typed and names the field.
    wrong = client.post(
        "/healthcode/devices",
        data={"name": "", "place_code": gate.gate.code, "days": "30", "csrf_token": token},
    )
    assert wrong.status_code == 422 and 'data-testid="error-name"' in wrong.text
    assert f'value="{gate.gate.code}"' in wrong.text
    # A place that is not there (or not theirs: the same answer) is the place field's error.
    elsewhere = client.post(
        "/healthcode/devices",
        data={"name": "x", "place_code": "G999", "days": "30", "csrf_token": token},
    )
    assert elsewhere.status_code == 404 and 'data-testid="error-place_code"' in elsewhere.text


def test_scanning_staff_see_no_device_page(
    client: TestClient, session: Session, gate: Gate
) -> None:
    scanner = make_user(session, "checkpoint_staff", gate.gate.area_code)
    log_in(client, scanner.name)
    assert client.get("/healthcode/devices").status_code == 403


def test_a_device_about_to_run_out_is_flagged_and_renewed_with_the_same_token(
    client: TestClient, session: Session, gate: Gate
) -> None:
    device, secret = devices.enrol_device(
        session, gate.officer, place_code=gate.gate.code, name="north gate", days=30
    )
    assert not device.expiring
    soon = clock.now() + dt.timedelta(days=30 - devices.EXPIRING_DAYS + 1)
    with clock.frozen(soon):
        total, flagged = devices.list_devices(
            session, gate.officer, query="north", status="expiring"
        )
        assert total == 1 and flagged[0].id == device.id and flagged[0].expiring
        renewed = devices.renew_device(session, gate.officer, device.id, 90)
        assert not renewed.expiring
        assert renewed.expires_at == soon + dt.timedelta(days=90)
        assert devices.list_devices(session, gate.officer, query="north", status="expiring")[0] == 0
    audit = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "token.renew", AuditEntry.object_id == str(device.id)
        )
    ).one()
    assert audit.detail["expires_at"] == renewed.expires_at.isoformat()
    assert session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == devices.TOPIC_DEVICE_RENEWED)
    ).one()
    # Run out, it is refused; renewed, the same token scans again.
    with clock.frozen(soon + dt.timedelta(days=91)):
        assert devices.list_devices(session, gate.officer, query="north", status="expired")[0] == 1
        assert _scan(client, session, gate, secret) == 401
        devices.renew_device(session, gate.officer, device.id, 30)
        assert _scan(client, session, gate, secret) == 200
    with pytest.raises(InvalidInput):
        devices.renew_device(session, gate.officer, device.id, 7)
    outsider = make_user(session, "street_officer", "410105002")
    with pytest.raises(NotFound):
        devices.renew_device(session, outsider, device.id, 30)
    devices.withdraw_device(session, gate.officer, device.id)
    with pytest.raises(InvalidInput):
        devices.renew_device(session, gate.officer, device.id, 30)


def test_the_page_renews_after_asking(client: TestClient, session: Session, gate: Gate) -> None:
    device, _ = devices.enrol_device(
        session, gate.officer, place_code=gate.gate.code, name="renew me", days=30
    )
    worker = make_user(session, "grid_worker", gate.compound[:12])
    log_in(client, worker.name)
    asked = client.get(f"/healthcode/devices?q=renew&renew={device.id}")
    assert 'data-testid="renew-confirm"' in asked.text
    token = csrf_of(client, "/healthcode/devices")
    done = client.post(
        f"/healthcode/devices/{device.id}/renew", data={"days": "180", "csrf_token": token}
    )
    assert done.status_code == 200 and 'data-testid="device-renewed"' in done.text
    until = (clock.now() + dt.timedelta(days=180)).astimezone(clock.CHINA_TZ)
    assert f"{until:%Y-%m-%d}" in done.text

"""Offline scans uploaded by a gate back online (``POST /api/v1/scans/offline``): recorded
with the colour in the code, once per (scanner, client id), each item judged on its own,
codes checked as of the scan's time, and passes of people red now flagged."""

from __future__ import annotations

import datetime as dt
import uuid
import zlib
from typing import Any

import base45  # type: ignore[import-untyped]
import cbor2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz.models import User
from citybrain.core.authz.service import authenticate_token, issue_token, revoke_token
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import Place
from citybrain.healthcode import keys
from citybrain.healthcode.codes import HEALTH_PREFIX, issue_code
from citybrain.healthcode.models import Scan, ScanBatch
from citybrain.healthcode.service import DeviceWithdrawn, OfflineScan, record_offline_scans
from citybrain.kit import clock
from tests.factories import TEST_ACTOR, make_user
from tests.healthcode.conftest import Gate, make_red
from tests.web.conftest import csrf_of, log_in

URL = "/api/v1/scans/offline"


def _now() -> dt.datetime:
    return clock.now().replace(microsecond=0)


def _item(code: str, **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "client_id": uuid.uuid4().hex,
        "code": code,
        "direction": "entry",
        "scanned_at": _now().isoformat(),
        "decision": "pass",
    }
    item.update(overrides)
    return item


def _upload(
    client: TestClient, token: str, items: list[dict[str, Any]], status: int = 200
) -> dict[str, Any]:
    response = client.post(URL, json={"items": items}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    return data


def recolour(code: str, colour: str) -> str:
    """The same signed code with another colour written into its payload (signature kept)."""
    raw = zlib.decompress(base45.b45decode(code[len(HEALTH_PREFIX) :]))
    cose = cbor2.loads(raw)
    protected, unprotected, payload, signature = cose.value
    claims = cbor2.loads(payload)
    claims[-65537]["c"] = colour
    forged = cbor2.CBORTag(18, [protected, unprotected, cbor2.dumps(claims), signature])
    return HEALTH_PREFIX + base45.b45encode(zlib.compress(cbor2.dumps(forged))).decode("ascii")


def _scans(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Scan)) or 0)


def test_a_good_batch_is_recorded_with_the_colour_in_the_code(
    client: TestClient, session: Session, gate: Gate
) -> None:
    earlier = _now() - dt.timedelta(hours=2)
    # Scanned two hours ago, with a code valid then (it has long expired by now).
    green = issue_code(session, gate.resident.ref, "green", now=earlier - dt.timedelta(minutes=1))
    yellow = issue_code(session, "P" + "0" * 15, "yellow", now=earlier - dt.timedelta(minutes=1))
    items = [
        _item(green.text, scanned_at=earlier.isoformat()),
        _item(yellow.text, scanned_at=earlier.isoformat(), decision="deny", direction="exit"),
    ]
    before = _scans(session)
    answer = _upload(client, gate.gate_token, items)
    assert (answer["recorded"], answer["duplicate"], answer["refused"]) == (2, 0, 0)
    first, second = answer["items"]
    assert first["status"] == "recorded" and first["client_id"] == items[0]["client_id"]
    assert first["code_colour"] == "green" and first["current_colour"] == "green"
    assert first["flagged"] is False
    # A person the registry does not know: no current colour to compare.
    assert second["code_colour"] == "yellow" and second["current_colour"] is None
    assert _scans(session) == before + 2
    scan = session.get(Scan, first["scan_id"])
    assert scan is not None
    assert (scan.colour, scan.colour_source, scan.decision, scan.reason) == (
        "green",
        "offline",
        "pass",
        "offline_pass",
    )
    assert scan.scanned_at == earlier and scan.place_code == gate.gate.code
    assert scan.device_token_id is not None and scan.method == "gate"
    assert scan.subject == gate.resident.id_number_bidx[:32]
    denied = session.get(Scan, second["scan_id"])
    assert denied is not None and (denied.decision, denied.direction) == ("deny", "exit")
    # One batch row, one audit row, the writer's event: the lake export takes them as usual.
    batch = session.get(ScanBatch, scan.batch)
    assert batch is not None and batch.count == 2 and denied.batch == scan.batch
    event = session.scalar(
        select(OutboxEvent).where(
            OutboxEvent.topic == "healthcode.scans_recorded", OutboxEvent.key == scan.batch
        )
    )
    assert event is not None and event.payload["count"] == 2
    audit = session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "healthcode.offline_scans_record",
            AuditEntry.object_id == scan.batch,
        )
    )
    assert audit is not None and audit.detail["offline"] == 2
    assert gate.resident.ref not in str(event.payload) + str(audit.detail)


def test_a_re_upload_is_a_duplicate_recorded_once(
    client: TestClient, session: Session, gate: Gate
) -> None:
    code = issue_code(session, gate.resident.ref, "green").text
    items = [_item(code)]
    first = _upload(client, gate.gate_token, items)
    assert first["recorded"] == 1
    again = _upload(client, gate.gate_token, items + items)
    assert again["duplicate"] == 2 and again["recorded"] == 0
    assert again["items"][0]["scan_id"] == first["items"][0]["scan_id"]
    assert (
        session.scalar(
            select(func.count()).where(Scan.offline_key.like(f"%{items[0]['client_id']}"))
        )
        == 1
    )
    # Another device's scan with the same client id is its own.
    other = _upload(client, gate.venue_token, items)
    assert other["recorded"] == 1


def test_bad_items_are_refused_and_the_good_ones_still_recorded(
    client: TestClient, session: Session, gate: Gate
) -> None:
    now = _now()
    red = issue_code(session, gate.resident.ref, "red").text
    good = issue_code(session, gate.resident.ref, "green").text
    old = issue_code(session, gate.resident.ref, "green", now=now - dt.timedelta(hours=80))
    expired = issue_code(session, gate.resident.ref, "green", now=now - dt.timedelta(hours=1))
    items = [
        _item(recolour(red, "green")),
        _item(good),
        # Valid at the time it was scanned, expired at the time the item claims.
        _item(expired.text, scanned_at=(now - dt.timedelta(minutes=10)).isoformat()),
        _item(old.text, scanned_at=(old.issued_at + dt.timedelta(minutes=1)).isoformat()),
        _item(good, scanned_at=(now + dt.timedelta(minutes=10)).isoformat()),
        _item(good, scanned_at="yesterday"),
        _item(good, direction="sideways"),
        _item(good, decision="maybe"),
        _item(good, client_id="not ok!"),
        _item("HC1:foreign"),
    ]
    before = _scans(session)
    answer = _upload(client, gate.gate_token, items)
    got = [(i["status"], i["reason_code"], i["field"]) for i in answer["items"]]
    assert got == [
        ("refused", "bad_signature", "code"),
        ("recorded", None, None),
        ("refused", "expired", "code"),
        ("refused", "too_old", "scanned_at"),
        ("refused", "in_future", "scanned_at"),
        ("refused", "bad_time", "scanned_at"),
        ("refused", "bad_direction", "direction"),
        ("refused", "bad_decision", "decision"),
        ("refused", "bad_client_id", "client_id"),
        ("refused", "bad_prefix", "code"),
    ]
    assert answer["items"][0]["reason"] == "签名无效，码可能被篡改"
    assert all(i["reason_zh"] and i["reason_en"] for i in answer["items"] if i["reason_code"])
    assert _scans(session) == before + 1
    # A refused item may come again once fixed: it was not recorded.
    fixed = _upload(client, gate.gate_token, [{**items[6], "direction": "exit"}])
    assert fixed["recorded"] == 1


def test_a_code_signed_by_a_key_retired_since_still_verifies_as_of_its_scan(
    client: TestClient, session: Session, gate: Gate
) -> None:
    code = issue_code(session, gate.resident.ref, "green").text
    keys.rotate_key(session, TEST_ACTOR)
    assert _upload(client, gate.gate_token, [_item(code)])["recorded"] == 1
    # A key removed as compromised verifies nothing, whenever the scan was made.
    code = issue_code(session, gate.resident.ref, "green").text
    keys.rotate_key(session, TEST_ACTOR, compromised=True)
    answer = _upload(client, gate.gate_token, [_item(code)])
    assert answer["items"][0]["reason_code"] == "unknown_key"


def test_a_device_uploads_only_its_own_place(
    client: TestClient, session: Session, gate: Gate
) -> None:
    code = issue_code(session, gate.resident.ref, "green").text
    answer = _upload(
        client,
        gate.gate_token,
        [_item(code, place_code=gate.venue.code), _item(code, place_code=gate.gate.code)],
    )
    assert [(i["status"], i["reason_code"], i["field"]) for i in answer["items"]] == [
        ("refused", "wrong_place", "place_code"),
        ("recorded", None, None),
    ]


def test_staff_upload_for_places_in_their_area_only(
    client: TestClient, session: Session, gate: Gate
) -> None:
    code = issue_code(session, gate.resident.ref, "green").text
    staff = make_user(session, "checkpoint_staff", gate.gate.area_code)
    _, token = issue_token(session, TEST_ACTOR, name="staff", user=session.get(User, staff.id))
    far = session.scalar(select(Place).where(~Place.area_code.startswith(gate.gate.area_code)))
    assert far is not None
    answer = _upload(
        client,
        token,
        [
            _item(code, place_code=far.code),
            _item(code),
            _item(code, place_code="NOPE"),
            _item(code, place_code=gate.gate.code),
        ],
    )
    assert [(i["status"], i["reason_code"], i["field"]) for i in answer["items"]] == [
        ("refused", "place_not_found", "place_code"),
        ("refused", "no_place", "place_code"),
        ("refused", "place_not_found", "place_code"),
        ("recorded", None, None),
    ]
    scan = session.get(Scan, answer["items"][3]["scan_id"])
    assert scan is not None and scan.device_token_id is None
    assert scan.offline_key == f"user:{staff.id}:{answer['items'][3]['client_id']}"


def test_a_person_red_now_but_green_in_the_code_is_flagged(
    client: TestClient, session: Session, gate: Gate
) -> None:
    earlier = _now() - dt.timedelta(minutes=30)
    code = issue_code(session, gate.resident.ref, "green", now=earlier).text
    make_red(session, gate.resident, gate.compound)
    answer = _upload(
        client,
        gate.gate_token,
        [
            _item(code, scanned_at=earlier.isoformat()),
            _item(code, scanned_at=earlier.isoformat(), decision="deny"),
        ],
    )
    passed, denied = answer["items"]
    assert passed["status"] == "recorded" and passed["code_colour"] == "green"
    assert passed["current_colour"] == "red" and passed["flagged"] is True
    # Turned back anyway: nothing to follow up.
    assert denied["current_colour"] == "red" and denied["flagged"] is False
    assert answer["flagged"] == 1
    scan = session.get(Scan, passed["scan_id"])
    assert scan is not None and (scan.colour, scan.colour_source) == ("green", "offline")


def test_who_may_upload(client: TestClient, session: Session, gate: Gate) -> None:
    code = issue_code(session, gate.resident.ref, "green").text
    assert client.post(URL, json={"items": [_item(code)]}).status_code == 401
    officer = session.get(User, gate.officer.id)
    _, officer_token = issue_token(session, TEST_ACTOR, name="script", user=officer)
    _upload(client, officer_token, [_item(code)], status=403)
    # At most 500 items per upload, at least one.
    _upload(client, gate.gate_token, [], status=422)
    _upload(client, gate.gate_token, [_item(code)] * 501, status=422)


def test_an_upload_under_a_token_revoked_since_its_check_is_refused_whole(
    session: Session, gate: Gate
) -> None:
    # The server remembers a device's principal for a while; the upload's own transaction
    # asks again, so a gate revoked meanwhile records nothing.
    device = authenticate_token(session, gate.gate_token)
    revoke_token(session, TEST_ACTOR, device.id)
    code = issue_code(session, gate.resident.ref, "green")
    before = _scans(session)
    with pytest.raises(DeviceWithdrawn) as refused:
        record_offline_scans(session, device, [OfflineScan(place_code=None, **_item(code.text))])
    assert refused.value.token_ids == {device.id} and refused.value.status_code == 401
    assert _scans(session) == before


def test_a_signed_in_gatekeeper_uploads_with_the_pages_csrf_token(
    client: TestClient, session: Session, gate: Gate
) -> None:
    staff = make_user(session, "checkpoint_staff", gate.gate.area_code, "offline-gatekeeper")
    log_in(client, staff.name)
    code = issue_code(session, gate.resident.ref, "green").text
    body = {"items": [_item(code, place_code=gate.gate.code)]}
    assert client.post(URL, json=body).status_code == 403  # no CSRF token
    token = csrf_of(client, "/healthcode/gate")
    answer = client.post(URL, json=body, headers={"X-CSRF-Token": token})
    assert answer.status_code == 200 and answer.json()["recorded"] == 1

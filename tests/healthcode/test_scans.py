"""Gate scanning: decisions by colour and tier, refusals with their reasons, the scan and its
outbox event in one transaction, devices and staff, place codes."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz.service import issue_token
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import PLACE_CHECKPOINT, PLACE_COMPOUND_GATE, PLACE_VENUE, Place
from citybrain.healthcode import keys
from citybrain.healthcode.codes import issue_code, place_text_from, verify_place_code
from citybrain.healthcode.models import Scan, ScanBatch
from citybrain.healthcode.policy import decide
from citybrain.kit import clock
from citybrain.risk.service import tier_of
from tests.factories import TEST_ACTOR, make_person, make_user
from tests.healthcode.conftest import Gate, make_red, person_row

GATE, VENUE = PLACE_COMPOUND_GATE, PLACE_VENUE


@pytest.mark.parametrize(
    ("kind", "direction", "colour", "tier", "resident", "decision", "reason"),
    [
        # Venues, checkpoints: green passes, yellow and red are turned back.
        (VENUE, "entry", "green", None, False, "pass", "green_code"),
        (VENUE, "entry", "yellow", None, False, "deny", "code_yellow"),
        (VENUE, "entry", "red", None, False, "deny", "code_red"),
        (PLACE_CHECKPOINT, "entry", "red", None, False, "deny", "code_red"),
        (PLACE_CHECKPOINT, "exit", "green", None, False, "pass", "green_code"),
        # A green compound: green codes pass; a red resident may come home, not go out.
        (GATE, "entry", "green", "green", False, "pass", "green_code"),
        (GATE, "exit", "green", "green", True, "pass", "green_code"),
        (GATE, "entry", "red", "green", True, "pass", "resident_home"),
        (GATE, "exit", "red", "green", True, "deny", "stay_home"),
        (GATE, "entry", "yellow", "green", False, "deny", "code_yellow"),
        (GATE, "entry", "red", None, False, "deny", "code_red"),
        # A yellow compound: residents only; a yellow resident does not go out.
        (GATE, "entry", "green", "yellow", False, "deny", "compound_controlled"),
        (GATE, "exit", "green", "yellow", True, "pass", "resident_controlled"),
        (GATE, "exit", "yellow", "yellow", True, "deny", "stay_home"),
        (GATE, "entry", "yellow", "yellow", True, "pass", "resident_home"),
        # A red compound: nobody leaves; only residents come in.
        (GATE, "exit", "green", "red", True, "deny", "compound_closed_exit"),
        (GATE, "entry", "green", "red", False, "deny", "compound_closed_entry"),
        (GATE, "entry", "green", "red", True, "pass", "resident_home"),
    ],
)
def test_the_gate_policy(
    kind: str,
    direction: str,
    colour: str,
    tier: str | None,
    resident: bool,
    decision: str,
    reason: str,
) -> None:
    got = decide(place_kind=kind, direction=direction, colour=colour, tier=tier, resident=resident)
    assert (got.decision, got.reason.code) == (decision, reason)
    assert got.reason.zh and got.reason.en


def _scan(client: TestClient, token: str, code: str, **body: object) -> dict[str, object]:
    response = client.post(
        "/api/v1/scans",
        json={"code": code, **body},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def test_a_green_resident_passes_and_the_scan_and_its_event_commit_together(
    client: TestClient, session: Session, gate: Gate
) -> None:
    code = issue_code(session, gate.resident.ref, "green").text
    events_before = session.scalar(
        select(func.count()).where(OutboxEvent.topic == "healthcode.scans_recorded")
    )
    answer = _scan(client, gate.gate_token, code, direction="entry")
    assert answer["passed"] is True and answer["decision"] == "pass"
    assert answer["reason_code"] == "green_code" and answer["reason"] == "绿码，请通行"
    assert answer["colour"] == "green" and answer["colour_source"] == "online"
    assert answer["place_code"] == gate.gate.code
    scan = session.get(Scan, answer["scan_id"])
    assert scan is not None
    assert (scan.person_ref, scan.subject, scan.direction, scan.decision) == (
        gate.resident.ref,
        gate.resident.id_number_bidx[:32],
        "entry",
        "pass",
    )
    assert scan.device_token_id is not None and scan.method == "gate"
    assert scan.scanned_at == dt.datetime.fromisoformat(str(answer["scanned_at"]))
    batch = session.get(ScanBatch, scan.batch)
    assert batch is not None and batch.first_id <= scan.id <= batch.last_id and batch.count == 1
    event = session.scalar(
        select(OutboxEvent).where(
            OutboxEvent.topic == "healthcode.scans_recorded", OutboxEvent.key == scan.batch
        )
    )
    assert event is not None
    assert event.payload["first_id"] == scan.id and event.payload["count"] == 1
    assert (
        session.scalar(select(func.count()).where(OutboxEvent.topic == "healthcode.scans_recorded"))
        == (events_before or 0) + 1
    )
    audit = session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "healthcode.scans_record", AuditEntry.object_id == scan.batch
        )
    )
    assert audit is not None and audit.detail["count"] == 1
    # Nothing personal in the event or the audit row.
    assert gate.resident.ref not in str(event.payload) and gate.resident.ref not in str(
        audit.detail
    )


def test_the_current_colour_wins_over_the_colour_in_the_code(
    client: TestClient, session: Session, gate: Gate
) -> None:
    # The code was issued green; then a confirmed case is asserted: the gate sees red.
    code = issue_code(session, gate.resident.ref, "green").text
    make_red(session, gate.resident, gate.compound)
    assert tier_of(session, gate.compound).tier == "red"
    at_venue = _scan(client, gate.venue_token, code)
    assert (at_venue["decision"], at_venue["reason_code"], at_venue["colour"]) == (
        "deny",
        "code_red",
        "red",
    )
    assert at_venue["colour_source"] == "online"
    assert at_venue["reason_zh"] == "红码，禁止通行，请配合核验"
    # At the closed compound's own gate: the resident may come home, not leave.
    home = _scan(client, gate.gate_token, code, direction="entry")
    assert (home["decision"], home["reason_code"]) == ("pass", "resident_home")
    out = _scan(client, gate.gate_token, code, direction="exit")
    assert (out["decision"], out["reason_code"]) == ("deny", "compound_closed_exit")


def test_a_neighbour_is_kept_out_of_a_red_compound(
    client: TestClient, session: Session, gate: Gate
) -> None:
    make_red(session, gate.resident, gate.compound)
    # Someone from another compound, green.
    other_officer = make_user(session, "street_officer", "410105002")
    masked, _ = make_person(session, other_officer)
    neighbour = person_row(session, masked.ref)
    assert neighbour.area_code != gate.compound
    code = issue_code(session, neighbour.ref, "green").text
    answer = _scan(client, gate.gate_token, code)
    assert (answer["decision"], answer["reason_code"], answer["colour"]) == (
        "deny",
        "compound_closed_entry",
        "green",
    )
    assert answer["reason"] == "小区封闭管理（红色），非本小区居民禁止进入"


def test_a_person_not_in_the_registry_is_judged_by_the_colour_in_the_code(
    client: TestClient, session: Session, gate: Gate
) -> None:
    code = issue_code(session, "0" * 32, "yellow").text
    answer = _scan(client, gate.venue_token, code)
    assert (answer["colour"], answer["colour_source"], answer["decision"]) == (
        "yellow",
        "code",
        "deny",
    )
    scan = session.get(Scan, answer["scan_id"])
    assert scan is not None and scan.subject is None


def test_refused_codes_get_422_with_their_reason_and_record_nothing(
    client: TestClient, session: Session, gate: Gate
) -> None:
    headers = {"Authorization": f"Bearer {gate.gate_token}"}
    before = session.scalar(select(func.count()).select_from(Scan))
    expired = issue_code(
        session, gate.resident.ref, "green", now=clock.now() - dt.timedelta(hours=1)
    ).text
    good = issue_code(session, gate.resident.ref, "green").text
    tampered = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    for text, reasons in (
        (expired, {"expired"}),
        (tampered, {"bad_signature", "bad_encoding", "malformed"}),
        ("HC1:whatever", {"bad_prefix"}),
    ):
        response = client.post("/api/v1/scans", json={"code": text}, headers=headers)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] in reasons and error["field"] == "code" and error["message"]
    english = client.post(
        "/api/v1/scans", json={"code": expired}, headers={**headers, "Accept-Language": "en"}
    )
    assert "expired" in english.json()["error"]["message"]
    # A key that is not in the trust list.
    keys.rotate_key(session, TEST_ACTOR, compromised=True)
    response = client.post("/api/v1/scans", json={"code": good}, headers=headers)
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_key"
    assert session.scalar(select(func.count()).select_from(Scan)) == before


def test_who_may_scan_where(client: TestClient, session: Session, gate: Gate) -> None:
    code = issue_code(session, gate.resident.ref, "green").text
    assert client.post("/api/v1/scans", json={"code": code}).status_code == 401
    bad = client.post(
        "/api/v1/scans", json={"code": code}, headers={"Authorization": "Bearer cbt_nope"}
    )
    assert bad.status_code == 401
    # A street officer's own token: no scanning permission.
    from citybrain.core.authz.models import User

    officer = session.get(User, gate.officer.id)
    _, officer_token = issue_token(session, TEST_ACTOR, name="script", user=officer)
    denied = client.post(
        "/api/v1/scans", json={"code": code}, headers={"Authorization": f"Bearer {officer_token}"}
    )
    assert denied.status_code == 403
    # A device scans only at its own place.
    elsewhere = client.post(
        "/api/v1/scans",
        json={"code": code, "place_code": gate.venue.code},
        headers={"Authorization": f"Bearer {gate.gate_token}"},
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["error"]["field"] == "place_code"
    # Checkpoint staff scan at places of their own area only, and must name the place.
    staff = make_user(session, "checkpoint_staff", gate.gate.area_code)
    staff_user = session.get(User, staff.id)
    _, staff_token = issue_token(session, TEST_ACTOR, name="staff", user=staff_user)
    staff_headers = {"Authorization": f"Bearer {staff_token}"}
    assert (
        client.post("/api/v1/scans", json={"code": code}, headers=staff_headers).status_code == 422
    )
    ok = client.post(
        "/api/v1/scans", json={"code": code, "place_code": gate.gate.code}, headers=staff_headers
    )
    assert ok.status_code == 200 and ok.json()["decision"] == "pass"
    assert session.get(Scan, ok.json()["scan_id"]).device_token_id is None  # type: ignore[union-attr]
    far = session.scalar(select(Place).where(~Place.area_code.startswith(gate.gate.area_code)))
    assert far is not None
    outside = client.post(
        "/api/v1/scans", json={"code": code, "place_code": far.code}, headers=staff_headers
    )
    assert outside.status_code == 404


def test_the_trust_list_is_public_and_cacheable(client: TestClient, session: Session) -> None:
    issued = issue_code(session, "P1", "green")
    response = client.get("/api/v1/healthcode/trust-list")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    body = response.json()
    assert body["issuer"] == "CN-4101"
    assert issued.kid in {k["kid"] for k in body["keys"]}


def test_a_place_code_is_signed_and_a_resident_scan_of_it_is_recorded(
    client: TestClient, session: Session, gate: Gate
) -> None:
    from citybrain.core.authz.models import User

    officer = session.get(User, gate.officer.id)
    _, token = issue_token(session, TEST_ACTOR, name="officer", user=officer)
    response = client.get(
        f"/api/v1/healthcode/place-codes/{gate.venue.code}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    place_code = response.json()
    assert place_code["text"].startswith("CBP1:") and place_code["svg"].startswith("<svg")
    verified = verify_place_code(place_code["text"], keys.trust_list(session))
    assert verified.place_code == gate.venue.code and verified.place_kind == "venue"
    # Printed as a link to the residents' page, the code in its ``c`` parameter.
    assert place_code["url"].startswith("http://testserver/residents/place?c=CBP1%3A")
    assert place_text_from(place_code["url"]) == place_code["text"]
    # A place outside the officer's street is not theirs to print.
    far = session.scalar(select(Place).where(~Place.area_code.startswith("410105")))
    assert far is not None
    assert (
        client.get(
            f"/api/v1/healthcode/place-codes/{far.code}",
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
        == 404
    )

    health = issue_code(session, gate.resident.ref, "green").text
    visit = client.post("/api/v1/scans/place", json={"place": place_code["text"], "code": health})
    assert visit.status_code == 200, visit.text
    body = visit.json()
    assert (body["place_code"], body["direction"], body["reason_code"]) == (
        gate.venue.code,
        "visit",
        "checked_in",
    )
    scan = session.get(Scan, body["scan_id"])
    assert scan is not None and scan.method == "place" and scan.device_token_id is None
    assert "repeat" not in body
    # What a scanner reads off the poster (the link) is taken as well; within five minutes
    # of the first it answers with the visit already recorded, and records none.
    by_link = client.post("/api/v1/scans/place", json={"place": place_code["url"], "code": health})
    assert by_link.status_code == 200 and by_link.json()["place_code"] == gate.venue.code
    assert (by_link.json()["scan_id"], by_link.json()["repeat"]) == (body["scan_id"], True)

    def visits() -> int:
        return len(
            session.scalars(
                select(Scan).where(
                    Scan.person_ref == gate.resident.ref, Scan.place_code == gate.venue.code
                )
            ).all()
        )

    assert visits() == 1
    with clock.frozen(clock.now() + dt.timedelta(minutes=6)):
        later = client.post(
            "/api/v1/scans/place",
            json={
                "place": place_code["text"],
                "code": issue_code(session, gate.resident.ref, "green").text,
            },
        )
        assert later.status_code == 200 and later.json()["scan_id"] != body["scan_id"]
    assert visits() == 2
    # The codes the other way round are refused.
    swapped = client.post("/api/v1/scans/place", json={"place": health, "code": place_code["text"]})
    assert swapped.status_code == 422 and swapped.json()["error"]["code"] == "bad_prefix"


def test_a_code_that_spells_percent_00_scans_like_any_other(
    client: TestClient, session: Session, gate: Gate
) -> None:
    # base45 spells "%00" in about one code in 600: text in a JSON body, not a NUL.
    now = clock.now()
    for k in range(20_000):
        text = issue_code(
            session, gate.resident.ref, "green", now=now, validity=dt.timedelta(seconds=300 + k)
        ).text
        if "%00" in text:
            break
    else:
        pytest.fail("no code spelled %00")
    answer = _scan(client, gate.gate_token, text, direction="entry")
    assert (answer["decision"], answer["colour_source"]) == ("pass", "online")
    assert session.get(Scan, answer["scan_id"]) is not None


def test_a_malformed_scan_body_is_refused_in_the_api_shape(
    client: TestClient, session: Session, gate: Gate
) -> None:
    headers = {"Authorization": f"Bearer {gate.gate_token}"}
    before = session.scalar(select(func.count()).select_from(Scan))
    for body, field in (
        ({"direction": "entry"}, "code"),
        ({"code": "CB1:X", "direction": "sideways"}, "direction"),
        ({"code": ""}, "code"),
    ):
        response = client.post("/api/v1/scans", json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
    garbled = client.post(
        "/api/v1/scans",
        content=b'{"code": ',
        headers={**headers, "content-type": "application/json"},
    )
    assert garbled.status_code == 422 and garbled.json()["error"]["code"] == "invalid_input"
    # Unauthenticated comes first: 401, whatever the body.
    assert client.post("/api/v1/scans", json={"direction": "entry"}).status_code == 401
    assert session.scalar(select(func.count()).select_from(Scan)) == before


def test_the_gate_reads_the_stored_colour_exactly_as_the_risk_engine_shows_it(
    session: Session, gate: Gate
) -> None:
    # The scan path reads a few columns of the stored colour row and leaves a row that is not
    # current to the risk engine: each case must give the colour risk.colours_of shows.
    from citybrain.healthcode.service import ScanRequest, record_scans
    from citybrain.kit import clock
    from citybrain.risk.models import PersonColour
    from citybrain.risk.service import colours_of

    subject = gate.resident.id_number_bidx[:32]

    def scanned() -> tuple[str, str]:
        request = ScanRequest(
            "gate", gate.venue.code, gate.resident.ref, "yellow", "entry", None, clock.now()
        )
        outcome = record_scans(session, [request])[0]
        return outcome.colour, outcome.colour_source

    def shown() -> str:
        return colours_of(session, [subject])[subject].colour

    assert scanned() == ("green", "online") and shown() == "green"  # no facts, no row
    make_red(session, gate.resident)
    assert scanned() == ("red", "online") and shown() == "red"
    row = session.get(PersonColour, subject)
    assert row is not None
    now = clock.now()
    reason = {"rule_id": "override", "text_zh": "人工调整", "text_en": "override", "evidence": []}
    cases = (
        # An override in force shows its colour.
        {
            "override_colour": "green",
            "override_until": now + dt.timedelta(hours=1),
            "override_reason": reason,
        },
        # One that ran out: the risk engine ends it, and the rules' colour shows.
        {"override_colour": "green", "override_until": now - dt.timedelta(minutes=1)},
        # Computed by another rule set, or due for a recheck: recomputed.
        {"rule_set_version": row.rule_set_version + 100, "colour": "green"},
        {"recheck_at": now - dt.timedelta(seconds=1), "colour": "yellow"},
    )
    expected = ("green", "red", "red", "red")
    for changes, colour in zip(cases, expected, strict=True):
        for name, value in changes.items():
            setattr(row, name, value)
        session.flush()
        assert scanned() == (colour, "online"), changes
        assert shown() == colour, changes

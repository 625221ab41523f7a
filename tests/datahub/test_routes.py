"""The data centre's JSON API: agencies push batches with idempotency keys through the one
intake path; data staff read the status, the ledger and the (audited) quarantine."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz.service import revoke_token
from citybrain.datahub import push, routes
from citybrain.datahub.models import CHANNEL_PUSH, IntakeFile, PushBatch
from citybrain.kit.db import Database
from citybrain.kit.errors import InvalidInput
from citybrain.kit.settings import reset_settings
from citybrain.web.app import create_app
from tests.datahub.feeds import travellers, write_cases
from tests.datahub.webkit import (
    CSV,
    DAY,
    agency_headers,
    app_fixture,  # noqa: F401 - fixture
    client_fixture,  # noqa: F401 - fixture
    last_audit,
    paths_fixture,  # noqa: F401 - fixture
    rail_file,
    user_headers,
)
from tests.factories import TEST_ACTOR, make_user

BATCHES = "/api/v1/datahub/batches"


def _push(
    client: TestClient,
    headers: dict[str, str],
    body: bytes,
    key: str,
    category: str = "rail_ticket",
    media_type: str = CSV,
) -> object:
    return client.post(
        BATCHES,
        params={"category": category, "day": DAY.isoformat()},
        headers={**headers, "Idempotency-Key": key, "content-type": media_type},
        content=body,
    )


def _count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_push_is_taken_in_with_exact_counts_and_a_replay_answers_the_same(
    client: TestClient, session: Session
) -> None:
    headers = agency_headers(session, categories=["rail_ticket"])
    response = _push(client, headers, rail_file(10), "rail-20200121-1")
    assert response.status_code == 201, response.text
    answer = response.json()
    assert {k: answer[k] for k in ("received", "accepted", "quarantined", "duplicate")} == {
        "received": 13,
        "accepted": 10,
        "quarantined": 2,
        "duplicate": 1,
    }
    assert answer["status"] == "ingested"
    assert answer["reasons"] == {"bad_datetime": 1, "id_checksum": 1}
    assert answer["category"] == "rail_ticket" and answer["idempotency_key"] == "rail-20200121-1"
    ledger = session.scalars(select(IntakeFile)).one()
    assert (ledger.channel, ledger.file_id, ledger.received) == (
        CHANNEL_PUSH,
        answer["file_id"],
        13,
    )
    batch = session.scalars(select(PushBatch)).one()
    assert (batch.actor, batch.intake_file_id) == ("agency:铁路", ledger.id)
    ingest_audit = last_audit(session, "datahub.ingest")
    assert ingest_audit.actor.startswith("agency:") and ingest_audit.detail["accepted"] == 10

    # The answer was lost; the agency retries with the same key and body.
    again = _push(client, headers, rail_file(10), "rail-20200121-1")
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == answer
    assert _count(session, IntakeFile) == 1 and _count(session, PushBatch) == 1
    assert last_audit(session, "datahub.push").detail["replay"] is True


def test_same_key_with_another_body_is_a_conflict_and_is_audited(
    client: TestClient, session: Session
) -> None:
    headers = agency_headers(session)
    assert _push(client, headers, rail_file(5), "k-1").status_code == 201
    refused = _push(client, headers, rail_file(6), "k-1")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "idempotency_key_reused"
    assert _count(session, IntakeFile) == 1
    entry = last_audit(session, "datahub.push")
    assert (entry.outcome, entry.detail["reason"]) == ("failed", "idempotency_key_reused")
    # A new key takes the new batch in; its first row repeats the earlier batch's.
    fresh = _push(client, headers, rail_file(6), "k-2")
    assert fresh.status_code == 201
    assert fresh.json()["duplicate"] >= 1


def test_the_same_bytes_under_a_new_key_take_nothing_in_twice(
    client: TestClient, session: Session
) -> None:
    headers = agency_headers(session)
    body = rail_file(4, bad_id=False, bad_time=False, dup=False)
    assert _push(client, headers, body, "first").json()["accepted"] == 4
    second = _push(client, headers, body, "second")
    assert second.status_code == 201
    assert second.json()["status"] == "already_ingested"
    assert second.json()["received"] == 0
    assert _count(session, IntakeFile) == 1 and _count(session, PushBatch) == 2
    # Its replay answers as it did, not as the first key did.
    assert _push(client, headers, body, "second").json() == second.json()


def test_category_rules_media_types_and_keys(client: TestClient, session: Session) -> None:
    headers = agency_headers(session, categories=["rail_ticket"])
    other = _push(client, headers, rail_file(2), "x-1", category="rail_gate")
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "category_not_allowed"
    denied = last_audit(session, "datahub.push")
    assert (denied.outcome, denied.object_id) == ("denied", "rail_gate")
    flights = _push(client, headers, rail_file(2), "x-2", category="flight_manifest")
    assert flights.status_code == 403
    unknown = _push(client, headers, rail_file(2), "x-3", category="no_such_feed")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "code": "unknown_category",
        "message": "未知的数据类别：no_such_feed",
        "field": "category",
    }
    wrong_type = _push(client, headers, rail_file(2), "x-4", media_type="application/x-ndjson")
    assert wrong_type.status_code == 415
    assert wrong_type.json()["error"]["code"] == "unsupported_media_type"
    missing_key = client.post(
        BATCHES,
        params={"category": "rail_ticket"},
        headers={**headers, "content-type": CSV},
        content=rail_file(2),
    )
    assert missing_key.status_code == 422
    assert missing_key.json()["error"]["field"] == "Idempotency-Key"
    long_key = _push(client, headers, rail_file(2), "k" * 101)
    assert long_key.status_code == 422
    empty = _push(client, headers, b"", "x-5")
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "body"
    assert _count(session, IntakeFile) == 0


def test_only_agency_tokens_push(client: TestClient, session: Session) -> None:
    nobody = _push(client, {}, rail_file(2), "n-1")
    assert nobody.status_code == 401
    assert nobody.json()["error"]["code"] == "not_authenticated"
    for role in ("city_commander", "data_officer", "system_admin"):
        user = make_user(session, role, "4101")
        refused = _push(client, user_headers(session, user.id), rail_file(2), f"u-{role}")
        assert refused.status_code == 403, role
    assert _count(session, IntakeFile) == 0
    token, secret = push.issue_agency_token(session, TEST_ACTOR, agency="铁路")
    revoke_token(session, TEST_ACTOR, token.id)
    revoked = _push(client, {"authorization": f"Bearer {secret}"}, rail_file(2), "r-1")
    assert revoked.status_code == 401


def test_an_excel_batch_passes_the_input_guard(
    client: TestClient, session: Session, tmp_path: Path
) -> None:
    workbook = write_cases(tmp_path, DAY, travellers(3)).read_bytes()
    assert b"\x00" in workbook  # a zip archive: the NUL guard must let it through here only
    headers = agency_headers(session, agency="卫生健康委", categories=["case_confirmed"])
    response = _push(
        client, headers, workbook, "cases-1", category="case_confirmed", media_type=push.XLSX
    )
    assert response.status_code == 201, response.text
    assert (response.json()["received"], response.json()["accepted"]) == (3, 3)
    # Anywhere else a NUL in a body is still refused.
    rail = agency_headers(session)
    assert _push(client, rail, b"a\x00b", "nul-1").status_code == 422


def test_status_lists_every_category_and_the_ledger_pages(
    client: TestClient, session: Session
) -> None:
    rail = agency_headers(session)
    for i in range(3):
        body = rail_file(3, seed=10 + i, bad_id=False, bad_time=False, dup=False)
        assert _push(client, rail, body, f"s-{i}").status_code == 201
    commander = user_headers(session, make_user(session, "city_commander", "4101").id)
    status = client.get("/api/v1/datahub/status", headers=commander)
    assert status.status_code == 200
    categories = status.json()["categories"]
    assert len(categories) == 42
    tickets = next(c for c in categories if c["code"] == "rail_ticket")
    assert (tickets["files"], tickets["records"], tickets["state"]) == (3, 9, "ok")
    assert {c["state"] for c in categories} >= {"ok", "no_data", "awaiting_app"}
    page = client.get(
        "/api/v1/datahub/files",
        headers=commander,
        params={"category": "rail_ticket", "limit": 2, "offset": 0},
    ).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert page["items"][0]["channel"] == "push"
    rest = client.get(
        "/api/v1/datahub/files", headers=commander, params={"limit": 2, "offset": 2}
    ).json()
    assert len(rest["items"]) == 1
    assert (
        client.get(
            "/api/v1/datahub/files", headers=commander, params={"category": "nope"}
        ).status_code
        == 404
    )
    assert (
        client.get("/api/v1/datahub/files", headers=commander, params={"limit": 501}).status_code
        == 422
    )
    street = user_headers(session, make_user(session, "street_officer", "410105001").id)
    assert client.get("/api/v1/datahub/status", headers=street).status_code == 403
    assert client.get("/api/v1/datahub/status", headers=rail).status_code == 403


def test_quarantine_api_masks_unless_a_purpose_is_stated_and_audits_every_read(
    client: TestClient, session: Session
) -> None:
    rail = agency_headers(session)
    body = rail_file(3)
    assert _push(client, rail, body, "q-1").status_code == 201
    bad_id = body.decode("gbk").splitlines()[4].split(",")[2]
    officer = make_user(session, "data_officer", "4101")
    headers = user_headers(session, officer.id)
    masked = client.get(
        "/api/v1/datahub/quarantine", headers=headers, params={"category": "rail_ticket"}
    )
    assert masked.status_code == 200, masked.text
    rows = masked.json()["items"]
    assert [(r["line"], r["reason"]) for r in rows] == [(5, "id_checksum"), (6, "bad_datetime")]
    assert rows[0]["column"] == "证件号码" and rows[0]["message"] == "身份证号码校验码错误"
    assert masked.json()["plain"] is False
    assert bad_id not in rows[0]["raw"] and bad_id[:4] + "*" * 10 + bad_id[-4:] in rows[0]["raw"]
    view = last_audit(session, "datahub.quarantine.view")
    assert (view.outcome, view.actor, view.detail["rows"]) == ("ok", f"user:{officer.id}", 2)
    plain = client.get(
        "/api/v1/datahub/quarantine",
        headers=headers,
        params={"reason": "id_checksum", "purpose": "退回铁路部门更正"},
    )
    assert plain.json()["plain"] is True and bad_id in plain.json()["items"][0]["raw"]
    assert last_audit(session, "datahub.quarantine.view").purpose == "退回铁路部门更正"
    short = client.get("/api/v1/datahub/quarantine", headers=headers, params={"purpose": "看看"})
    assert short.status_code == 422 and short.json()["error"]["field"] == "purpose"
    one = client.get("/api/v1/datahub/quarantine", headers=headers, params={"limit": 1})
    assert len(one.json()["items"]) == 1 and one.json()["more"] is True
    # The commander sees the board but not raw rows; the refusal is on the record.
    commander = make_user(session, "city_commander", "4101")
    refused = client.get("/api/v1/datahub/quarantine", headers=user_headers(session, commander.id))
    assert refused.status_code == 403
    denial = last_audit(session, "datahub.quarantine.view")
    assert (denial.outcome, denial.actor) == ("denied", f"user:{commander.id}")
    assert (
        client.get(
            "/api/v1/datahub/quarantine", headers=headers, params={"category": "../../etc"}
        ).status_code
        == 404
    )


def test_agency_tokens_are_issued_for_the_catalogues_feeds_only(session: Session) -> None:
    token, secret = push.issue_agency_token(session, TEST_ACTOR, agency="铁路")
    assert token.categories == ["rail_gate", "rail_ticket"]
    assert secret.startswith("cbt_")
    issued = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "token.issue").order_by(AuditEntry.seq.desc())
    ).first()
    assert issued is not None and issued.detail == {
        "agency": "铁路",
        "categories": ["rail_gate", "rail_ticket"],
    }
    with pytest.raises(InvalidInput) as unknown:
        push.issue_agency_token(session, TEST_ACTOR, agency="银行")
    assert unknown.value.field == "agency"
    with pytest.raises(InvalidInput) as foreign:
        push.issue_agency_token(session, TEST_ACTOR, agency="铁路", categories=["flight_manifest"])
    assert foreign.value.field == "categories"
    # Platform-app categories are fed by our own apps, never pushed by an agency.
    with pytest.raises(InvalidInput):
        push.issue_agency_token(session, TEST_ACTOR, agency="健康登记")


def test_a_body_over_the_limit_is_refused_before_the_intake(
    database: Database, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYBRAIN_MAX_REQUEST_BYTES", "2000")
    reset_settings()
    try:
        small = create_app(database)
    finally:
        monkeypatch.delenv("CITYBRAIN_MAX_REQUEST_BYTES")
        reset_settings()
    small.state.test_session = session
    small.dependency_overrides[routes.lake_paths] = lambda: None
    headers = agency_headers(session)
    with TestClient(small) as limited:
        response = _push(limited, headers, rail_file(200), "big-1")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert _count(session, IntakeFile) == 0


def test_push_description_documents_the_design(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"][BATCHES]["post"]
    assert set(operation["requestBody"]["content"]) == set(push.MEDIA_TYPES.values())
    assert "Idempotency-Key" in operation["description"]
    assert {"200", "201", "401", "403", "404", "409", "413", "415", "422"} <= set(
        operation["responses"]
    )


@pytest.mark.parametrize(
    ("agency", "category", "media_type", "body", "status", "received"),
    [
        # A carriage return inside the header line: unreadable as a whole, not a crash.
        ("铁路", "rail_ticket", CSV, b"\rs\xa8\xac\xa1\xc2", "rejected", 0),
        # A control character alone on a line: one bad JSON line, counted.
        ("民航", "flight_manifest", "application/x-ndjson", b"\x1e", "ingested", 1),
    ],
    ids=["cr-in-csv-header", "control-char-jsonl-line"],
)
def test_bodies_the_fuzzer_found_are_answered(
    client: TestClient,
    session: Session,
    agency: str,
    category: str,
    media_type: str,
    body: bytes,
    status: str,
    received: int,
) -> None:
    headers = agency_headers(session, agency=agency, categories=[category])
    response = _push(client, headers, body, "fuzz-1", category=category, media_type=media_type)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["status"], answer["received"]) == (status, received)
    assert answer["received"] == answer["accepted"] + answer["quarantined"] + answer["duplicate"]

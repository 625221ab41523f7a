"""Lists of people at once (批量登记，两人办理): a list handed over by the CDC is checked row by
row — rejected rows kept by row and field, the rest with a dry run — and becomes facts only
when a second person approves it within 72 hours; not counted against daily hand turns."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import STREET_A, STREET_B, make_user, next_synthetic
from tests.risk.conftest import T0, a_gate_writing, audits, resident
from tests.risk.test_web import bearer
from tests.web.conftest import csrf_of, log_in

from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.jobs.queue import get_queue, reset_queue
from citybrain.kit.db import Database, use_database
from citybrain.kit.errors import Conflict, InvalidInput, PermissionDenied
from citybrain.risk import batches, repository, service
from citybrain.risk.models import Fact, FactBatch
from citybrain.risk.tasks import assert_batch, on_batch_approved

HOUR = dt.timedelta(hours=1)


def _csv(*rows: tuple[str, str]) -> bytes:
    lines = ["序号,姓名,身份证号码,接触日期"]
    lines += [f"{n},乘客{n},{number},{date}" for n, (number, date) in enumerate(rows, start=1)]
    return "\n".join(lines).encode("gb18030")  # as Excel in Chinese saves a CSV


def _wrong_check_digit(number: str) -> str:
    return number[:-1] + ("1" if number[-1] != "1" else "2")


def test_a_list_is_checked_row_by_row_and_counts_only_when_a_second_person_approves(
    session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    commander = make_user(session, "city_commander", "4101")
    green, already_red = resident(session, officer), resident(session, officer)
    service.record_fact_by_hand(
        session, officer, subject=already_red.subject, kind="confirmed_case", note="核酸报告 A-1"
    )
    neighbour = resident(session, make_user(session, "street_officer", STREET_B))
    stranger = next_synthetic().id_number  # valid, not in the registry
    content = _csv(
        (green.id_number, "2026-02-27"),
        (already_red.id_number, ""),
        (_wrong_check_digit(green.id_number), ""),
        (green.id_number, ""),  # the same person again
        (neighbour.id_number, ""),  # another street's: kept, the city approves
        (stranger, ""),  # a visitor, not in the registry: kept
        (stranger, "2026-03-09"),  # ahead of today
        (stranger, "2026-01-02"),  # the fact would have ended
        (stranger, "27/02/2026"),
    )
    batch = service_request(session, officer, content)
    assert (batch.rows_total, batch.rows_accepted) == (9, 4)
    assert [(e["row"], e["field"]) for e in batch.errors] == [
        (4, "身份证号码"),
        (5, "身份证号码"),
        (8, "接触日期"),
        (9, "接触日期"),
        (10, "接触日期"),
    ]
    messages = [e["message_zh"] for e in batch.errors]
    # What is wrong, not which digit: a rejected row keeps no piece of the number.
    assert messages[0] == "身份证号码校验码错误" and messages[1] == "与第 2 行是同一人"
    assert "不能晚于今天" in messages[2] and "已超过 14 天" in messages[3]
    # A street learns no colour outside its jurisdiction: the neighbour's and the visitor's
    # are judged only when the city approves.
    assert batch.dry_run == {
        "turns_red": 1,
        "turns_yellow": 0,
        "unchanged": 1,
        "registered": 3,
        "unregistered": 1,
        "not_judged": 2,
        "by_street": {STREET_A: 2, STREET_B: 1},
    }
    assert green.id_number not in repr(batch.items) + repr(batch.errors)  # no number kept
    assert audits(session, "risk.batch.request")[-1].detail["rejected"] == 5
    assert service.colour_of(session, green.subject).colour == "green"  # nothing counts yet

    with pytest.raises(PermissionDenied):
        batches.approve_batch(session, officer, batch.id)  # a street officer approves nothing
    at(T0 + 2 * HOUR)
    approved = batches.approve_batch(session, commander, batch.id)
    assert approved.status == "approving" and approved.facts_asserted == 0
    # The worker asserts a chunk a transaction (SQLite's lock let go in between).
    assert not batches.assert_batch_chunk(session, batch.id, size=2)
    assert approved.facts_asserted == 2 and approved.status == "approving"
    assert batches.assert_batch_chunk(session, batch.id, size=2)
    assert approved.status == "approved" and approved.facts_asserted == 4
    assert batches.assert_batch_chunk(session, batch.id)  # run again: nothing more
    fact = session.scalars(
        select(Fact).where(Fact.subject == green.subject, Fact.kind == "close_contact")
    ).one()
    assert fact.source == "batch" and fact.turned_colour == "red"
    assert fact.evidence["batch_id"] == batch.id and fact.evidence["note"] == "协查函 2026-118"
    assert fact.valid_until is not None and fact.valid_until.day == 12  # contact date + 14
    assert service.colour_of(session, green.subject).colour == "red"
    # Two people approved it: nobody's daily hand turns are used up.
    since = T0 - 24 * HOUR
    assert repository.codes_turned_by_since(session, commander.actor.ref, since) == 0
    # The visitor and the neighbour too, judged now.
    assert audits(session, "risk.batch.asserted")[-1].detail["turned_red"] == 3
    visitor = batches.subject_of_id_number(stranger)
    assert service.colour_of(session, visitor).colour == "red"
    turns = service.hand_turns(session, commander, days=1)
    assert fact.id in [t.fact.id for t in turns.items]
    with pytest.raises(Conflict) as twice:
        batches.approve_batch(session, commander, batch.id)
    assert twice.value.code == "batch_decided"


def service_request(session: Session, who: Any, content: bytes, **changes: Any) -> Any:
    arguments = {"kind": "close_contact", "note": "协查函 2026-118", "days": 14} | changes
    return batches.request_batch(session, who, rows=batches.read_list(content), **arguments)


def test_the_one_who_uploaded_cannot_approve_and_a_list_lapses_or_is_taken_back(
    session: Session, at: Any
) -> None:
    at(T0)
    commander = make_user(session, "city_commander", "4101")
    colleague = make_user(session, "city_commander", "4101")
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    unregistered = next_synthetic().id_number
    own = service_request(session, commander, _csv((person.id_number, ""), (unregistered, "")))
    assert own.dry_run["unregistered"] == 1 and own.dry_run["turns_red"] == 2  # the city's
    assert own.dry_run["not_judged"] == 0
    with pytest.raises(Conflict) as alone:
        batches.approve_batch(session, commander, own.id)
    assert alone.value.code == "batch_needs_second_person"
    for keep in alone.value.after_rollback:
        keep(session)
    assert audits(session, "risk.batch.approve")[-1].outcome == "denied"

    at(T0 + 73 * HOUR)
    with pytest.raises(Conflict) as lapsed:
        batches.approve_batch(session, colleague, own.id)
    assert lapsed.value.code == "batch_lapsed"
    _total, shown = batches.batches_scoped(session, colleague)
    assert [b.status for b in shown] == ["lapsed"]

    mine = service_request(session, officer, _csv((person.id_number, "")))
    with pytest.raises(PermissionDenied):  # only its uploader or an approver turns it down
        batches.reject_batch(
            session, make_user(session, "street_officer", STREET_A), mine.id, reason="不应登记"
        )
    taken = batches.reject_batch(session, officer, mine.id, reason="名单有误，重新整理")
    assert taken.status == "rejected" and taken.decision_reason == "名单有误，重新整理"
    assert audits(session, "risk.batch.reject")[-1].actor == officer.actor.ref

    with pytest.raises(InvalidInput) as nobody:
        service_request(session, officer, _csv((unregistered[:-2], "")))
    assert nobody.value.field == "file" and "第 2 行" in nobody.value.message_zh
    with pytest.raises(InvalidInput) as header:
        batches.read_list("姓名,电话\n张三,13800000000".encode())
    assert header.value.field == "file" and "身份证号码" in header.value.message_zh
    with pytest.raises(InvalidInput) as basis:
        service_request(session, officer, _csv((person.id_number, "")), note="无")
    assert basis.value.field == "note"


def _xlsx(numbers: list[str]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["CA1234 航班密接人员名单"])  # a title above the header, as lists come
    sheet.append(["序号", "身份证号码 *", "接触日期"])
    for n, number in enumerate(numbers, start=1):
        sheet.append([n, number, dt.date(2026, 2, 28)])
    sheet.append([len(numbers) + 1, 410105199001011234, dt.date(2026, 2, 28)])  # as a number
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_excel_list_is_uploaded_on_the_page_and_approved_by_the_command_centre(
    client: TestClient, session: Session, at: Any
) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A, "listsender")
    commander = make_user(session, "city_commander", "4101", "listapprover")
    people = [resident(session, officer) for _ in range(3)]
    numbers = [p.id_number for p in people] + [_wrong_check_digit(people[0].id_number)]

    log_in(client, "listsender")
    form = {
        "csrf_token": csrf_of(client, "/risk/batches"),
        "kind": "close_contact",
        "note": "协查函 2026-120",
        "days": "14",
    }
    missing = client.post("/risk/batches", data=form)
    assert missing.status_code == 422 and "请选择要上传的名单文件" in missing.text
    assert 'value="协查函 2026-120"' in missing.text  # the form keeps what was typed
    sheet = _xlsx(numbers)
    sent = client.post(
        "/risk/batches",
        data=form,
        files={"file": ("CA1234密接.xlsx", sheet, "application/octet-stream")},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    page = client.get("/risk/batches").text
    batch_id = int(re.findall(r'data-testid="batch-(\d+)"', page)[0])
    rows = re.search(rf'data-testid="rows-of-batch-{batch_id}">([^<]+)', page)
    assert rows is not None and rows.group(1) == "共 5 行：可登记 3 人，有误 2 行"
    assert "身份证号码被 Excel 存成了数字" in page
    assert "转红码 3 人" in page and "经八路街道 3" in page
    assert f'data-testid="approve-batch-{batch_id}"' not in page  # not the sender's to approve

    log_in(client, "listapprover")
    assert "1 份名单待批准登记" in client.get("/risk").text
    approved = client.post(
        f"/risk/batches/{batch_id}/approve",
        data={"csrf_token": csrf_of(client, "/risk/batches")},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    page = client.get("/risk/batches").text
    assert "已批准，正在登记" in page and "正在登记：0 / 3" in page
    assert f'hx-get="/risk/batches/{batch_id}/card"' in page  # the card follows its progress
    while not batches.assert_batch_chunk(session, batch_id, size=2):  # as the worker does
        card = client.get(f"/risk/batches/{batch_id}/card").text
        assert "正在登记：2 / 3" in card and "<progress" in card
    assert all(service.colour_of(session, p.subject).colour == "red" for p in people)
    card = client.get(f"/risk/batches/{batch_id}/card").text
    assert "已登记事实 3 条" in card and "hx-get" not in card  # done: it stops polling
    page = client.get("/risk/batches").text
    assert "已登记事实 3 条：转红码 3 人" in page and "已批准" in page
    assert 'data-testid="batches-waiting"' not in client.get("/risk").text
    exported = client.get("/risk/batches/export.xlsx")
    assert exported.status_code == 200
    book = load_workbook(io.BytesIO(exported.content)).active
    assert book is not None
    rows = list(book.iter_rows(values_only=True))
    assert rows[0][:5] == ("编号", "类型", "依据", "天数", "状态")
    assert rows[1][:12] == (
        batch_id,
        "密切接触者",
        "协查函 2026-120",
        14,
        "已批准",
        5,
        3,
        2,
        3,
        0,
        3,
        3,
    )
    assert "listsender" in str(rows[1][12]) and "listapprover" in str(rows[1][14])
    assert audits(session, "risk.batches.export")[-1].detail["results"] == 1

    listed = client.get("/api/v1/risk/batches", headers=bearer(session, commander.id)).json()
    assert listed["total"] == 1 and listed["items"][0]["facts_asserted"] == 3
    assert [e["row"] for e in listed["items"][0]["errors"]] == [6, 7]  # under title and header


def test_a_list_over_the_api(client: TestClient, session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    commander = make_user(session, "city_commander", "4101")
    person = resident(session, officer)
    body = {
        "kind": "risk_area_travel",
        "note": "通报 第15号",
        "days": 7,
        "rows": [{"id_number": person.id_number}, {"id_number": "410105"}],
    }
    sent = client.post("/api/v1/risk/batches", json=body, headers=bearer(session, officer.id))
    assert sent.status_code == 201
    batch = sent.json()
    assert batch["rows_accepted"] == 1 and batch["errors"][0]["row"] == 3
    assert batch["dry_run"]["turns_yellow"] == 1 and batch["status"] == "requested"
    refused = client.post(
        f"/api/v1/risk/batches/{batch['id']}/approve", headers=bearer(session, officer.id)
    )
    assert refused.status_code == 403
    turned_down = client.post(
        f"/api/v1/risk/batches/{batch['id']}/reject",
        json={"reason": "通报已撤回"},
        headers=bearer(session, commander.id),
    )
    assert turned_down.status_code == 200 and turned_down.json()["status"] == "rejected"
    assert service.colour_of(session, person.subject).colour == "green"


def test_approving_a_list_hands_its_facts_to_the_worker(
    fresh_database: Database, tmp_path: Path
) -> None:
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A)
        commander = make_user(session, "city_commander", "4101")
        person = resident(session, officer)
        batch = service_request(session, officer, _csv((person.id_number, "")))
        batches.approve_batch(session, commander, batch.id)
        batch_id = batch.id
    reset_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with fresh_database.unit_of_work() as session:
            event = session.scalars(
                select(OutboxEvent).where(OutboxEvent.topic == batches.TOPIC_BATCH_APPROVED)
            ).one()
            on_batch_approved(session, event)
        assert get_queue().pending_count() == 1
        with use_database(fresh_database):
            assert assert_batch.call_local(batch_id) == 1
    finally:
        reset_queue()
    with fresh_database.unit_of_work() as session:
        assert service.colour_of(session, person.subject).colour == "red"
        assert session.get(FactBatch, batch_id).status == "approved"  # type: ignore[union-attr]


def test_a_lists_people_are_cleared_after_the_facts_retention(session: Session, at: Any) -> None:
    at(T0)
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    batch = service_request(session, officer, _csv((person.id_number, ""), ("410105", "")))
    batches.reject_batch(session, officer, batch.id, reason="名单有误，重新整理")
    at(T0 + dt.timedelta(days=179))
    assert batches.purge_expired_batch_lists(session) == 0
    at(T0 + dt.timedelta(days=181))  # CITYBRAIN_RISK_FACT_RETENTION_DAYS: 180
    assert batches.purge_expired_batch_lists(session) == 1
    assert batch.items == [] and batch.errors == []
    assert (batch.rows_total, batch.rows_accepted, batch.note) == (2, 1, "协查函 2026-118")
    assert audits(session, "risk.batch_lists_purge")[-1].detail["deleted"] == 1
    assert batches.purge_expired_batch_lists(session) == 0


def test_gates_get_the_write_lock_between_a_lists_chunks(fresh_database: Database) -> None:
    # A gate's scan writer never waits for SQLite's write lock: it looks every 2 ms and
    # goes back to serving. While a long list is asserted, it must find the lock free between
    # the chunks, or the gate's scans wait for the whole list.
    if fresh_database.dialect != "sqlite":
        pytest.skip("SQLite's one write lock")
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A)
        commander = make_user(session, "city_commander", "4101")
        rows = [(next_synthetic().id_number, "") for _ in range(4 * batches.BATCH_CHUNK)]
        batch = service_request(session, officer, _csv(*rows))
        batches.approve_batch(session, commander, batch.id)
        batch_id = batch.id
    with use_database(fresh_database), a_gate_writing(fresh_database) as gate:
        assert assert_batch.call_local(batch_id) == 4 * batches.BATCH_CHUNK
    # Between each of the four chunks the gate got in at least once.
    assert gate.taken >= 3

"""Facts for a list of people at once (批量登记，两人办理).

The CDC hands over a flight's close contacts, a venue's visitors in a risk window: people the
lake may not hold, too many for one officer to record by hand (one account may turn
``CITYBRAIN_RISK_HAND_TURN_DAILY_LIMIT`` green codes a day). One account uploads the list
(Excel or CSV: a column of resident ID numbers, optionally the contact date) with its basis;
every row is checked — a wrong ID, a date in the future or too long ago, a repeat is rejected
by row and field, and the rest kept — and a dry run says how many codes approving would turn.
Nothing counts until a second account that may approve manual colours approves it; then the
worker makes each accepted row a fact (source ``batch``, evidence the batch and its basis), a
chunk a transaction, listed in the register of hand turns, not counted against either
account's daily limit. A request nobody decides lapses after 72 hours.

ID numbers are turned into risk subjects as they are read; neither the file nor a number is
kept, and the rejected rows keep only their row number and what was wrong.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import Actor, record, record_purge
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.scope import covers, within
from citybrain.core.authz.service import actor_names
from citybrain.core.events.service import publish
from citybrain.kit import clock
from citybrain.kit.errors import Conflict, InvalidInput, NotFound
from citybrain.risk.kinds import FactKind, kind_label
from citybrain.risk.models import FactBatch
from citybrain.risk.schemas import BatchRowError, FactBatchOut
from citybrain.risk.service import (
    _denied,
    assert_fact,
    may_read_overrides,
    recompute_compounds,
    turns_green,
)
from citybrain.risk.settings import risk_settings
from citybrain.risk.subjects import person_of_subject, subject_of_id_number

BATCH_KINDS = (FactKind.CLOSE_CONTACT, FactKind.SECONDARY_CONTACT, FactKind.RISK_AREA_TRAVEL)
BATCH_MAX_ROWS = 1_000
BATCH_HOURS = 72  # a request nobody decides lapses after this
BATCH_SOURCE = "batch"
ID_HEADERS = ("身份证号码", "公民身份号码", "身份证号", "身份证", "id_number")
DATE_HEADERS = ("接触日期", "日期", "contact_date", "date")
HEADER_ROWS_SEARCHED = 5  # a title row or two often stands above a list's header
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d")
TOPIC_BATCH_REQUESTED = "risk.batch_requested"
TOPIC_BATCH_APPROVED = "risk.batch_approved"
TOPIC_BATCH_ASSERTED = "risk.batch_asserted"
# Rows a transaction of the worker asserts: about a fifth of a second of SQLite's write lock
# on the slower machines (a hundred held it for about half a second, which gates waiting to
# record their scans felt as latency); the worker lets them in after each (kit.db).
BATCH_CHUNK = 50


@dataclass(frozen=True)
class ListRow:
    """One row of an uploaded list as read: its row number in the file and the cells that
    matter, as text; ``id_as_number`` when a workbook holds the ID number as a number (Excel
    keeps 15 digits of it: the rest is lost)."""

    row: int
    id_number: str
    contact_date: str
    id_as_number: bool = False


def _bad_file(zh: str, en: str) -> InvalidInput:
    return InvalidInput(zh, en, field="file")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _table(content: bytes) -> list[list[object]]:
    """The file's rows: an Excel workbook's first sheet as its cells' values, else CSV in
    UTF-8 or GB18030 (what Excel in Chinese saves) as text."""
    if content[:2] == b"PK":
        try:
            sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).worksheets[0]
        except (zipfile.BadZipFile, KeyError, ValueError, IndexError) as exc:
            raise _bad_file(
                "无法读取该 Excel 文件，请另存为 .xlsx 或 CSV 后再上传",
                "the Excel file cannot be read; save it as .xlsx or CSV and upload again",
            ) from exc
        rows: list[list[object]] = []
        for cells in sheet.iter_rows(values_only=True):
            rows.append(list(cells))
            if len(rows) > BATCH_MAX_ROWS + HEADER_ROWS_SEARCHED:
                break
        return rows
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            decoded = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise _bad_file("文件编码无法识别，请用 UTF-8 保存", "unknown text encoding; save as UTF-8")
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(decoded))]


def _heading(value: object) -> str:
    """A header cell as compared: no spaces, no required-field star, lower case."""
    return "".join(_text(value).split()).strip("*＊").lower()


def read_list(content: bytes) -> list[ListRow]:
    """The rows of an uploaded list (``.xlsx`` or CSV) under its header — the first of the
    first :data:`HEADER_ROWS_SEARCHED` rows naming a resident ID column (身份证号码), which
    may have a title above it; optionally a contact-date column (接触日期). Rows keep their
    numbers in the file; blank ones are skipped. Refused as a whole, on the field ``file``,
    when empty, unreadable, without an ID column, or longer than :data:`BATCH_MAX_ROWS`."""
    if not content:
        raise _bad_file("请选择要上传的名单文件", "choose the list to upload")
    table = _table(content)
    if not table:
        raise _bad_file("文件是空的", "the file is empty")
    names = [n.lower() for n in ID_HEADERS]
    headers = [[_heading(c) for c in cells] for cells in table[:HEADER_ROWS_SEARCHED]]
    top = next((i for i, h in enumerate(headers) if any(n in h for n in names)), None)
    if top is None:
        raise _bad_file(
            f"前{HEADER_ROWS_SEARCHED}行中没有表头“身份证号码”（可另有“接触日期”一列）",
            f"no header “身份证号码” in the first {HEADER_ROWS_SEARCHED} rows "
            "(optionally “接触日期”)",
        )

    header = headers[top]

    def column(options: Sequence[str]) -> int | None:
        for name in options:
            if name.lower() in header:
                return header.index(name.lower())
        return None

    id_column, date_column = column(ID_HEADERS), column(DATE_HEADERS)
    rows = []
    for number, cells in enumerate(table[top + 1 :], start=top + 2):
        if not any(_text(c) for c in cells):
            continue

        def cell(index: int | None, cells: list[object] = cells) -> object:
            return cells[index] if index is not None and index < len(cells) else None

        raw_id = cell(id_column)
        as_number = isinstance(raw_id, int | float) and not isinstance(raw_id, bool)
        rows.append(
            ListRow(number, "" if as_number else _text(raw_id), _text(cell(date_column)), as_number)
        )
    if not rows:
        raise _bad_file("名单中没有人员", "the list holds nobody")
    if len(rows) > BATCH_MAX_ROWS:
        raise _bad_file(
            f"一次最多 {BATCH_MAX_ROWS} 人，请分批上传",
            f"at most {BATCH_MAX_ROWS} people at once; split the list",
        )
    return rows


def _error(row: int, field: str, zh: str, en: str) -> dict[str, Any]:
    return {"row": row, "field": field, "message_zh": zh, "message_en": en}


# What is wrong with an ID number, without the digits the check's own message quotes (its
# area code, birth date or check digit are pieces of the number, and rejected rows are kept).
ID_PROBLEMS = {
    "id_length": ("身份证号码应为18位", "a resident ID has 18 characters"),
    "id_characters": ("身份证号码前17位应为数字，末位为数字或X", "17 digits then a digit or X"),
    "id_area_code": ("身份证号码地区码无效", "the ID's area code is not valid"),
    "id_birth_date": ("身份证号码出生日期无效", "the ID's birth date is not valid"),
    "id_checksum": ("身份证号码校验码错误", "the ID's check character is wrong"),
}


def _id_problem(problem: InvalidInput) -> tuple[str, str]:
    return ID_PROBLEMS.get(problem.code, ("身份证号码格式有误", "the resident ID is malformed"))


def _start_of(text: str, days: int, now: dt.datetime) -> dt.datetime:
    """When a row's fact starts: the contact date's local midnight, or now; refused (on the
    column 接触日期) when unreadable, after today, or so long ago the fact would have ended."""
    if not text:
        return now
    day = None
    for pattern in DATE_FORMATS:
        try:
            day = dt.datetime.strptime(text, pattern).date()
            break
        except ValueError:
            continue
    if day is None:
        raise InvalidInput("接触日期应为 2026-11-20 这样的日期", "the date reads like 2026-11-20")
    if day > clock.today_local():
        raise InvalidInput("接触日期不能晚于今天", "the contact date is after today")
    start = clock.local_midnight(day)
    if start + dt.timedelta(days=days) <= now:
        raise InvalidInput(
            f"接触日期距今已超过 {days} 天，事实已经结束",
            f"the contact is more than {days} days ago; the fact would have ended",
        )
    return start


def check_rows(
    session: Session, who: Principal, rows: Sequence[ListRow], days: int
) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Each row's subject, start and where the registry places them, or what is wrong with
    it (row, field): an ID number that fails its checks, a contact date that is unreadable,
    ahead or so long ago the fact would already have ended, a repeat of an earlier row. People
    outside ``who``'s jurisdiction or not in the registry (a flight's passengers live all over
    the city, or elsewhere) are kept: the command centre's approval reaches them, and the
    list says nothing of them to ``who`` but how many (:func:`_dry_run`)."""
    now = clock.now()
    items: list[list[Any]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for row in rows:
        if row.id_as_number:
            errors.append(
                _error(
                    row.row,
                    "身份证号码",
                    "身份证号码被 Excel 存成了数字，15位以后已丢失：请把该列设为文本后重新填写",
                    "Excel holds the ID number as a number and lost its digits past the 15th: "
                    "format the column as text and enter it again",
                )
            )
            continue
        try:
            subject = subject_of_id_number(row.id_number)
        except InvalidInput as exc:
            errors.append(_error(row.row, "身份证号码", *_id_problem(exc)))
            continue
        try:
            start = _start_of(row.contact_date, days, now)
        except InvalidInput as exc:
            errors.append(_error(row.row, "接触日期", exc.message_zh, exc.message_en))
            continue
        if subject in seen:
            errors.append(
                _error(
                    row.row,
                    "身份证号码",
                    f"与第 {seen[subject]} 行是同一人",
                    f"the same person as row {seen[subject]}",
                )
            )
            continue
        seen[subject] = row.row
        person = person_of_subject(session, subject)
        items.append([row.row, subject, start.isoformat(), person.area_code if person else None])
    return items, errors


def _dry_run(
    session: Session, who: Principal, kind: str, days: int, items: Sequence[list[Any]]
) -> dict[str, Any]:
    """What approving would do now: codes turned red or yellow, codes that stay as they
    are, registered and not, and how many in each street. Only the colours of people inside
    ``who``'s jurisdiction are judged (all of them for the city): anyone else's colour is not
    ``who``'s to learn — a list of one would tell it — and is judged when the command centre
    approves."""
    turned: Counter[str] = Counter()
    streets: Counter[str] = Counter()
    unregistered = not_judged = 0
    for _row, subject, start_text, area in items:
        if area:
            streets[area[:9]] += 1
        else:
            unregistered += 1
        if not (covers(who, area) or len(who.area_code) <= 4):
            not_judged += 1
            continue
        start = dt.datetime.fromisoformat(start_text)
        colour = turns_green(
            session, subject, kind, BATCH_SOURCE, start, start + dt.timedelta(days=days), None
        )
        turned[colour or "none"] += 1
    return {
        "turns_red": turned["red"],
        "turns_yellow": turned["yellow"],
        "unchanged": turned["none"],
        "registered": len(items) - unregistered,
        "unregistered": unregistered,
        "not_judged": not_judged,
        "by_street": dict(sorted(streets.items())),
    }


def request_batch(
    session: Session,
    who: Principal,
    *,
    kind: str,
    note: str,
    days: int,
    rows: Sequence[ListRow],
) -> FactBatch:
    """Upload a list (申请批量登记): the rows checked, the rejected kept by row and field,
    the dry run made; nothing counts until another account approves. Refused as a whole
    when the kind, the basis or the days are wrong, or when no row is acceptable. Audited
    (``risk.batch.request``, counts only) and announced."""
    who.require(Permission.OVERRIDE_REQUEST)
    if kind not in BATCH_KINDS:
        raise InvalidInput(
            "批量登记只用于密切接触者、次密切接触者和风险地区旅居史",
            "a list is for close contacts, secondary contacts or risk-area travel",
            field="kind",
        )
    if "\x00" in note:  # the upload form's fields pass the input guard raw
        raise InvalidInput("依据中含有非法字符（NUL）", "the basis holds a NUL", field="note")
    note = " ".join(note.split())
    if len(note) < 4:
        raise InvalidInput(
            "请写明名单的依据：流调报告、协查函或通报编号（至少4个字）",
            "state the list's basis: the trace report, request or notice (4 characters or more)",
            field="note",
            code="basis_required",
        )
    if not 1 <= days <= 60:
        raise InvalidInput("天数应为1至60", "days must be 1 to 60", field="days")
    items, errors = check_rows(session, who, rows, days)
    if not items:
        raise InvalidInput(
            f"名单中没有可登记的人员（{len(errors)} 行有误，第一处：第 {errors[0]['row']} 行"
            f"{errors[0]['field']}：{errors[0]['message_zh']}）",
            f"nobody in the list can be recorded ({len(errors)} rows wrong, the first: row "
            f"{errors[0]['row']}, {errors[0]['field']}: {errors[0]['message_en']})",
            field="file",
        )
    batch = FactBatch(
        kind=kind,
        note=note[:200],
        days=days,
        area_code=who.area_code,
        status="requested",
        rows_total=len(rows),
        rows_accepted=len(items),
        items=items,
        errors=errors,
        dry_run=_dry_run(session, who, kind, days, items),
        requested_by=who.actor.ref,
        requested_at=clock.now(),
        facts_asserted=0,
    )
    session.add(batch)
    session.flush()
    counts = {
        "kind": kind,
        "rows": len(rows),
        "accepted": len(items),
        "rejected": len(errors),
        "turns_red": batch.dry_run["turns_red"],
        "turns_yellow": batch.dry_run["turns_yellow"],
    }
    _audit_and_announce(
        session, who.actor, batch, "risk.batch.request", TOPIC_BATCH_REQUESTED, counts
    )
    return batch


def _audit_and_announce(
    session: Session,
    actor: Actor,
    batch: FactBatch,
    action: str,
    topic: str,
    detail: dict[str, Any],
) -> None:
    """A list's step: its audit row and its event (counts only), in the caller's transaction."""
    record(
        session,
        actor,
        action,
        object_type="fact_batch",
        object_id=batch.id,
        area_code=batch.area_code,
        detail=detail,
    )
    publish(session, topic, {"batch_id": batch.id} | detail, key=str(batch.id))


def _lapsed(batch: FactBatch, now: dt.datetime) -> bool:
    return batch.status == "requested" and clock.as_utc(batch.requested_at) <= now - dt.timedelta(
        hours=BATCH_HOURS
    )


def _batch_in_scope(
    session: Session, who: Principal, batch_id: int, *, lock: bool = True
) -> FactBatch:
    batch = session.get(FactBatch, batch_id, with_for_update=lock)
    if batch is None or not covers(who, batch.area_code):
        raise NotFound("未找到该批量登记", "no such list", code="batch_not_found")
    return batch


def _waiting(batch: FactBatch) -> None:
    if batch.status != "requested":
        raise Conflict("该名单已处理", "the list has been decided", code="batch_decided")
    if _lapsed(batch, clock.now()):
        raise Conflict(
            f"申请已超过 {BATCH_HOURS} 小时无人批准，已失效；请重新上传",
            f"nobody approved within {BATCH_HOURS} hours: it lapsed; upload it again",
            code="batch_lapsed",
        )


def approve_batch(session: Session, who: Principal, batch_id: int) -> FactBatch:
    """The second person approves a list (批准批量登记). The one who uploaded cannot
    (refused and audited). Audited (``risk.batch.approve``) and announced
    (``risk.batch_approved``): the worker then asserts the facts a chunk at a time
    (:func:`assert_batch_chunk`), so a long list neither holds a request nor SQLite's write
    lock for seconds while gates scan."""
    who.require(Permission.OVERRIDE_APPROVE)
    batch = _batch_in_scope(session, who, batch_id)
    _waiting(batch)
    if batch.requested_by == who.actor.ref:
        error = Conflict(
            "批量登记须两人办理：上传人不能批准自己的名单",
            "a list takes two people: the one who uploaded it cannot approve it",
            code="batch_needs_second_person",
        )
        raise _denied(
            error,
            who.actor,
            "risk.batch.approve",
            object_type="fact_batch",
            object_id=batch.id,
            area_code=batch.area_code,
            detail={"reason": "same_person"},
        )
    batch.status = "approving"
    batch.decided_by = who.actor.ref
    batch.decided_role = who.actor.role
    batch.decided_at = clock.now()
    batch.dry_run = dict(batch.dry_run) | {"approved_red": 0, "approved_yellow": 0}
    session.flush()
    detail = {"rows": len(batch.items), "requested_by": batch.requested_by}
    _audit_and_announce(
        session, who.actor, batch, "risk.batch.approve", TOPIC_BATCH_APPROVED, detail
    )
    return batch


def assert_batch_chunk(session: Session, batch_id: int, size: int = BATCH_CHUNK) -> bool:
    """Assert the next ``size`` rows of an approved list as facts, in the approver's name
    (source ``batch``; evidence the batch and its basis; from the contact date for the
    batch's days; marked when it turns a green code); the compounds they touch recomputed
    once. The last chunk marks the list approved, audited ``risk.batch.asserted`` with what
    it turned. True when nothing is left to do; a chunk run twice asserts nothing twice."""
    batch = session.get(FactBatch, batch_id, with_for_update=True)
    if batch is None or batch.status != "approving":
        return True
    actor = Actor(batch.decided_by or "system", batch.decided_role, batch.area_code)
    evidence = {"batch_id": batch.id, "note": batch.note}
    turned: Counter[str] = Counter()
    compounds: set[str] = set()  # each recomputed once, after the chunk's facts
    chunk = batch.items[batch.facts_asserted : batch.facts_asserted + size]
    for _row, subject, start_text, _area in chunk:
        start = dt.datetime.fromisoformat(start_text)
        end = start + dt.timedelta(days=batch.days)
        colour = turns_green(session, subject, batch.kind, BATCH_SOURCE, start, end, None)
        assert_fact(
            session,
            actor,
            subject=subject,
            kind=batch.kind,
            source=BATCH_SOURCE,
            evidence=evidence,
            valid_from=start,
            valid_until=end,
            dedupe_key=f"batch:{batch.id}:{subject}",
            turned_colour=colour,
            compounds_later=compounds,
        )
        turned[colour or "none"] += 1
    recompute_compounds(session, compounds)
    batch.facts_asserted += len(chunk)
    counts = dict(batch.dry_run)
    counts["approved_red"] = int(counts.get("approved_red", 0)) + turned["red"]
    counts["approved_yellow"] = int(counts.get("approved_yellow", 0)) + turned["yellow"]
    batch.dry_run = counts
    done = batch.facts_asserted >= len(batch.items)
    if done:
        batch.status = "approved"
        detail = {
            "facts": batch.facts_asserted,
            "turned_red": counts["approved_red"],
            "turned_yellow": counts["approved_yellow"],
        }
        _audit_and_announce(
            session, actor, batch, "risk.batch.asserted", TOPIC_BATCH_ASSERTED, detail
        )
    session.flush()
    return done


def reject_batch(session: Session, who: Principal, batch_id: int, *, reason: str) -> FactBatch:
    """Turn a list down (驳回), or take one's own back, with the reason; nothing is
    asserted. Audited (``risk.batch.reject``)."""
    may_read_overrides(who)
    reason = " ".join(reason.split())
    if len(reason) < 4:
        raise InvalidInput(
            "请说明理由（至少4个字）", "state why (at least 4 characters)", field="reason"
        )
    batch = _batch_in_scope(session, who, batch_id)
    _waiting(batch)
    if not who.can(Permission.OVERRIDE_APPROVE) and batch.requested_by != who.actor.ref:
        who.require(Permission.OVERRIDE_APPROVE)  # only the uploader takes their own back
    batch.status = "rejected"
    batch.decided_by = who.actor.ref
    batch.decided_at = clock.now()
    batch.decision_reason = reason[:200]
    session.flush()
    record(
        session,
        who.actor,
        "risk.batch.reject",
        object_type="fact_batch",
        object_id=batch.id,
        area_code=batch.area_code,
        detail={"reason": batch.decision_reason, "requested_by": batch.requested_by},
    )
    return batch


def purge_expired_batch_lists(session: Session) -> int:
    """Clear the people of every list uploaded longer ago than ``fact_retention_days`` and
    decided (their subjects, and the rejected rows' numbers and reasons; the counts, basis and
    who asked and decided stay, as the audit rows do): the facts they made follow their own
    retention. Audited when any were cleared; returns how many lists. Never commits."""
    days = risk_settings().fact_retention_days
    before = clock.now() - dt.timedelta(days=days)
    stale = session.scalars(
        select(FactBatch).where(
            FactBatch.requested_at < before,
            FactBatch.status.in_(("requested", "approved", "rejected")),
        )
    )
    cleared = 0
    for batch in stale:
        if batch.items or batch.errors:
            batch.items, batch.errors = [], []
            cleared += 1
    session.flush()
    record_purge(
        session,
        "risk.batch_lists_purge",
        object_type="fact_batch",
        deleted=cleared,
        before=before,
        retention_days=days,
    )
    return cleared


def batch_out(batch: FactBatch, names: dict[str, str], now: dt.datetime) -> FactBatchOut:
    """A list as the pages and the API show it (no subjects: counts, rejected rows, dry run)."""
    lapses = clock.as_utc(batch.requested_at) + dt.timedelta(hours=BATCH_HOURS)
    return FactBatchOut(
        id=batch.id,
        kind=batch.kind,
        kind_zh=kind_label(batch.kind),
        note=batch.note,
        days=batch.days,
        status="lapsed" if _lapsed(batch, now) else batch.status,
        rows_total=batch.rows_total,
        rows_accepted=batch.rows_accepted,
        errors=[BatchRowError.model_validate(e) for e in batch.errors or []],
        dry_run=dict(batch.dry_run or {}),
        requested_by=batch.requested_by,
        requested_by_name=names.get(batch.requested_by, batch.requested_by),
        requested_at=batch.requested_at,
        lapses_at=lapses,
        decided_by=batch.decided_by,
        decided_by_name=names.get(batch.decided_by, batch.decided_by) if batch.decided_by else None,
        decided_at=batch.decided_at,
        decision_reason=batch.decision_reason,
        facts_asserted=batch.facts_asserted,
    )


def batch_view(session: Session, batch: FactBatch) -> FactBatchOut:
    """One list as shown, with who asked and decided by name."""
    names = actor_names(session, [batch.requested_by, batch.decided_by])
    return batch_out(batch, names, clock.now())


def batch_card(session: Session, who: Principal, batch_id: int) -> FactBatchOut:
    """One list in ``who``'s jurisdiction as shown, for its page to follow its progress
    (counts and staff names only: not audited, as the list it refreshes was)."""
    may_read_overrides(who)
    return batch_view(session, _batch_in_scope(session, who, batch_id, lock=False))


def rows_of(items: Sequence[tuple[str, str]]) -> list[ListRow]:
    """Rows sent through the API (ID number, contact date), numbered as a file's would be
    (the first person is row 2, under the header)."""
    return [ListRow(n, id_number, date) for n, (id_number, date) in enumerate(items, start=2)]


def batches_waiting(session: Session, who: Principal) -> int:
    """How many lists in ``who``'s jurisdiction wait for a second person (not lapsed)."""
    since = clock.now() - dt.timedelta(hours=BATCH_HOURS)
    counting = (
        select(func.count())
        .select_from(FactBatch)
        .where(
            within(FactBatch.area_code, who.area_code),
            FactBatch.status == "requested",
            FactBatch.requested_at > since,
        )
    )
    return int(session.scalar(counting) or 0)


def batches_scoped(
    session: Session,
    who: Principal,
    *,
    offset: int = 0,
    limit: int = 30,
    action: str = "risk.batches.list",
) -> tuple[int, list[FactBatchOut]]:
    """The lists uploaded in ``who``'s jurisdiction, newest first, and how many; reading
    them is audited (``action``; ``risk.batches.export`` for the spreadsheet)."""
    may_read_overrides(who)
    where = within(FactBatch.area_code, who.area_code)
    total = int(session.scalar(select(func.count()).select_from(FactBatch).where(where)) or 0)
    rows = list(
        session.scalars(
            select(FactBatch)
            .where(where)
            .order_by(FactBatch.requested_at.desc(), FactBatch.id.desc())
            .offset(offset)
            .limit(limit)
        )
    )
    names = actor_names(session, [r.requested_by for r in rows] + [r.decided_by for r in rows])
    record(
        session,
        who.actor,
        action,
        object_type="fact_batch",
        area_code=who.area_code,
        detail={"offset": offset, "results": len(rows)},
    )
    now = clock.now()
    return total, [batch_out(r, names, now) for r in rows]

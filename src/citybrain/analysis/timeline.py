"""Trajectories (个人轨迹): one person's records across every source, in time order.

Given a person key from identity linkage (``analysis/person_keys.parquet``), the timeline lists
every lake record linked to it: when (start, and end for a stay or a journey), which source
category and which kind of record, where (a place; origin → destination for travel; the
school, class or care home of a roster; the household of the registry), a short detail (train
and seat, direction through a gate, test result…), the record id, and the linkage rule that
placed the record with this person, so an investigator can judge how sure the link is.

How it is read: the person's record ids are taken from the keys first; a record id carries the
ledger id of the file it came from (``id << 32 | line``), and every lake part is named by its
file's id, so only the parts of the files holding this person's records are opened, whatever
the size of the lake. DuckDB then reads those parts, keeping the person's records only.

A source row the intake wrote under two kinds (a rail ticket is a journey and a seat in the
train; a pharmacy purchase is a visit and a health event) is one line of the timeline under its
first kind in ``KIND_ORDER``, its detail adding what the other kind says. Records without a
time (rosters, the household registry) stand at the start of the day their part was delivered
for, as calendars show all-day entries.

The lake holds keyed hashes and record ids, never names or ID numbers, and nothing here reads
the linkage store: the timeline holds no raw personal data. It is still a query about one
person, so every read by staff goes through :func:`read_timeline`, which checks the role,
requires a stated purpose and writes the audit row (``analysis.timeline``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.analysis.linkage import OUTPUT
from citybrain.core.audit.service import Actor, record
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo.models import CITY_CODE
from citybrain.datahub.lake import KIND_COLUMNS, LakePaths
from citybrain.datahub.models import IntakeFile
from citybrain.kit.clock import CHINA_TZ
from citybrain.kit.db import Database
from citybrain.kit.errors import Conflict, InvalidInput, NotFound, PermissionDenied

ACTION = "analysis.timeline"
EXPORT_ACTION = "analysis.timeline.export"
# Which kind names a record that the intake wrote under several: the journey says more than
# the seat in the train, the visit to the pharmacy (its name) more than the purchase event.
KIND_ORDER = ("travel", "presence", "health", "setting", "identity")
# Who may read a trajectory: the permission (held by the city command centre, which leads the
# epidemiological investigations, 流调) from a city-level account. Lake places are station
# names, cell ids, plates, flight numbers and venue codes, not areas of the hierarchy, and a
# trajectory crosses districts by nature: no district or street filter could be applied to it
# without either showing trips outside the reader's jurisdiction or hiding half of it.
PURPOSE_MIN = 2  # "流调" is a purpose; one character is not
PURPOSE_MAX = 200
# Ledger ids per IN list: well inside every backend's limit on bound parameters.
_LEDGER_CHUNK = 500

OUTPUT_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("s")),
        ("end", pa.timestamp("s")),
        ("day", pa.date32()),
        ("kind", pa.string()),
        ("category", pa.string()),
        ("place", pa.string()),
        ("detail", pa.string()),
        ("record_id", pa.int64()),
        ("rule", pa.string()),
    ]
)

# Per kind, what a line of the timeline shows, in DuckDB SQL over one lake row ``r``: its start,
# its end, where, and a short detail. Values stay as the agencies wrote them (station names,
# results); the few words added are Chinese, the language of the data.
_SEAT = (
    "nullif(concat_ws(' ', r.vehicle, r.carriage::VARCHAR || '车',"
    " coalesce(r.seat || '座', r.row::VARCHAR || '排')), '')"
)
_DIRECTION = "CASE r.direction WHEN 'in' THEN '进' WHEN 'out' THEN '出' END"
# A border crossing has a port and a country instead of an origin and a destination.
_FROM = "coalesce(r.origin, CASE WHEN r.direction = 'in' THEN r.country ELSE r.port END)"
_TO = "coalesce(r.destination, CASE WHEN r.direction = 'in' THEN r.port ELSE r.country END)"
PROJECTIONS: dict[str, tuple[str, str, str, str]] = {
    "presence": (
        "r.start_time",
        "r.end_time",
        "coalesce(r.place_name, r.place)",
        f"concat_ws(' ', {_SEAT}, {_DIRECTION})",
    ),
    "travel": (
        "coalesce(r.depart, r.arrive)",
        "CASE WHEN r.depart IS NOT NULL THEN r.arrive END",
        f"CASE WHEN {_FROM} IS NULL THEN {_TO} WHEN {_TO} IS NULL THEN {_FROM}"
        f" ELSE {_FROM} || ' → ' || {_TO} END",
        f"concat_ws(' ', {_SEAT}, {_DIRECTION})",
    ),
    "health": (
        "r.event_time",
        "NULL::TIMESTAMP",
        "coalesce(r.place, r.origin)",
        "concat_ws(' ', r.event, r.result, r.detail)",
    ),
    "setting": (
        "NULL::TIMESTAMP",
        "NULL::TIMESTAMP",
        "coalesce(r.setting_name, r.setting)",
        "concat_ws(' ', r.setting_kind, r.grade, r.unit, r.role)",
    ),
    "identity": (
        "NULL::TIMESTAMP",
        "NULL::TIMESTAMP",
        "concat_ws(' ', r.setting_kind, r.setting)",
        "r.role",
    ),
}
if set(PROJECTIONS) != set(KIND_COLUMNS) or set(KIND_ORDER) != set(KIND_COLUMNS):
    # A kind added to the lake must be given a line here, or its records would vanish from
    # every trajectory without a word.
    raise RuntimeError("analysis.timeline does not know every lake kind")


class UnknownPerson(NotFound):
    """No record in the lake is linked to the person key (or the record id is not keyed)."""

    code = "unknown_person"


def _linkage_missing() -> Conflict:
    return Conflict(
        "尚未进行身份关联：请先运行 citybrain analysis link",
        "no person keys yet: run citybrain analysis link first",
        code="linkage_not_run",
    )


def keys_path(paths: LakePaths, keys: Path | None = None) -> Path:
    """The person keys to read (default: the linkage output under the data directory)."""
    path = keys or paths.root / OUTPUT
    if not path.exists():
        raise _linkage_missing()
    return path


def person_of_record(paths: LakePaths, record_id: int, *, keys: Path | None = None) -> int:
    """The person key of the person holding lake record ``record_id``."""
    con = duckdb.connect()
    try:
        found = con.execute(
            "SELECT person_key FROM read_parquet(?) WHERE record_id = ?",
            [str(keys_path(paths, keys)), record_id],
        ).fetchone()
    finally:
        con.close()
    if found is None:
        raise UnknownPerson(
            f"记录 {record_id} 不在湖中或尚未关联到人",
            f"record {record_id} is not in the lake or not linked to a person",
            field="record_id",
        )
    return int(found[0])


def _window(
    since: dt.date | dt.datetime | None, until: dt.date | dt.datetime | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``since``/``until`` as lake wall-clock times: from the start of ``since`` (a date) up to
    the end of ``until`` (a date: the whole day), the upper bound exclusive."""

    def wall(moment: dt.datetime) -> dt.datetime:
        # Lake times are the city's naive wall-clock times.
        return moment.astimezone(CHINA_TZ).replace(tzinfo=None) if moment.tzinfo else moment

    low = None
    if isinstance(since, dt.datetime):
        low = wall(since)
    elif since is not None:
        low = dt.datetime.combine(since, dt.time())
    high = None
    if isinstance(until, dt.datetime):
        last = wall(until)
        high = last + dt.timedelta(microseconds=1) if last < dt.datetime.max else None
    elif until is not None and until < dt.date.max:  # the last day has no next midnight
        high = dt.datetime.combine(until + dt.timedelta(days=1), dt.time())
    if low is not None and high is not None and high <= low:
        raise InvalidInput("结束日期早于开始日期", "until is before since", field="until")
    return low, high


def _ledger_files(session: Session, ledger_ids: Sequence[int]) -> list[tuple[str, str]]:
    """(file_id, category) of the ledger rows ``ledger_ids``."""
    found: list[tuple[str, str]] = []
    for start in range(0, len(ledger_ids), _LEDGER_CHUNK):
        chunk = list(ledger_ids[start : start + _LEDGER_CHUNK])
        rows = session.execute(
            select(IntakeFile.file_id, IntakeFile.category).where(IntakeFile.id.in_(chunk))
        ).all()
        found.extend((str(r[0]), str(r[1])) for r in rows)
    return found


def _parts(paths: LakePaths, files: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Per kind, the lake parts of ``files`` (every part is named ``<file_id>.parquet``)."""
    parts: dict[str, list[str]] = {kind: [] for kind in KIND_ORDER}
    for file_id, category in files:
        for kind in KIND_ORDER:
            folder = paths.kind_dir(kind) / f"category={category}"
            if folder.is_dir():
                parts[kind].extend(sorted(str(p) for p in folder.glob(f"day=*/{file_id}.parquet")))
    return parts


def _query(
    con: duckdb.DuckDBPyConnection,
    parts: dict[str, list[str]],
    low: dt.datetime | None,
    high: dt.datetime | None,
    limit: int | None,
) -> pa.Table:
    selects = []
    for rank, kind in enumerate(KIND_ORDER):
        if not parts[kind]:
            continue
        start, end, place, detail = PROJECTIONS[kind]
        files = ", ".join("'" + p.replace("'", "''") + "'" for p in parts[kind])
        selects.append(
            f"""
            SELECT r.record_id, '{kind}' AS kind, {rank} AS rank, {start} AS t, {end} AS e,
                   r.day AS pday, r.category, {place} AS place, nullif({detail}, '') AS detail
            FROM read_parquet([{files}], hive_partitioning = true, union_by_name = true) r
            SEMI JOIN mine USING (record_id)
            """  # noqa: S608 - our paths and constants
        )
    if not selects:
        return OUTPUT_SCHEMA.empty_table()
    union = " UNION ALL ".join(selects)
    where = []
    params: list[Any] = []
    if low is not None:
        # A stay counts when it overlaps the window, not when it merely ends at its start.
        where.append(
            "(CASE WHEN t IS NULL THEN pday >= ?::DATE WHEN e IS NULL THEN t >= ? ELSE e > ? END)"
        )
        params += [low.date(), low, low]
    if high is not None:
        last_day = (high - dt.timedelta(microseconds=1)).date()
        where.append("(CASE WHEN t IS NULL THEN pday <= ?::DATE ELSE t < ? END)")
        params += [last_day, high]
    condition = ("WHERE " + " AND ".join(where)) if where else ""
    cap = f"LIMIT {int(limit)}" if limit is not None else ""
    return con.sql(
        f"""
        WITH lines AS ({union}),
        merged AS (
            SELECT record_id,
                   arg_min(t, rank) FILTER (WHERE t IS NOT NULL) AS t,
                   arg_min(e, rank) FILTER (WHERE t IS NOT NULL) AS e,
                   min(pday) AS pday,
                   string_agg(kind, '+' ORDER BY rank) AS kind,
                   arg_min(category, rank) AS category,
                   arg_min(place, rank) FILTER (WHERE place IS NOT NULL) AS place,
                   string_agg(DISTINCT detail, ' · ' ORDER BY detail) AS detail
            FROM lines GROUP BY record_id)
        SELECT m.t AS "time", m.e AS "end", coalesce(m.t::DATE, m.pday) AS "day", m.kind,
               m.category, m.place, m.detail, m.record_id, k.rule
        FROM merged m JOIN mine k USING (record_id)
        {condition}
        ORDER BY "day", "time" NULLS FIRST, "end", m.category, m.record_id
        {cap}
        """,  # noqa: S608 - built from constants; values are bound
        params=params,
    ).to_arrow_table()


def timeline_in(
    session: Session,
    paths: LakePaths,
    person_key: int,
    *,
    since: dt.date | dt.datetime | None = None,
    until: dt.date | dt.datetime | None = None,
    keys: Path | None = None,
    limit: int | None = None,
) -> pa.Table:
    """:func:`timeline`, reading the intake ledger through ``session`` (the caller's unit of
    work: a web request's, say)."""
    low, high = _window(since, until)
    if limit is not None and limit < 1:
        raise InvalidInput("条数至少为1", "limit must be at least 1", field="limit")
    con = duckdb.connect()
    try:
        con.execute(
            "CREATE TEMP TABLE mine AS SELECT record_id, rule FROM read_parquet(?)"
            " WHERE person_key = ?",
            [str(keys_path(paths, keys)), person_key],
        )
        ids = [int(r[0]) for r in con.execute("SELECT record_id FROM mine").fetchall()]
        if not ids:
            raise UnknownPerson(
                f"没有与人员编号 {person_key} 关联的记录",
                f"no records are linked to person key {person_key}",
                field="person_key",
            )
        ledger_ids = sorted({record_id >> 32 for record_id in ids})
        parts = _parts(paths, _ledger_files(session, ledger_ids))
        table = _query(con, parts, low, high, limit)
    finally:
        con.close()
    return table.cast(OUTPUT_SCHEMA)


def timeline(
    paths: LakePaths,
    database: Database,
    person_key: int,
    *,
    since: dt.date | dt.datetime | None = None,
    until: dt.date | dt.datetime | None = None,
    keys: Path | None = None,
    limit: int | None = None,
) -> pa.Table:
    """Every lake record linked to ``person_key``, in time order (columns as
    ``OUTPUT_SCHEMA``).

    ``time`` is a record's start (a stay, a departure, a test) and ``end`` its end where it has
    one (a stay, an arrival); ``day`` is the day of ``time``, or for a record without a time
    (a roster, the household registry) the day its part was delivered for. ``kind`` is the
    lake kind (two joined by ``+`` for a source row written under both), ``category`` the
    source category, ``place`` where (origin → destination for travel, the setting for rosters,
    the household for the registry), ``detail`` the rest in a few words (seat, direction, test
    result), ``rule`` the linkage rule that gave the record to this person.

    ``since`` and ``until`` keep what overlaps the window: dates count whole days, times are
    the city's wall clock. ``limit`` keeps the first rows. Raises :class:`UnknownPerson` when
    no record is linked to ``person_key``; ``keys`` defaults to the linkage output, which must
    exist (``citybrain analysis link``).
    """
    with database.unit_of_work() as session:
        return timeline_in(
            session, paths, person_key, since=since, until=until, keys=keys, limit=limit
        )


# --- Staff reads: who may, why, and the audit trail ---------------------------------------


def may_read_trajectories(who: Principal) -> bool:
    """Whether ``who`` may read trajectories: an account holding ``trajectory.read`` over the
    whole city (see the comment on the permission check above for why no district may)."""
    return who.kind == "user" and who.can(Permission.TRAJECTORY_READ) and who.area_code == CITY_CODE


def check_access(who: Principal, action: str = ACTION) -> None:
    """Refuse, and audit the refusal, unless ``who`` may read trajectories."""
    if may_read_trajectories(who):
        return
    denied = PermissionDenied(
        "无权查看个人轨迹：仅限市指挥部（市级账号）开展流调时查看",
        "you may not read trajectories: city command centre accounts only",
        code="permission_denied",
    )
    raise denied.keep(
        lambda s: record(
            s,
            who.actor,
            action,
            object_type="person_key",
            area_code=who.area_code,
            outcome="denied",
            detail={"reason": "role_or_area", "role": who.role},
        )
    )


def clean_purpose(purpose: str | None) -> str:
    """The stated purpose, whitespace collapsed; refused when missing or too short."""
    cleaned = " ".join((purpose or "").split())
    if len(cleaned) < PURPOSE_MIN or "\x00" in cleaned:
        raise InvalidInput(
            "请说明查询事由（如：流调、密接排查）",
            "state the purpose of the query (an investigation, contact tracing…)",
            field="purpose",
        )
    return cleaned[:PURPOSE_MAX]


def audit_read(
    session: Session,
    actor: Actor,
    person_key: int | None,
    *,
    purpose: str,
    detail: dict[str, Any],
    action: str = ACTION,
    outcome: str = "ok",
) -> None:
    """The audit row of one read of a trajectory (ids and counts only in ``detail``)."""
    record(
        session,
        actor,
        action,
        object_type="person_key",
        object_id=person_key,
        area_code=actor.area_code,
        purpose=purpose,
        outcome=outcome,
        detail=detail,
    )


@dataclass(frozen=True)
class TimelineRead:
    """One audited read: whose timeline, over which window, and its rows."""

    person_key: int
    record_id: int | None
    since: dt.date | None
    until: dt.date | None
    purpose: str
    table: pa.Table
    more: bool

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts, in time order."""
        rows: list[dict[str, Any]] = self.table.to_pylist()
        return rows


def read_timeline(
    session: Session,
    who: Principal,
    paths: LakePaths,
    *,
    person_key: int | None = None,
    record_id: int | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    purpose: str | None,
    limit: int = 1000,
    keys: Path | None = None,
    action: str = ACTION,
) -> TimelineRead:
    """A staff member's read of one person's timeline (by person key, or by a record id of
    theirs): role checked (the refusal audited), then :func:`audited_read`."""
    check_access(who, action)
    return audited_read(
        session,
        who.actor,
        paths,
        person_key=person_key,
        record_id=record_id,
        since=since,
        until=until,
        purpose=purpose,
        limit=limit,
        keys=keys,
        action=action,
    )


def audited_read(
    session: Session,
    actor: Actor,
    paths: LakePaths,
    *,
    person_key: int | None = None,
    record_id: int | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    purpose: str | None,
    limit: int | None = None,
    keys: Path | None = None,
    action: str = ACTION,
) -> TimelineRead:
    """One person's timeline (by person key, or by a record id of theirs) read by ``actor``
    with a stated purpose, audited within ``session``; a lookup of an unknown person is
    audited too (outcome ``failed``), kept after the caller's unit of work rolls back. The
    caller has checked that ``actor`` may read it (the command line's operator may)."""
    stated = clean_purpose(purpose)
    if (person_key is None) == (record_id is None):
        raise InvalidInput(
            "请给出人员编号或记录编号（二选一）",
            "give a person key or a record id (one of them)",
            field="person_key",
        )
    asked = {"person_key": person_key, "record_id": record_id}
    window = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    try:
        if person_key is not None:
            key = person_key
        else:
            assert record_id is not None  # one of the two, checked above
            key = person_of_record(paths, record_id, keys=keys)
        table = timeline_in(
            session,
            paths,
            key,
            since=since,
            until=until,
            keys=keys,
            limit=None if limit is None else limit + 1,
        )
    except UnknownPerson as unknown:
        failed = {**asked, **window, "reason": unknown.code}
        raise unknown.keep(
            lambda s: audit_read(
                s, actor, person_key, purpose=stated, action=action, outcome="failed", detail=failed
            )
        ) from None
    more = limit is not None and table.num_rows > limit
    if limit is not None:
        table = table.slice(0, limit)
    audit_read(
        session,
        actor,
        key,
        purpose=stated,
        action=action,
        detail={**asked, **window, "rows": table.num_rows, "more": more},
    )
    return TimelineRead(key, record_id, since, until, stated, table, more)

"""The trajectory page (个人轨迹) for the city command centre: a form (person key or record id,
days, purpose), the timeline grouped by day, and its CSV export, every read audited.

Queries are form posts: the person asked about and the stated purpose never appear in a URL,
a browser's history or a proxy's log, and the CSRF token guards them. The timeline holds no
names or ID numbers (the lake has none), so nothing on the page needs masking.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from citybrain.analysis import timeline
from citybrain.analysis.routes import Paths, Reader
from citybrain.core.authz.principal import Principal
from citybrain.datahub.catalog import catalog
from citybrain.datahub.lake import LakePaths
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError
from citybrain.kit.export import CSV_MEDIA_TYPE, csv_bytes
from citybrain.kit.web import DB, download, language, render

router = APIRouter(include_in_schema=False)
PAGE_LIMIT = 5000  # rows on one page; the most active person in a 30-day city has 261

# The page's words, Chinese first: (zh-CN, en).
TEXT: dict[str, tuple[str, str]] = {
    "title": ("个人轨迹", "Trajectory"),
    "intro": (
        "按人员编号或其任一记录编号，查看此人在各数据源中的全部记录（按时间排序）。"
        "每次查询均记入审计日志，须说明事由。",
        "All of one person's records across every source, in time order, by person key or by "
        "any record id of theirs. Every query is audited and needs a stated purpose.",
    ),
    "by": ("查询方式", "Look up by"),
    "by_person": ("人员编号", "Person key"),
    "by_record": ("记录编号", "Record id"),
    "ref": ("编号", "Key or id"),
    "since": ("起始日期", "From"),
    "until": ("截止日期", "To"),
    "purpose": ("查询事由", "Purpose"),
    "purpose_hint": ("如：流调、密接排查", "e.g. epidemiological investigation"),
    "show": ("查询", "Show"),
    "export": ("导出 CSV", "Export CSV"),
    "audited": (
        "本次查询已记入审计日志，事由：{purpose}",
        "This query is in the audit log; purpose: {purpose}",
    ),
    "summary": ("人员编号 {key}：{count} 条记录", "Person key {key}: {count} records"),
    "from_record": ("（由记录 {record} 查得）", "(holder of record {record})"),
    "more": (
        "仅显示前 {limit} 条，请缩小日期范围",
        "Only the first {limit} are shown: narrow the days",
    ),
    "none": ("该时间范围内没有记录", "No records in these days"),
    "time": ("时间", "Time"),
    "end": ("至", "Until"),
    "source": ("数据来源", "Source"),
    "kind": ("类型", "Kind"),
    "place": ("地点", "Place"),
    "detail": ("详情", "Detail"),
    "record": ("记录编号", "Record id"),
    "rule": ("关联依据", "Linked by"),
    "all_day": ("全天", "all day"),
    "bad_ref": ("编号应为数字", "a key or id is a number"),
    "bad_day": ("日期格式应为 YYYY-MM-DD", "a date is YYYY-MM-DD"),
}
WEEKDAYS = (
    ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
)
PURPOSES = ("流行病学调查（流调）", "密接、次密接排查", "隔离管控核查", "数据核查更正")
KIND_LABELS: dict[str, tuple[str, str]] = {
    "travel": ("出行", "travel"),
    "presence": ("到访", "presence"),
    "health": ("健康", "health"),
    "setting": ("名册", "roster"),
    "identity": ("户籍", "registry"),
}
# How sure a link is matters to an investigator: an ID number is certain, a card traced by
# cell departures is inferred. Names of the linkage rules (see analysis.linkage).
RULE_LABELS: dict[str, tuple[str, str]] = {
    "id": ("身份证号", "ID number"),
    "passport": ("护照号", "passport"),
    "phone": ("手机号", "phone"),
    "probabilistic": ("姓名等概率匹配（推断）", "name and details, probabilistic (inferred)"),
    "phone_pair": ("同机主双号（推断）", "second line (inferred)"),
    "phone_holder": ("家庭号码机主（推断）", "family line holder (inferred)"),
    "ride_holder": ("家庭号码约车·机主（推断）", "ride on family line: its holder (inferred)"),
    "ride_other": ("家庭号码约车·另一家人（推断）", "ride on family line: other user (inferred)"),
    "card": ("交通卡", "transit card"),
    "card_trace": ("交通卡轨迹（推断）", "card traced (inferred)"),
    "plate": ("车牌", "plate"),
    "phone_shared": ("共用号码（未定人）", "shared line (unresolved)"),
    "phone_alone": ("仅号码", "line only"),
    "card_alone": ("仅交通卡", "card only"),
    "plate_alone": ("仅车牌", "plate only"),
    "single": ("单条记录", "single record"),
}
INFERRED_RULES = frozenset(
    {"probabilistic", "phone_pair", "phone_holder", "ride_holder", "ride_other", "card_trace"}
)
CSV_HEADER = (
    "日期",
    "开始时间",
    "结束时间",
    "数据类别",
    "类别代码",
    "记录类型",
    "地点",
    "详情",
    "记录编号",
    "关联规则",
)


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[1] if lang == "en" else pair[0]


def _text(lang: str) -> dict[str, str]:
    return {key: _pick(pair, lang) for key, pair in TEXT.items()}


def _label(labels: dict[str, tuple[str, str]], code: str, lang: str) -> str:
    return "+".join(
        _pick(labels[part], lang) if part in labels else part for part in code.split("+")
    )


@dataclass
class Query:
    """The form as submitted, and what was wrong with it."""

    by: str = "person"
    ref: str = ""
    since: str = ""
    until: str = ""
    purpose: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def parsed(self, lang: str) -> tuple[int | None, dt.date | None, dt.date | None]:
        """The number asked for and the days, or None where the form left them out; problems
        go to ``errors`` by field."""
        words = _text(lang)
        number = None
        if self.ref.strip().isdigit() and len(self.ref.strip()) <= 19:
            number = int(self.ref.strip())
        else:
            self.errors["ref"] = words["bad_ref"]
        days: list[dt.date | None] = []
        for name in ("since", "until"):
            value = getattr(self, name).strip()
            try:
                days.append(dt.date.fromisoformat(value) if value else None)
            except ValueError:
                self.errors[name] = words["bad_day"]
                days.append(None)
        return number, days[0], days[1]


def _form(
    by: Annotated[str, Form(max_length=8)] = "person",
    ref: Annotated[str, Form(max_length=40)] = "",
    since: Annotated[str, Form(max_length=10)] = "",
    until: Annotated[str, Form(max_length=10)] = "",
    purpose: Annotated[str, Form(max_length=200)] = "",
) -> Query:
    """The submitted form; every field optional here, so that what is missing is said on the
    form itself rather than on an error page."""
    return Query(by=by, ref=ref, since=since, until=until, purpose=purpose)


Submitted = Annotated[Query, Depends(_form)]


def _days(rows: list[dict[str, Any]], lang: str) -> list[tuple[dt.date, list[dict[str, Any]]]]:
    """Rows grouped by day, in order, each with its labels for the page."""
    sources = catalog()
    grouped: list[tuple[dt.date, list[dict[str, Any]]]] = []
    for row in rows:
        shown = dict(row)
        source = sources.get(row["category"])
        shown["source"] = source.label(lang) if source else row["category"]
        shown["kind_label"] = _label(KIND_LABELS, row["kind"], lang)
        shown["rule_label"] = _label(RULE_LABELS, row["rule"], lang)
        shown["inferred"] = row["rule"] in INFERRED_RULES
        end = row["end"]
        if end is not None and row["time"] is not None and end.date() != row["time"].date():
            shown["end_text"] = end.strftime("%m-%d %H:%M")
        else:
            shown["end_text"] = end.strftime("%H:%M:%S") if end is not None else ""
        if grouped and grouped[-1][0] == row["day"]:
            grouped[-1][1].append(shown)
        else:
            grouped.append((row["day"], [shown]))
    return grouped


def _page(
    request: Request,
    query: Query,
    read: timeline.TimelineRead | None = None,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request)
    return render(
        request,
        "analysis/timeline.html",
        {
            "x": _text(lang),
            "q": query,
            "read": read,
            "days": _days(read.rows, lang) if read is not None else [],
            "purposes": PURPOSES,
            "weekdays": WEEKDAYS[1] if lang == "en" else WEEKDAYS[0],
            "limit": PAGE_LIMIT,
            "error": error,
        },
        status_code=status_code,
    )


def _read(
    request: Request,
    session: Session,
    who: Principal,
    paths: LakePaths,
    query: Query,
    action: str,
) -> timeline.TimelineRead | Response:
    """The audited read the form asks for, or the form again with what was wrong."""
    lang = language(request)
    number, since, until = query.parsed(lang)
    if query.errors:
        return _page(request, query, status_code=422)
    try:
        return timeline.read_timeline(
            session,
            who,
            paths,
            person_key=number if query.by != "record" else None,
            record_id=number if query.by == "record" else None,
            since=since,
            until=until,
            purpose=query.purpose,
            limit=PAGE_LIMIT,
            action=action,
        )
    except CitybrainError as error:
        if error.status_code in (401, 403):
            raise
        # Keep the audit row of a failed lookup, then answer with the form and the reason.
        rollback_keeping(session, error)
        if error.field:
            query.errors[error.field if error.field != "record_id" else "ref"] = error.message(lang)
        return _page(request, query, error=error.message(lang), status_code=error.status_code)


@router.get("/analysis/timeline")
def timeline_form(request: Request, who: Reader) -> Response:
    """The empty form (reading nothing, so nothing to audit but a refusal)."""
    return _page(request, Query())


@router.post("/analysis/timeline")
def timeline_page(
    request: Request, session: DB, who: Reader, paths: Paths, query: Submitted
) -> Response:
    """One person's timeline grouped by day, read with the stated purpose and audited."""
    read = _read(request, session, who, paths, query, timeline.ACTION)
    if isinstance(read, Response):
        return read
    return _page(request, query, read)


@router.post("/analysis/timeline.csv")
def timeline_export(
    request: Request, session: DB, who: Reader, paths: Paths, query: Submitted
) -> Response:
    """The timeline as CSV (formulas neutralised), audited as an export with its purpose."""
    read = _read(request, session, who, paths, query, timeline.EXPORT_ACTION)
    if isinstance(read, Response):
        return read
    sources = catalog()
    body = csv_bytes(
        CSV_HEADER,
        (
            [
                r["day"].isoformat(),
                r["time"].isoformat(sep=" ") if r["time"] else "",
                r["end"].isoformat(sep=" ") if r["end"] else "",
                sources[r["category"]].name if r["category"] in sources else r["category"],
                r["category"],
                r["kind"],
                r["place"] or "",
                r["detail"] or "",
                str(r["record_id"]),
                r["rule"],
            ]
            for r in read.rows
        ),
    )
    return download(body, f"timeline-{read.person_key}.csv", CSV_MEDIA_TYPE)

"""The cockpit's operations: keeping the figures up to date from events, alerts, freshness,
and reading the figures, map, alerts and freshness for a viewer's jurisdiction.

Handlers never commit (the dispatcher does, with the delivery mark). Figures are read from the
materialised tables only: a page view never counts source rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection

from sqlalchemy.orm import Session

from citybrain.apps.cockpit import live, repository
from citybrain.apps.cockpit.models import Alert, SourceFreshness
from citybrain.apps.cockpit.repository import CITY, STATE_MEASURES
from citybrain.apps.cockpit.schemas import (
    AlertOut,
    AreaOut,
    FigureOut,
    FreshnessOut,
    LoopOut,
    MapArea,
    MapOut,
    OverviewOut,
)
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.service import actor_titles
from citybrain.core.geo import repository as geo_repository
from citybrain.datahub.catalog import Source, catalog
from citybrain.kit import clock
from citybrain.kit.errors import InvalidInput, NotFound, PermissionDenied
from citybrain.risk import service as risk
from citybrain.risk.settings import risk_settings

# The figures of the overview, in the contract's order: key, label (zh, en), measure (None:
# no source in the platform yet).
FIGURES: tuple[tuple[str, str, str, str | None], ...] = (
    ("confirmed_today", "今日新增确诊", "confirmed today", "confirmed_new"),
    ("confirmed_total", "累计确诊", "confirmed in total", "confirmed_total"),
    ("asymptomatic", "无症状感染者", "asymptomatic", "asymptomatic"),
    ("close_contacts", "密切接触者", "close contacts", "close_contacts"),
    (
        "close_contacts_controlled",
        "密接已管控",
        "close contacts under control",
        "close_contacts_controlled",
    ),
    ("secondary_contacts", "次密切接触者", "secondary contacts", "secondary_contacts"),
    (
        "secondary_contacts_controlled",
        "次密接已管控",
        "secondary contacts under control",
        "secondary_contacts_controlled",
    ),
    ("key_persons_screened", "重点人员已摸排", "key persons screened", None),
    ("key_persons_pending", "重点人员待摸排", "key persons pending", None),
    ("registrations_today", "今日居民登记", "registrations today", "registrations"),
    ("checkpoint_crossings_today", "今日卡口通行", "checkpoint crossings today", "crossings"),
    ("fever_visits_today", "今日发热门诊就诊", "fever clinic visits today", "fever_visits"),
    ("overrides_open", "人工赋码待办/生效", "manual colours open", "overrides_open"),
    ("appeals_open", "待处理申诉", "appeals open", "appeals_open"),
    ("compounds_red", "红色小区", "red compounds", "compounds_red"),
    ("compounds_yellow", "黄色小区", "yellow compounds", "compounds_yellow"),
    ("compounds_green", "绿色小区", "green compounds", "compounds_green"),
    ("codes_red", "红码", "red codes", "codes_red"),
    ("codes_yellow", "黄码", "yellow codes", "codes_yellow"),
    ("codes_green", "绿码", "green codes", "codes_green"),
)
# Figure keys by measure, for the stream's "keys".
KEYS_OF_MEASURE: dict[str, str] = {m: k for k, _, _, m in FIGURES if m is not None}
# Measures counted only for the city as a whole (their source carries no area).
CITY_ONLY = frozenset({"fever_visits"})

MAP_MEASURES: dict[str, tuple[str, ...] | None] = {
    "confirmed": ("confirmed_total",),
    "contacts_managed": ("close_contacts_controlled", "secondary_contacts_controlled"),
    "red_yellow_compounds": ("compounds_red", "compounds_yellow"),
    "screening_backlog": None,  # no screening tasks in the platform yet
}
CHILD_LEVEL = {
    "city": "district",
    "district": "street",
    "street": "community",
    "community": "compound",
}


# --- keeping figures up to date -------------------------------------------------------------


def refresh_leaves(session: Session, leaves: Collection[str]) -> dict[str, set[str]]:
    """Recount ``leaves`` from the source tables, move the figures by the difference, and
    tell the streams after commit. Idempotent: a second run changes nothing."""
    chosen = {leaf for leaf in leaves if leaf and leaf.isdigit()}
    if not chosen:
        return {}
    repository.lock_figures(session)
    now = clock.now()
    fresh = repository.count_leaves(session, chosen, now)
    changed = repository.apply_leaf_values(session, chosen, fresh, clock.today_local())
    if changed:
        areas = sorted({a for leaf in changed for a in repository.prefixes(leaf)})
        keys = sorted({KEYS_OF_MEASURE[m] for ms in changed.values() for m in ms})
        live.notify(session, {"event": "figures", "data": {"areas": areas, "keys": keys}})
    return changed


def rebuild(
    session: Session, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, int]:
    """Recount every figure from the source tables (facts, colours, tiers, households, scans,
    overrides, appeals, the intake ledger, traces); returns counts. ``progress(step, done,
    total)`` hears of each step."""
    steps = ("figures", "sources", "loop")
    report = progress or (lambda step, done, total: None)
    repository.lock_figures(session)
    now = clock.now()
    today = clock.today_local()
    report(steps[0], 0, len(steps))
    fresh = repository.count_leaves(session, None, now)
    counts = repository.replace_all(session, fresh, today)
    report(steps[1], 1, len(steps))
    categories = repository.ingested_categories(session)
    for category in categories:
        repository.refresh_source(session, category, today)
    report(steps[2], 2, len(steps))
    days = repository.traced_days(session)
    for day in days:
        repository.refresh_loop_day(session, day)
    report("done", 3, len(steps))
    counts.update({"sources": len(categories), "loop_days": len(days)})
    live.notify(
        session,
        {"event": "figures", "data": {"areas": [CITY], "keys": sorted(KEYS_OF_MEASURE.values())}},
    )
    return counts


def _place_title(session: Session, code: str) -> tuple[str, str]:
    """A leaf's place in words (district, street, …), for the Chinese and English titles
    (the hierarchy's names are Chinese; the code goes with the English one)."""
    codes = repository.prefixes(code)[1:] or [code]
    names = geo_repository.names_of(session, codes)
    zh = "".join(names.get(c, "") for c in codes) or code
    return zh, f"{zh} ({code})"


def alert(
    session: Session,
    *,
    kind: str,
    area_code: str,
    title_zh: str,
    title_en: str,
    dedupe_key: str,
) -> Alert | None:
    """Write an alert (once per ``dedupe_key``) and tell the streams after commit."""
    row = repository.add_alert(
        session,
        kind=kind,
        area_code=area_code,
        title_zh=title_zh,
        title_en=title_en,
        dedupe_key=dedupe_key,
        at=clock.now(),
    )
    if row is not None:
        names = geo_repository.names_of(session, [area_code])
        out = alert_out(row, names.get(area_code, area_code))
        live.notify(session, {"event": "alert", "data": out.model_dump(mode="json")})
    return row


def alert_new_case(session: Session, fact_id: int, leaf: str) -> Alert | None:
    """A new confirmed case in ``leaf``: the area only, never who."""
    zh, en = _place_title(session, leaf)
    return alert(
        session,
        kind="new_case",
        area_code=leaf,
        title_zh=f"新增确诊病例 1 例：{zh}",
        title_en=f"New confirmed case: {en}",
        dedupe_key=f"case:{fact_id}",
    )


def alert_compound_red(session: Session, event_id: int, code: str) -> Alert | None:
    """A compound turned red."""
    zh, en = _place_title(session, code)
    return alert(
        session,
        kind="compound_red",
        area_code=code,
        title_zh=f"小区转为红色管控：{zh}",
        title_en=f"Compound turned red: {en}",
        dedupe_key=f"tier:{event_id}",
    )


def alert_override(session: Session, override_id: int, leaf: str, colour: str) -> Alert | None:
    """A manual colour was applied (two people signed it)."""
    zh, en = _place_title(session, leaf)
    colour_zh = {"red": "红码", "yellow": "黄码", "green": "绿码"}.get(colour, colour)
    return alert(
        session,
        kind="override",
        area_code=leaf,
        title_zh=f"人工赋码生效（{colour_zh}）：{zh}",
        title_en=f"Manual colour applied ({colour}): {en}",
        dedupe_key=f"override:{override_id}",
    )


def source_ingested(session: Session, category: str) -> None:
    """A file of ``category`` was taken in: recount its freshness (and fever visits)."""
    repository.refresh_source(session, category, clock.today_local())
    if category == repository.FEVER_CATEGORY:
        refresh_leaves(session, {CITY})


def check_freshness(session: Session, now: dt.datetime | None = None) -> list[str]:
    """Alert every feed gone stale (no file within its expected interval) once per lapse,
    and every agency feed that has sent nothing at all an interval after the check first
    looked for it (数据源未接入); returns the categories alerted."""
    now = now or clock.now()
    rows = repository.sources(session)
    alerted = []
    for code, source in catalog().items():
        row = rows.get(code)
        if not source.stale_after_hours:
            continue
        if row is None or row.last_received_at is None:
            if source.is_feed and _never_received(session, code, source, row, now):
                alerted.append(code)
            continue
        last = clock.as_utc(row.last_received_at)
        if now - last <= dt.timedelta(hours=source.stale_after_hours):
            continue
        if row.stale_alerted_at is not None and clock.as_utc(row.stale_alerted_at) >= last:
            continue
        row.stale_alerted_at = now
        alert(
            session,
            kind="source_stale",
            area_code=CITY,
            title_zh=f"数据源中断：{source.name}（超过 {source.stale_after_hours} 小时无新数据）",
            title_en=(
                f"Data source stale: {source.name_en} "
                f"(nothing for over {source.stale_after_hours} hours)"
            ),
            dedupe_key=f"stale:{code}:{last.isoformat()}"[:96],
        )
        alerted.append(code)
    return alerted


def _never_received(
    session: Session, code: str, source: Source, row: SourceFreshness | None, now: dt.datetime
) -> bool:
    """Alert a feed that has never sent a file, once, an expected interval after the check
    first looked for it; returns whether it alerted. A city that connects a feed late is
    told the day it should have come, not silently shown an empty panel for ever."""
    if row is None:
        row = repository.watch_source(session, code, now)
    if row.watched_since is None:
        row.watched_since = now
    since = clock.as_utc(row.watched_since)
    if row.stale_alerted_at is not None or now - since <= dt.timedelta(
        hours=source.stale_after_hours
    ):
        return False
    row.stale_alerted_at = now
    alert(
        session,
        kind="source_stale",
        area_code=CITY,
        title_zh=(
            f"数据源未接入：{source.name}（监测 {source.stale_after_hours} 小时以来未收到任何数据）"
        ),
        title_en=(
            f"Data source never received: {source.name_en} "
            f"(nothing in the {source.stale_after_hours} hours since it was first expected)"
        ),
        dedupe_key=f"stale:{code}:never",
    )
    return True


def _alert_daily(
    session: Session,
    kind: str,
    counts: dict[str, int],
    title: Callable[[str, str, int], tuple[str, str]],
) -> list[str]:
    """Alert each area of ``counts`` once a local day with its count then: a street (9
    digits) by its name, anything else at city level as ``未落位``; ``title`` makes the
    Chinese and English titles from the area's names and the count. Returns the areas
    alerted."""
    today = clock.today_local().isoformat()
    alerted = []
    for code, count in sorted(counts.items()):
        area = code if len(code) == 9 else CITY
        zh, en = _place_title(session, area) if area != CITY else ("未落位", "placed nowhere")
        title_zh, title_en = title(zh, en, count)
        made = alert(
            session,
            kind=kind,
            area_code=area,
            title_zh=title_zh,
            title_en=title_en,
            dedupe_key=f"{kind}:{area}:{today}",
        )
        if made is not None:
            alerted.append(area)
    return alerted


def _alert_account(
    session: Session,
    kind: str,
    actor_ref: str,
    area_code: str | None,
    title: Callable[[str, str], tuple[str, str]],
) -> Alert | None:
    """Alert a staff account's conduct at its area, once a local day an account, naming it
    by unit, role and name (``title`` makes the Chinese and English titles from those)."""
    who_zh, who_en = actor_titles(session, [actor_ref]).get(actor_ref, (actor_ref, actor_ref))
    title_zh, title_en = title(who_zh, who_en)
    return alert(
        session,
        kind=kind,
        area_code=area_code or CITY,
        title_zh=title_zh,
        title_en=title_en,
        dedupe_key=f"{kind}:{actor_ref}:{clock.today_local().isoformat()}",
    )


def alert_hand_turn_limit(
    session: Session, actor_ref: str, area_code: str | None, in_24h: int
) -> Alert | None:
    """An account reached its limit of green codes turned by hand in 24 hours (手工转码达到
    上限) and was refused one more: the command centre sees who, by unit, role and name —
    the person it tried to turn is not named. Once a local day an account."""
    return _alert_account(
        session,
        "hand_turn_limit",
        actor_ref,
        area_code,
        lambda zh, en: (
            f"手工转码达到上限：{zh}（24小时内已转 {in_24h} 人）",
            f"Hand-turned codes at the limit: {en} ({in_24h} in 24 h)",
        ),
    )


def alert_hand_frees(
    session: Session, actor_ref: str, area_code: str | None, in_24h: int
) -> Alert | None:
    """An account turned many red or yellow codes green by withdrawing facts in 24 hours
    (手工转绿较多): the command centre sees who, by unit, role and name, and looks at the
    register's withdrawals; no resident is named. Once a local day an account."""
    return _alert_account(
        session,
        "hand_free_many",
        actor_ref,
        area_code,
        lambda zh, en: (
            f"手工转绿较多：{zh}（24小时内撤销事实转绿 {in_24h} 人）",
            f"Many codes turned green by hand: {en} ({in_24h} in 24 h)",
        ),
    )


def alert_card_presented(session: Session, area_code: str) -> list[str]:
    """A printed health card that had ended (lost, replaced, cancelled) was presented at a gate
    (挂失卡被出示), its holder living in ``area_code``: someone may be going out on another's
    card. The command centre sees the holder's street, once a local day; the street's
    communities see the card and where it was shown on their residents tab. Nobody named.
    Returns the street alerted, if any."""
    return _alert_daily(
        session,
        "card_presented",
        {area_code[:9]: 1},
        lambda zh, en, _n: (
            f"已挂失或作废的纸质健康卡在闸机被出示：{zh}（请社区核实）",
            f"A printed health card that had ended was shown at a gate: {en} (to check)",
        ),
    )


def check_overdue_appeals(session: Session) -> list[str]:
    """Alert each street with appeals past their deadline (申诉逾期), once a day per street:
    the deadline is the street office's promise to the person, and a queue that slips should
    be seen where the city is watched. Returns the streets alerted."""
    return _alert_daily(
        session,
        "appeal_overdue",
        risk.overdue_appeals_by_street(session),
        lambda zh, en, n: (
            f"申诉逾期未处理：{zh}（{n} 件）",
            f"Appeals past their deadline: {en} ({n})",
        ),
    )


def check_uncontrolled_contacts(session: Session) -> list[str]:
    """Alert each street with close contacts still not under control past the deadline
    (密接超时未管控), once a day per street with its count then; contacts no place puts
    anywhere are alerted at city level. Finding contacts in minutes is worth little if they
    walk about for days: the lag of the streets is seen where the city is watched. Returns
    the areas alerted."""
    hours = risk_settings().control_deadline_hours
    return _alert_daily(
        session,
        "contacts_uncontrolled",
        risk.uncontrolled_contacts_by_street(session),
        lambda zh, en, n: (
            f"密接超{hours}小时未管控：{zh}（{n} 人）",
            f"Close contacts not under control after {hours} h: {en} ({n})",
        ),
    )


def loop_changed(session: Session, day: dt.date | None) -> None:
    """Recompute a day's closed-loop times and tell the city's streams."""
    if day is None:
        return
    repository.refresh_loop_day(session, day)
    live.notify(session, {"event": "figures", "data": {"areas": [CITY], "keys": ["loop"]}})


# --- reading, scoped to the viewer ---------------------------------------------------------


def _area(session: Session, who: Principal, code: str | None) -> AreaOut:
    code = code or who.area_code
    if not code.isdigit():
        raise InvalidInput("地区代码只能是数字", "area codes are digits", field="area")
    if not code.startswith(who.area_code):
        raise PermissionDenied("超出您的辖区", "outside your jurisdiction")
    found = repository.area_of(session, code)
    if found is None:
        raise NotFound("没有这个地区", "no such area")
    return AreaOut(code=found[0], name=found[1], name_en=found[2], level=found[3])


def _series(values: dict[dt.date, int], measure: str, days: list[dt.date]) -> list[int]:
    out = []
    carried = 0
    for day in days:
        if measure in STATE_MEASURES:
            carried = values.get(day, carried)
            out.append(carried)
        else:
            out.append(values.get(day, 0))
    return out


def _green(
    session: Session, area_code: str, rows: dict[str, dict[dt.date, int]], days: list[dt.date]
) -> list[int]:
    """Green compounds per day: every compound of the area that is neither red nor yellow."""
    total = repository.compounds_in(session, area_code)
    red = _series(rows.get("compounds_red", {}), "compounds_red", days)
    yellow = _series(rows.get("compounds_yellow", {}), "compounds_yellow", days)
    return [total - r - y for r, y in zip(red, yellow, strict=True)]


def overview(session: Session, who: Principal, area_code: str | None) -> OverviewOut:
    """The overview of an area inside the viewer's jurisdiction (default: all of it)."""
    area = _area(session, who, area_code)
    today = clock.today_local()
    days = [today - dt.timedelta(days=n) for n in range(29, -1, -1)]
    rows = repository.figure_rows(session, [area.code], days[0], today).get(area.code, {})
    figures = []
    latest: dict[str, int] = {}
    for key, zh, en, measure in FIGURES:
        if measure is None or (measure in CITY_ONLY and area.code != CITY):
            figures.append(
                FigureOut(
                    key=key,
                    label_zh=zh,
                    label_en=en,
                    value=None,
                    source="not_built",
                    trend14=[],
                    trend30=[],
                )
            )
            continue
        if measure == "compounds_green":
            series = _green(session, area.code, rows, days)
        else:
            series = _series(rows.get(measure, {}), measure, days)
        latest[measure] = series[-1]
        figures.append(
            FigureOut(
                key=key,
                label_zh=zh,
                label_en=en,
                value=series[-1],
                source="live",
                trend14=series[-14:],
                trend30=series,
            )
        )
    loop = repository.loop_day(session, today)
    return OverviewOut(
        area=area,
        as_of=clock.now(),
        figures=figures,
        tiers={c: latest.get(f"compounds_{c}", 0) for c in ("red", "yellow", "green")},
        colours={c: latest.get(f"codes_{c}", 0) for c in ("red", "yellow", "green")},
        loop=LoopOut(
            arrival_to_contacts_min=loop.arrival_to_contacts_min if loop else None,
            contacts_to_codes_min=loop.contacts_to_codes_min if loop else None,
            arrival_to_codes_min=loop.arrival_to_codes_min if loop else None,
            cases=loop.cases if loop else 0,
            close_contacts=loop.close_contacts if loop else 0,
            contacts_controlled=loop.contacts_controlled if loop else 0,
            codes_to_control_min=loop.codes_to_control_min if loop else None,
        ),
    )


def map_view(session: Session, who: Principal, measure: str, area_code: str | None) -> MapOut:
    """A measure for each child of an area (districts of the city, streets of a district…)."""
    if measure not in MAP_MEASURES:
        raise InvalidInput("未知的指标", "unknown measure", field="measure")
    area = _area(session, who, area_code)
    if area.level == "compound":
        raise InvalidInput("小区没有下级", "a compound has no children", field="area")
    children = repository.children_of(session, area.code)
    parts = MAP_MEASURES[measure]
    today = clock.today_local()
    values: dict[str, dict[str, dict[dt.date, int]]] = {}
    if parts is not None and children:
        # State measures only: the latest row per child carries forward from any earlier day.
        values = repository.figure_rows(session, [c[0] for c in children], today, today)
    out = []
    for code, name, name_en, _level, polygon in children:
        value = None
        if parts is not None:
            found = values.get(code, {})
            value = sum(_series(found.get(p, {}), p, [today])[0] for p in parts)
        out.append(MapArea(code=code, name=name, name_en=name_en, value=value, has_polygon=polygon))
    return MapOut(
        measure=measure,
        area=area,
        level=CHILD_LEVEL.get(area.level, "compound"),
        areas=out,
        source="not_built" if parts is None else "live",
    )


def alert_out(row: Alert, area_name: str) -> AlertOut:
    """An alert for the API."""
    return AlertOut(
        id=row.id,
        kind=row.kind,
        at=clock.as_utc(row.at),
        area_code=row.area_code,
        area_name=area_name,
        title_zh=row.title_zh,
        title_en=row.title_en,
    )


def alerts(session: Session, who: Principal, area_code: str | None, limit: int) -> list[AlertOut]:
    """The newest alerts inside an area of the viewer's jurisdiction."""
    area = _area(session, who, area_code)
    rows = repository.alerts_within(session, area.code, max(1, min(limit, 200)))
    names = geo_repository.names_of(session, {r.area_code for r in rows})
    return [alert_out(r, names.get(r.area_code, r.area_code)) for r in rows]


def freshness(session: Session, now: dt.datetime | None = None) -> list[FreshnessOut]:
    """Per feed of the catalogue: when data last came, records today, whether it is late."""
    now = now or clock.now()
    today = clock.today_local()
    rows = repository.sources(session)
    out = []
    for code, source in catalog().items():
        row = rows.get(code)
        last = clock.as_utc(row.last_received_at) if row and row.last_received_at else None
        hours = float(source.stale_after_hours or 0)
        stale = (
            source.is_feed
            if last is None
            else bool(hours) and (now - last) > dt.timedelta(hours=hours)
        )
        out.append(
            FreshnessOut(
                category=code,
                name_zh=source.name,
                name_en=source.name_en,
                last_received_at=last,
                records_today=row.records_today if row and row.records_day == today else 0,
                stale=stale,
                expected_every_hours=hours,
                origin=source.origin,
            )
        )
    return out


def figure_value(session: Session, area_code: str, key: str) -> int | None:
    """Today's value of one figure of an area (tests and the CLI)."""
    today = clock.today_local()
    measure = next(m for k, _, _, m in FIGURES if k == key)
    if measure is None:
        return None
    rows = repository.figure_rows(session, [area_code], today, today).get(area_code, {})
    if measure == "compounds_green":
        return _green(session, area_code, rows, [today])[0]
    return _series(rows.get(measure, {}), measure, [today])[0]

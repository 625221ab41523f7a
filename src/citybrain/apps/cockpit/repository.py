"""All SQL of the cockpit: the measures counted from the source tables (per leaf area), the
materialised figures and their upkeep, alerts, source freshness and loop times.

A *leaf* is the most precise area code a source record carries (a compound, a street for a
checkpoint, the city for a feed without areas). Every measure is one function that counts per
leaf, for some leaves (a handler) or all (``rebuild``): the incremental figures and the rebuilt
ones come from the same code, so they can only differ by a missed event.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text
from sqlalchemy.orm import Session

from citybrain.analysis.models import ContactTrace
from citybrain.apps.cockpit.models import (
    CURRENT,
    Alert,
    Figure,
    LeafValue,
    LoopDay,
    SourceFreshness,
)
from citybrain.core.geo.models import PLACE_CHECKPOINT, Area, Compound, Place
from citybrain.core.people.models import Household, Person
from citybrain.datahub.models import IntakeFile
from citybrain.healthcode.models import Scan
from citybrain.kit import clock
from citybrain.risk.models import Appeal, CompoundTier, Fact, Override, PersonColour
from citybrain.risk.repository import shown_colour

CITY = "4101"
LEVEL_LENGTHS = (4, 6, 9, 12, 15)
FEVER_CATEGORY = "fever_visit"  # the data centre's category of fever clinic visits
INGESTED = "ingested"
CHUNK = 500  # values per IN list

# State measures: what stands now (a leaf keeps its current value; figures snapshot per day).
STATE_MEASURES = (
    "confirmed_total",
    "asymptomatic",
    "close_contacts",
    "close_contacts_controlled",
    "secondary_contacts",
    "secondary_contacts_controlled",
    "codes_red",
    "codes_yellow",
    "codes_green",
    "compounds_red",
    "compounds_yellow",
    "compounds_green",
    "overrides_open",
    "appeals_open",
)
# Daily measures: what happened on each day (China's calendar).
DAILY_MEASURES = ("confirmed_new", "registrations", "crossings", "fever_visits")
MEASURES = STATE_MEASURES + DAILY_MEASURES

# One leaf's values: (leaf, measure, day) -> value.
Values = dict[tuple[str, str, dt.date], int]


def prefixes(code: str) -> list[str]:
    """The area codes a leaf counts towards: itself and every enclosing level."""
    out = [code[:n] for n in LEVEL_LENGTHS if n < len(code)]
    out.append(code)
    return out


def _local_day(value: Any) -> dt.date:
    """China's calendar day of a stored UTC moment."""
    return clock.as_utc(value).astimezone(clock.CHINA_TZ).date()


def _leaf_filter(column: Any, leaves: Collection[str] | None) -> list[ColumnElement[bool]]:
    return [] if leaves is None else [column.in_(sorted(leaves))]


# --- the measures, counted from the source tables -------------------------------------------


def _fact_rows(session: Session, kinds: Iterable[str], leaves: Collection[str] | None) -> list[Any]:
    """(leaf, subject, kind, valid_from, valid_until, asserted_at) of unretracted facts of
    ``kinds``; a fact's leaf is its compound, else where its subject lives, else the city
    (a subject known only from the lake whom the household registry does not place)."""
    leaf = func.coalesce(Fact.compound_code, PersonColour.area_code, CITY)
    statement = (
        select(
            leaf.label("leaf"),
            Fact.subject,
            Fact.kind,
            Fact.valid_from,
            Fact.valid_until,
            Fact.asserted_at,
        )
        .outerjoin(PersonColour, PersonColour.subject == Fact.subject)
        .where(Fact.kind.in_(sorted(kinds)), Fact.retracted_at.is_(None))
    )
    if leaves is not None:
        chosen = sorted(leaves)
        # Written as indexed alternatives rather than a filter on the coalesce.
        alternatives = [
            Fact.compound_code.in_(chosen),
            and_(Fact.compound_code.is_(None), PersonColour.area_code.in_(chosen)),
        ]
        if CITY in leaves:
            alternatives.append(
                and_(Fact.compound_code.is_(None), PersonColour.area_code.is_(None))
            )
        statement = statement.where(or_(*alternatives))
    return list(session.execute(statement))


def _in_force(row: Any, now: dt.datetime) -> bool:
    return clock.as_utc(row.valid_from) <= now and (
        row.valid_until is None or clock.as_utc(row.valid_until) > now
    )


def _fact_measures(session: Session, leaves: Collection[str] | None, now: dt.datetime) -> Values:
    out: Values = defaultdict(int)
    kinds = ("confirmed_case", "asymptomatic", "close_contact", "secondary_contact")
    subjects: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in _fact_rows(session, kinds, leaves):
        if row.kind == "confirmed_case":
            subjects[row.leaf, "confirmed_total"].add(row.subject)
            out[row.leaf, "confirmed_new", _local_day(row.asserted_at)] += 1
        elif _in_force(row, now):
            measure = {
                "close_contact": "close_contacts",
                "secondary_contact": "secondary_contacts",
            }.get(row.kind, row.kind)
            subjects[row.leaf, measure].add(row.subject)
    # Under control: a quarantine fact in force, wherever it is placed (a facility elsewhere),
    # asked by subject so a handler's few leaves and the rebuild's all count the same.
    contacts = {
        s
        for (_, m), found in subjects.items()
        if m in ("close_contacts", "secondary_contacts")
        for s in found
    }
    quarantined = _quarantined(session, contacts, now)
    for (leaf, measure), found in list(subjects.items()):
        out[leaf, measure, CURRENT] = len(found)
        if measure in ("close_contacts", "secondary_contacts"):
            out[leaf, f"{measure}_controlled", CURRENT] = len(found & quarantined)
    return out


def _quarantined(session: Session, subjects: set[str], now: dt.datetime) -> set[str]:
    found: set[str] = set()
    chosen = sorted(subjects)
    for start in range(0, len(chosen), CHUNK):
        rows = session.execute(
            select(Fact.subject, Fact.valid_from, Fact.valid_until).where(
                Fact.subject.in_(chosen[start : start + CHUNK]),
                Fact.kind == "in_quarantine",
                Fact.retracted_at.is_(None),
            )
        )
        found.update(row.subject for row in rows if _in_force(row, now))
    return found


def _colour_measures(session: Session, leaves: Collection[str] | None, now: dt.datetime) -> Values:
    shown = shown_colour(now)
    # A subject no registry places counts for the city as a whole.
    leaf = func.coalesce(PersonColour.area_code, CITY)
    rows = session.execute(
        select(leaf, shown, func.count())
        .where(shown != "green", *_leaf_filter(leaf, leaves))
        .group_by(leaf, shown)
    )
    out: Values = {(leaf, f"codes_{colour}", CURRENT): int(n) for leaf, colour, n in rows}
    # Green codes are held by registered residents (only they are shown a code) whose colour
    # is green, most of them with no colour row at all: no fact was ever asserted about them.
    # Their subject is the first 32 hex digits of the ID number's blind index.
    registered = session.execute(
        select(Person.area_code, func.count())
        .outerjoin(PersonColour, PersonColour.subject == func.substr(Person.id_number_bidx, 1, 32))
        .where(
            or_(PersonColour.subject.is_(None), shown == "green"),
            *_leaf_filter(Person.area_code, leaves),
        )
        .group_by(Person.area_code)
    )
    for code, n in registered:
        out[code, "codes_green", CURRENT] = int(n)
    return out


def _tier_measures(session: Session, leaves: Collection[str] | None, now: dt.datetime) -> Values:
    # Red and yellow only: green is every other compound of the area (``compounds_in``), and
    # most compounds never had a tier computed.
    rows = session.execute(
        select(CompoundTier.compound_code, CompoundTier.tier).where(
            CompoundTier.tier != "green", *_leaf_filter(CompoundTier.compound_code, leaves)
        )
    )
    out: Values = defaultdict(int)
    for code, tier in rows:
        out[code, f"compounds_{tier}", CURRENT] += 1
    return out


def compounds_in(session: Session, area_code: str) -> int:
    """How many compounds an area holds (the hierarchy's, whatever their tier)."""
    return int(session.scalar(select(func.count()).where(Compound.code.startswith(area_code))) or 0)


def _override_measures(
    session: Session, leaves: Collection[str] | None, now: dt.datetime
) -> Values:
    # An override of someone with no known area counts for the city only.
    leaf = func.coalesce(Override.area_code, CITY)
    rows = session.execute(
        select(leaf, func.count())
        .where(Override.status.in_(("requested", "active")), *_leaf_filter(leaf, leaves))
        .group_by(leaf)
    )
    return {(code, "overrides_open", CURRENT): int(n) for code, n in rows}


def _appeal_measures(session: Session, leaves: Collection[str] | None, now: dt.datetime) -> Values:
    rows = session.execute(
        select(Appeal.street_code, func.count())
        .where(Appeal.status == "open", *_leaf_filter(Appeal.street_code, leaves))
        .group_by(Appeal.street_code)
    )
    return {(code, "appeals_open", CURRENT): int(n) for code, n in rows}


def _day_sql(session: Session, column: Any) -> Any:
    """SQL for China's calendar day of a UTC timestamp column, per database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("Asia/Shanghai", column))
    return func.date(column, "+8 hours")


def _day_value(session: Session, day: dt.date) -> Any:
    """``day`` as ``_day_sql`` yields it (SQLite's date() gives text)."""
    return day.isoformat() if session.get_bind().dialect.name == "sqlite" else day


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _registration_measures(
    session: Session, leaves: Collection[str] | None, now: dt.datetime
) -> Values:
    day = _day_sql(session, Household.created_at)
    rows = session.execute(
        select(Household.compound_code, day, func.count())
        .where(*_leaf_filter(Household.compound_code, leaves))
        .group_by(Household.compound_code, day)
    )
    return {(code, "registrations", _as_date(d)): int(n) for code, d, n in rows}


def _crossing_measures(
    session: Session, leaves: Collection[str] | None, now: dt.datetime
) -> Values:
    day = _day_sql(session, Scan.scanned_at)
    rows = session.execute(
        select(Place.area_code, day, func.count())
        .join(Place, Place.code == Scan.place_code)
        .where(Place.kind == PLACE_CHECKPOINT, *_leaf_filter(Place.area_code, leaves))
        .group_by(Place.area_code, day)
    )
    return {(code, "crossings", _as_date(d)): int(n) for code, d, n in rows}


def _fever_measures(session: Session, leaves: Collection[str] | None, now: dt.datetime) -> Values:
    # The feed carries no area in the ledger: its records count for the city as a whole.
    if leaves is not None and CITY not in leaves:
        return {}
    day = _day_sql(session, IntakeFile.ingested_at)
    rows = session.execute(
        select(day, func.sum(IntakeFile.accepted))
        .where(IntakeFile.category == FEVER_CATEGORY, IntakeFile.status == INGESTED)
        .group_by(day)
    )
    return {(CITY, "fever_visits", _as_date(d)): int(n or 0) for d, n in rows}


_COUNTERS: tuple[Callable[[Session, Collection[str] | None, dt.datetime], Values], ...] = (
    _fact_measures,
    _colour_measures,
    _tier_measures,
    _override_measures,
    _appeal_measures,
    _registration_measures,
    _crossing_measures,
    _fever_measures,
)


def count_leaves(session: Session, leaves: Collection[str] | None, now: dt.datetime) -> Values:
    """Every measure counted from the source tables, for ``leaves`` (None: all), without
    zeros."""
    out: Values = {}
    for counter in _COUNTERS:
        for key, value in counter(session, leaves, now).items():
            if value:
                out[key] = out.get(key, 0) + value
    return out


# --- the materialised figures ----------------------------------------------------------------


def lock_figures(session: Session) -> None:
    """Serialise figure upkeep between processes (PostgreSQL; SQLite's write lock already
    does): two handlers reading the same leaf's old value would both add their difference."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(91099)"))


def stored_leaves(session: Session, leaves: Collection[str]) -> Values:
    """The stored leaf values of ``leaves``."""
    rows = session.scalars(select(LeafValue).where(LeafValue.area_code.in_(sorted(leaves))))
    return {(r.area_code, r.measure, r.day): r.value for r in rows}


def _latest_before(session: Session, area: str, measure: str, day: dt.date) -> int:
    value = session.scalar(
        select(Figure.value)
        .where(Figure.area_code == area, Figure.measure == measure, Figure.day < day)
        .order_by(Figure.day.desc())
        .limit(1)
    )
    return int(value or 0)


def add_to_figures(session: Session, leaf: str, measure: str, day: dt.date, delta: int) -> None:
    """Add ``delta`` to the figure of every area enclosing ``leaf``; a state measure's row of
    today starts from the latest earlier day."""
    for area in prefixes(leaf):
        row = session.get(Figure, (area, measure, day))
        if row is None:
            base = _latest_before(session, area, measure, day) if measure in STATE_MEASURES else 0
            row = Figure(area_code=area, measure=measure, day=day, value=base)
            session.add(row)
        row.value = row.value + delta
    session.flush()


def apply_leaf_values(
    session: Session, leaves: Collection[str], fresh: Values, today: dt.date
) -> dict[str, set[str]]:
    """Store ``fresh`` as the values of ``leaves`` and move the figures by the difference;
    returns the measures changed per leaf."""
    old = stored_leaves(session, leaves)
    changed: dict[str, set[str]] = defaultdict(set)
    for key in set(old) | set(fresh):
        leaf, measure, day = key
        delta = fresh.get(key, 0) - old.get(key, 0)
        if not delta:
            continue
        row = session.get(LeafValue, key)
        if row is None:
            session.add(LeafValue(area_code=leaf, measure=measure, day=day, value=fresh[key]))
        elif fresh.get(key, 0):
            row.value = fresh[key]
        else:
            session.delete(row)
        add_to_figures(session, leaf, measure, today if day == CURRENT else day, delta)
        changed[leaf].add(measure)
    session.flush()
    return changed


def replace_all(session: Session, fresh: Values, today: dt.date) -> dict[str, int]:
    """Rebuild: every leaf value from ``fresh``; every daily figure, and today's state
    figures, as their sums (earlier days' state snapshots stay as they were recorded)."""
    session.execute(delete(LeafValue))
    session.execute(delete(Figure).where(Figure.measure.in_(DAILY_MEASURES)))
    session.execute(delete(Figure).where(Figure.measure.in_(STATE_MEASURES), Figure.day == today))
    sums: dict[tuple[str, str, dt.date], int] = defaultdict(int)
    for (leaf, measure, day), value in fresh.items():
        session.add(LeafValue(area_code=leaf, measure=measure, day=day, value=value))
        for area in prefixes(leaf):
            sums[area, measure, today if day == CURRENT else day] += value
    # State measures that fell to zero since the last snapshot need a zero row today, or the
    # last non-zero day would be carried forward.
    latest = (
        select(Figure.area_code, Figure.measure, func.max(Figure.day).label("day"))
        .where(Figure.measure.in_(STATE_MEASURES))
        .group_by(Figure.area_code, Figure.measure)
    )
    for area, measure, _ in session.execute(latest):
        sums.setdefault((area, measure, today), 0)
    for (area, measure, day), value in sums.items():
        session.add(Figure(area_code=area, measure=measure, day=day, value=value))
    session.flush()
    return {"leaf_values": len(fresh), "figures": len(sums)}


def figure_rows(
    session: Session, areas: Collection[str], since: dt.date, today: dt.date
) -> dict[str, dict[str, dict[dt.date, int]]]:
    """area -> measure -> day -> value for ``since``..``today``, with each state measure's
    latest earlier row put on ``since`` (carried forward)."""
    chosen = sorted(areas)
    out: dict[str, dict[str, dict[dt.date, int]]] = defaultdict(lambda: defaultdict(dict))
    rows = session.execute(
        select(Figure.area_code, Figure.measure, Figure.day, Figure.value).where(
            Figure.area_code.in_(chosen), Figure.day >= since, Figure.day <= today
        )
    )
    for area, measure, day, value in rows:
        out[area][measure][day] = value
    before = (
        select(Figure.area_code, Figure.measure, func.max(Figure.day).label("day"))
        .where(
            Figure.area_code.in_(chosen),
            Figure.measure.in_(STATE_MEASURES),
            Figure.day < since,
        )
        .group_by(Figure.area_code, Figure.measure)
        .subquery()
    )
    carried = session.execute(
        select(Figure.area_code, Figure.measure, Figure.value).join(
            before,
            and_(
                Figure.area_code == before.c.area_code,
                Figure.measure == before.c.measure,
                Figure.day == before.c.day,
            ),
        )
    )
    for area, measure, value in carried:
        out[area][measure].setdefault(since, value)
    return out


# --- areas -------------------------------------------------------------------------------


def area_of(session: Session, code: str) -> tuple[str, str, str | None, str] | None:
    """(code, name, English name, level) of an area or compound, or None."""
    if len(code) == 15:
        compound = session.get(Compound, code)
        return None if compound is None else (code, compound.name, None, "compound")
    area = session.get(Area, code)
    return None if area is None else (area.code, area.name, area.name_en, area.level)


def children_of(session: Session, code: str) -> list[tuple[str, str, str | None, str, bool]]:
    """(code, name, English name, level, has polygon) of the areas or compounds under ``code``."""
    if len(code) == 12:
        compounds = session.scalars(
            select(Compound).where(Compound.community_code == code).order_by(Compound.code)
        )
        return [(c.code, c.name, None, "compound", False) for c in compounds]
    areas = session.scalars(select(Area).where(Area.parent_code == code).order_by(Area.code))
    return [(a.code, a.name, a.name_en, a.level, a.map_polygon is not None) for a in areas]


# --- leaves of source records (for the handlers) ---------------------------------------------


def fact_leaves(session: Session, fact_id: int) -> tuple[set[str], Fact | None]:
    """The leaves a fact counts in (its compound, where its subject lives), and the fact."""
    fact = session.get(Fact, fact_id)
    if fact is None:
        return set(), None
    found = {c for c in (fact.compound_code, subject_leaf(session, fact.subject)) if c}
    return found or {CITY}, fact


def subject_leaf(session: Session, subject: str) -> str | None:
    """Where a risk subject lives, as their colour row says."""
    return session.scalar(select(PersonColour.area_code).where(PersonColour.subject == subject))


def override_leaf(session: Session, override_id: int) -> str | None:
    """The leaf an override counts in."""
    row = session.get(Override, override_id)
    return None if row is None else (row.area_code or CITY)


def appeal_leaf(session: Session, appeal_id: int) -> str | None:
    """The leaf (street) an appeal counts in."""
    row = session.get(Appeal, appeal_id)
    return None if row is None else row.street_code


def checkpoint_leaves(session: Session, first_id: int, last_id: int) -> set[str]:
    """The areas of the checkpoints among the scans ``first_id``..``last_id``."""
    rows = session.scalars(
        select(Place.area_code)
        .join(Scan, Scan.place_code == Place.code)
        .where(Scan.id >= first_id, Scan.id <= last_id, Place.kind == PLACE_CHECKPOINT)
        .distinct()
    )
    return set(rows)


def compound_tier(session: Session, code: str) -> str | None:
    """A compound's tier as stored."""
    return session.scalar(select(CompoundTier.tier).where(CompoundTier.compound_code == code))


# --- alerts ------------------------------------------------------------------------------


def add_alert(
    session: Session,
    *,
    kind: str,
    area_code: str,
    title_zh: str,
    title_en: str,
    dedupe_key: str,
    at: dt.datetime,
) -> Alert | None:
    """Write an alert unless one with ``dedupe_key`` exists; the new row or None."""
    if session.scalar(select(Alert.id).where(Alert.dedupe_key == dedupe_key)) is not None:
        return None
    row = Alert(
        kind=kind,
        at=at,
        area_code=area_code,
        title_zh=title_zh[:200],
        title_en=title_en[:300],
        dedupe_key=dedupe_key,
    )
    session.add(row)
    session.flush()
    return row


def alerts_within(session: Session, area_code: str, limit: int) -> list[Alert]:
    """The newest alerts inside ``area_code`` (prefix), newest first."""
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.area_code.startswith(area_code))
            .order_by(Alert.at.desc(), Alert.id.desc())
            .limit(limit)
        )
    )


def refresh_source(session: Session, category: str, today: dt.date) -> SourceFreshness:
    """Recount one category's last arrival and records today from the intake ledger."""
    day = _day_sql(session, IntakeFile.ingested_at)
    last = session.scalar(
        select(func.max(IntakeFile.ingested_at)).where(
            IntakeFile.category == category, IntakeFile.status == INGESTED
        )
    )
    records = session.scalar(
        select(func.coalesce(func.sum(IntakeFile.accepted), 0)).where(
            IntakeFile.category == category,
            IntakeFile.status == INGESTED,
            day == _day_value(session, today),
        )
    )
    row = session.get(SourceFreshness, category)
    if row is None:
        row = SourceFreshness(category=category, records_today=0)
        session.add(row)
    row.last_received_at = last
    row.records_day = today
    row.records_today = int(records or 0)
    session.flush()
    return row


def watch_source(session: Session, category: str, since: dt.datetime) -> SourceFreshness:
    """The freshness row of a feed that has sent nothing yet, looked for from ``since``."""
    row = SourceFreshness(category=category, records_today=0, watched_since=since)
    session.add(row)
    session.flush()
    return row


def sources(session: Session) -> dict[str, SourceFreshness]:
    """Every category's freshness row, by category."""
    return {row.category: row for row in session.scalars(select(SourceFreshness))}


def ingested_categories(session: Session) -> list[str]:
    """Categories with any file in the intake ledger."""
    return list(session.scalars(select(IntakeFile.category).distinct()))


# --- closed-loop times -------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def refresh_loop_day(session: Session, day: dt.date) -> LoopDay:
    """Recompute the loop times of the cases traced on ``day``: arrival -> contacts listed
    (the trace), contacts listed -> codes changed (the last contact fact of the trace is
    asserted, and its colour recomputed, in one transaction)."""
    start = clock.local_midnight(day)
    end = start + dt.timedelta(days=1)
    traces = list(
        session.scalars(
            select(ContactTrace).where(
                ContactTrace.traced_at >= start, ContactTrace.traced_at < end
            )
        )
    )
    keys = [f"trace:{t.case_key}" for t in traces]
    coded: dict[str, dt.datetime] = {}
    if keys:
        coded = {
            key: clock.as_utc(at)
            for key, at in session.execute(
                select(Fact.dedupe_key, func.max(Fact.asserted_at))
                .where(Fact.dedupe_key.in_(keys))
                .group_by(Fact.dedupe_key)
            )
            if at is not None and key is not None
        }
    listing: list[float] = []
    coding: list[float] = []
    whole: list[float] = []
    for trace in traces:
        arrived, traced = clock.as_utc(trace.arrived_at), clock.as_utc(trace.traced_at)
        listing.append(max(0.0, (traced - arrived).total_seconds() / 60))
        done = coded.get(f"trace:{trace.case_key}")
        if done is not None:
            coding.append(max(0.0, (done - traced).total_seconds() / 60))
            whole.append(max(0.0, (done - arrived).total_seconds() / 60))
    contacts, controlled, controlling = _control_of_contacts(session, keys)
    row = session.get(LoopDay, day)
    if row is None:
        row = LoopDay(day=day)
        session.add(row)
    row.cases = len(traces)
    row.close_contacts = contacts
    row.contacts_controlled = controlled
    row.codes_to_control_min = _median(controlling)
    row.arrival_to_contacts_min = _median(listing)
    row.contacts_to_codes_min = _median(coding)
    row.arrival_to_codes_min = _median(whole)
    session.flush()
    return row


def _control_of_contacts(session: Session, keys: list[str]) -> tuple[int, int, list[float]]:
    """Of the close contacts listed by the traces ``keys`` (their facts carry the trace's
    dedupe key): how many, how many have an in_quarantine fact recorded since, and the minutes
    from each one's contact fact to their first such fact."""
    if not keys:
        return 0, 0, []
    found: dict[str, dt.datetime] = {
        subject: clock.as_utc(at)
        for subject, at in session.execute(
            select(Fact.subject, func.min(Fact.asserted_at))
            .where(
                Fact.dedupe_key.in_(keys),
                Fact.kind == "close_contact",
                Fact.retracted_at.is_(None),
            )
            .group_by(Fact.subject)
        )
    }
    contacts = len(found)
    minutes: list[float] = []
    for subject, at in session.execute(
        select(Fact.subject, Fact.asserted_at)
        .where(
            Fact.subject.in_(list(found)),
            Fact.kind == "in_quarantine",
            Fact.retracted_at.is_(None),
        )
        .order_by(Fact.asserted_at)
    ):
        since = found.get(subject)
        if since is not None and clock.as_utc(at) >= since:
            found.pop(subject)  # the first one after the contact fact counts
            minutes.append((clock.as_utc(at) - since).total_seconds() / 60)
    return contacts, len(minutes), minutes


def trace_days_of_subject(session: Session, subject: str) -> set[dt.date]:
    """The days of the traces that listed ``subject`` (their facts carry the trace's key)."""
    keys = session.scalars(
        select(Fact.dedupe_key).where(Fact.subject == subject, Fact.dedupe_key.like("trace:%"))
    )
    cases = {int(case) for k in keys if k and (case := k.split(":", 1)[1]).isdigit()}
    if not cases:
        return set()
    return {
        _local_day(at)
        for at in session.scalars(
            select(ContactTrace.traced_at).where(ContactTrace.case_key.in_(cases))
        )
    }


def trace_day(session: Session, case_key: int) -> dt.date | None:
    """The day a case was traced."""
    at = session.scalar(select(ContactTrace.traced_at).where(ContactTrace.case_key == case_key))
    return None if at is None else _local_day(at)


def loop_day(session: Session, day: dt.date) -> LoopDay | None:
    """The stored loop times of ``day``."""
    return session.get(LoopDay, day)


def traced_days(session: Session) -> set[dt.date]:
    """Every day with a traced case."""
    return {_local_day(at) for at in session.scalars(select(ContactTrace.traced_at))}

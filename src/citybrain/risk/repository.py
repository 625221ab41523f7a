"""All SQL of risk. Batch reads take lists of subjects (chunked ``IN``), never one query per
person; streams walk subjects and compounds in key order, a batch at a time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from sqlalchemy import (
    Select,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from citybrain.core.authz.principal import Principal
from citybrain.core.authz.scope import scoped, within
from citybrain.core.geo.models import Area, Compound
from citybrain.core.people.models import Person
from citybrain.kit.db import rows_affected
from citybrain.risk.kinds import CASE_KINDS
from citybrain.risk.models import (
    Appeal,
    CompoundTier,
    Fact,
    Override,
    PersonColour,
    RiskNotification,
    RuleSet,
    RuleSetApproval,
)

CHUNK = 500  # parameters per IN list: well under SQLite's and PostgreSQL's limits


def _chunks(values: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def active_version_query() -> Select[Any]:
    """The active rule set's version, as a scalar subquery."""
    return select(RuleSet.version).where(RuleSet.status == "active").limit(1)


def active_rule_set(session: Session) -> RuleSet | None:
    """The active rule set, if any."""
    return session.scalars(select(RuleSet).where(RuleSet.status == "active").limit(1)).first()


def active_rule_set_key(session: Session) -> tuple[int, str] | None:
    """The active rule set's version and hash (two short columns), if any."""
    row = session.execute(
        select(RuleSet.version, RuleSet.sha256).where(RuleSet.status == "active").limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row is not None else None


def rule_set_by_version(session: Session, version: int) -> RuleSet | None:
    """The rule set stored as ``version``."""
    return session.scalars(select(RuleSet).where(RuleSet.version == version)).first()


def next_version(session: Session) -> int:
    """The number the next proposed rule set gets."""
    return int(session.scalar(select(func.max(RuleSet.version))) or 0) + 1


def rule_sets(session: Session, limit: int = 50) -> list[RuleSet]:
    """Rule sets, newest first."""
    return list(session.scalars(select(RuleSet).order_by(RuleSet.version.desc()).limit(limit)))


def approvals_of(session: Session, rule_set_ids: Sequence[int]) -> dict[int, list[RuleSetApproval]]:
    """Approvals per rule set, oldest first."""
    found: dict[int, list[RuleSetApproval]] = {i: [] for i in rule_set_ids}
    if not rule_set_ids:
        return found
    rows = session.scalars(
        select(RuleSetApproval)
        .where(RuleSetApproval.rule_set_id.in_(rule_set_ids))
        .order_by(RuleSetApproval.approved_at, RuleSetApproval.id)
    )
    for row in rows:
        found[row.rule_set_id].append(row)
    return found


def colour_row(session: Session, subject: str) -> tuple[int | None, PersonColour | None]:
    """The active rule-set version and the subject's stored colour, in one round trip."""
    version = active_version_query().scalar_subquery()
    one = select(literal(1).label("one")).subquery()
    row = session.execute(
        select(version, PersonColour)
        .select_from(one)
        .outerjoin(PersonColour, PersonColour.subject == subject)
    ).first()
    if row is None:
        return None, None
    return (None if row[0] is None else int(row[0])), row[1]


def colour_rows(session: Session, subjects: Sequence[str]) -> dict[str, PersonColour]:
    """Stored colours of ``subjects`` (those that have one)."""
    found: dict[str, PersonColour] = {}
    for chunk in _chunks(sorted(set(subjects))):
        for row in session.scalars(select(PersonColour).where(PersonColour.subject.in_(chunk))):
            found[row.subject] = row
    return found


def tier_rows(session: Session, codes: Sequence[str]) -> dict[str, CompoundTier]:
    """Stored tiers of ``codes``."""
    found: dict[str, CompoundTier] = {}
    for chunk in _chunks(sorted(set(codes))):
        rows = session.scalars(select(CompoundTier).where(CompoundTier.compound_code.in_(chunk)))
        for row in rows:
            found[row.compound_code] = row
    return found


def facts_of(session: Session, subjects: Iterable[str]) -> dict[str, list[Fact]]:
    """Every fact (retracted ones too) of ``subjects``, oldest first, by subject."""
    wanted = sorted(set(subjects))
    found: dict[str, list[Fact]] = {s: [] for s in wanted}
    for chunk in _chunks(wanted):
        rows = session.scalars(
            select(Fact).where(Fact.subject.in_(chunk)).order_by(Fact.valid_from, Fact.id)
        )
        for row in rows:
            found[row.subject].append(row)
    return found


def facts_for_view(session: Session, subject: str, limit: int = 200) -> list[Fact]:
    """A subject's facts, newest first (staff pages)."""
    return list(
        session.scalars(
            select(Fact)
            .where(Fact.subject == subject)
            .order_by(Fact.valid_from.desc(), Fact.id.desc())
            .limit(limit)
        )
    )


def duplicate_fact(session: Session, subject: str, kind: str, dedupe_key: str) -> Fact | None:
    """A standing fact of the same finding (same subject, kind and dedupe key)."""
    return session.scalars(
        select(Fact).where(
            Fact.subject == subject,
            Fact.kind == kind,
            Fact.dedupe_key == dedupe_key,
            Fact.retracted_at.is_(None),
        )
    ).first()


def facts_by_dedupe_key(session: Session, dedupe_key: str) -> list[Fact]:
    """Standing facts asserted under ``dedupe_key`` (what one finding caused)."""
    return list(
        session.scalars(
            select(Fact).where(Fact.dedupe_key == dedupe_key, Fact.retracted_at.is_(None))
        )
    )


def compound_subjects(session: Session, code: str) -> list[str]:
    """Subjects that count for a compound: those living there (their colour row's area) and
    those a standing fact places there."""
    living = select(PersonColour.subject).where(PersonColour.area_code == code)
    placed = select(Fact.subject).where(Fact.compound_code == code, Fact.retracted_at.is_(None))
    return sorted(set(session.scalars(union(living, placed))))


def compounds_of_subjects(session: Session, subjects: Sequence[str]) -> dict[str, set[str]]:
    """Per compound, the subjects among ``subjects`` that count for it (batch form of
    ``compound_subjects`` for replay and activation)."""
    found: dict[str, set[str]] = {}
    for chunk in _chunks(sorted(set(subjects))):
        for subject, area in session.execute(
            select(PersonColour.subject, PersonColour.area_code).where(
                PersonColour.subject.in_(chunk), func.length(PersonColour.area_code) == 15
            )
        ):
            found.setdefault(str(area), set()).add(subject)
    return found


def subjects_after(session: Session, after: str, limit: int) -> list[str]:
    """The next ``limit`` subjects with facts or a stored colour, in order, after ``after``."""
    with_facts = select(Fact.subject).where(Fact.subject > after)
    with_rows = select(PersonColour.subject).where(PersonColour.subject > after)
    both = union(with_facts, with_rows).subquery()
    return list(session.scalars(select(both.c.subject).order_by(both.c.subject).limit(limit)))


def count_subjects(session: Session) -> int:
    """How many subjects have facts."""
    return int(session.scalar(select(func.count(func.distinct(Fact.subject)))) or 0)


def compounds_after(session: Session, after: str, limit: int) -> list[str]:
    """The next ``limit`` compounds that have a stored tier, a resident with a colour row or a
    fact placing someone there, in order, after ``after``."""
    tiers = select(CompoundTier.compound_code.label("code")).where(
        CompoundTier.compound_code > after
    )
    living = select(PersonColour.area_code.label("code")).where(
        PersonColour.area_code > after, func.length(PersonColour.area_code) == 15
    )
    placed = select(Fact.compound_code.label("code")).where(
        Fact.compound_code > after, Fact.compound_code.is_not(None)
    )
    both = union(tiers, living, placed).subquery()
    return [
        str(c)
        for c in session.scalars(select(both.c.code).order_by(both.c.code).limit(limit))
        if c is not None
    ]


def subjects_placed_in(session: Session, codes: Sequence[str]) -> dict[str, set[str]]:
    """Per compound of ``codes``, every subject that counts for it."""
    found: dict[str, set[str]] = {c: set() for c in codes}
    for chunk in _chunks(sorted(set(codes))):
        for subject, area in session.execute(
            select(PersonColour.subject, PersonColour.area_code).where(
                PersonColour.area_code.in_(chunk)
            )
        ):
            found[str(area)].add(subject)
        for subject, code in session.execute(
            select(Fact.subject, Fact.compound_code).where(
                Fact.compound_code.in_(chunk), Fact.retracted_at.is_(None)
            )
        ):
            found[str(code)].add(subject)
    return found


def orphan_rows_after(session: Session, after: str, limit: int) -> list[PersonColour]:
    """Stored colours whose subject has no fact at all (a colour from nowhere)."""
    return list(
        session.scalars(
            select(PersonColour)
            .where(
                PersonColour.subject > after,
                ~exists().where(Fact.subject == PersonColour.subject),
            )
            .order_by(PersonColour.subject)
            .limit(limit)
        )
    )


def area_exists(session: Session, code: str, level: str) -> bool:
    """Whether ``code`` is an area of ``level`` (district, street, community)."""
    return bool(session.scalar(select(exists().where(Area.code == code, Area.level == level))))


def active_override(session: Session, subject: str) -> Override | None:
    """The subject's override in force (status active), if any."""
    return session.scalars(
        select(Override).where(Override.subject == subject, Override.status == "active")
    ).first()


def _overrides_in(who: Principal, statuses: Sequence[str]) -> Select[Override]:
    statement = select(Override).where(Override.status.in_(statuses))
    if len(who.area_code) > 4:
        statement = scoped(statement, cast(ColumnElement[str], Override.area_code), who)
    return statement


def overrides_scoped(
    session: Session,
    who: Principal,
    statuses: Sequence[str],
    *,
    offset: int = 0,
    limit: int = 200,
) -> list[Override]:
    """Overrides in ``who``'s jurisdiction (by the person's area; city-level users also see
    those of subjects not in the registry), newest request first."""
    statement = _overrides_in(who, statuses).order_by(
        Override.requested_at.desc(), Override.id.desc()
    )
    return list(session.scalars(statement.offset(offset).limit(limit)))


def overrides_by_since(session: Session, actor_ref: str, role: str, since: dt.datetime) -> int:
    """How many overrides ``actor_ref`` requested (``role`` "request") or approved
    ("approve") since ``since``."""
    if role == "request":
        condition = and_(Override.requested_by == actor_ref, Override.requested_at >= since)
    else:
        condition = and_(Override.approved_by == actor_ref, Override.approved_at >= since)
    return int(session.scalar(select(func.count()).select_from(Override).where(condition)) or 0)


def codes_turned_by_since(session: Session, actor_ref: str, since: dt.datetime) -> int:
    """How many green codes ``actor_ref`` turned by recording facts by hand since ``since``
    (withdrawn facts too: the turn happened)."""
    counting = (
        select(func.count())
        .select_from(Fact)
        .where(
            Fact.asserted_by == actor_ref,
            Fact.asserted_at >= since,
            Fact.turned_colour.is_not(None),
            Fact.source != "batch",  # a list two people approved is not one person's turns
        )
    )
    return int(session.scalar(counting) or 0)


def codes_freed_by_since(session: Session, actor_ref: str, since: dt.datetime) -> int:
    """How many red or yellow codes ``actor_ref`` turned green by withdrawing facts since
    ``since`` (手工转绿)."""
    counting = (
        select(func.count())
        .select_from(Fact)
        .where(
            Fact.retracted_by == actor_ref,
            Fact.retracted_at >= since,
            Fact.freed_colour.is_not(None),
        )
    )
    return int(session.scalar(counting) or 0)


def _placed_within(who: Principal) -> list[Any]:
    """Facts about people ``who``'s jurisdiction holds, by where their colour row places
    them (the city sees every one)."""
    if len(who.area_code) <= 4:
        return []
    placed = select(PersonColour.subject).where(
        within(cast(ColumnElement[str], PersonColour.area_code), who.area_code)
    )
    return [Fact.subject.in_(placed)]


def _turns_in(who: Principal, since: dt.datetime, way: str) -> list[Any]:
    """Hand turns since ``since`` about people ``who``'s jurisdiction holds: green codes
    turned by a fact recorded (``way`` "red"), or codes turned green by one withdrawn
    ("green")."""
    if way == "green":
        return [Fact.freed_colour.is_not(None), Fact.retracted_at >= since, *_placed_within(who)]
    return [Fact.turned_colour.is_not(None), Fact.asserted_at >= since, *_placed_within(who)]


def _turned_by(way: str) -> Any:
    return Fact.retracted_by if way == "green" else Fact.asserted_by


def _turned_at(way: str) -> Any:
    return Fact.retracted_at if way == "green" else Fact.asserted_at


def _asked_since(who: Principal, since: dt.datetime) -> list[Any]:
    return [
        Fact.retraction_requested_at.is_not(None),
        Fact.retracted_at.is_(None),
        Fact.retraction_requested_at > since,
        *_placed_within(who),
    ]


def retraction_requests_count(session: Session, who: Principal, since: dt.datetime) -> int:
    """How many requests to withdraw a diagnosis made since ``since`` wait for a second
    person in ``who``'s jurisdiction."""
    counting = select(func.count()).select_from(Fact).where(*_asked_since(who, since))
    return int(session.scalar(counting) or 0)


def retraction_requests_scoped(
    session: Session, who: Principal, since: dt.datetime, *, offset: int = 0, limit: int = 30
) -> tuple[int, list[Fact]]:
    """Requests to withdraw a diagnosis (撤销确诊申请) made since ``since`` and still waiting
    for a second person, about people ``who``'s jurisdiction holds: how many, and a page,
    oldest first (the nearest to lapsing on top)."""
    where = _asked_since(who, since)
    total = int(session.scalar(select(func.count()).select_from(Fact).where(*where)) or 0)
    rows = session.scalars(
        select(Fact)
        .where(*where)
        .order_by(Fact.retraction_requested_at, Fact.id)
        .offset(offset)
        .limit(limit)
    )
    return total, list(rows)


def turned_facts_scoped(
    session: Session,
    who: Principal,
    since: dt.datetime,
    *,
    way: str = "red",
    actor_ref: str | None = None,
    offset: int = 0,
    limit: int = 30,
) -> tuple[int, list[Fact]]:
    """Facts recorded by hand that turned a green code (手工转码), or withdrawn and turned a
    code green (``way`` "green", 手工转绿), since ``since`` in ``who``'s jurisdiction, by
    ``actor_ref`` if given: how many, and a page, newest first."""
    where = _turns_in(who, since, way)
    if actor_ref:
        where.append(_turned_by(way) == actor_ref)
    total = int(session.scalar(select(func.count()).select_from(Fact).where(*where)) or 0)
    rows = session.scalars(
        select(Fact)
        .where(*where)
        .order_by(_turned_at(way).desc(), Fact.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return total, list(rows)


def turns_by_account(
    session: Session, who: Principal, since: dt.datetime, way: str = "red", limit: int = 10
) -> list[tuple[str, int]]:
    """The accounts that turned the most codes by hand (``way`` as above) since ``since`` in
    ``who``'s jurisdiction, most first."""
    turns = func.count().label("turns")
    by = _turned_by(way)
    rows = session.execute(
        select(by, turns)
        .where(*_turns_in(who, since, way))
        .group_by(by)
        .order_by(turns.desc(), by)
        .limit(limit)
    )
    return [(str(actor), int(n)) for actor, n in rows]


def override_counts(session: Session, who: Principal) -> dict[str, int]:
    """Overrides in ``who``'s jurisdiction by status."""
    counting: Any = _overrides_in(
        who, ("requested", "active", "expired", "revoked", "rejected")
    ).with_only_columns(Override.status, func.count(), maintain_column_froms=True)
    return {
        str(status): int(n) for status, n in session.execute(counting.group_by(Override.status))
    }


def overrides_due(session: Session, now_: object, limit: int) -> list[Override]:
    """Active overrides whose time has run out."""
    return list(
        session.scalars(
            select(Override)
            .where(Override.status == "active", Override.expires_at <= now_)
            .order_by(Override.id)
            .limit(limit)
        )
    )


def colours_due(session: Session, now_: object, limit: int) -> list[str]:
    """Subjects whose stored colour has reached its recheck time."""
    return list(
        session.scalars(
            select(PersonColour.subject)
            .where(PersonColour.recheck_at <= now_)
            .order_by(PersonColour.recheck_at)
            .limit(limit)
        )
    )


def tiers_due(session: Session, now_: object, limit: int) -> list[str]:
    """Compounds whose stored tier has reached its recheck time."""
    return list(
        session.scalars(
            select(CompoundTier.compound_code)
            .where(CompoundTier.recheck_at <= now_)
            .order_by(CompoundTier.recheck_at)
            .limit(limit)
        )
    )


def open_appeal(session: Session, subject: str) -> Appeal | None:
    """The subject's appeal not yet decided, if any."""
    return session.scalars(
        select(Appeal).where(Appeal.subject == subject, Appeal.status == "open")
    ).first()


def _appeals_in(
    who: Principal, statuses: Sequence[str], street: str | None, overdue_before: object | None
) -> Select[Appeal]:
    statement = scoped(select(Appeal), Appeal.street_code, who).where(Appeal.status.in_(statuses))
    if street is not None:
        statement = statement.where(Appeal.street_code == street)
    if overdue_before is not None:
        statement = statement.where(Appeal.deadline < overdue_before)
    return statement


def appeals_scoped(
    session: Session,
    who: Principal,
    statuses: Sequence[str],
    *,
    street: str | None = None,
    overdue_before: object | None = None,
    offset: int = 0,
    limit: int = 200,
) -> list[Appeal]:
    """Appeals in the streets of ``who``'s jurisdiction (or one ``street`` of it), oldest
    deadline first; with ``overdue_before``, only those whose deadline is before it."""
    statement = _appeals_in(who, statuses, street, overdue_before)
    return list(
        session.scalars(statement.order_by(Appeal.deadline, Appeal.id).offset(offset).limit(limit))
    )


def appeal_counts(
    session: Session, who: Principal, *, street: str | None, now_: object
) -> dict[str, int]:
    """How many appeals are open, open past their deadline, and decided, in ``who``'s
    jurisdiction (or one ``street``)."""
    statement = _appeals_in(who, ("open", "upheld", "rejected"), street, None)
    is_open = Appeal.status == "open"
    row = session.execute(
        statement.with_only_columns(
            func.count().filter(is_open),
            func.count().filter(is_open, Appeal.deadline < now_),
            func.count().filter(Appeal.status != "open"),
            maintain_column_froms=True,
        )
    ).one()
    return {"open": int(row[0]), "overdue": int(row[1]), "decided": int(row[2])}


def overdue_by_street(session: Session, now_: object) -> dict[str, int]:
    """Open appeals past their deadline, counted by street (the whole city)."""
    rows = session.execute(
        select(Appeal.street_code, func.count())
        .where(Appeal.status == "open", Appeal.deadline < now_)
        .group_by(Appeal.street_code)
    )
    return {str(code): int(n) for code, n in rows}


def appeal_streets(
    session: Session, who: Principal, now_: object
) -> list[tuple[str, str, int, int]]:
    """The streets of ``who``'s jurisdiction that have open appeals: code, name, open and
    overdue counts, the most overdue first."""
    is_open = Appeal.status == "open"
    overdue = func.count().filter(Appeal.deadline < now_)
    counted: Any = select(Appeal.street_code, Area.name, func.count(), overdue)
    rows = session.execute(
        scoped(counted, Appeal.street_code, who)
        .join(Area, Area.code == Appeal.street_code)
        .where(is_open)
        .group_by(Appeal.street_code, Area.name)
        .order_by(overdue.desc(), func.count().desc(), Appeal.street_code)
    ).all()
    return [(code, name, int(n), int(late)) for code, name, n, late in rows]


def overrides_of(session: Session, subject: str, limit: int = 20) -> list[Override]:
    """A subject's manual colours, every status, newest request first."""
    return list(
        session.scalars(
            select(Override)
            .where(Override.subject == subject)
            .order_by(Override.requested_at.desc(), Override.id.desc())
            .limit(limit)
        )
    )


def appeals_of(session: Session, subject: str, limit: int = 20) -> list[Appeal]:
    """A subject's appeals, newest first."""
    return list(
        session.scalars(
            select(Appeal)
            .where(Appeal.subject == subject)
            .order_by(Appeal.filed_at.desc(), Appeal.id.desc())
            .limit(limit)
        )
    )


def notifications_of(session: Session, subject: str, limit: int = 20) -> list[RiskNotification]:
    """A subject's notifications, newest first."""
    return list(
        session.scalars(
            select(RiskNotification)
            .where(RiskNotification.subject == subject)
            .order_by(RiskNotification.created_at.desc(), RiskNotification.id.desc())
            .limit(limit)
        )
    )


def settle_notification_text(
    session: Session, notification_id: int, outcome: str, at: dt.datetime
) -> bool:
    """Mark a notification's text message settled, unless it is already; whether it was."""
    result = session.execute(
        update(RiskNotification)
        .where(RiskNotification.id == notification_id, RiskNotification.texted_at.is_(None))
        .values(texted_at=at, text_outcome=outcome)
    )
    return rows_affected(result) == 1


def decided_appeal_texts_before(session: Session, before: dt.datetime) -> list[Appeal]:
    """Decided appeals whose text is still kept, decided before ``before``."""
    return list(
        session.scalars(
            select(Appeal)
            .where(
                Appeal.status != "open",
                Appeal.decided_at < before,
                Appeal.text_purged_at.is_(None),
            )
            .order_by(Appeal.id)
        )
    )


def subjects_at_rest(session: Session, before: dt.datetime, after: str, limit: int) -> list[str]:
    """The next ``limit`` subjects after ``after``, in order, all of whose facts lie before
    ``before`` — asserted, valid from, valid until and retracted — with no standing case among
    them (a confirmed or asymptomatic case is the epidemic's record, kept)."""
    standing_case = case(
        (and_(Fact.kind.in_(sorted(CASE_KINDS)), Fact.retracted_at.is_(None)), 1), else_=0
    )
    statement = (
        select(Fact.subject)
        .where(Fact.subject > after)
        .group_by(Fact.subject)
        .having(
            func.max(Fact.asserted_at) < before,
            func.max(Fact.valid_from) < before,
            func.max(func.coalesce(Fact.valid_until, Fact.valid_from)) < before,
            func.max(func.coalesce(Fact.retracted_at, Fact.asserted_at)) < before,
            func.sum(standing_case) == 0,
        )
        .order_by(Fact.subject)
        .limit(limit)
    )
    return list(session.scalars(statement))


def delete_facts_of(session: Session, subjects: Sequence[str]) -> int:
    """Delete every fact, and the stored colour, of ``subjects``; returns the facts gone."""
    gone = 0
    for chunk in _chunks(sorted(set(subjects))):
        gone += rows_affected(session.execute(delete(Fact).where(Fact.subject.in_(chunk))))
        session.execute(delete(PersonColour).where(PersonColour.subject.in_(chunk)))
    return gone


def purge_notifications_before(session: Session, before: dt.datetime) -> int:
    """Delete notifications created before ``before``, read or not; returns how many."""
    result = session.execute(delete(RiskNotification).where(RiskNotification.created_at < before))
    return rows_affected(result)


def shown_colour(now_: dt.datetime) -> ColumnElement[str]:
    """SQL for the colour a stored row shows at ``now_``: a manual colour in force, else the
    rules' colour."""
    return case(
        (
            and_(PersonColour.override_colour.is_not(None), PersonColour.override_until > now_),
            PersonColour.override_colour,
        ),
        else_=PersonColour.colour,
    )


def colour_counts_scoped(session: Session, who: Principal, now_: dt.datetime) -> dict[str, int]:
    """Codes in ``who``'s jurisdiction by the colour they show (a manual colour in force
    first), as the cockpit counts them: red and yellow of every subject placed there (at city
    level also those no registry places); green of the registered residents who show green,
    most of whom have no colour row at all, since nothing was ever asserted about them."""
    shown = shown_colour(now_)
    counting: Any = select(shown, func.count()).where(shown != "green").group_by(shown)
    if len(who.area_code) > 4:
        counting = scoped(counting, cast(ColumnElement[str], PersonColour.area_code), who)
    out = {str(colour): int(n) for colour, n in session.execute(counting)}
    # Registered residents less those of them showing another colour; a subject is the first
    # 32 hex digits of the blind index, probed as a range so the unique index serves it.
    registered: Any = scoped(select(func.count(Person.id)), Person.area_code, who)
    not_green: Any = scoped(
        select(func.count()).where(
            shown != "green",
            exists().where(
                Person.id_number_bidx >= PersonColour.subject,
                Person.id_number_bidx < PersonColour.subject + "g",
            ),
        ),
        cast(ColumnElement[str], PersonColour.area_code),
        who,
    )
    out["green"] = int(session.scalar(registered) or 0) - int(session.scalar(not_green) or 0)
    return out


def _in_force(kind: str, now_: dt.datetime) -> list[ColumnElement[bool]]:
    """SQL conditions: a fact is one of ``kind``, not withdrawn and in force at ``now_``
    (for ``in_quarantine``: "under control", 已管控, as the cockpit counts it)."""
    return [
        Fact.kind == kind,
        Fact.retracted_at.is_(None),
        Fact.valid_from <= now_,
        or_(Fact.valid_until.is_(None), Fact.valid_until > now_),
    ]


def uncontrolled_contacts_by_street(
    session: Session, now_: dt.datetime, found_before: dt.datetime
) -> dict[str, int]:
    """Close contacts found before ``found_before`` (their fact asserted then, still in force
    at ``now_``) with no ``in_quarantine`` fact in force, counted by the street their colour
    row places them in (``""`` for those no place puts anywhere), city-wide."""
    contact = (
        select(Fact.subject)
        .where(Fact.asserted_at < found_before, *_in_force("close_contact", now_))
        .distinct()
        .subquery()
    )
    quarantined = exists().where(
        Fact.subject == contact.c.subject, *_in_force("in_quarantine", now_)
    )
    street = func.coalesce(func.substr(PersonColour.area_code, 1, 9), "")
    rows = session.execute(
        select(street, func.count())
        .select_from(contact)
        .outerjoin(PersonColour, PersonColour.subject == contact.c.subject)
        .where(~quarantined)
        .group_by(street)
    )
    return {str(code): int(n) for code, n in rows}


def coloured_scoped(
    session: Session,
    who: Principal,
    now_: dt.datetime,
    *,
    colours: Sequence[str],
    controlled: bool | None = None,
    area_code: str | None = None,
    offset: int = 0,
    limit: int = 30,
) -> tuple[int, list[tuple[PersonColour, bool]]]:
    """The colour rows showing one of ``colours`` at ``now_`` inside ``who``'s jurisdiction
    (below the city only those some place puts there, as :func:`colour_counts_scoped` counts
    them), inside ``area_code`` if given, and with or without an ``in_quarantine`` fact in
    force (``controlled``; None: both): how many, and a page of them, red first, then the most
    recently computed, each with whether it is under control."""
    shown = shown_colour(now_)
    quarantined = exists().where(
        Fact.subject == PersonColour.subject, *_in_force("in_quarantine", now_)
    )
    where: list[Any] = [shown.in_(colours)]
    if len(who.area_code) > 4:
        where.append(within(cast(ColumnElement[str], PersonColour.area_code), who.area_code))
    if area_code:
        where.append(within(cast(ColumnElement[str], PersonColour.area_code), area_code))
    if controlled is not None:
        where.append(quarantined if controlled else ~quarantined)
    total = int(session.scalar(select(func.count()).select_from(PersonColour).where(*where)) or 0)
    rows = session.execute(
        select(PersonColour, quarantined.label("controlled"))
        .where(*where)
        .order_by(
            case((shown == "red", 0), else_=1),
            PersonColour.computed_at.desc(),
            PersonColour.subject,
        )
        .offset(offset)
        .limit(limit)
    )
    return total, [(row, bool(flag)) for row, flag in rows]


def quarantine_settings(
    session: Session, subjects: Sequence[str], now_: dt.datetime
) -> dict[str, str]:
    """The setting (home, facility, hospital) of each subject's newest ``in_quarantine`` fact
    in force at ``now_`` that names one."""
    rows = session.execute(
        select(Fact.subject, Fact.setting)
        .where(
            Fact.subject.in_(subjects), Fact.setting.is_not(None), *_in_force("in_quarantine", now_)
        )
        .order_by(Fact.valid_from)
    )
    return {str(subject): str(setting) for subject, setting in rows}


def tier_counts_scoped(session: Session, who: Principal) -> dict[str, int]:
    """Stored compound tiers by tier inside ``who``'s jurisdiction."""
    counting: Any = select(CompoundTier.tier, func.count()).group_by(CompoundTier.tier)
    statement = scoped(counting, CompoundTier.compound_code, who)
    return {str(tier): int(n) for tier, n in session.execute(statement)}


def tiers_scoped(
    session: Session,
    who: Principal,
    tiers: Sequence[str],
    *,
    offset: int = 0,
    limit: int = 100,
) -> list[tuple[CompoundTier, str | None, str | None]]:
    """Compounds of ``tiers`` inside ``who``'s jurisdiction, most recent change first, each
    with its name and its community's name."""
    listing: Any = (
        select(CompoundTier, Compound.name, Area.name)
        .outerjoin(Compound, Compound.code == CompoundTier.compound_code)
        .outerjoin(Area, Area.code == Compound.community_code)
        .where(CompoundTier.tier.in_(tiers))
    )
    statement = scoped(listing, CompoundTier.compound_code, who)
    rows = session.execute(
        statement.order_by(CompoundTier.since.desc(), CompoundTier.compound_code)
        .offset(offset)
        .limit(limit)
    )
    return [(tier, name, community) for tier, name, community in rows]


def has_notification(session: Session, subject: str, kind: str) -> bool:
    """Whether ``subject`` was ever left a notification of ``kind``."""
    found = select(RiskNotification.id).where(
        RiskNotification.subject == subject, RiskNotification.kind == kind
    )
    return session.scalar(found.limit(1)) is not None

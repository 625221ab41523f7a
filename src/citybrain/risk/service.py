"""Operations of risk (赋码): facts, colours, compound tiers, overrides and appeals.

``assert_fact`` and ``retract_fact`` are the one way facts change: each writes the fact, the
audit row and the outbox event, and recomputes the subject's colour and the tiers of the
compounds they count for, all in the caller's transaction (nothing here commits). Colours are
read with ``colour_of`` (one row) and never shown stale: a stored colour past its recheck
time, or computed by a rule set no longer active, is recomputed on the spot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from citybrain.core.audit.service import SYSTEM, Actor, record, record_purge
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.scope import covers
from citybrain.core.authz.service import actor_names, actor_titles
from citybrain.core.events.service import publish
from citybrain.core.geo import repository as geo_repository
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import PersonMasked
from citybrain.core.people.service import PHONE_FIELD, masked_views
from citybrain.kit import clock
from citybrain.kit.crypto import field_cipher
from citybrain.kit.errors import (
    CitybrainError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from citybrain.risk import repository
from citybrain.risk.engine import (
    FactSnapshot,
    Outcome,
    compute_colour,
    compute_tier,
    local_time,
    no_risk_reason,
)
from citybrain.risk.kinds import (
    CASE_KINDS,
    CLINICAL_KINDS,
    COLOUR_LABELS,
    FACT_KINDS,
    SETTINGS,
    FactKind,
    kind_label,
)
from citybrain.risk.models import (
    Appeal,
    CompoundTier,
    Fact,
    Override,
    PersonColour,
    RiskNotification,
    RuleSet,
)
from citybrain.risk.rules import (
    CompiledRuleSet,
    compiled,
    compiled_by_hash,
    packaged_rules_text,
    rule_set_hash,
)
from citybrain.risk.schemas import (
    AccountTurns,
    AppealOut,
    AppealSummary,
    ColouredPage,
    ColouredPersonOut,
    ColourView,
    DecideIn,
    FactOut,
    HandTurnOut,
    HandTurnPage,
    NotificationOut,
    OverrideOut,
    ReasonView,
    RetractionQueue,
    RetractionRequestOut,
    StreetBacklog,
    TierView,
)
from citybrain.risk.settings import OVERRIDE_MAX_HOURS, risk_settings
from citybrain.risk.subjects import (
    check_subject,
    compound_of,
    household_subjects,
    person_of_subject,
    subject_of,
)

SOURCE_PATTERN = re.compile(r"[a-z][a-z0-9_.]{1,47}")
COMPOUND_PATTERN = re.compile(r"\d{15}")
MAX_EVIDENCE_BYTES = 4096
_Refusal = TypeVar("_Refusal", bound=CitybrainError)
RETRACTION_REQUEST_HOURS = 72  # a request to withdraw a case waits this long for a second
EXPORT_LIMIT = 10_000  # rows in one spreadsheet export of a staff list
APPEAL_TEXT_FIELD = "risk_appeals.text"
TOPIC_FACT_ASSERTED = "risk.fact_asserted"
TOPIC_FACT_RETRACTED = "risk.fact_retracted"
TOPIC_COLOUR_CHANGED = "risk.colour_changed"
TOPIC_TIER_CHANGED = "risk.tier_changed"
TOPIC_OVERRIDE_REQUESTED = "risk.override_requested"
TOPIC_OVERRIDE_APPLIED = "risk.override_applied"
TOPIC_OVERRIDE_ENDED = "risk.override_ended"
TOPIC_APPEAL_FILED = "risk.appeal_filed"
TOPIC_APPEAL_DECIDED = "risk.appeal_decided"
TOPIC_PERSON_NOTIFIED = "risk.person_notified"
TOPIC_RULES_ACTIVATED = "risk.rules_activated"
TOPIC_HAND_TURN_LIMIT = "risk.hand_turn_limit_reached"
TOPIC_HAND_FREE_MANY = "risk.hand_free_many"


# --- rule sets in force --------------------------------------------------------------------


def _bootstrap(session: Session) -> RuleSet:
    """Install the packaged rule set v1 as active when none is (a new database): the
    baseline shipped with the release; every later version goes through two approvers."""
    from sqlalchemy.exc import IntegrityError

    text = packaged_rules_text()
    compiled(text, 1)  # refuse to install a packaged set that does not validate
    now = clock.now()
    try:
        with session.begin_nested():
            row = RuleSet(
                version=1,
                name=compiled(text, 1).name,
                yaml_text=text,
                sha256=rule_set_hash(text),
                status="active",
                note="packaged baseline 随版本发布的基线规则",
                proposed_by=SYSTEM.ref,
                proposed_at=now,
                dry_run={},
                approvals_required=0,
                activated_at=now,
            )
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another transaction installed it first.
        found = repository.active_rule_set(session)
        if found is None:
            raise
        return found
    record(
        session,
        SYSTEM,
        "risk.rules.bootstrap",
        object_type="rule_set",
        object_id=1,
        detail={"version": 1, "sha256": row.sha256},
    )
    publish(
        session,
        TOPIC_RULES_ACTIVATED,
        {"version": 1, "sha256": row.sha256, "recompute": "none"},
        key="1",
    )
    return row


def active_rule_set(session: Session) -> CompiledRuleSet:
    """The rule set in force (the packaged v1 is installed on first use of a new database)."""
    key = repository.active_rule_set_key(session)
    if key is not None:
        known = compiled_by_hash(key[1], key[0])
        if known is not None:
            return known
    row = repository.active_rule_set(session)
    if row is None:
        row = _bootstrap(session)
    return _compile_stored(row)


def _compile_stored(row: RuleSet) -> CompiledRuleSet:
    """Compile a stored rule set, refusing one whose YAML no longer matches its hash (edited
    behind the lifecycle's back)."""
    if rule_set_hash(row.yaml_text) != row.sha256:
        raise Conflict(
            f"规则集 v{row.version} 的内容与其哈希不符，已拒绝使用",
            f"rule set v{row.version} does not match its hash; refused",
            code="rule_set_tampered",
        )
    return compiled(row.yaml_text, row.version)


def rule_set_version(session: Session, version: int) -> CompiledRuleSet:
    """A stored rule set by version."""
    row = repository.rule_set_by_version(session, version)
    if row is None:
        raise NotFound(f"规则集 v{version} 不存在", f"no rule set v{version}")
    return _compile_stored(row)


# --- facts -----------------------------------------------------------------------------------


def snapshot(fact: Fact) -> FactSnapshot:
    """The engine's view of a stored fact."""
    return FactSnapshot(
        id=fact.id,
        subject=fact.subject,
        kind=fact.kind,
        valid_from=clock.as_utc(fact.valid_from),
        valid_until=clock.as_utc(fact.valid_until) if fact.valid_until else None,
        source=fact.source,
        asserted_at=clock.as_utc(fact.asserted_at),
        setting=fact.setting,
        compound_code=fact.compound_code,
        evidence=dict(fact.evidence or {}),
        retracted_at=clock.as_utc(fact.retracted_at) if fact.retracted_at else None,
    )


def fact_out(fact: Fact) -> FactOut:
    """A fact for the API and pages."""
    return FactOut(
        id=fact.id,
        subject=fact.subject,
        kind=fact.kind,
        kind_zh=kind_label(fact.kind),
        source=fact.source,
        evidence=dict(fact.evidence or {}),
        setting=fact.setting,
        compound_code=fact.compound_code,
        asserted_by=fact.asserted_by,
        asserted_at=fact.asserted_at,
        valid_from=fact.valid_from,
        valid_until=fact.valid_until,
        retracted_at=fact.retracted_at,
        retracted_by=fact.retracted_by,
        retraction_reason=fact.retraction_reason,
        turned_colour=fact.turned_colour,
        freed_colour=fact.freed_colour,
        retraction_requested_by=fact.retraction_requested_by,
        retraction_requested_at=fact.retraction_requested_at,
        retraction_request_reason=fact.retraction_request_reason,
        retraction_pending=_retraction_pending(fact, clock.now()),
    )


EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def _aware(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None:
        raise InvalidInput(
            "时间须带时区", "times must carry a time zone (e.g. +08:00)", field=field
        )
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        utc = EARLIEST
    if not EARLIEST <= utc < LATEST:
        raise InvalidInput("时间超出范围", "the time is out of range (1970-2099)", field=field)
    return utc


def _check_fact(
    kind: str,
    source: str,
    evidence: dict[str, Any],
    valid_from: dt.datetime,
    valid_until: dt.datetime | None,
    setting: str | None,
    compound_code: str | None,
) -> tuple[dt.datetime, dt.datetime | None]:
    if kind not in FACT_KINDS:
        raise InvalidInput(
            f"未知的事实类型“{kind}”：只能是健康或出行事实",
            f"unknown fact kind '{kind}': only health and travel facts exist",
            field="kind",
        )
    if not SOURCE_PATTERN.fullmatch(source):
        raise InvalidInput("来源代码无效", "invalid source code", field="source")
    if not isinstance(evidence, dict):
        raise InvalidInput("证据应为映射", "evidence must be a mapping", field="evidence")
    try:
        size = len(json.dumps(evidence, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            "证据只能包含编号等简单数据", "evidence must be plain JSON (ids)", field="evidence"
        ) from exc
    if size > MAX_EVIDENCE_BYTES:
        raise InvalidInput("证据过大", "evidence is too large (4 KB at most)", field="evidence")
    start = _aware(valid_from, "valid_from")
    end = _aware(valid_until, "valid_until") if valid_until is not None else None
    if end is not None and end <= start:
        raise InvalidInput(
            "有效期结束时间须晚于开始时间",
            "valid_until must be after valid_from",
            field="valid_until",
        )
    if setting is not None and (kind != FactKind.IN_QUARANTINE or setting not in SETTINGS):
        raise InvalidInput(
            "隔离方式只能用于“隔离中”，且为 home、facility 或 hospital",
            "a setting belongs to in_quarantine only: home, facility or hospital",
            field="setting",
        )
    if compound_code is not None and not COMPOUND_PATTERN.fullmatch(compound_code):
        raise InvalidInput(
            "小区代码应为15位数字", "a compound code is 15 digits", field="compound_code"
        )
    return start, end


def assert_fact(
    session: Session,
    actor: Actor,
    *,
    subject: str,
    kind: str,
    source: str,
    evidence: dict[str, Any],
    valid_from: dt.datetime,
    valid_until: dt.datetime | None = None,
    setting: str | None = None,
    compound_code: str | None = None,
    dedupe_key: str | None = None,
    turned_colour: str | None = None,
    compounds_later: set[str] | None = None,
) -> Fact:
    """Assert a fact about ``subject`` (断言事实): the one way facts are added.

    Writes the fact, its audit row and a ``risk.fact_asserted`` event; recomputes the
    subject's colour (publishing ``risk.colour_changed`` when it changes) and the tiers of the
    compounds the subject counts for. A confirmed case or asymptomatic infection of a
    registered person also makes the other registered members of their household close
    contacts (evidence: the household and the case fact), in the same transaction.
    ``dedupe_key``: the same finding asserted again (a retried job) returns the standing fact.
    ``evidence`` holds ids only (record ids, the analysis run, the household), never personal
    data. ``turned_colour``: recorded by hand, the fact turns a green code this colour
    (``record_fact_by_hand`` decides). ``compounds_later``: many facts asserted in one go
    collect the compounds to recompute there, and the caller recomputes each once
    (``recompute_compounds``). Nothing is committed here.
    """
    check_subject(subject)
    start, end = _check_fact(
        kind, source, evidence, valid_from, valid_until, setting, compound_code
    )
    if dedupe_key is not None:
        standing = repository.duplicate_fact(session, subject, kind, dedupe_key[:96])
        if standing is not None:
            return standing
    now = clock.now()
    person = person_of_subject(session, subject)
    fact = Fact(
        subject=subject,
        kind=kind,
        source=source,
        evidence=dict(evidence),
        setting=setting,
        compound_code=compound_code,
        asserted_by=actor.ref[:64],
        asserted_at=now,
        valid_from=start,
        valid_until=end,
        dedupe_key=dedupe_key[:96] if dedupe_key else None,
        turned_colour=turned_colour,
    )
    session.add(fact)
    session.flush()
    area = person.area_code if person is not None else compound_code
    detail = {"subject": subject, "kind": kind, "source": source}
    if turned_colour is not None:
        detail["turned"] = f"green→{turned_colour}"
    record(
        session,
        actor,
        "risk.fact.assert",
        object_type="fact",
        object_id=fact.id,
        area_code=area,
        detail=detail,
    )
    publish(
        session,
        TOPIC_FACT_ASSERTED,
        {"fact_id": fact.id, "subject": subject, "kind": kind, "source": source},
        key=subject,
    )
    _after_change(
        session,
        subject,
        person,
        now,
        extra_compounds={compound_code},
        compounds_later=compounds_later,
    )
    if kind in CASE_KINDS and person is not None:
        # Living together is exposure until the case is taken away: from now, or from the
        # case's own start when that is later.
        exposed = max(start, now)
        for member in household_subjects(session, person):
            assert_fact(
                session,
                actor,
                subject=member,
                kind=FactKind.CLOSE_CONTACT,
                source="household",
                evidence={"household_id": person.household_id, "case_fact_id": fact.id},
                valid_from=exposed,
                dedupe_key=f"household_case:{fact.id}",
            )
    return fact


def _retraction_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) < 4:
        raise InvalidInput(
            "请说明撤销原因（至少4个字）", "state why (at least 4 characters)", field="reason"
        )
    return reason


def _standing_fact(session: Session, fact_id: int) -> Fact:
    """The fact, locked, still counting (else why not)."""
    fact = session.get(Fact, fact_id, with_for_update=True)
    if fact is None:
        raise NotFound("事实不存在", "no such fact", code="fact_not_found")
    if fact.retracted_at is not None:
        raise Conflict("该事实已撤销", "the fact is already withdrawn", code="fact_retracted")
    return fact


def _retraction_pending(fact: Fact, now: dt.datetime) -> bool:
    return (
        fact.retracted_at is None
        and fact.retraction_requested_at is not None
        and clock.as_utc(fact.retraction_requested_at)
        > now - dt.timedelta(hours=RETRACTION_REQUEST_HOURS)
    )


def retract_fact_by_hand(session: Session, who: Principal, fact_id: int, *, reason: str) -> Fact:
    """Withdraw a fact by hand (撤销事实), from a person's page or the API.

    A confirmed case or an asymptomatic infection is a diagnosis: undoing it sets a person —
    and their household's contacts — free, so it takes two people, as a manual colour does.
    The first asks (申请撤销: the request is kept on the fact with who, when and why, audited
    ``risk.fact.retract_request``; the fact still counts); within
    :data:`RETRACTION_REQUEST_HOURS` another account that may withdraw facts there confirms,
    and the fact is withdrawn with both named (a request past that is asked again). The one
    who asked cannot confirm (refused and audited). Other facts are withdrawn at once."""
    reason = _retraction_reason(reason)
    fact = _standing_fact(session, fact_id)
    if fact.kind not in CASE_KINDS:
        return retract_fact(session, who.actor, fact_id, reason=reason)
    now = clock.now()
    person = person_of_subject(session, fact.subject)
    area = person.area_code if person is not None else fact.compound_code
    if not _retraction_pending(fact, now):
        fact.retraction_requested_by = who.actor.ref[:64]
        fact.retraction_requested_at = now
        fact.retraction_request_reason = reason[:200]
        session.flush()
        record(
            session,
            who.actor,
            "risk.fact.retract_request",
            object_type="fact",
            object_id=fact.id,
            area_code=area,
            detail={"subject": fact.subject, "kind": fact.kind},
        )
        return fact
    requested_by = fact.retraction_requested_by or ""
    if requested_by == who.actor.ref:
        error = Conflict(
            "撤销确诊或无症状感染记录须两人办理：您已申请，须由另一人确认",
            "withdrawing a case takes two people: you asked, another must confirm",
            code="retraction_needs_second_person",
        )
        raise _denied(
            error,
            who.actor,
            "risk.fact.retract",
            object_type="fact",
            object_id=fact_id,
            area_code=area,
            detail={"reason": "same_person"},
        )
    asked = fact.retraction_request_reason or ""
    return retract_fact(
        session,
        who.actor,
        fact.id,
        reason=f"{asked}（确认：{reason}）"[:200],
        requested_by=requested_by,
    )


def retract_fact(
    session: Session,
    actor: Actor,
    fact_id: int,
    *,
    reason: str,
    requested_by: str | None = None,
) -> Fact:
    """Withdraw a fact (撤销): it stops counting at once; the row stays, marked. Household
    close contacts derived from a withdrawn case are withdrawn with it. Audited (with who
    asked, ``requested_by``, when a second person confirms a case's withdrawal), announced
    (``risk.fact_retracted``), colours and tiers recomputed."""
    reason = _retraction_reason(reason)
    fact = _standing_fact(session, fact_id)
    now = clock.now()
    before = compute_colour(
        [snapshot(f) for f in repository.facts_of(session, [fact.subject])[fact.subject]],
        active_rule_set(session),
        now,
    ).colour
    fact.retracted_at = now
    fact.retracted_by = actor.ref[:64]
    fact.retraction_reason = reason[:200]
    session.flush()
    person = person_of_subject(session, fact.subject)
    _after_change(session, fact.subject, person, now, extra_compounds={fact.compound_code})
    after = session.get(PersonColour, fact.subject)
    if before != "green" and after is not None and after.colour == "green":
        fact.freed_colour = before  # 手工转绿: the register lists it beside the turns to red
    detail: dict[str, Any] = {"subject": fact.subject, "kind": fact.kind}
    if requested_by:
        detail["requested_by"] = requested_by
    if fact.freed_colour:
        detail["freed"] = f"{before}→green"
    record(
        session,
        actor,
        "risk.fact.retract",
        object_type="fact",
        object_id=fact.id,
        area_code=person.area_code if person is not None else fact.compound_code,
        detail=detail,
    )
    publish(
        session,
        TOPIC_FACT_RETRACTED,
        {"fact_id": fact.id, "subject": fact.subject, "kind": fact.kind},
        key=fact.subject,
    )
    if fact.freed_colour:
        _watch_hand_frees(session, actor, now)
    if fact.kind in CASE_KINDS:
        for derived in repository.facts_by_dedupe_key(session, f"household_case:{fact.id}"):
            retract_fact(session, actor, derived.id, reason=f"病例事实 #{fact.id} 已撤销")
    return fact


def _watch_hand_frees(session: Session, actor: Actor, now: dt.datetime) -> None:
    """Past the daily number of codes one account turns green by withdrawing facts, tell
    the command centre (``risk.hand_free_many``; the cockpit alerts once a day an account).
    No refusal: clearing the analysis's wrong contacts is daily work, but mass clearing by
    one account is how codes are turned green for favour."""
    threshold = risk_settings().hand_free_daily_alert
    freed = repository.codes_freed_by_since(session, actor.ref, now - dt.timedelta(hours=24))
    if freed >= threshold:
        publish(
            session,
            TOPIC_HAND_FREE_MANY,
            {
                "actor": actor.ref,
                "area_code": actor.area_code,
                "in_24h": freed,
                "threshold": threshold,
            },
            key=actor.ref,
        )


def _cases_in_force(
    facts: Sequence[Fact], rule_set: CompiledRuleSet, now: dt.datetime
) -> list[Fact]:
    """A subject's case facts that colour them at ``now`` under ``rule_set``: asserted, not
    withdrawn, started and not ended, and not released (the rules' own release conditions
    decide, so a recovered case exposes nobody)."""
    cases = [f for f in facts if f.kind in CASE_KINDS and f.retracted_at is None]
    if not cases:
        return []
    outcome = compute_colour([snapshot(f) for f in facts], rule_set, now)
    holding = {ref for reason in outcome.reasons for ref in reason.evidence}
    return [case for case in cases if f"fact:{case.id}" in holding]


def expose_to_household(session: Session, actor: Actor, person: Person) -> list[Fact]:
    """A registered person entered a household (同户暴露): they become a close contact of every
    case in force among the household's other members, and, when they are a case in force
    themselves, the other members become close contacts of theirs.

    The facts have the shape ``assert_fact`` gives household contacts (source ``household``,
    evidence the household and the case fact, dedupe key ``household_case:<case fact id>``),
    so withdrawing the case withdraws them, and they are valid from now. A person who already
    has a fact under that key (standing, or withdrawn by a person's decision) gets no other:
    calling this again (an event delivered twice) changes nothing. Returns the facts asserted.
    """
    if person.household_id is None:
        return []
    me = subject_of(person)
    others = household_subjects(session, person)
    if not others:
        return []
    now = clock.now()
    rule_set = active_rule_set(session)
    facts = repository.facts_of(session, [me, *others])
    exposures = [
        (me, case) for other in others for case in _cases_in_force(facts[other], rule_set, now)
    ]
    exposures += [
        (other, case) for case in _cases_in_force(facts[me], rule_set, now) for other in others
    ]
    asserted: list[Fact] = []
    for exposed, case in exposures:
        key = f"household_case:{case.id}"
        if any(f.kind == FactKind.CLOSE_CONTACT and f.dedupe_key == key for f in facts[exposed]):
            continue
        asserted.append(
            assert_fact(
                session,
                actor,
                subject=exposed,
                kind=FactKind.CLOSE_CONTACT,
                source="household",
                evidence={"household_id": person.household_id, "case_fact_id": case.id},
                valid_from=now,
                dedupe_key=key,
            )
        )
    return asserted


def facts_of_subject(session: Session, subject: str) -> list[FactOut]:
    """A subject's facts, newest first."""
    check_subject(subject)
    return [fact_out(f) for f in repository.facts_for_view(session, subject)]


def standing_facts_of(session: Session, subjects: Iterable[str]) -> dict[str, list[FactOut]]:
    """The facts not withdrawn of each of ``subjects``, newest first (one read for all)."""
    return {
        subject: [fact_out(f) for f in reversed(rows) if f.retracted_at is None]
        for subject, rows in repository.facts_of(session, subjects).items()
    }


# --- colours ---------------------------------------------------------------------------------


def _residence(person: Person | None, facts: Sequence[Fact]) -> str | None:
    """Where a subject lives: the registry's area, else the latest fact placing them."""
    if person is not None:
        return person.area_code
    placed = [f for f in facts if f.compound_code and f.retracted_at is None]
    return placed[-1].compound_code if placed else None


def store_colour(
    session: Session,
    subject: str,
    row: PersonColour | None,
    outcome: Outcome,
    now: dt.datetime,
    *,
    area_code: str | None = None,
    locate: bool = False,
) -> tuple[PersonColour, str | None]:
    """Write a computed colour; publish ``risk.colour_changed`` when it changed. With
    ``locate`` (or for a new row) ``area_code`` is where the subject lives. Returns the row and
    the colour before (None when there was no row)."""
    before = row.colour if row is not None else None
    shown_before = _shown_colour(row, now) if row is not None else "green"
    if row is None:
        row = PersonColour(subject=subject)
        session.add(row)
        locate = True
    row.colour = outcome.colour
    row.reasons = outcome.reasons_json()
    row.until = outcome.until
    row.recheck_at = outcome.recheck_at
    row.rule_set_version = outcome.rule_set_version
    row.computed_at = now
    if locate:
        row.area_code = area_code
    shown_after = _shown_colour(row, now)
    if shown_after != shown_before:
        publish(
            session,
            TOPIC_COLOUR_CHANGED,
            {
                "subject": subject,
                "old": shown_before,
                "new": shown_after,
                "rule_set_version": outcome.rule_set_version,
                "overridden": row.override_colour is not None,
            },
            key=subject,
        )
    return row, before


def _shown_colour(row: PersonColour, now: dt.datetime) -> str:
    if row.override_colour and row.override_until and clock.as_utc(row.override_until) > now:
        return row.override_colour
    return row.colour


def recompute_subject(
    session: Session,
    subject: str,
    *,
    now: dt.datetime | None = None,
    rule_set: CompiledRuleSet | None = None,
    person: Person | None = None,
    locate: bool = False,
) -> PersonColour:
    """Recompute and store one subject's colour from their facts. With ``locate``, ``person``
    is their registry entry (or None) as the caller looked it up, and where the subject lives
    is refreshed from it."""
    now = now or clock.now()
    rule_set = rule_set or active_rule_set(session)
    facts = repository.facts_of(session, [subject])[subject]
    outcome = compute_colour([snapshot(f) for f in facts], rule_set, now)
    row = session.get(PersonColour, subject, with_for_update=True)
    stored, _before = store_colour(
        session,
        subject,
        row,
        outcome,
        now,
        area_code=_residence(person, facts),
        locate=locate,
    )
    session.flush()
    return stored


def relocate(session: Session, person: Person) -> None:
    """The person now lives elsewhere (their household moved): their colour row, if they have
    one, places them in their new compound, and the tiers of the old and the new are
    recomputed. Nothing to do for a person no fact was ever asserted about."""
    subject = subject_of(person)
    if session.get(PersonColour, subject) is not None:
        _after_change(session, subject, person, clock.now())


def _after_change(
    session: Session,
    subject: str,
    person: Person | None,
    now: dt.datetime,
    extra_compounds: Iterable[str | None] = (),
    compounds_later: set[str] | None = None,
) -> None:
    """Recompute a subject's colour and the tiers of every compound they count for (or
    collect those in ``compounds_later``, for the caller to recompute once)."""
    rule_set = active_rule_set(session)
    old = session.get(PersonColour, subject)
    old_area = old.area_code if old is not None else None
    row = recompute_subject(
        session, subject, now=now, rule_set=rule_set, person=person, locate=True
    )
    facts = repository.facts_of(session, [subject])[subject]
    compounds = {old_area, row.area_code, compound_of(person), *extra_compounds}
    compounds |= {f.compound_code for f in facts}
    codes = sorted(c for c in compounds if c and len(c) == 15)
    if compounds_later is not None:
        compounds_later.update(codes)
        return
    for code in codes:
        recompute_compound(session, code, now=now, rule_set=rule_set)


def recompute_compounds(session: Session, codes: Iterable[str]) -> None:
    """Recompute the tiers of ``codes``, each once (after facts asserted in one go)."""
    now = clock.now()
    rule_set = active_rule_set(session)
    for code in sorted(set(codes)):
        recompute_compound(session, code, now=now, rule_set=rule_set)


def _view(row: PersonColour, now: dt.datetime) -> ColourView:
    reasons = [ReasonView.model_validate(r) for r in row.reasons or []]
    if row.override_colour and row.override_until and clock.as_utc(row.override_until) > now:
        override = ReasonView.model_validate(row.override_reason or {})
        return ColourView(
            colour=row.override_colour,
            reasons=[override, *reasons],
            until=clock.as_utc(row.override_until),
            rule_set_version=row.rule_set_version,
            overridden=True,
        )
    return ColourView(
        colour=row.colour,
        reasons=reasons,
        until=clock.as_utc(row.until) if row.until else None,
        rule_set_version=row.rule_set_version,
        overridden=False,
    )


def _fresh(row: PersonColour, version: int, now: dt.datetime) -> PersonColour:
    """The row as it must be shown now: recomputed when past its recheck time or computed by
    another rule set; an override that ran out ended."""
    if row.override_until is not None and clock.as_utc(row.override_until) <= now:
        _end_override_on_row(session_of(row), row, now, "expired", SYSTEM)
    if row.rule_set_version != version or (
        row.recheck_at is not None and clock.as_utc(row.recheck_at) <= now
    ):
        row = recompute_subject(session_of(row), row.subject, now=now)
    return row


def session_of(row: Any) -> Session:
    """The session a loaded row belongs to."""
    session = object_session(row)
    assert session is not None
    return session


def colour_of(session: Session, subject: str, *, now: dt.datetime | None = None) -> ColourView:
    """A subject's colour with its reasons (one row read). Never stale: a colour past its
    end is recomputed, an override shows only while it lasts. No facts: green."""
    check_subject(subject)
    now = now or clock.now()
    version, row = repository.colour_row(session, subject)
    if version is None:
        version = active_rule_set(session).version
    if row is None:
        return ColourView(
            colour="green",
            reasons=[no_risk_reason()],
            until=None,
            rule_set_version=version,
            overridden=False,
        )
    return _view(_fresh(row, version, now), now)


def colours_of(
    session: Session,
    subjects: Iterable[str],
    *,
    now: dt.datetime | None = None,
    rule_set_version: int | None = None,
) -> dict[str, ColourView]:
    """Colours of many subjects at once (batched reads; only stale ones recomputed).
    ``rule_set_version``: the version in force as the caller's transaction already read it
    (a page showing a colour, then the household's), which spares reading it again."""
    wanted = sorted({check_subject(s) for s in subjects})
    now = now or clock.now()
    version = rule_set_version if rule_set_version is not None else active_rule_set(session).version
    rows = repository.colour_rows(session, wanted)
    found: dict[str, ColourView] = {}
    for subject in wanted:
        row = rows.get(subject)
        if row is None:
            found[subject] = ColourView(
                colour="green",
                reasons=[no_risk_reason()],
                until=None,
                rule_set_version=version,
                overridden=False,
            )
        else:
            found[subject] = _view(_fresh(row, version, now), now)
    return found


# --- compound tiers --------------------------------------------------------------------------


def store_tier(
    session: Session, code: str, row: CompoundTier | None, outcome: Outcome, now: dt.datetime
) -> CompoundTier | None:
    before = row.tier if row is not None else "green"
    if row is None:
        if outcome.colour == "green" and outcome.recheck_at is None:
            return None  # nothing to remember about a compound nobody's facts touch
        row = CompoundTier(compound_code=code, since=now)
        session.add(row)
    elif row.tier != outcome.colour:
        row.since = now
    row.tier = outcome.colour
    row.reasons = outcome.reasons_json()
    row.until = outcome.until
    row.recheck_at = outcome.recheck_at
    row.rule_set_version = outcome.rule_set_version
    row.computed_at = now
    if before != outcome.colour:
        publish(
            session,
            TOPIC_TIER_CHANGED,
            {
                "compound_code": code,
                "old": before,
                "new": outcome.colour,
                "rule_set_version": outcome.rule_set_version,
            },
            key=code,
        )
    return row


def compound_outcome(
    session: Session, code: str, rule_set: CompiledRuleSet, now: dt.datetime
) -> Outcome:
    """A compound's tier computed from the facts of everyone who counts for it."""
    subjects = repository.compound_subjects(session, code)
    facts = repository.facts_of(session, subjects)
    return compute_tier({s: [snapshot(f) for f in fs] for s, fs in facts.items()}, rule_set, now)


def recompute_compound(
    session: Session,
    code: str,
    *,
    now: dt.datetime | None = None,
    rule_set: CompiledRuleSet | None = None,
) -> CompoundTier | None:
    """Recompute and store a compound's tier (三色分层)."""
    now = now or clock.now()
    rule_set = rule_set or active_rule_set(session)
    outcome = compound_outcome(session, code, rule_set, now)
    row = session.get(CompoundTier, code, with_for_update=True)
    stored = store_tier(session, code, row, outcome, now)
    session.flush()
    return stored


def tier_of(
    session: Session,
    compound_code: str,
    *,
    now: dt.datetime | None = None,
    rule_set_version: int | None = None,
) -> TierView:
    """A compound's tier with reasons and since when (one row read; recomputed when past its
    recheck time or computed by another rule set). ``rule_set_version``: the version in force
    as the caller's transaction already read it; the rule set itself is read only when the
    tier must be recomputed."""
    if not COMPOUND_PATTERN.fullmatch(compound_code or ""):
        raise InvalidInput(
            "小区代码应为15位数字", "a compound code is 15 digits", field="compound_code"
        )
    now = now or clock.now()
    version = rule_set_version if rule_set_version is not None else active_rule_set(session).version
    row = session.get(CompoundTier, compound_code)
    if row is not None and (
        row.rule_set_version != version
        or (row.recheck_at is not None and clock.as_utc(row.recheck_at) <= now)
    ):
        row = recompute_compound(session, compound_code, now=now, rule_set=active_rule_set(session))
    if row is None:
        return TierView(
            compound_code=compound_code,
            tier="green",
            reasons=[no_risk_reason()],
            since=None,
            until=None,
            rule_set_version=version,
        )
    return TierView(
        compound_code=compound_code,
        tier=row.tier,
        reasons=[ReasonView.model_validate(r) for r in row.reasons or []],
        since=clock.as_utc(row.since),
        until=clock.as_utc(row.until) if row.until else None,
        rule_set_version=row.rule_set_version,
    )


# --- scoping of subjects for staff ----------------------------------------------------------


def subject_in_scope(session: Session, who: Principal, subject: str, action: str) -> Person | None:
    """The registered person behind ``subject`` if ``who`` may act on them. Subjects not in
    the registry belong to no jurisdiction below the city: only city-level users reach them.
    Denials are answered as "not found" and audited."""
    check_subject(subject)
    person = person_of_subject(session, subject)
    allowed = covers(who, person.area_code) if person is not None else len(who.area_code) <= 4
    if allowed:
        return person
    error = NotFound("未找到该人员", "no such person", code="person_not_found")
    raise _denied(
        error,
        who.actor,
        action,
        object_type="subject",
        object_id=subject,
        area_code=who.area_code,
        detail={"reason": "out_of_jurisdiction"},
    )


def _denied(
    error: _Refusal,
    actor: Actor,
    action: str,
    *,
    object_type: str,
    object_id: str | int | None,
    area_code: str | None,
    detail: dict[str, Any],
) -> _Refusal:
    """``error``, keeping the refused attempt's audit row (outcome ``denied``) after the
    failed work is rolled back."""
    return error.keep(
        lambda s: record(
            s,
            actor,
            action,
            object_type=object_type,
            object_id=object_id,
            area_code=area_code,
            outcome="denied",
            detail=detail,
        )
    )


def check_may_assert(who: Principal, kind: str) -> None:
    """Clinic staff may record a fever visit or a negative test; other facts need
    ``risk.assert``."""
    if who.can(Permission.RISK_ASSERT):
        return
    if kind in CLINICAL_KINDS and who.can(Permission.RISK_ASSERT_CLINICAL):
        return
    raise PermissionDenied(
        f"您的角色不能登记“{kind_label(kind)}”",
        f"your role may not assert {kind}",
        code="permission_denied",
    )


def record_fact_by_hand(
    session: Session,
    who: Principal,
    *,
    subject: str,
    kind: str,
    note: str = "",
    record_ids: Sequence[int] = (),
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
    setting: str | None = None,
) -> Fact:
    """Record a fact by hand (手工登记事实): from a person's page, the red and yellow list or
    the API. Clinic staff record fever visits and negative tests; other facts need
    ``risk.assert``.

    A fact that would turn a green code red or yellow (手工转码) is how codes were once turned
    with no health reason, so — clinics' fever visits aside — it must state its basis (a note
    of 4 characters or more, or the records it rests on), is marked with the colour it turns
    the code to, and counts against the account's limit of such turns in 24 hours
    (``CITYBRAIN_RISK_HAND_TURN_DAILY_LIMIT``); past the limit it is refused, the attempt
    audited and announced (``risk.hand_turn_limit_reached``: the cockpit alerts it). Many
    contacts at once belong to the collision analysis."""
    check_may_assert(who, kind)
    check_subject(subject)
    note = " ".join(note.split())
    evidence: dict[str, Any] = {"record_ids": list(record_ids)} if record_ids else {}
    if note:
        evidence["note"] = note
    source = "staff" if who.can(Permission.RISK_ASSERT) else "fever_clinic"
    start, end = _check_fact(
        kind, source, evidence, valid_from or clock.now(), valid_until, setting, None
    )
    turned = None
    if kind not in CLINICAL_KINDS:
        turned = turns_green(session, subject, kind, source, start, end, setting)
    if turned is not None:
        if len(note) < 4 and not record_ids:
            label = COLOUR_LABELS[turned]
            raise InvalidInput(
                f"这条登记将使此人的健康码由绿码转为{label[0]}：请在“依据”中写明所依据的"
                "流调报告、检测报告或通报编号（至少4个字，不写个人信息）",
                f"this record turns the person's green code {label[1].lower()}: state its "
                "basis (the trace, test report or notice it rests on; 4 characters or more, "
                "no personal data) in the note",
                field="note",
                code="basis_required",
            )
        _within_turn_limit(session, who, subject, kind)
    return assert_fact(
        session,
        who.actor,
        subject=subject,
        kind=kind,
        source=source,
        evidence=evidence,
        valid_from=start,
        valid_until=end,
        setting=setting,
        turned_colour=turned,
    )


def turns_green(
    session: Session,
    subject: str,
    kind: str,
    source: str,
    start: dt.datetime,
    end: dt.datetime | None,
    setting: str | None,
) -> str | None:
    """The colour one more fact would turn the subject's green code, when it would: their
    facts with and without it under the active rules, at the moment it starts to count (so a
    fact dated ahead is judged when it begins). A manual colour does not enter: it ends."""
    now = clock.now()
    moment = max(now, start)
    rule_set = active_rule_set(session)
    facts = [snapshot(f) for f in repository.facts_of(session, [subject])[subject]]
    if compute_colour(facts, rule_set, moment).colour != "green":
        return None
    added = FactSnapshot(
        id=0,
        subject=subject,
        kind=kind,
        valid_from=start,
        valid_until=end,
        source=source,
        asserted_at=now,
        setting=setting,
    )
    colour = compute_colour([*facts, added], rule_set, moment).colour
    return None if colour == "green" else colour


def _within_turn_limit(session: Session, who: Principal, subject: str, kind: str) -> None:
    """Refuse (and audit) a turn past the account's limit in 24 hours."""
    limit = risk_settings().hand_turn_daily_limit
    done = repository.codes_turned_by_since(
        session, who.actor.ref, clock.now() - dt.timedelta(hours=24)
    )
    if done < limit:
        return
    error = PermissionDenied(
        f"24小时内您已手工登记使 {done} 人的健康码由绿码转为红码或黄码，达到上限 {limit} 人。"
        "成批的密接、次密接请以碰撞分析结果赋码，或以“批量登记”上传名单、经指挥部批准。",
        f"in 24 hours you turned {done} green codes red or yellow by recording facts by hand, "
        f"the limit is {limit}; many contacts at once come from the collision analysis, or "
        "from a list uploaded under “Lists of people” that the command centre approves",
        code="hand_turn_daily_limit",
    )
    # Audited, and announced so the command centre sees who reached the limit.
    raise _denied(
        error,
        who.actor,
        "risk.fact.assert",
        object_type="fact",
        object_id=None,
        area_code=who.area_code,
        detail={
            "subject": subject,
            "kind": kind,
            "reason": "daily_limit",
            "in_24h": done,
            "limit": limit,
        },
    ).keep(
        lambda kept: publish(
            kept,
            TOPIC_HAND_TURN_LIMIT,
            {"actor": who.actor.ref, "area_code": who.area_code, "in_24h": done, "limit": limit},
            key=who.actor.ref,
        )
    )


# --- overrides (人工赋码) ---------------------------------------------------------------------


def override_out(row: Override) -> OverrideOut:
    """An override for the API and pages."""
    return OverrideOut(
        id=row.id,
        subject=row.subject,
        colour=row.colour,
        legal_basis=row.legal_basis,
        reason=row.reason,
        hours=row.hours,
        status=row.status,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
        appeal_id=row.appeal_id,
    )


def request_override(
    session: Session,
    who: Principal,
    *,
    subject: str,
    colour: str,
    legal_basis: str,
    reason: str,
    hours: int,
    appeal_id: int | None = None,
) -> Override:
    """Ask for a manual colour (申请人工赋码). Nothing changes until a second person approves
    it (``approve_override``). The legal basis is required; at most 72 hours."""
    who.require(Permission.OVERRIDE_REQUEST)
    person = subject_in_scope(session, who, subject, "risk.override.request")
    _within_daily_limit(session, who, "request", object_id=None)
    if colour not in COLOUR_LABELS:
        raise InvalidInput(
            "颜色应为 green、yellow 或 red", "colour must be green, yellow or red", field="colour"
        )
    if not 1 <= hours <= OVERRIDE_MAX_HOURS:
        raise InvalidInput(
            f"人工赋码最长 {OVERRIDE_MAX_HOURS} 小时",
            f"an override lasts {OVERRIDE_MAX_HOURS} hours at most",
            field="hours",
        )
    legal_basis = " ".join(legal_basis.split())
    reason = " ".join(reason.split())
    if len(legal_basis) < 4:
        raise InvalidInput(
            "人工赋码须注明法律依据", "an override needs its legal basis", field="legal_basis"
        )
    if len(reason) < 4:
        raise InvalidInput("请说明理由（至少4个字）", "state the reason", field="reason")
    row = Override(
        subject=subject,
        colour=colour,
        legal_basis=legal_basis[:300],
        reason=reason[:300],
        hours=hours,
        area_code=person.area_code if person is not None else None,
        status="requested",
        requested_by=who.actor.ref,
        requested_at=clock.now(),
        appeal_id=appeal_id,
    )
    session.add(row)
    session.flush()
    record(
        session,
        who.actor,
        "risk.override.request",
        object_type="override",
        object_id=row.id,
        area_code=row.area_code,
        detail={"subject": subject, "colour": colour, "hours": hours},
    )
    publish(
        session,
        TOPIC_OVERRIDE_REQUESTED,
        {"override_id": row.id, "subject": subject, "colour": colour},
        key=subject,
    )
    return row


def _within_daily_limit(
    session: Session, who: Principal, role: str, *, object_id: int | None
) -> None:
    """Refuse (and audit) a request or an approval past the day's limit of one person
    (``CITYBRAIN_RISK_OVERRIDE_DAILY_LIMIT`` in 24 hours): manual colours are for single
    cases, and turning many codes by hand is how they were abused."""
    limit = risk_settings().override_daily_limit
    since = clock.now() - dt.timedelta(hours=24)
    done = repository.overrides_by_since(session, who.actor.ref, role, since)
    if done < limit:
        return
    verb_zh, verb_en = ("申请", "requested") if role == "request" else ("批准", "approved")
    error = PermissionDenied(
        f"24小时内您已{verb_zh}人工赋码 {done} 次，达到上限 {limit} 次。"
        "需要为多人调整赋码时，请提出赋码规则新版本（试运行并经两人批准）。",
        f"you {verb_en} {done} manual colours in 24 hours, the limit is {limit}; to change "
        "many people's colours, propose a rule version (dry run, two approvers)",
        code="override_daily_limit",
    )
    raise _denied(
        error,
        who.actor,
        f"risk.override.{role}",
        object_type="override",
        object_id=object_id,
        area_code=who.area_code,
        detail={"reason": "daily_limit", "in_24h": done, "limit": limit},
    )


def _override_in_scope(session: Session, who: Principal, override_id: int) -> Override:
    row = session.get(Override, override_id, with_for_update=True)
    visible = row is not None and (
        covers(who, row.area_code) if row.area_code else len(who.area_code) <= 4
    )
    if row is None or not visible:
        raise NotFound("人工赋码申请不存在", "no such override", code="override_not_found")
    return row


def _notify(session: Session, subject: str, kind: str, text_zh: str, text_en: str) -> None:
    """Leave a message for the person (shown on their code page) and announce it, so that a
    job also sends it to their phone (:func:`text_to_send`)."""
    notification = RiskNotification(
        subject=subject, kind=kind, text_zh=text_zh, text_en=text_en, created_at=clock.now()
    )
    session.add(notification)
    session.flush()
    publish(
        session,
        TOPIC_PERSON_NOTIFIED,
        {"notification_id": notification.id, "kind": kind},
        key=subject,
    )


def leave_notice(session: Session, subject: str, kind: str, text_zh: str, text_en: str) -> bool:
    """Leave a message of ``kind`` for the person once (shown on their code page and texted
    to their phone, as every notification); False when they already have one of that kind."""
    check_subject(subject)
    if repository.has_notification(session, subject, kind):
        return False
    _notify(session, subject, kind, text_zh, text_en)
    return True


# What a person is asked to do when the rules turn their code (Chinese, English).
COLOUR_ADVICE: dict[str, tuple[str, str]] = {
    "red": (
        "请立即居家、不要外出，保持电话畅通，配合社区安排隔离与检测",
        "stay at home, do not go out, keep your phone on, and follow your community's "
        "arrangements for quarantine and testing",
    ),
    "yellow": (
        "请减少外出、不去人员密集场所，按要求尽快进行核酸检测",
        "go out as little as you can, avoid crowded places, and take a test as asked",
    ),
}


def tell_colour_changed(session: Session, subject: str, old: str, new: str) -> bool:
    """Tell a registered person that the rules turned their code (赋码变更通知): to red or
    yellow with the first reason and what to do, back to green that it is green again. Shown
    on their code page and texted to their phone (:func:`text_to_send`). Nobody is told about
    a manual colour here (applying and ending one tell the person themselves), nor a subject
    the registry does not hold (no code page, no phone). Returns whether a message was left."""
    row = session.get(PersonColour, subject)
    if row is None or old == new or person_of_subject(session, subject) is None:
        return False
    view = _view(row, clock.now())
    if view.overridden:
        return False
    if new == "green":
        text_zh, text_en = "您的健康码已恢复为绿码。", "Your health code is green again."
    else:
        first = view.reasons[0] if view.reasons else None
        why_zh = first.text_zh.split("。")[0] if first else ""
        why_en = first.text_en.split(". ")[0] if first else ""
        colour_zh, colour_en = COLOUR_LABELS[new]
        advice_zh, advice_en = COLOUR_ADVICE[new]
        text_zh = (
            f"您的健康码已转为{colour_zh}（{why_zh}）。{advice_zh}；"
            "对结果有疑问，可在健康码页面申诉。"
        )
        text_en = (
            f"Your health code is now {colour_en} ({why_en}). Please {advice_en}; if you "
            "think it is wrong, appeal from your code page."
        )
    _notify(session, subject, "colour_changed", text_zh[:500], text_en[:500])
    return True


@dataclasses.dataclass(frozen=True)
class TextToSend:
    """A notification's text message, ready for the SMS platform."""

    notification_id: int
    phone: str
    text: str


def text_to_send(session: Session, notification_id: int) -> TextToSend | None:
    """The text message that tells the person of notification ``notification_id`` (通知短信),
    or None when there is nothing to send: it was settled already, or the person has no phone
    on record (not registered, or a household member registered without one), which is
    settled here as ``no_phone``."""
    notification = session.get(RiskNotification, notification_id)
    if notification is None or notification.texted_at is not None:
        return None
    person = person_of_subject(session, notification.subject)
    if person is None or person.phone_enc is None:
        settle_text(session, notification_id, "no_phone")
        return None
    phone = field_cipher().decrypt(person.phone_enc, PHONE_FIELD)
    text = f"【城市大脑】{notification.text_zh} 详情请在“健康码”页面查看。"
    return TextToSend(notification_id, phone, text)


def settle_text(session: Session, notification_id: int, outcome: str) -> bool:
    """Record how notification ``notification_id``'s text message ended (``sent``,
    ``no_phone``, ``no_gateway``), once; audited without the phone. False if it was settled
    already (a job that ran twice)."""
    settled = repository.settle_notification_text(session, notification_id, outcome, clock.now())
    if settled:
        record(
            session,
            SYSTEM,
            "risk.notification.text",
            object_type="notification",
            object_id=notification_id,
            outcome="ok" if outcome == "sent" else "failed",
            detail={"outcome": outcome},
        )
    return settled


def approve_override(session: Session, who: Principal, override_id: int) -> Override:
    """Approve a manual colour as the second person (批准人工赋码); it applies at once, for the
    hours requested, and the person is notified. The requester cannot approve their own
    request: one person alone can never change a colour."""
    who.require(Permission.OVERRIDE_APPROVE)
    row = _override_in_scope(session, who, override_id)
    if row.requested_by == who.actor.ref:
        error = PermissionDenied(
            "人工赋码须由两名不同人员办理：申请人不能批准自己的申请，请由另一名有权人员批准",
            "an override needs two different people: the requester cannot approve it; "
            "another authorised person must",
            code="override_needs_second_approver",
        )
        raise _denied(
            error,
            who.actor,
            "risk.override.approve",
            object_type="override",
            object_id=override_id,
            area_code=who.area_code,
            detail={"reason": "same_person"},
        )
    if row.status != "requested":
        raise Conflict(
            "该申请已处理", "the request has been dealt with already", code="override_not_pending"
        )
    _within_daily_limit(session, who, "approve", object_id=override_id)
    now = clock.now()
    if now - clock.as_utc(row.requested_at) > dt.timedelta(hours=OVERRIDE_MAX_HOURS):
        raise Conflict(
            "申请已超过72小时，请重新申请",
            "the request is older than 72 hours; request again",
            code="override_request_expired",
        )
    colour_row = session.get(PersonColour, row.subject, with_for_update=True)
    if colour_row is None:
        person = person_of_subject(session, row.subject)
        colour_row = recompute_subject(session, row.subject, now=now, person=person)
    standing = repository.active_override(session, row.subject)
    if standing is not None:
        _end_override(session, standing, now, "revoked", who.actor)
    row.status = "active"
    row.approved_by = who.actor.ref
    row.approved_at = now
    row.expires_at = now + dt.timedelta(hours=row.hours)
    before = _shown_colour(colour_row, now)
    colour_row.override_id = row.id
    colour_row.override_colour = row.colour
    colour_row.override_until = row.expires_at
    colour_row.override_reason = _override_reason(session, row).model_dump(mode="json")
    session.flush()
    label_zh, label_en = COLOUR_LABELS[row.colour]
    until = local_time(row.expires_at)
    approver_zh, approver_en = actor_titles(session, [who.actor.ref])[who.actor.ref]
    _notify(
        session,
        row.subject,
        "override_applied",
        f"您的健康码已被人工调整为{label_zh}（编号 {row.id}），至 {until}（北京时间）。"
        f"理由：{row.reason}。法律依据：{row.legal_basis}。批准人：{approver_zh}。"
        "如有异议可提出申诉。",
        f"Your health code was set to {label_en} by hand (no. {row.id}) until {until} "
        f"(Beijing time). Reason: {row.reason}. Legal basis: {row.legal_basis}. "
        f"Approved by {approver_en}. You may appeal.",
    )
    record(
        session,
        who.actor,
        "risk.override.approve",
        object_type="override",
        object_id=row.id,
        area_code=row.area_code,
        detail={
            "subject": row.subject,
            "colour": row.colour,
            "hours": row.hours,
            "requested_by": row.requested_by,
            "legal_basis": row.legal_basis,
        },
    )
    publish(
        session,
        TOPIC_OVERRIDE_APPLIED,
        {
            "override_id": row.id,
            "subject": row.subject,
            "colour": row.colour,
            "expires_at": row.expires_at.isoformat(),
        },
        key=row.subject,
    )
    if before != row.colour:
        publish(
            session,
            TOPIC_COLOUR_CHANGED,
            {
                "subject": row.subject,
                "old": before,
                "new": row.colour,
                "rule_set_version": colour_row.rule_set_version,
                "overridden": True,
            },
            key=row.subject,
        )
    return row


def _override_reason(session: Session, row: Override) -> ReasonView:
    """The reason a manual colour shows on the person's code page: what, on which legal basis,
    set by whom (unit, role and name, so that the person and the hotline can say who did it),
    until when, and its number (人工赋码编号) to quote in an appeal."""
    assert row.expires_at is not None
    label_zh, label_en = COLOUR_LABELS[row.colour]
    until = local_time(row.expires_at)
    titles = actor_titles(session, [row.requested_by, row.approved_by])
    requested_zh, requested_en = titles[row.requested_by]
    approved_zh, approved_en = titles[row.approved_by] if row.approved_by else ("", "")
    return ReasonView(
        rule_id="override",
        text_zh=(
            f"人工赋码（{label_zh}，编号 {row.id}）：{row.reason}。法律依据：{row.legal_basis}。"
            f"由{requested_zh}申请、{approved_zh}批准，至 {until}（北京时间）。"
        ),
        text_en=(
            f"Set by hand ({label_en}, no. {row.id}): {row.reason}. "
            f"Legal basis: {row.legal_basis}. Requested by {requested_en}; "
            f"approved by {approved_en}; until {until} (Beijing time)."
        ),
        evidence=[f"override:{row.id}"],
        until=row.expires_at,
    )


def reject_override(session: Session, who: Principal, override_id: int) -> Override:
    """Turn down a request for a manual colour (audited)."""
    who.require(Permission.OVERRIDE_APPROVE)
    row = _override_in_scope(session, who, override_id)
    if row.status != "requested":
        raise Conflict(
            "该申请已处理", "the request has been dealt with already", code="override_not_pending"
        )
    row.status = "rejected"
    row.ended_at = clock.now()
    row.ended_by = who.actor.ref
    record(
        session,
        who.actor,
        "risk.override.reject",
        object_type="override",
        object_id=row.id,
        area_code=row.area_code,
        detail={"subject": row.subject},
    )
    return row


def revoke_override(session: Session, who: Principal, override_id: int) -> Override:
    """End an applied override before its time (撤销人工赋码); the person is notified."""
    who.require(Permission.OVERRIDE_APPROVE)
    row = _override_in_scope(session, who, override_id)
    if row.status != "active":
        raise Conflict(
            "该人工赋码未生效", "the override is not in force", code="override_not_active"
        )
    _end_override(session, row, clock.now(), "revoked", who.actor)
    return row


def _end_override(
    session: Session, row: Override, now: dt.datetime, status: str, actor: Actor
) -> None:
    colour_row = session.get(PersonColour, row.subject)
    if colour_row is not None and colour_row.override_id == row.id:
        _end_override_on_row(session, colour_row, now, status, actor)
        return
    row.status = status
    row.ended_at = now
    row.ended_by = actor.ref


def _end_override_on_row(
    session: Session, colour_row: PersonColour, now: dt.datetime, status: str, actor: Actor
) -> None:
    """End the override a colour row carries: expired (its time ran out) or revoked."""
    override = session.get(Override, colour_row.override_id) if colour_row.override_id else None
    before = colour_row.override_colour
    colour_row.override_id = None
    colour_row.override_colour = None
    colour_row.override_until = None
    colour_row.override_reason = None
    if override is None or override.status != "active":
        return
    override.status = status
    override.ended_at = min(now, clock.as_utc(override.expires_at)) if override.expires_at else now
    override.ended_by = actor.ref
    record(
        session,
        actor,
        f"risk.override.{'expire' if status == 'expired' else 'revoke'}",
        object_type="override",
        object_id=override.id,
        area_code=override.area_code,
        detail={"subject": override.subject},
    )
    publish(
        session,
        TOPIC_OVERRIDE_ENDED,
        {"override_id": override.id, "subject": override.subject, "status": status},
        key=override.subject,
    )
    if before != colour_row.colour:
        publish(
            session,
            TOPIC_COLOUR_CHANGED,
            {
                "subject": override.subject,
                "old": before,
                "new": colour_row.colour,
                "rule_set_version": colour_row.rule_set_version,
                "overridden": False,
                # A revoked override tells the person itself (below); an expired one does not.
                "override_ended": status,
            },
            key=override.subject,
        )
    if status == "revoked":
        _notify(
            session,
            override.subject,
            "override_ended",
            "您的健康码人工调整已撤销，恢复按规则赋码。",
            "The manual setting of your health code was withdrawn; the rules apply again.",
        )
    session.flush()


OVERRIDE_VIEWS: dict[str, tuple[str, ...]] = {
    "open": ("requested", "active"),
    "requested": ("requested",),
    "active": ("active",),
    "ended": ("expired", "revoked", "rejected"),
}
"""The manual-colour register's views (人工赋码台账): awaiting a second person and in force
(the default), each of those alone, and those that ended (expired, revoked or rejected)."""


def override_register(
    session: Session, who: Principal, *, view: str = "open", offset: int = 0, limit: int = 50
) -> list[OverrideOut]:
    """Manual colours in ``who``'s jurisdiction, newest request first, each with its person
    (masked) and the names of who requested, approved and ended it. ``view`` is one of
    :data:`OVERRIDE_VIEWS`. Reading the register is audited (who has a manual colour is
    personal)."""
    return _overrides_read(session, who, "risk.override.list", view, offset, limit)


def override_export(session: Session, who: Principal, *, view: str = "open") -> list[OverrideOut]:
    """The register as :func:`override_register` filters it, whole (at most
    :data:`EXPORT_LIMIT`), for a spreadsheet; the export is audited."""
    return _overrides_read(session, who, "risk.override.export", view, 0, EXPORT_LIMIT)


def override_summary(session: Session, who: Principal) -> dict[str, int]:
    """How many manual colours each view of the register holds."""
    may_read_overrides(who)
    counts = repository.override_counts(session, who)
    return {
        view: sum(counts.get(status, 0) for status in statuses)
        for view, statuses in OVERRIDE_VIEWS.items()
    }


def may_read_overrides(who: Principal) -> None:
    """Refuse anyone who may neither request nor approve a manual colour (the registers and
    lists of hand-made changes are theirs)."""
    if not (who.can(Permission.OVERRIDE_APPROVE) or who.can(Permission.OVERRIDE_REQUEST)):
        who.require(Permission.OVERRIDE_APPROVE)


def _overrides_read(
    session: Session, who: Principal, action: str, view: str, offset: int, limit: int
) -> list[OverrideOut]:
    may_read_overrides(who)
    if view not in OVERRIDE_VIEWS:
        raise InvalidInput(
            "视图应为 open、requested、active 或 ended",
            "view: open, requested, active or ended",
            field="view",
        )
    rows = repository.overrides_scoped(
        session, who, OVERRIDE_VIEWS[view], offset=offset, limit=limit
    )
    record(
        session,
        who.actor,
        action,
        object_type="override",
        area_code=who.area_code,
        detail={"view": view, "offset": offset, "results": len(rows)},
    )
    return _overrides_named(session, rows, with_persons=True)


TURN_WINDOWS = (1, 7, 30)  # days the hand-turn register looks back
TURN_WAYS = ("red", "green")  # turned red or yellow by a fact recorded; green by one withdrawn


def hand_turns(
    session: Session,
    who: Principal,
    *,
    days: int = 7,
    way: str = "red",
    actor_ref: str | None = None,
    offset: int = 0,
    limit: int = 30,
    action: str = "risk.turns.list",
) -> HandTurnPage:
    """The register of codes turned by hand (手工转码台账) in ``who``'s jurisdiction in the
    last ``days`` (one of :data:`TURN_WINDOWS`): green codes turned red or yellow by facts
    recorded (``way`` "red"), or codes turned green by facts withdrawn ("green", 手工转绿),
    by one account if ``actor_ref``: each with the person (masked), the fact with its basis
    and who recorded and who withdrew it, newest first; and the accounts that turned the
    most. For the same staff as the manual colours' register; reading it is audited
    (``action``; ``risk.turns.export`` for the spreadsheet)."""
    may_read_overrides(who)
    if days not in TURN_WINDOWS:
        raise InvalidInput("天数应为 1、7 或 30", "days: 1, 7 or 30", field="days")
    if way not in TURN_WAYS:
        raise InvalidInput("方向应为 red 或 green", "way: red or green", field="way")
    since = clock.now() - dt.timedelta(days=days)
    total, facts = repository.turned_facts_scoped(
        session, who, since, way=way, actor_ref=actor_ref, offset=offset, limit=limit
    )
    counts = repository.turns_by_account(session, who, since, way)
    names = actor_names(
        session,
        [f.asserted_by for f in facts]
        + [f.retracted_by for f in facts]
        + [actor for actor, _ in counts],
    )
    persons = _masked_by_subject(session, [f.subject for f in facts])
    record(
        session,
        who.actor,
        action,
        object_type="fact",
        area_code=who.area_code,
        detail={
            "days": days,
            "way": way,
            "actor": actor_ref,
            "offset": offset,
            "results": len(facts),
        },
    )
    return HandTurnPage(
        total=total,
        days=days,
        way=way,
        items=[
            HandTurnOut(
                fact=fact_out(f),
                person=persons.get(f.subject),
                recorded_by=names.get(f.asserted_by, f.asserted_by),
                retracted_by=names.get(f.retracted_by) if f.retracted_by else None,
            )
            for f in facts
        ],
        by_account=[
            AccountTurns(actor=actor, name=names.get(actor, actor), turns=n) for actor, n in counts
        ],
    )


def retraction_requests(
    session: Session, who: Principal, *, offset: int = 0, limit: int = 30
) -> RetractionQueue:
    """The requests to withdraw a diagnosis waiting for a second person in ``who``'s
    jurisdiction (撤销确诊待确认), the nearest to lapsing first: each with the person
    (masked), the case, who asked, why and until when. For those who may withdraw facts;
    reading it is audited (``risk.retractions.list``)."""
    who.require(Permission.RISK_ASSERT)
    now = clock.now()
    lapse = dt.timedelta(hours=RETRACTION_REQUEST_HOURS)
    total, facts = repository.retraction_requests_scoped(
        session, who, now - lapse, offset=offset, limit=limit
    )
    names = actor_names(session, [f.retraction_requested_by for f in facts])
    persons = _masked_by_subject(session, [f.subject for f in facts])
    record(
        session,
        who.actor,
        "risk.retractions.list",
        object_type="fact",
        area_code=who.area_code,
        detail={"offset": offset, "results": len(facts)},
    )
    items = []
    for fact in facts:
        asked_by = fact.retraction_requested_by or ""
        items.append(
            RetractionRequestOut(
                fact=fact_out(fact),
                person=persons.get(fact.subject),
                requested_by=names.get(asked_by, asked_by),
                lapses_at=clock.as_utc(fact.retraction_requested_at or now) + lapse,
            )
        )
    return RetractionQueue(total=total, items=items)


def retraction_requests_waiting(session: Session, who: Principal) -> int:
    """How many requests to withdraw a diagnosis wait for a second person in ``who``'s
    jurisdiction (for the overview's reminder; no names, not audited)."""
    since = clock.now() - dt.timedelta(hours=RETRACTION_REQUEST_HOURS)
    return repository.retraction_requests_count(session, who, since)


def _require_request_waiting(fact: Fact) -> None:
    if not _retraction_pending(fact, clock.now()):
        raise Conflict(
            "该事实没有待确认的撤销申请（可能已被驳回或已失效）",
            "no withdrawal of this fact is waiting (turned down or lapsed)",
            code="no_retraction_request",
        )


def confirm_retraction_request(
    session: Session, who: Principal, fact_id: int, *, reason: str
) -> Fact:
    """The second person confirms a waiting request to withdraw a diagnosis (确认撤销), as
    :func:`retract_fact_by_hand` does; but only one still waiting: a request turned down or
    lapsed meanwhile must not become a new request in the confirming person's name."""
    fact = _standing_fact(session, fact_id)
    subject_in_scope(session, who, fact.subject, "risk.fact.retract")
    _require_request_waiting(fact)
    return retract_fact_by_hand(session, who, fact_id, reason=reason)


def decline_retraction_request(
    session: Session, who: Principal, fact_id: int, *, reason: str
) -> Fact:
    """Turn down a request to withdraw a diagnosis (驳回撤销申请), or take one's own back:
    the case keeps counting, the request is cleared, and who asked, why, who declined and
    why stay in the audit trail (``risk.fact.retract_request_decline``)."""
    who.require(Permission.RISK_ASSERT)
    reason = _retraction_reason(reason)
    fact = _standing_fact(session, fact_id)
    person = subject_in_scope(session, who, fact.subject, "risk.fact.retract_request_decline")
    _require_request_waiting(fact)
    detail = {
        "subject": fact.subject,
        "kind": fact.kind,
        "requested_by": fact.retraction_requested_by,
        "request_reason": fact.retraction_request_reason,
        "reason": reason,
    }
    fact.retraction_requested_by = None
    fact.retraction_requested_at = None
    fact.retraction_request_reason = None
    session.flush()
    record(
        session,
        who.actor,
        "risk.fact.retract_request_decline",
        object_type="fact",
        object_id=fact.id,
        area_code=person.area_code if person is not None else fact.compound_code,
        detail=detail,
    )
    return fact


def overrides_of_subject(session: Session, subject: str) -> list[OverrideOut]:
    """A person's manual colours, every status, newest first, with who requested, approved
    and ended each by name (for the staff's page of the person)."""
    check_subject(subject)
    return _overrides_named(session, repository.overrides_of(session, subject))


def _overrides_named(
    session: Session, rows: Sequence[Override], *, with_persons: bool = False
) -> list[OverrideOut]:
    persons = _masked_by_subject(session, [r.subject for r in rows]) if with_persons else {}
    names = actor_names(
        session, [ref for r in rows for ref in (r.requested_by, r.approved_by, r.ended_by)]
    )
    out = []
    for row in rows:
        view = override_out(row)
        view.person = persons.get(row.subject)
        view.names = {
            ref: names[ref]
            for ref in (row.requested_by, row.approved_by, row.ended_by)
            if ref is not None
        }
        out.append(view)
    return out


# The red and yellow list's views: which colours, and whether under control (已管控).
COLOURED_VIEWS = {"all": ("red", "yellow"), "red": ("red",), "yellow": ("yellow",)}
CONTROL_VIEWS = {"all": None, "uncontrolled": False, "controlled": True}


def coloured_people(
    session: Session,
    who: Principal,
    *,
    colour: str = "all",
    control: str = "all",
    area_code: str | None = None,
    offset: int = 0,
    limit: int = 30,
    action: str = "risk.people.list",
) -> ColouredPage:
    """The people showing red or yellow in ``who``'s jurisdiction (红黄码人员名单), red first:
    the list those who find them and put them under control work from. ``colour`` is one of
    :data:`COLOURED_VIEWS`, ``control`` of :data:`CONTROL_VIEWS` (``uncontrolled``: no
    ``in_quarantine`` fact in force, 未管控), ``area_code`` narrows to a part of the
    jurisdiction. Persons are shown masked; reading the list is audited (``action``)."""
    who.require(Permission.RISK_PEOPLE)
    if colour not in COLOURED_VIEWS:
        raise InvalidInput(
            "颜色应为 all、red 或 yellow", "colour: all, red or yellow", field="colour"
        )
    if control not in CONTROL_VIEWS:
        raise InvalidInput(
            "管控状态应为 all、uncontrolled 或 controlled",
            "control: all, uncontrolled or controlled",
            field="control",
        )
    area = (area_code or "").strip() or None
    if area is not None and not (area.isdigit() and covers(who, area)):
        raise InvalidInput(
            "区域代码应为辖区内的数字代码", "area: a code inside your jurisdiction", field="area"
        )
    now = clock.now()
    total, rows = repository.coloured_scoped(
        session,
        who,
        now,
        colours=COLOURED_VIEWS[colour],
        controlled=CONTROL_VIEWS[control],
        area_code=area,
        offset=offset,
        limit=limit,
    )
    record(
        session,
        who.actor,
        action,
        object_type="subject",
        area_code=area or who.area_code,
        detail={"colour": colour, "control": control, "offset": offset, "results": len(rows)},
    )
    subjects = [row.subject for row, _ in rows]
    persons = _masked_by_subject(session, subjects)
    settings = repository.quarantine_settings(session, subjects, now)
    places = geo_repository.names_of(session, [row.area_code or "" for row, _ in rows])
    items = []
    for row, controlled in rows:
        view = _view(row, now)
        items.append(
            ColouredPersonOut(
                subject=row.subject,
                colour=view.colour,
                reasons=view.reasons,
                until=view.until,
                overridden=view.overridden,
                area_code=row.area_code,
                place_name=places.get(row.area_code or ""),
                controlled=controlled,
                setting=settings.get(row.subject) if controlled else None,
                person=persons[row.subject],
            )
        )
    return ColouredPage(total=total, items=items)


def masked_person_of(session: Session, subject: str) -> PersonMasked | None:
    """The registered person behind ``subject`` as staff see them (masked), if any."""
    return _masked_by_subject(session, [subject])[subject]


def _masked_by_subject(session: Session, subjects: Sequence[str]) -> dict[str, PersonMasked | None]:
    """The registered persons behind ``subjects`` as staff see them (masked); None for a
    subject not in the registry."""
    persons = {s: person_of_subject(session, s) for s in dict.fromkeys(subjects)}
    found = [p for p in persons.values() if p is not None]
    masked = dict(zip((p.id for p in found), masked_views(session, found), strict=True))
    return {s: masked[p.id] if p is not None else None for s, p in persons.items()}


# --- appeals (申诉) --------------------------------------------------------------------------


def file_appeal(
    session: Session, actor: Actor, *, subject: str, text: str, street_code: str
) -> Appeal:
    """A person's appeal against their colour (提出申诉), from their code page. It goes to the
    street office's queue (``street_code``: the first 9 digits of where they live) with a
    deadline; the text is kept encrypted. One open appeal per person."""
    check_subject(subject)
    text = " ".join(text.split())
    if not 4 <= len(text) <= 1000:
        raise InvalidInput(
            "请填写申诉理由（4至1000字）", "write the appeal (4 to 1000 characters)", field="text"
        )
    if not re.fullmatch(r"\d{9}", street_code or "") or not repository.area_exists(
        session, street_code, "street"
    ):
        raise InvalidInput("街道代码无效", "no such street", field="street_code")
    if repository.open_appeal(session, subject) is not None:
        raise Conflict(
            "您已有一件申诉正在处理，请等待结果",
            "you have an appeal being dealt with; wait for its outcome",
            code="appeal_open",
        )
    now = clock.now()
    shown = colour_of(session, subject, now=now)
    appeal = Appeal(
        subject=subject,
        street_code=street_code,
        text_enc=field_cipher().encrypt(text, APPEAL_TEXT_FIELD),
        colour=shown.colour,
        filed_by=actor.ref[:64],
        filed_at=now,
        deadline=now + dt.timedelta(hours=risk_settings().appeal_deadline_hours),
        status="open",
    )
    session.add(appeal)
    session.flush()
    record(
        session,
        actor,
        "risk.appeal.file",
        object_type="appeal",
        object_id=appeal.id,
        area_code=street_code,
        detail={"subject": subject, "colour": shown.colour},
    )
    publish(
        session,
        TOPIC_APPEAL_FILED,
        {"appeal_id": appeal.id, "subject": subject, "street_code": street_code},
        key=subject,
    )
    return appeal


def appeal_out(row: Appeal, now: dt.datetime | None = None) -> AppealOut:
    """An appeal with its text decrypted (for the person and the street office)."""
    now = now or clock.now()
    return AppealOut(
        id=row.id,
        subject=row.subject,
        street_code=row.street_code,
        text=field_cipher().decrypt(row.text_enc, APPEAL_TEXT_FIELD),
        text_purged=row.text_purged_at is not None,
        colour=row.colour,
        filed_at=row.filed_at,
        deadline=row.deadline,
        overdue=row.status == "open" and clock.as_utc(row.deadline) < now,
        status=row.status,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        outcome_zh=row.outcome_zh,
        outcome_en=row.outcome_en,
        action=row.action,
    )


APPEAL_VIEWS = ("open", "overdue", "decided")
"""The appeals queue's views: every open appeal, the open ones past their deadline (已逾期),
the decided ones."""


def _queue_street(who: Principal, street: str | None) -> str | None:
    """``street`` checked as a street code inside ``who``'s jurisdiction (or None)."""
    if not street:
        return None
    if not re.fullmatch(r"\d{9}", street) or not covers(who, street):
        raise InvalidInput(
            "街道代码应为本辖区内的9位代码",
            "street: a 9-digit code in your jurisdiction",
            field="street",
        )
    return street


def appeal_queue(
    session: Session,
    who: Principal,
    *,
    status: str = "open",
    street: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> list[AppealOut]:
    """The appeals of the streets in ``who``'s jurisdiction (街道申诉队列), or of one street
    of it, nearest deadline first, with each appellant as staff see them (masked). ``status``
    is one of :data:`APPEAL_VIEWS`. Reading the queue is audited (appeal texts are
    personal)."""
    return _appeals_read(session, who, "risk.appeal.list", status, street, offset, limit)


def appeal_export(
    session: Session, who: Principal, *, status: str = "open", street: str | None = None
) -> list[AppealOut]:
    """The queue as :func:`appeal_queue` filters it, whole (at most
    :data:`EXPORT_LIMIT` appeals), for a spreadsheet; the export is audited."""
    return _appeals_read(session, who, "risk.appeal.export", status, street, 0, EXPORT_LIMIT)


def _appeals_read(
    session: Session,
    who: Principal,
    action: str,
    status: str,
    street: str | None,
    offset: int,
    limit: int,
) -> list[AppealOut]:
    who.require(Permission.APPEAL_DECIDE)
    if status not in APPEAL_VIEWS:
        raise InvalidInput(
            "状态应为 open、overdue 或 decided", "status: open, overdue or decided", field="status"
        )
    street = _queue_street(who, street)
    now = clock.now()
    rows = repository.appeals_scoped(
        session,
        who,
        ("upheld", "rejected") if status == "decided" else ("open",),
        street=street,
        overdue_before=now if status == "overdue" else None,
        offset=offset,
        limit=limit,
    )
    record(
        session,
        who.actor,
        action,
        object_type="appeal",
        area_code=street or who.area_code,
        detail={"status": status, "offset": offset, "results": len(rows)},
    )
    appellants = _masked_by_subject(session, [r.subject for r in rows])
    out = []
    for row in rows:
        view = appeal_out(row, now)
        view.appellant = appellants[row.subject]
        out.append(view)
    return out


def uncontrolled_contacts_by_street(session: Session) -> dict[str, int]:
    """Close contacts not under control ``control_deadline_hours`` after they were found
    (密接超时未管控), by the street they are placed in (``""``: placed nowhere), city-wide:
    for the command centre's alerts (counts only)."""
    now = clock.now()
    hours = risk_settings().control_deadline_hours
    return repository.uncontrolled_contacts_by_street(session, now, now - dt.timedelta(hours=hours))


def overdue_appeals_by_street(session: Session) -> dict[str, int]:
    """Open appeals past their deadline, by street, city-wide (for the command centre's
    alerts; counts only)."""
    return repository.overdue_by_street(session, clock.now())


def appeal_summary(session: Session, who: Principal, *, street: str | None = None) -> AppealSummary:
    """The queue's counts (open, overdue, decided) and the streets with open appeals, the
    most overdue first."""
    who.require(Permission.APPEAL_DECIDE)
    street = _queue_street(who, street)
    now = clock.now()
    counts = repository.appeal_counts(session, who, street=street, now_=now)
    streets = [
        StreetBacklog(code=code, name=name, open=n, overdue=late)
        for code, name, n, late in repository.appeal_streets(session, who, now)
    ]
    return AppealSummary(**counts, streets=streets)


def decide_appeal(session: Session, who: Principal, appeal_id: int, data: DecideIn) -> Appeal:
    """Decide an appeal (处理申诉): upheld (withdrawing the fact it disputes, or requesting a
    manual colour that a second person must approve) or rejected. The outcome is recorded,
    audited, announced and shown to the person."""
    who.require(Permission.APPEAL_DECIDE)
    appeal = session.get(Appeal, appeal_id, with_for_update=True)
    if appeal is None or not covers(who, appeal.street_code):
        raise NotFound("申诉不存在", "no such appeal", code="appeal_not_found")
    if appeal.status != "open":
        raise Conflict("该申诉已处理", "the appeal was decided already", code="appeal_decided")
    note = " ".join(data.note.split())
    if data.outcome == "rejected" and data.action != "none":
        raise InvalidInput(
            "驳回申诉时不能同时撤销事实或调整赋码",
            "a rejected appeal takes no action",
            field="action",
        )
    if data.action == "retract_fact":
        fact = session.get(Fact, data.fact_id) if data.fact_id else None
        if fact is None or fact.subject != appeal.subject:
            raise InvalidInput(
                "请选择申诉人本人的一条事实", "choose one of the appellant's facts", field="fact_id"
            )
        if fact.kind in CASE_KINDS:
            raise InvalidInput(
                "撤销确诊或无症状感染记录须两人办理：请在此人的赋码页面申请撤销，由另一人确认，"
                "再处理申诉",
                "withdrawing a case takes two people: ask on the person's page for another to "
                "confirm, then decide the appeal",
                field="fact_id",
            )
        retract_fact(session, who.actor, fact.id, reason=f"申诉 #{appeal.id} 成立：{note}"[:200])
        appeal.fact_id = fact.id
    elif data.action == "request_override":
        if data.override_colour is None or not data.legal_basis or not data.hours:
            raise InvalidInput(
                "申请人工赋码须填写颜色、法律依据和小时数",
                "an override needs a colour, a legal basis and hours",
                field="override_colour",
            )
        override = request_override(
            session,
            who,
            subject=appeal.subject,
            colour=data.override_colour,
            legal_basis=data.legal_basis,
            reason=f"申诉 #{appeal.id}：{note}",
            hours=data.hours,
            appeal_id=appeal.id,
        )
        appeal.override_id = override.id
    now = clock.now()
    appeal.status = data.outcome
    appeal.decided_by = who.actor.ref
    appeal.decided_at = now
    appeal.action = data.action
    verdict_zh = "申诉成立" if data.outcome == "upheld" else "申诉不成立"
    verdict_en = "Appeal upheld" if data.outcome == "upheld" else "Appeal rejected"
    follow_zh, follow_en = {
        "retract_fact": (
            "相关记录已撤销，健康码已重新计算。",
            "The record was withdrawn and the code recomputed.",
        ),
        "request_override": (
            "已申请人工调整健康码，经第二人批准后生效。",
            "A manual colour was requested; it applies once a second person approves it.",
        ),
        "none": ("", ""),
    }[data.action]
    appeal.outcome_zh = f"{verdict_zh}：{note}。{follow_zh}"[:500]
    appeal.outcome_en = f"{verdict_en}: {note}. {follow_en}"[:500]
    _notify(session, appeal.subject, "appeal_decided", appeal.outcome_zh, appeal.outcome_en)
    session.flush()
    record(
        session,
        who.actor,
        "risk.appeal.decide",
        object_type="appeal",
        object_id=appeal.id,
        area_code=appeal.street_code,
        detail={
            "subject": appeal.subject,
            "outcome": data.outcome,
            "action": data.action,
            "fact_id": appeal.fact_id,
            "override_id": appeal.override_id,
            "overdue": clock.as_utc(appeal.deadline) < now,
        },
    )
    publish(
        session,
        TOPIC_APPEAL_DECIDED,
        {
            "appeal_id": appeal.id,
            "subject": appeal.subject,
            "outcome": data.outcome,
            "action": data.action,
        },
        key=appeal.subject,
    )
    return appeal


def appeals_of(session: Session, subject: str) -> list[AppealOut]:
    """A person's own appeals with their outcomes (for their code page)."""
    check_subject(subject)
    now = clock.now()
    return [appeal_out(r, now) for r in repository.appeals_of(session, subject)]


def notifications_of(session: Session, subject: str) -> list[NotificationOut]:
    """Messages for the person: their code turned by the rules, overrides applied to them,
    their appeals decided."""
    check_subject(subject)
    return [
        NotificationOut(
            id=n.id, kind=n.kind, text_zh=n.text_zh, text_en=n.text_en, created_at=n.created_at
        )
        for n in repository.notifications_of(session, subject)
    ]


# --- keeping colours current ----------------------------------------------------------------


def sweep(session: Session, *, now: dt.datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """Recompute colours and tiers past their recheck time and end overrides whose time ran
    out (the periodic job; reads do the same lazily). Returns counts."""
    now = now or clock.now()
    rule_set = active_rule_set(session)
    ended = 0
    for override in repository.overrides_due(session, now, limit):
        _end_override(session, override, now, "expired", SYSTEM)
        ended += 1
    colours = repository.colours_due(session, now, limit)
    for subject in colours:
        recompute_subject(session, subject, now=now, rule_set=rule_set)
    tiers = repository.tiers_due(session, now, limit)
    for code in tiers:
        recompute_compound(session, code, now=now, rule_set=rule_set)
    return {"overrides_ended": ended, "colours": len(colours), "tiers": len(tiers)}


def person_registered(session: Session, person_ref: str) -> bool:
    """A person joined the registry: a case in force in the household they joined makes them
    a close contact (and theirs makes the household's), see ``expose_to_household``; if facts
    about them exist already (found by the analysis before they registered), their colour row
    learns where they live and their compound's tier counts them. Returns whether anything
    was recomputed."""
    person = session.scalars(select(Person).where(Person.ref == person_ref)).first()
    if person is None:
        return False
    exposed = expose_to_household(session, SYSTEM, person)
    subject = person.id_number_bidx[:32]
    if not repository.facts_of(session, [subject])[subject]:
        return bool(exposed)
    _after_change(session, subject, person, clock.now())
    return True


def purge_expired_appeal_texts(session: Session) -> int:
    """Clear the text of every appeal decided more than ``appeal_text_retention_days`` ago
    (what a person wrote is personal, and kept no longer than needed); the appeal, its
    outcome and its audit rows stay. Audited when any was cleared. Never commits."""
    days = risk_settings().appeal_text_retention_days
    now = clock.now()
    before = now - dt.timedelta(days=days)
    cipher = field_cipher()
    rows = repository.decided_appeal_texts_before(session, before)
    for row in rows:
        row.text_enc = cipher.encrypt("", APPEAL_TEXT_FIELD)
        row.text_purged_at = now
    session.flush()
    record_purge(
        session,
        "risk.appeal_texts_purge",
        object_type="appeal",
        deleted=len(rows),
        before=before,
        retention_days=days,
    )
    return len(rows)


FACT_PURGE_BATCH = 500


def purge_expired_facts(session: Session) -> int:
    """Delete the facts of every person at rest (事实数据到期删除): all their facts lie more
    than ``fact_retention_days`` in the past, none is a standing case, and their code shows
    green with nothing set by hand — so without the facts it is green just the same, and replay
    still agrees. Their stored colour goes with the facts. A case's facts (and the release that
    ends them) stay as the epidemic's record; so do overrides, appeals and audit rows. Audited
    when any went; returns how many facts. Never commits."""
    days = risk_settings().fact_retention_days
    now = clock.now()
    before = now - dt.timedelta(days=days)
    gone, after = 0, ""
    while batch := repository.subjects_at_rest(session, before, after, FACT_PURGE_BATCH):
        after = batch[-1]
        views = colours_of(session, batch, now=now)
        resting = [s for s in batch if views[s].colour == "green" and not views[s].overridden]
        gone += repository.delete_facts_of(session, resting)
    session.flush()
    record_purge(
        session,
        "risk.facts_purge",
        object_type="fact",
        deleted=gone,
        before=before,
        retention_days=days,
    )
    return gone


def purge_expired_notifications(session: Session) -> int:
    """Delete the persons' notifications older than ``notification_retention_days`` (the
    overrides and appeals they told of stay, with their audit rows); audited when any went.
    Never commits."""
    days = risk_settings().notification_retention_days
    before = clock.now() - dt.timedelta(days=days)
    gone = repository.purge_notifications_before(session, before)
    record_purge(
        session,
        "risk.notifications_purge",
        object_type="risk_notification",
        deleted=gone,
        before=before,
        retention_days=days,
    )
    return gone

"""Rule-set lifecycle (规则版本管理): propose with a dry run, approve by different people,
activate (recomputing every colour and tier), and replay (prove every stored colour follows
from the facts).

Approval policy: the proposer may not approve their own proposal; two approvers other than
the proposer activate a version, three when its dry run changes more subjects than
``CITYBRAIN_RISK_THIRD_APPROVAL_THRESHOLD`` (default 1,000). The same person cannot approve
twice. The dry run is recomputed at approval time if the active version changed since it
was taken, so approvers always sign what activating would do now.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, record
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.events.service import publish
from citybrain.core.geo import repository as geo_repository
from citybrain.kit import clock
from citybrain.kit.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from citybrain.risk import repository
from citybrain.risk.engine import (
    FactSnapshot,
    Outcome,
    RuleEvaluationError,
    compute_colour,
    compute_tier,
)
from citybrain.risk.kinds import FACT_KINDS, FactKind
from citybrain.risk.models import RuleSet, RuleSetApproval
from citybrain.risk.rules import CompiledRuleSet, compiled, parse_rule_set
from citybrain.risk.schemas import (
    ApprovalOut,
    DistrictChange,
    DryRunView,
    ReplayReport,
    RuleSetDetail,
    RuleSetOut,
)
from citybrain.risk.service import (
    TOPIC_RULES_ACTIVATED,
    active_rule_set,
    snapshot,
    store_colour,
    store_tier,
)
from citybrain.risk.settings import risk_settings

TOPIC_RULES_PROPOSED = "risk.rules_proposed"
TOPIC_RULES_APPROVED = "risk.rules_approved"
UNPLACED = "unplaced"
Progress = Callable[[str, int], None]


# --- dry run ---------------------------------------------------------------------------------


def _self_test(candidate: CompiledRuleSet, now: dt.datetime) -> None:
    """Run every rule over synthetic facts of each kind alone and of all kinds together, so a
    rule whose CEL fails at run time is refused before anyone signs it."""
    start = now - dt.timedelta(days=1)
    every = [
        FactSnapshot(
            id=n,
            subject="0" * 32,
            kind=kind,
            valid_from=start,
            setting="home" if kind == FactKind.IN_QUARANTINE else None,
            compound_code="4" * 15,
        )
        for n, kind in enumerate(sorted(FACT_KINDS), start=1)
    ]
    try:
        for fact in every:
            compute_colour([fact], candidate, now)
            compute_tier({fact.subject: [fact]}, candidate, now)
        compute_colour(every, candidate, now)
        compute_tier({"0" * 32: every}, candidate, now)
    except RuleEvaluationError as exc:
        raise InvalidInput(
            f"规则在试运行时出错：{exc}",
            f"a rule fails when run: {exc}",
            code="rule_refused",
            field="yaml_text",
        ) from exc


def _district(area_code: str | None) -> str:
    return area_code[:6] if area_code and len(area_code) >= 6 else UNPLACED


def dry_run(
    session: Session,
    candidate: CompiledRuleSet,
    base: CompiledRuleSet,
    now: dt.datetime,
    *,
    progress: Progress | None = None,
) -> DryRunView:
    """How many subjects (by district) and compounds would change colour if ``candidate``
    replaced ``base``, against the facts as they are (both computed at ``now``), streamed a
    batch at a time."""
    _self_test(candidate, now)
    size = risk_settings().batch_size
    changes: dict[str, Counter[str]] = {}
    subjects = changed = 0
    after = ""
    try:
        while batch := repository.subjects_after(session, after, size):
            facts = repository.facts_of(session, batch)
            rows = repository.colour_rows(session, batch)
            for subject in batch:
                snaps = [snapshot(f) for f in facts[subject]]
                old = compute_colour(snaps, base, now).colour
                new = compute_colour(snaps, candidate, now).colour
                subjects += 1
                if old != new:
                    changed += 1
                    row = rows.get(subject)
                    counter = changes.setdefault(
                        _district(row.area_code if row else None), Counter()
                    )
                    counter["changed"] += 1
                    counter[new] += 1
            after = batch[-1]
            if progress:
                progress("subjects", subjects)
        compounds = compounds_changed = 0
        after = ""
        while codes := repository.compounds_after(session, after, max(10, size // 10)):
            placed = repository.subjects_placed_in(session, codes)
            facts = repository.facts_of(session, {s for ss in placed.values() for s in ss})
            for code in codes:
                inputs = {s: [snapshot(f) for f in facts[s]] for s in placed[code]}
                compounds += 1
                if (
                    compute_tier(inputs, base, now).colour
                    != compute_tier(inputs, candidate, now).colour
                ):
                    compounds_changed += 1
            after = codes[-1]
    except RuleEvaluationError as exc:
        raise InvalidInput(
            f"规则在现有事实上运行出错：{exc}",
            f"a rule fails on the facts on record: {exc}",
            code="rule_refused",
            field="yaml_text",
        ) from exc
    names = geo_repository.names_of(session, [c for c in changes if c != UNPLACED])
    by_district = [
        DistrictChange(
            code=code,
            name=names.get(code, "未定位" if code == UNPLACED else code),
            changed=counter["changed"],
            to_red=counter["red"],
            to_yellow=counter["yellow"],
            to_green=counter["green"],
        )
        for code, counter in sorted(changes.items())
    ]
    return DryRunView(
        computed_at=now,
        base_version=base.version,
        subjects=subjects,
        changed=changed,
        by_district=by_district,
        compounds=compounds,
        compounds_changed=compounds_changed,
    )


def _required(dry: DryRunView) -> int:
    return 3 if dry.changed > risk_settings().third_approval_threshold else 2


# --- lifecycle -------------------------------------------------------------------------------


def propose_rule_set(
    session: Session, who: Principal, yaml_text: str, *, note: str | None = None
) -> RuleSet:
    """Propose a new rule-set version (提出规则版本): validated (a rule naming anything but
    health and travel facts is refused), stored with its hash and a dry run against the
    current facts. Nothing changes until it is approved."""
    who.require(Permission.RULES_PROPOSE)
    candidate = parse_rule_set(yaml_text)
    base = active_rule_set(session)
    version = repository.next_version(session)
    now = clock.now()
    candidate = compiled(yaml_text, version)
    dry = dry_run(session, candidate, base, now)
    row = RuleSet(
        version=version,
        name=candidate.name,
        yaml_text=yaml_text,
        sha256=candidate.sha256,
        status="proposed",
        note=" ".join((note or "").split())[:500] or None,
        proposed_by=who.actor.ref,
        proposed_at=now,
        dry_run=dry.model_dump(mode="json"),
        approvals_required=_required(dry),
    )
    session.add(row)
    session.flush()
    detail = {
        "version": version,
        "sha256": row.sha256,
        "changed": dry.changed,
        "approvals_required": row.approvals_required,
    }
    record(
        session,
        who.actor,
        "risk.rules.propose",
        object_type="rule_set",
        object_id=version,
        area_code=who.area_code,
        detail=detail,
    )
    publish(session, TOPIC_RULES_PROPOSED, detail, key=str(version))
    return row


def _proposal(session: Session, version: int) -> RuleSet:
    row = session.scalars(
        select(RuleSet).where(RuleSet.version == version).with_for_update()
    ).first()
    if row is None:
        raise NotFound(
            f"规则集 v{version} 不存在", f"no rule set v{version}", code="rule_set_not_found"
        )
    return row


def approve_rule_set(session: Session, who: Principal, version: int) -> RuleSet:
    """Sign a proposed version (批准). The proposer cannot, nor can anyone twice. When the
    signatures reach the number required it is activated at once."""
    who.require(Permission.RULES_APPROVE)
    row = _proposal(session, version)
    if row.status != "proposed":
        raise Conflict(
            f"规则集 v{version} 不在待批准状态（{row.status}）",
            f"rule set v{version} is not awaiting approval ({row.status})",
            code="rule_set_not_proposed",
        )
    if row.proposed_by == who.actor.ref:
        raise PermissionDenied(
            "提出者不能批准自己提出的规则版本，须由另外两名有权人员批准",
            "the proposer cannot approve their own rule set; two other people must",
            code="proposer_cannot_approve",
        )
    approvals = repository.approvals_of(session, [row.id])[row.id]
    if any(a.approver == who.actor.ref for a in approvals):
        raise Conflict(
            "您已批准过该版本，同一人不能重复批准",
            "you have approved this version already; the same person cannot approve twice",
            code="already_approved",
        )
    now = clock.now()
    base = active_rule_set(session)
    refreshed = False
    if (row.dry_run or {}).get("base_version") != base.version:
        dry = dry_run(session, compiled(row.yaml_text, row.version), base, now)
        row.dry_run = dry.model_dump(mode="json")
        row.approvals_required = _required(dry)
        refreshed = True
    session.add(
        RuleSetApproval(
            rule_set_id=row.id, approver=who.actor.ref, approver_role=who.role, approved_at=now
        )
    )
    session.flush()
    count = len(approvals) + 1
    detail: dict[str, Any] = {
        "version": version,
        "sha256": row.sha256,
        "approvals": count,
        "approvals_required": row.approvals_required,
        "dry_run_refreshed": refreshed,
    }
    record(
        session,
        who.actor,
        "risk.rules.approve",
        object_type="rule_set",
        object_id=version,
        area_code=who.area_code,
        detail=detail,
    )
    publish(session, TOPIC_RULES_APPROVED, detail, key=str(version))
    if count >= row.approvals_required:
        activate(session, who.actor, row, now)
    return row


def reject_rule_set(session: Session, who: Principal, version: int, reason: str) -> RuleSet:
    """Turn a proposal down (驳回); it can no longer be approved."""
    who.require(Permission.RULES_APPROVE)
    reason = " ".join(reason.split())
    if len(reason) < 4:
        raise InvalidInput("请说明驳回理由", "state why", field="reason")
    row = _proposal(session, version)
    if row.status != "proposed":
        raise Conflict(
            f"规则集 v{version} 不在待批准状态",
            f"rule set v{version} is not awaiting approval",
            code="rule_set_not_proposed",
        )
    row.status = "rejected"
    row.superseded_at = clock.now()
    record(
        session,
        who.actor,
        "risk.rules.reject",
        object_type="rule_set",
        object_id=version,
        area_code=who.area_code,
        detail={"version": version, "reason": reason[:200]},
    )
    return row


def activate(session: Session, actor: Actor, row: RuleSet, now: dt.datetime) -> dict[str, Any]:
    """Put ``row`` in force: the previous version and older proposals are superseded; every
    colour and tier is recomputed here when the city is small enough
    (``inline_recompute_limit``), else by the job ``risk.tasks.recompute_colours`` that the
    ``risk.rules_activated`` event starts (reads recompute a colour of an older version
    meanwhile). Audited and announced."""
    current = repository.active_rule_set(session)
    if current is not None:
        current.status = "superseded"
        current.superseded_at = now
    for older in session.scalars(
        select(RuleSet).where(RuleSet.status == "proposed", RuleSet.version < row.version)
    ):
        older.status = "superseded"
        older.superseded_at = now
    row.status = "active"
    row.activated_at = now
    session.flush()
    rule_set = compiled(row.yaml_text, row.version)
    subjects = repository.count_subjects(session)
    inline = subjects <= risk_settings().inline_recompute_limit
    counts = recompute_all(session, rule_set, now) if inline else {}
    approvers = [a.approver for a in repository.approvals_of(session, [row.id])[row.id]]
    detail: dict[str, Any] = {
        "version": row.version,
        "sha256": row.sha256,
        "previous": current.version if current is not None else None,
        "approvers": approvers,
        "subjects": subjects,
        "recompute": "inline" if inline else "job",
        **counts,
    }
    record(
        session,
        actor,
        "risk.rules.activate",
        object_type="rule_set",
        object_id=row.version,
        detail=detail,
    )
    publish(
        session,
        TOPIC_RULES_ACTIVATED,
        {"version": row.version, "sha256": row.sha256, "recompute": detail["recompute"]},
        key=str(row.version),
    )
    return detail


# --- recomputing everything ------------------------------------------------------------------


def recompute_subjects_batch(
    session: Session, rule_set: CompiledRuleSet, after: str, now: dt.datetime, size: int
) -> tuple[str | None, int, int]:
    """Recompute the colours of the next ``size`` subjects after ``after``. Returns the last
    subject done (None when there were none), how many and how many changed."""
    batch = repository.subjects_after(session, after, size)
    if not batch:
        return None, 0, 0
    facts = repository.facts_of(session, batch)
    rows = repository.colour_rows(session, batch)
    changed = 0
    for subject in batch:
        outcome = compute_colour([snapshot(f) for f in facts[subject]], rule_set, now)
        row = rows.get(subject)
        if row is None and not facts[subject]:
            continue
        _stored, before = store_colour(session, subject, row, outcome, now)
        changed += before != outcome.colour
    session.flush()
    return batch[-1], len(batch), changed


def recompute_compounds_batch(
    session: Session, rule_set: CompiledRuleSet, after: str, now: dt.datetime, size: int
) -> tuple[str | None, int]:
    """Recompute the tiers of the next ``size`` compounds after ``after``."""
    codes = repository.compounds_after(session, after, size)
    if not codes:
        return None, 0
    placed = repository.subjects_placed_in(session, codes)
    facts = repository.facts_of(session, {s for ss in placed.values() for s in ss})
    rows = repository.tier_rows(session, codes)
    for code in codes:
        inputs = {s: [snapshot(f) for f in facts[s]] for s in placed[code]}
        store_tier(session, code, rows.get(code), compute_tier(inputs, rule_set, now), now)
    session.flush()
    return codes[-1], len(codes)


def recompute_all(session: Session, rule_set: CompiledRuleSet, now: dt.datetime) -> dict[str, int]:
    """Recompute every stored colour and tier under ``rule_set`` in this transaction, a batch
    at a time (for the job, see ``risk.tasks``, each batch commits on its own)."""
    size = risk_settings().batch_size
    subjects = changed = compounds = 0
    after: str | None = ""
    while after is not None:
        after, done, moved = recompute_subjects_batch(session, rule_set, after, now, size)
        subjects += done
        changed += moved
    after = ""
    while after is not None:
        after, done = recompute_compounds_batch(session, rule_set, after, now, max(10, size // 10))
        compounds += done
    return {"recomputed": subjects, "changed": changed, "compounds": compounds}


# --- replay ----------------------------------------------------------------------------------


def _same(row: Any, outcome: Outcome, *, tier: bool = False) -> bool:
    colour = row.tier if tier else row.colour
    return bool(
        colour == outcome.colour
        and (row.reasons or []) == outcome.reasons_json()
        and _at(row.until) == outcome.until
        and _at(row.recheck_at) == outcome.recheck_at
        and row.rule_set_version == outcome.rule_set_version
    )


def _at(value: dt.datetime | None) -> dt.datetime | None:
    return clock.as_utc(value) if value is not None else None


def _stale(row: Any, version: int, now: dt.datetime) -> bool:
    return bool(
        row.rule_set_version != version
        or (row.recheck_at is not None and clock.as_utc(row.recheck_at) <= now)
    )


def replay(
    session: Session,
    *,
    actor: Actor = SYSTEM,
    now: dt.datetime | None = None,
    repair: bool = False,
    progress: Progress | None = None,
) -> ReplayReport:
    """Recompute every stored colour and tier from the facts with the active rule set and
    compare (重放校验). A stored row that differs from what its facts give is a difference
    (tampering, or a bug); a row past its recheck time or of an older version is ``stale``
    (reads recompute it anyway) and not a difference. ``repair`` rewrites what differs. The
    run is audited."""
    now = now or clock.now()
    rule_set = active_rule_set(session)
    size = risk_settings().batch_size
    persons = differences = stale = missing = orphans = repaired = 0
    examples: list[str] = []
    after = ""
    while batch := repository.subjects_after(session, after, size):
        facts = repository.facts_of(session, batch)
        rows = repository.colour_rows(session, batch)
        for subject in batch:
            outcome = compute_colour([snapshot(f) for f in facts[subject]], rule_set, now)
            row = rows.get(subject)
            persons += 1
            if row is None:
                missing += 1
                differ = True
            elif _stale(row, rule_set.version, now):
                stale += 1
                differ = False
                if repair:
                    store_colour(session, subject, row, outcome, now)
            else:
                differ = not _same(row, outcome)
                orphans += differ and not facts[subject]
            if differ:
                differences += 1
                if len(examples) < 20:
                    examples.append(subject)
                if repair:
                    store_colour(session, subject, row, outcome, now)
                    repaired += 1
        after = batch[-1]
        if progress:
            progress("persons", persons)
    compounds = compound_differences = 0
    after = ""
    while codes := repository.compounds_after(session, after, max(10, size // 10)):
        placed = repository.subjects_placed_in(session, codes)
        facts = repository.facts_of(session, {s for ss in placed.values() for s in ss})
        tiers = repository.tier_rows(session, codes)
        for code in codes:
            inputs = {s: [snapshot(f) for f in facts[s]] for s in placed[code]}
            outcome = compute_tier(inputs, rule_set, now)
            tier = tiers.get(code)
            compounds += 1
            if tier is None:
                differ = outcome.colour != "green" or outcome.recheck_at is not None
            elif _stale(tier, rule_set.version, now):
                differ = False
            else:
                differ = not _same(tier, outcome, tier=True)
            if differ:
                compound_differences += 1
            if repair and (differ or (tier is not None and _stale(tier, rule_set.version, now))):
                store_tier(session, code, tier, outcome, now)
                repaired += differ
        after = codes[-1]
    session.flush()
    report = ReplayReport(
        persons=persons,
        differences=differences,
        stale=stale,
        missing=missing,
        orphans=orphans,
        compounds=compounds,
        compound_differences=compound_differences,
        rule_set_version=rule_set.version,
        repaired=repaired,
        examples=examples,
    )
    record(
        session,
        actor,
        "risk.replay",
        object_type="rule_set",
        object_id=rule_set.version,
        detail=report.model_dump(exclude={"examples"}),
    )
    return report


# --- views -----------------------------------------------------------------------------------


def rule_set_out(session: Session, rows: list[RuleSet], *, detail: bool = False) -> list[Any]:
    """Rule sets with their approvals and dry runs (approvals read in one query)."""
    approvals = repository.approvals_of(session, [r.id for r in rows])
    out: list[Any] = []
    for row in rows:
        values = {
            "id": row.id,
            "version": row.version,
            "name": row.name,
            "sha256": row.sha256,
            "status": row.status,
            "note": row.note,
            "proposed_by": row.proposed_by,
            "proposed_at": row.proposed_at,
            "approvals_required": row.approvals_required,
            "approvals": [
                ApprovalOut(
                    approver=a.approver, approver_role=a.approver_role, approved_at=a.approved_at
                )
                for a in approvals[row.id]
            ],
            "dry_run": DryRunView.model_validate(row.dry_run or {}),
            "activated_at": row.activated_at,
            "rules": [
                r.as_dict()
                for r in (
                    *compiled(row.yaml_text, row.version).person_rules,
                    *compiled(row.yaml_text, row.version).compound_rules,
                )
            ],
        }
        out.append(
            RuleSetDetail(**values, yaml_text=row.yaml_text) if detail else RuleSetOut(**values)
        )
    return out


def list_rule_sets(session: Session, who: Principal) -> list[RuleSetOut]:
    """Every version, newest first (the active one is installed first on a new database)."""
    if not (who.can(Permission.RULES_PROPOSE) or who.can(Permission.RULES_APPROVE)):
        who.require(Permission.RISK_VIEW)
    active_rule_set(session)
    return list(rule_set_out(session, repository.rule_sets(session)))


def get_rule_set(session: Session, who: Principal, version: int) -> RuleSetDetail:
    """One version with its YAML."""
    if not (who.can(Permission.RULES_PROPOSE) or who.can(Permission.RULES_APPROVE)):
        who.require(Permission.RISK_VIEW)
    active_rule_set(session)
    row = repository.rule_set_by_version(session, version)
    if row is None:
        raise NotFound(
            f"规则集 v{version} 不存在", f"no rule set v{version}", code="rule_set_not_found"
        )
    result: RuleSetDetail = rule_set_out(session, [row], detail=True)[0]
    return result

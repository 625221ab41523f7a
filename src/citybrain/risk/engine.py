"""The colour engine: a person's colour and a compound's tier as pure functions of facts, a
rule set and the time.

``compute_colour(facts, rule_set, now)`` reads nothing else: no database, no clock. Replay
and the dry run call it exactly as the incremental path does, so what is stored can be proved
to follow from the facts.

For every rule, each of the subject's facts of the rule's kinds in force at ``now`` is a
candidate anchor; it holds from its ``valid_from`` until the earlier of its ``valid_until``
and ``valid_from + duration``, when the condition is true and the release is false. The
colour is the most severe colour of the rules that hold; its ``until`` is the latest end of
the rules holding that colour (None when one of them has no end). ``recheck_at`` is the first
moment after ``now`` at which the answer could differ: a fact starting or ending, a rule
reaching its end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celpy import celtypes
from celpy.evaluation import CELEvalError

from citybrain.kit.clock import CHINA_TZ
from citybrain.risk.kinds import (
    FACT_KINDS,
    SEVERITY,
    TIER_LABELS,
    Colour,
    kind_label,
    source_label,
)
from citybrain.risk.rules import CompiledRuleSet, Rule
from citybrain.risk.schemas import ReasonView

# Facts without an end are given this one in rules, so comparisons need no null checks.
OPEN_END = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
NO_RISK_ZH = "无风险记录"
NO_RISK_EN = "No risk record"
EVIDENCE_RECORDS_SHOWN = 5
# Evidence keys shown as references, and how: ``household:12``, ``case:30064773015``…
EVIDENCE_LABELS = {
    "household_id": "household",
    "case_fact_id": "case_fact",
    "case_key": "case",
    "analysis_run": "analysis",
    "appeal_id": "appeal",
}


class RuleEvaluationError(RuntimeError):
    """A rule's CEL failed on some facts (a rule set with this fault cannot be activated:
    the dry run evaluates it first)."""


@dataclass(frozen=True)
class FactSnapshot:
    """What the engine knows of one fact (a row of ``facts``, or a test's own)."""

    id: int
    subject: str
    kind: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None = None
    source: str = "staff"
    asserted_at: dt.datetime | None = None
    setting: str | None = None
    compound_code: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    retracted_at: dt.datetime | None = None

    def counts_at(self, now: dt.datetime) -> bool:
        """Whether the fact exists for the rules at ``now`` (started, not retracted)."""
        return self.retracted_at is None and self.valid_from <= now

    def in_force(self, now: dt.datetime) -> bool:
        """Whether the fact is valid at ``now``."""
        return self.counts_at(now) and (self.valid_until is None or now < self.valid_until)


@dataclass(frozen=True)
class Outcome:
    """A computed colour (or tier) with its reasons and timing."""

    colour: Colour
    reasons: list[ReasonView]
    until: dt.datetime | None
    recheck_at: dt.datetime | None
    rule_set_version: int

    def reasons_json(self) -> list[dict[str, Any]]:
        """The reasons as stored."""
        return [r.model_dump(mode="json") for r in self.reasons]


def _ts(value: dt.datetime) -> celtypes.TimestampType:
    return celtypes.TimestampType(value.astimezone(dt.UTC))


def _fact_map(fact: FactSnapshot, now: dt.datetime) -> celtypes.MapType:
    s = celtypes.StringType
    return celtypes.MapType(
        {
            s("valid_from"): _ts(fact.valid_from),
            s("valid_until"): _ts(fact.valid_until or OPEN_END),
            s("in_force"): celtypes.BoolType(fact.in_force(now)),
            s("asserted_at"): _ts(fact.asserted_at or fact.valid_from),
            s("source"): s(fact.source),
            s("setting"): s(fact.setting or ""),
            s("compound_code"): s(fact.compound_code or ""),
        }
    )


def _activation(facts: Sequence[FactSnapshot], now: dt.datetime) -> dict[str, Any]:
    lists: dict[str, list[celtypes.MapType]] = {kind: [] for kind in FACT_KINDS}
    for fact in facts:
        lists[fact.kind].append(_fact_map(fact, now))
    activation: dict[str, Any] = {k: celtypes.ListType(v) for k, v in lists.items()}
    activation["now"] = _ts(now)
    return activation


def _truth(program: Any, activation: dict[str, Any], rule: Rule, where: str) -> bool:
    try:
        value = program.evaluate(activation)
    except CELEvalError as exc:
        raise RuleEvaluationError(f"rule {rule.id}: {where} failed: {exc.args[0]}") from exc
    if isinstance(value, CELEvalError):
        raise RuleEvaluationError(f"rule {rule.id}: {where} failed: {value.args[0]}")
    if not isinstance(value, celtypes.BoolType):
        raise RuleEvaluationError(f"rule {rule.id}: {where} is not true or false")
    return bool(value)


@dataclass
class _Hit:
    rule: Rule
    anchors: list[FactSnapshot]
    until: dt.datetime | None  # None: open-ended


def _later(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    """The later of two ends, None (no end) winning."""
    if a is None or b is None:
        return None
    return max(a, b)


def _evaluate(
    rules: Iterable[Rule], facts: Sequence[FactSnapshot], now: dt.datetime
) -> tuple[list[_Hit], set[dt.datetime]]:
    """The rules holding at ``now`` over ``facts`` (one subject's), and the moments after
    ``now`` at which the answer could change."""
    counted = [f for f in facts if f.counts_at(now)]
    moments: set[dt.datetime] = set()
    for fact in facts:
        if fact.retracted_at is not None:
            continue
        if fact.valid_from > now:
            moments.add(fact.valid_from)
        if fact.valid_until is not None and fact.valid_until > now:
            moments.add(fact.valid_until)
    by_kind: dict[str, list[FactSnapshot]] = {}
    for fact in counted:
        by_kind.setdefault(fact.kind, []).append(fact)
    activation: dict[str, Any] | None = None
    hits: list[_Hit] = []
    for rule in rules:
        anchors = [f for kind in rule.facts for f in by_kind.get(kind, ()) if f.in_force(now)]
        hit: _Hit | None = None
        for anchor in sorted(anchors, key=lambda f: (f.valid_from, f.id)):
            end = anchor.valid_until
            if rule.duration is not None:
                ends = anchor.valid_from + rule.duration
                end = ends if end is None else min(end, ends)
            if end is not None and end <= now:
                continue
            if rule.condition is not None or rule.release is not None:
                if activation is None:
                    activation = _activation(counted, now)
                activation["fact"] = _fact_map(anchor, now)
                if rule.condition is not None and not _truth(
                    rule.condition, activation, rule, "condition"
                ):
                    continue
                if rule.release is not None and _truth(rule.release, activation, rule, "release"):
                    continue
            if end is not None:
                moments.add(end)
            if hit is None:
                hit = _Hit(rule, [anchor], end)
            else:
                hit.anchors.append(anchor)
                hit.until = _later(hit.until, end)
        if hit is not None:
            hits.append(hit)
    return hits, moments


def local_time(value: dt.datetime) -> str:
    """A time as the city reads it (China Standard Time)."""
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def fact_evidence(fact: FactSnapshot) -> list[str]:
    """Short references to a fact and what it rests on (ids only)."""
    refs = [f"fact:{fact.id}"]
    evidence = fact.evidence or {}
    records = evidence.get("record_ids") or []
    if isinstance(records, list):
        refs += [f"record:{r}" for r in records[:EVIDENCE_RECORDS_SHOWN]]
    for key, label in EVIDENCE_LABELS.items():
        if evidence.get(key) is not None:
            refs.append(f"{label}:{evidence[key]}")
    return refs


def _reason(hit: _Hit, compound: bool) -> ReasonView:
    first = hit.anchors[0]
    kinds_zh = "、".join(dict.fromkeys(kind_label(a.kind) for a in hit.anchors))
    kinds_en = ", ".join(dict.fromkeys(kind_label(a.kind, "en") for a in hit.anchors))
    sources_zh = "、".join(dict.fromkeys(source_label(a.source) for a in hit.anchors))
    sources_en = ", ".join(dict.fromkeys(source_label(a.source, "en") for a in hit.anchors))
    ids = "、".join(f"#{a.id}" for a in hit.anchors[:EVIDENCE_RECORDS_SHOWN])
    ids_en = ", ".join(f"#{a.id}" for a in hit.anchors[:EVIDENCE_RECORDS_SHOWN])
    if compound:
        what_zh = f"{TIER_LABELS[hit.rule.colour][0]}"
        what_en = f"{TIER_LABELS[hit.rule.colour][1]}"
        basis_zh = f"依据：居民{kinds_zh}记录（事实 {ids}，{len(hit.anchors)} 条）"
        basis_en = f"basis: residents' {kinds_en} (facts {ids_en}, {len(hit.anchors)})"
    else:
        what_zh = "红码" if hit.rule.colour == "red" else "黄码"
        what_en = f"{hit.rule.colour} code"
        basis_zh = (
            f"依据：{kinds_zh}（事实 {ids}，来源：{sources_zh}，{local_time(first.valid_from)} 起）"
        )
        basis_en = (
            f"basis: {kinds_en} (facts {ids_en}, source: {sources_en}, "
            f"since {local_time(first.valid_from)})"
        )
    if hit.until is None:
        until_zh, until_en = "无固定期限，待解除", "no set end; until released"
    else:
        until_zh = f"至 {local_time(hit.until)}（北京时间）"
        until_en = f"until {local_time(hit.until)} (Beijing time)"
    evidence: list[str] = []
    for anchor in hit.anchors:
        evidence += [e for e in fact_evidence(anchor) if e not in evidence]
    return ReasonView(
        rule_id=hit.rule.id,
        text_zh=f"{hit.rule.description_zh}。{what_zh}，{until_zh}。{basis_zh}。",
        text_en=f"{hit.rule.description_en}. {what_en}, {until_en}. {basis_en}.",
        evidence=evidence,
        until=hit.until,
    )


def no_risk_reason(has_facts: bool = False) -> ReasonView:
    """The reason shown for green: nothing on record, or nothing that counts now."""
    if not has_facts:
        return ReasonView(rule_id="none", text_zh=NO_RISK_ZH, text_en=NO_RISK_EN, evidence=[])
    return ReasonView(
        rule_id="none",
        text_zh="当前无有效风险记录",
        text_en="No risk in force",
        evidence=[],
    )


def _outcome(
    hits: list[_Hit], moments: set[dt.datetime], version: int, has_facts: bool, compound: bool
) -> Outcome:
    recheck = min(moments) if moments else None
    if not hits:
        return Outcome("green", [no_risk_reason(has_facts)], None, recheck, version)
    hits.sort(key=lambda h: (-SEVERITY[h.rule.colour], h.rule.id))
    colour: Colour = "red" if hits[0].rule.colour == "red" else "yellow"
    top = [h for h in hits if h.rule.colour == colour]
    until = top[0].until
    for hit in top[1:]:
        until = _later(until, hit.until)
    return Outcome(colour, [_reason(h, compound) for h in hits], until, recheck, version)


def compute_colour(
    facts: Sequence[FactSnapshot], rule_set: CompiledRuleSet, now: dt.datetime
) -> Outcome:
    """A subject's colour from their facts under ``rule_set`` at ``now`` (pure)."""
    hits, moments = _evaluate(rule_set.person_rules, facts, now)
    return _outcome(hits, moments, rule_set.version, bool(facts), compound=False)


def compute_tier(
    facts_by_subject: Mapping[str, Sequence[FactSnapshot]],
    rule_set: CompiledRuleSet,
    now: dt.datetime,
) -> Outcome:
    """A compound's tier from its residents' facts (each subject evaluated on their own
    facts) under the rule set's compound rules at ``now`` (pure)."""
    merged: dict[str, _Hit] = {}
    moments: set[dt.datetime] = set()
    has_facts = False
    for subject in sorted(facts_by_subject):
        facts = facts_by_subject[subject]
        has_facts = has_facts or bool(facts)
        hits, found = _evaluate(rule_set.compound_rules, facts, now)
        moments |= found
        for hit in hits:
            known = merged.get(hit.rule.id)
            if known is None:
                merged[hit.rule.id] = _Hit(hit.rule, list(hit.anchors), hit.until)
            else:
                known.anchors += hit.anchors
                known.until = _later(known.until, hit.until)
    for hit in merged.values():
        hit.anchors.sort(key=lambda f: (f.valid_from, f.id))
    return _outcome(list(merged.values()), moments, rule_set.version, has_facts, compound=True)

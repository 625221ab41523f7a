"""Pydantic I/O of risk: colours with reasons, tiers, facts, rule sets, overrides, appeals."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from citybrain.core.people.schemas import PersonMasked

ColourName = Literal["green", "yellow", "red"]
KindName = Literal[
    "confirmed_case",
    "asymptomatic",
    "close_contact",
    "secondary_contact",
    "risk_area_travel",
    "fever_visit",
    "negative_test",
    "in_quarantine",
    "released",
]


class ReasonView(BaseModel):
    """Why a colour or tier: the rule, in plain Chinese and English, what it rests on (fact
    and record ids) and until when."""

    rule_id: str
    text_zh: str
    text_en: str
    evidence: list[str] = Field(default_factory=list)
    until: dt.datetime | None = None


class ColourView(BaseModel):
    """A person's colour as gates, the cockpit and the person see it."""

    colour: ColourName
    reasons: list[ReasonView]
    until: dt.datetime | None
    rule_set_version: int
    overridden: bool = False


class ColouredPersonOut(BaseModel):
    """One person of the red and yellow list (红黄码人员): their colour with its reasons,
    where they are placed, whether they are under control (隔离/管控中) and how, and the
    registered person behind the subject as staff see them (masked; None if not registered)."""

    subject: str
    colour: ColourName
    reasons: list[ReasonView]
    until: dt.datetime | None
    overridden: bool = False
    area_code: str | None
    place_name: str | None = Field(default=None, description="所在小区或区域的名称")
    controlled: bool
    setting: str | None = Field(default=None, description="隔离方式：home、facility、hospital")
    person: PersonMasked | None = None


class ColouredPage(BaseModel):
    """A page of the red and yellow list, with how many match in all."""

    total: int
    items: list[ColouredPersonOut]


class TierView(BaseModel):
    """A compound's tier (三色分层): red closed, yellow controlled, green normal."""

    compound_code: str
    tier: ColourName
    reasons: list[ReasonView]
    since: dt.datetime | None
    until: dt.datetime | None = None
    rule_set_version: int


class FactIn(BaseModel):
    """Asserting a fact through the API: about a registered person (``person_ref``) or, for
    city-level users, a subject."""

    person_ref: str | None = Field(default=None, max_length=32, pattern=r"^[0-9a-f]{1,32}$")
    subject: str | None = Field(default=None, min_length=32, max_length=32, pattern=r"^[0-9a-f]+$")
    kind: KindName
    valid_from: dt.datetime | None = Field(default=None, description="默认为当前时间")
    valid_until: dt.datetime | None = None
    setting: Literal["home", "facility", "hospital"] | None = Field(
        default=None, description="隔离方式（仅 in_quarantine）"
    )
    record_ids: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=50, description="湖中记录编号"
    )
    note: str | None = Field(default=None, max_length=200, description="说明（不含个人信息）")


class FactOut(BaseModel):
    """A fact as staff see it."""

    id: int
    subject: str
    kind: str
    kind_zh: str
    source: str
    evidence: dict[str, Any]
    setting: str | None
    compound_code: str | None
    asserted_by: str
    asserted_at: dt.datetime
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    retracted_at: dt.datetime | None
    retracted_by: str | None = None
    retraction_reason: str | None
    turned_colour: str | None = Field(
        default=None, description="recorded by hand, it turned a green code this colour (手工转码)"
    )
    freed_colour: str | None = Field(
        default=None, description="withdrawn, it turned a code from this colour to green (手工转绿)"
    )
    retraction_requested_by: str | None = Field(
        default=None, description="a case's withdrawal asked by this account, awaiting a second"
    )
    retraction_requested_at: dt.datetime | None = None
    retraction_request_reason: str | None = None
    retraction_pending: bool = Field(
        default=False, description="a withdrawal awaits a second person's confirmation (72 h)"
    )


class RetractIn(BaseModel):
    """Why a fact is withdrawn (撤销事实)."""

    reason: str = Field(min_length=4, max_length=200)


class SubjectRisk(BaseModel):
    """A subject's colour and facts (staff view)."""

    subject: str
    colour: ColourView
    facts: list[FactOut]


class DistrictChange(BaseModel):
    """How many subjects of one district would change colour, and to what."""

    code: str
    name: str
    changed: int
    to_red: int = 0
    to_yellow: int = 0
    to_green: int = 0


class DryRunView(BaseModel):
    """What activating a rule set would change, against the facts when computed."""

    computed_at: dt.datetime | None = None
    base_version: int | None = None
    subjects: int = 0
    changed: int = 0
    by_district: list[DistrictChange] = Field(default_factory=list)
    compounds: int = 0
    compounds_changed: int = 0


class RuleSetIn(BaseModel):
    """Proposing a rule set: its YAML and a note for the approvers."""

    yaml_text: str = Field(min_length=1, max_length=65536)
    note: str | None = Field(default=None, max_length=500)


class ApprovalOut(BaseModel):
    """One approver's signature."""

    approver: str
    approver_role: str | None
    approved_at: dt.datetime


class RuleSetOut(BaseModel):
    """A rule-set version with its dry run and approvals."""

    id: int
    version: int
    name: str
    sha256: str
    status: str
    note: str | None
    proposed_by: str
    proposed_at: dt.datetime
    approvals_required: int
    approvals: list[ApprovalOut]
    dry_run: DryRunView
    activated_at: dt.datetime | None
    rules: list[dict[str, Any]] = Field(default_factory=list)


class RuleSetDetail(RuleSetOut):
    """A rule set with its YAML."""

    yaml_text: str


class OverrideIn(BaseModel):
    """Requesting a manual colour (人工赋码): a legal basis is required, 72 hours at most."""

    person_ref: str | None = Field(default=None, max_length=32, pattern=r"^[0-9a-f]{1,32}$")
    subject: str | None = Field(default=None, min_length=32, max_length=32, pattern=r"^[0-9a-f]+$")
    colour: ColourName
    legal_basis: str = Field(min_length=4, max_length=300, description="法律依据")
    reason: str = Field(min_length=4, max_length=300, description="理由（将告知本人）")
    hours: int = Field(ge=1, le=72, description="有效小时数，最多72")


class OverrideOut(BaseModel):
    """An override request or an applied override."""

    id: int
    subject: str
    colour: str
    legal_basis: str
    reason: str
    hours: int
    status: str
    requested_by: str
    requested_at: dt.datetime
    approved_by: str | None
    approved_at: dt.datetime | None
    expires_at: dt.datetime | None
    ended_at: dt.datetime | None = None
    ended_by: str | None = None
    appeal_id: int | None = Field(default=None, description="由申诉提出时的申诉编号")
    person: PersonMasked | None = Field(default=None, description="本人（脱敏），仅在台账中给出")
    names: dict[str, str] = Field(
        default_factory=dict, description="经办人姓名：申请、批准、结束者的引用 → 姓名（账号）"
    )


class HandTurnOut(BaseModel):
    """A green code turned red or yellow by a fact recorded by hand (手工转码), as the
    register shows it."""

    fact: FactOut
    person: PersonMasked | None = Field(default=None, description="本人（脱敏）；未登记者为空")
    recorded_by: str = Field(description="登记人：姓名（账号）")
    retracted_by: str | None = Field(default=None, description="撤销人：姓名（账号）")


class AccountTurns(BaseModel):
    """How many green codes one account turned by hand in the register's window."""

    actor: str
    name: str
    turns: int


class HandTurnPage(BaseModel):
    """The register of hand turns (手工转码台账): a page of them, how many in all, and the
    accounts that turned the most in the window."""

    total: int
    days: int
    way: str = Field(description="red：登记事实转红黄；green：撤销事实转绿")
    items: list[HandTurnOut]
    by_account: list[AccountTurns]


class RetractionRequestOut(BaseModel):
    """A request to withdraw a confirmed case or an asymptomatic infection (撤销确诊申请),
    waiting for a second person, as the queue shows it."""

    fact: FactOut
    person: PersonMasked | None = Field(default=None, description="本人（脱敏）；未登记者为空")
    requested_by: str = Field(description="申请人：姓名（账号）")
    lapses_at: dt.datetime = Field(description="无人确认时申请失效的时间（申请后72小时）")


class RetractionQueue(BaseModel):
    """The requests to withdraw a diagnosis waiting for a second person (撤销确诊待确认):
    a page of them, the nearest to lapsing first, and how many in all."""

    total: int
    items: list[RetractionRequestOut]


class BatchRowError(BaseModel):
    """A rejected row of an uploaded list: where and what is wrong (never the value)."""

    row: int = Field(description="行号（表头为第1行）")
    field: str = Field(description="列：身份证号码或接触日期")
    message_zh: str
    message_en: str


class FactBatchOut(BaseModel):
    """A list of people handed over at once (批量登记): counts, rejected rows, the dry run
    and who asked and decided; never the people's numbers."""

    id: int
    kind: str
    kind_zh: str
    note: str = Field(description="依据")
    days: int
    status: str = Field(
        description="requested 待批准 · approved 已批准 · rejected 已驳回 · lapsed 已失效"
    )
    rows_total: int
    rows_accepted: int
    errors: list[BatchRowError]
    dry_run: dict[str, Any] = Field(
        description="turns_red, turns_yellow, unchanged, registered, unregistered, by_street"
    )
    requested_by: str
    requested_by_name: str
    requested_at: dt.datetime
    lapses_at: dt.datetime
    decided_by: str | None = None
    decided_by_name: str | None = None
    decided_at: dt.datetime | None = None
    decision_reason: str | None = None
    facts_asserted: int


class FactBatchPage(BaseModel):
    """Lists uploaded in the jurisdiction, newest first, and how many."""

    total: int
    items: list[FactBatchOut]


class BatchRowIn(BaseModel):
    """One person of a list sent through the API."""

    id_number: str = Field(max_length=32, description="居民身份证号码")
    contact_date: str = Field(default="", max_length=10, description="接触日期，如 2026-11-20")


class FactBatchIn(BaseModel):
    """A list sent through the API (批量登记): the same checks as an uploaded file."""

    kind: Literal["close_contact", "secondary_contact", "risk_area_travel"]
    note: str = Field(max_length=200, description="依据：流调报告、协查函或通报编号")
    days: int = Field(default=14, ge=1, le=60)
    rows: list[BatchRowIn] = Field(min_length=1, max_length=1000)


class AppealOut(BaseModel):
    """An appeal in a street office's queue, or as its person sees it."""

    id: int
    subject: str
    street_code: str
    text: str
    colour: str
    filed_at: dt.datetime
    deadline: dt.datetime
    overdue: bool
    status: str
    decided_by: str | None
    decided_at: dt.datetime | None
    outcome_zh: str | None
    outcome_en: str | None
    action: str | None
    text_purged: bool = Field(
        default=False, description="申诉原文已按保存期限清除（处理结果仍保留）"
    )
    appellant: PersonMasked | None = Field(
        default=None, description="申诉人（脱敏），仅在街道申诉队列中给出"
    )


class StreetBacklog(BaseModel):
    """A street's open appeals (街道积压)."""

    code: str
    name: str
    open: int
    overdue: int


class AppealSummary(BaseModel):
    """How the appeals queue stands in a jurisdiction (or one street of it)."""

    open: int
    overdue: int
    decided: int
    streets: list[StreetBacklog]


class DecideIn(BaseModel):
    """A street officer's decision on an appeal."""

    outcome: Literal["upheld", "rejected"]
    note: str = Field(min_length=4, max_length=400, description="处理意见（将告知本人）")
    action: Literal["retract_fact", "request_override", "none"] = "none"
    fact_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    override_colour: ColourName | None = None
    legal_basis: str | None = Field(default=None, max_length=300)
    hours: int | None = Field(default=None, ge=1, le=72)


class NotificationOut(BaseModel):
    """A message shown to the person on their code page."""

    id: int
    kind: str
    text_zh: str
    text_en: str
    created_at: dt.datetime


class ReplayReport(BaseModel):
    """The outcome of recomputing every stored colour from the facts."""

    persons: int
    differences: int
    stale: int = 0
    missing: int = 0
    orphans: int = 0
    compounds: int = 0
    compound_differences: int = 0
    rule_set_version: int
    repaired: int = 0
    examples: list[str] = Field(default_factory=list)

"""JSON API of risk (/api/v1/risk): a subject's facts and colour, compound tiers, rule sets
with their dry runs and approvals, manual colours (request, approve) and the appeals queue.

Staff reach a person by their registry reference (scoped to their jurisdiction) or, at city
level, by subject (people the analysis found who are not registered). Every read of a
person's risk is audited.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from citybrain.core.audit.service import record
from citybrain.core.authz.deps import authenticated, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.people import repository as people_repository
from citybrain.kit.errors import InvalidInput, NotFound, error_responses
from citybrain.kit.web import DB, RowId
from citybrain.risk import batches, rulesets, service
from citybrain.risk.models import Fact
from citybrain.risk.schemas import (
    AppealOut,
    AppealSummary,
    ColouredPage,
    DecideIn,
    FactBatchIn,
    FactBatchOut,
    FactBatchPage,
    FactIn,
    FactOut,
    HandTurnPage,
    OverrideIn,
    OverrideOut,
    RetractIn,
    RetractionQueue,
    RuleSetDetail,
    RuleSetIn,
    RuleSetOut,
    SubjectRisk,
    TierView,
)
from citybrain.risk.subjects import subject_of

router = APIRouter(
    prefix="/api/v1/risk",
    tags=["risk 风险赋码"],
    responses=error_responses(401, 403, 404, 409, 422),
)
Ref = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]
Subject = Annotated[str, Path(min_length=32, max_length=32, pattern=r"^[0-9a-f]+$")]
Version = RowId
Id = RowId


def subject_for(
    session: Session, who: Principal, person_ref: str | None, subject: str | None, action: str
) -> str:
    """The subject a staff request is about: a registered person in the caller's
    jurisdiction, or a subject (city level only); denials audited and answered 404."""
    if person_ref:
        person = people_repository.get_scoped(session, who, person_ref)
        if person is None:
            outcome = (
                "denied" if people_repository.exists_anywhere(session, person_ref) else "failed"
            )
            error = NotFound("未找到该人员", "no such person", code="person_not_found")
            raise error.keep(
                lambda s: record(
                    s,
                    who.actor,
                    action,
                    object_type="person",
                    object_id=person_ref,
                    area_code=who.area_code,
                    outcome=outcome,
                )
            )
        return subject_of(person)
    if subject:
        service.subject_in_scope(session, who, subject, action)
        return subject
    raise InvalidInput(
        "须指定人员编号或风险主体", "give a person_ref or a subject", field="person_ref"
    )


def _risk(session: Session, who: Principal, subject: str) -> SubjectRisk:
    record(
        session,
        who.actor,
        "risk.view",
        object_type="subject",
        object_id=subject,
        area_code=who.area_code,
    )
    return SubjectRisk(
        subject=subject,
        colour=service.colour_of(session, subject),
        facts=service.facts_of_subject(session, subject),
    )


@router.get("/persons/{ref}", response_model=SubjectRisk, summary="A person's colour and facts")
def person_risk(
    ref: Ref, session: DB, who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))]
) -> SubjectRisk:
    """Colour with reasons and every fact, for a registered person in your jurisdiction."""
    return _risk(session, who, subject_for(session, who, ref, None, "risk.view"))


@router.get(
    "/subjects/{subject}", response_model=SubjectRisk, summary="A subject's colour and facts"
)
def subject_risk(
    subject: Subject,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
) -> SubjectRisk:
    """By subject (the pseudonym facts are keyed by): registered persons in your
    jurisdiction; subjects not in the registry at city level only."""
    return _risk(session, who, subject_for(session, who, None, subject, "risk.view"))


@router.post("/facts", response_model=FactOut, status_code=201, summary="Assert a fact")
def assert_fact(
    data: FactIn, session: DB, who: Annotated[Principal, Depends(authenticated)]
) -> FactOut:
    """Record a health or travel fact (clinic staff: fever visits and negative tests only).
    The colour, and the compound's tier, follow at once. A fact that turns a green code red
    or yellow needs its basis (``note`` or ``record_ids``; else 422, field ``note``) and counts
    against the account's daily limit of such turns (403 ``hand_turn_daily_limit``)."""
    service.check_may_assert(who, data.kind)
    subject = subject_for(session, who, data.person_ref, data.subject, "risk.fact.assert")
    fact = service.record_fact_by_hand(
        session,
        who,
        subject=subject,
        kind=data.kind,
        note=data.note or "",
        record_ids=data.record_ids,
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        setting=data.setting,
    )
    return service.fact_out(fact)


@router.post("/facts/{fact_id}/retract", response_model=FactOut, summary="Withdraw a fact")
def retract_fact(
    fact_id: Id,
    data: RetractIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_ASSERT))],
) -> FactOut:
    """The fact stops counting; the row stays, marked, with the reason. A confirmed case or
    an asymptomatic infection takes two people: the first call asks (the answer shows
    ``retraction_pending``, the fact still counts), another account's call within 72 hours
    withdraws it; the one who asked cannot confirm (409)."""
    fact = session.get(Fact, fact_id)
    if fact is None:
        raise NotFound("事实不存在", "no such fact", code="fact_not_found")
    service.subject_in_scope(session, who, fact.subject, "risk.fact.retract")
    return service.fact_out(service.retract_fact_by_hand(session, who, fact_id, reason=data.reason))


@router.post(
    "/facts/{fact_id}/retraction-request/decline",
    response_model=FactOut,
    summary="Turn down a request to withdraw a case",
)
def decline_retraction_request(
    fact_id: Id,
    data: RetractIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_ASSERT))],
) -> FactOut:
    """A request to withdraw a confirmed case or an asymptomatic infection is turned down
    (or taken back by the one who asked), with the reason: the case keeps counting; audited.
    409 ``no_retraction_request`` when none is waiting."""
    return service.fact_out(
        service.decline_retraction_request(session, who, fact_id, reason=data.reason)
    )


@router.get(
    "/retraction-requests",
    response_model=RetractionQueue,
    summary="Requests to withdraw a case awaiting a second person",
)
def list_retraction_requests(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_ASSERT))],
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RetractionQueue:
    """Requests to withdraw a confirmed case or an asymptomatic infection in your
    jurisdiction still waiting for a second person (撤销确诊待确认), the nearest to lapsing
    first, with the person masked, who asked, why and until when; audited. Confirm one with
    ``POST /facts/{id}/retract``, turn it down with ``.../retraction-request/decline``."""
    return service.retraction_requests(session, who, offset=offset, limit=limit)


@router.post(
    "/batches", response_model=FactBatchOut, status_code=201, summary="Send a list of people"
)
def request_batch(
    data: FactBatchIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
) -> FactBatchOut:
    """A list of people handed over at once (批量登记), e.g. a flight's close contacts: each
    row checked (rejected rows listed by row and field, the rest kept), a dry run made;
    nothing counts until another account approves it within 72 hours. 422 when no row is
    acceptable or the basis is missing."""
    batch = batches.request_batch(
        session,
        who,
        kind=data.kind,
        note=data.note,
        days=data.days,
        rows=batches.rows_of([(r.id_number, r.contact_date) for r in data.rows]),
    )
    return batches.batch_view(session, batch)


@router.get("/batches", response_model=FactBatchPage, summary="Lists of people sent")
def list_batches(
    session: DB,
    who: Annotated[Principal, Depends(authenticated)],
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FactBatchPage:
    """The lists sent in your jurisdiction, newest first; audited."""
    total, items = batches.batches_scoped(session, who, offset=offset, limit=limit)
    return FactBatchPage(total=total, items=items)


@router.post("/batches/{batch_id}/approve", response_model=FactBatchOut, summary="Approve a list")
def approve_batch(
    batch_id: Id,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_APPROVE))],
) -> FactBatchOut:
    """The second person approves (the answer says ``approving``): the worker then makes
    every accepted row a fact, a chunk at a time, until it says ``approved``. The one who
    sent it cannot (409 ``batch_needs_second_person``); a list past 72 hours has lapsed
    (409 ``batch_lapsed``)."""
    return batches.batch_view(session, batches.approve_batch(session, who, batch_id))


@router.post("/batches/{batch_id}/reject", response_model=FactBatchOut, summary="Turn a list down")
def reject_batch(
    batch_id: Id,
    data: RetractIn,
    session: DB,
    who: Annotated[Principal, Depends(authenticated)],
) -> FactBatchOut:
    """Turn a list down (an approver), or take one's own back, with the reason."""
    return batches.batch_view(
        session, batches.reject_batch(session, who, batch_id, reason=data.reason)
    )


@router.get("/compounds/{code}", response_model=TierView, summary="A compound's tier")
def compound_tier(
    code: Annotated[str, Path(min_length=15, max_length=15, pattern=r"^\d+$")],
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
) -> TierView:
    """Red (closed), yellow (controlled) or green, with reasons and since when."""
    return service.tier_of(session, code)


@router.get("/rule-sets", response_model=list[RuleSetOut], summary="Rule-set versions")
def list_rule_sets(
    session: DB, who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))]
) -> list[RuleSetOut]:
    """Every version with its status, dry run and approvals, newest first."""
    return rulesets.list_rule_sets(session, who)


@router.get("/rule-sets/{version}", response_model=RuleSetDetail, summary="One version")
def get_rule_set(
    version: Version,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
) -> RuleSetDetail:
    """A version with its YAML and rules."""
    return rulesets.get_rule_set(session, who, version)


@router.post("/rule-sets", response_model=RuleSetOut, status_code=201, summary="Propose a version")
def propose(
    data: RuleSetIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RULES_PROPOSE))],
) -> RuleSetOut:
    """Validated (only health and travel facts), stored with its hash and a dry run: how
    many people would change colour, by district. Needs approvals to take effect."""
    row = rulesets.propose_rule_set(session, who, data.yaml_text, note=data.note)
    result: RuleSetOut = rulesets.rule_set_out(session, [row])[0]
    return result


@router.post("/rule-sets/{version}/approve", response_model=RuleSetOut, summary="Approve a version")
def approve(
    version: Version,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RULES_APPROVE))],
) -> RuleSetOut:
    """Two approvers other than the proposer activate it (three above the threshold)."""
    row = rulesets.approve_rule_set(session, who, version)
    result: RuleSetOut = rulesets.rule_set_out(session, [row])[0]
    return result


class RejectIn(BaseModel):
    """Why a proposal or request is turned down."""

    reason: str = Field(min_length=4, max_length=200)


@router.post("/rule-sets/{version}/reject", response_model=RuleSetOut, summary="Reject a version")
def reject(
    version: Version,
    data: RejectIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RULES_APPROVE))],
) -> RuleSetOut:
    """The proposal can no longer be approved."""
    row = rulesets.reject_rule_set(session, who, version, data.reason)
    result: RuleSetOut = rulesets.rule_set_out(session, [row])[0]
    return result


@router.get("/overrides", response_model=list[OverrideOut], summary="Manual colours")
def list_overrides(
    session: DB,
    who: Annotated[Principal, Depends(authenticated)],
    view: Annotated[Literal["open", "requested", "active", "ended"], Query()] = "open",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[OverrideOut]:
    """The manual-colour register of your jurisdiction, newest request first: ``open``
    (awaiting a second person, and in force), ``requested``, ``active`` or ``ended``; each
    with its person masked and the names of who requested, approved and ended it."""
    return service.override_register(session, who, view=view, offset=offset, limit=limit)


@router.get("/turns", response_model=HandTurnPage, summary="Codes turned by hand")
def list_hand_turns(
    session: DB,
    who: Annotated[Principal, Depends(authenticated)],
    days: Annotated[int, Query(ge=1, le=30, description="1、7 或 30")] = 7,
    way: Annotated[Literal["red", "green"], Query(description="red 转红黄；green 转绿")] = "red",
    actor: Annotated[str | None, Query(pattern=r"^user:[0-9]{1,12}$")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> HandTurnPage:
    """The register of codes turned by hand (手工转码台账) in your jurisdiction in the last
    ``days``: green codes turned red or yellow by facts recorded (``way`` red), or codes
    turned green by facts withdrawn (``way`` green), by one account if ``actor``, newest
    first: each with its person masked, the fact with its basis, who recorded and who withdrew
    it; the total; and the accounts that turned the most. For those who may request or
    approve a manual colour; audited."""
    return service.hand_turns(
        session, who, days=days, way=way, actor_ref=actor, offset=offset, limit=limit
    )


@router.post(
    "/overrides", response_model=OverrideOut, status_code=201, summary="Request a manual colour"
)
def request_override(
    data: OverrideIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
) -> OverrideOut:
    """A legal basis is required, 72 hours at most; nothing changes until another person
    approves."""
    subject = subject_for(session, who, data.person_ref, data.subject, "risk.override.request")
    row = service.request_override(
        session,
        who,
        subject=subject,
        colour=data.colour,
        legal_basis=data.legal_basis,
        reason=data.reason,
        hours=data.hours,
    )
    return service.override_out(row)


@router.post(
    "/overrides/{override_id}/{decision}",
    response_model=OverrideOut,
    summary="Approve, reject or revoke a manual colour",
)
def decide_override(
    override_id: Id,
    decision: Literal["approve", "reject", "revoke"],
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_APPROVE))],
) -> OverrideOut:
    """The requester cannot approve their own request (two different people, always)."""
    action = {
        "approve": service.approve_override,
        "reject": service.reject_override,
        "revoke": service.revoke_override,
    }[decision]
    return service.override_out(action(session, who, override_id))


@router.get("/people", response_model=ColouredPage, summary="The red and yellow list")
def coloured_people(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_PEOPLE))],
    colour: Annotated[Literal["all", "red", "yellow"], Query()] = "all",
    control: Annotated[Literal["all", "uncontrolled", "controlled"], Query()] = "all",
    area: Annotated[str | None, Query(pattern=r"^\d{4,15}$", description="辖区内的区域")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ColouredPage:
    """红黄码人员: the people showing red or yellow in your jurisdiction (or an area of it),
    red first, each masked, with the reasons and whether they are under control
    (``uncontrolled``: no ``in_quarantine`` fact in force); how many in all. Audited."""
    return service.coloured_people(
        session,
        who,
        colour=colour,
        control=control,
        area_code=area,
        offset=offset,
        limit=limit,
    )


@router.get("/appeals", response_model=list[AppealOut], summary="The appeals queue")
def appeals(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.APPEAL_DECIDE))],
    status: Annotated[Literal["open", "overdue", "decided"], Query()] = "open",
    street: Annotated[str | None, Query(pattern=r"^\d{9}$", description="一个街道")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[AppealOut]:
    """Appeals of the streets in your jurisdiction (or one street of it), nearest deadline
    first, each with its appellant masked; ``overdue``: the open ones past their deadline."""
    return service.appeal_queue(
        session, who, status=status, street=street, offset=offset, limit=limit
    )


@router.get("/appeals/summary", response_model=AppealSummary, summary="The queue's counts")
def appeals_summary(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.APPEAL_DECIDE))],
    street: Annotated[str | None, Query(pattern=r"^\d{9}$")] = None,
) -> AppealSummary:
    """How many appeals are open, overdue and decided, and the streets with open appeals,
    the most overdue first."""
    return service.appeal_summary(session, who, street=street)


@router.post("/appeals/{appeal_id}/decide", response_model=AppealOut, summary="Decide an appeal")
def decide_appeal(
    appeal_id: Id,
    data: DecideIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.APPEAL_DECIDE))],
) -> AppealOut:
    """Upheld (withdraw the disputed fact, or request a manual colour) or rejected; the
    outcome is shown to the person."""
    return service.appeal_out(service.decide_appeal(session, who, appeal_id, data))

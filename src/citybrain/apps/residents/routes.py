"""JSON API of resident registration for staff systems (/api/v1/residents): a compound's
residents (masked), daily reports, passes and printed health cards; issuing and revoking passes,
issuing and ending cards. All scoped to the caller's jurisdiction."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from citybrain.apps.residents import colours, service
from citybrain.apps.residents.schemas import (
    CardDetail,
    CardEndIn,
    CardIssued,
    CardView,
    PassIn,
    PassView,
    ReportView,
    ResidentView,
)
from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.healthcode import cards
from citybrain.healthcode.models import HealthCard
from citybrain.kit import clock
from citybrain.kit.errors import error_responses
from citybrain.kit.web import DB, CompoundCode, Ref, RowId

router = APIRouter(
    prefix="/api/v1/residents",
    tags=["residents 小区居民"],
    responses=error_responses(401, 403, 404, 422),
)
Staff = Annotated[Principal, Depends(require(Permission.RESIDENTS_VIEW))]
PassStaff = Annotated[Principal, Depends(require(Permission.RESIDENTS_PASS))]
CardStaff = Annotated[Principal, Depends(require(Permission.RESIDENTS_CORRECT))]


@router.get(
    "/compounds/{code}/residents",
    response_model=list[ResidentView],
    summary="Residents of a compound (masked)",
)
def residents(
    code: CompoundCode,
    session: DB,
    who: Staff,
    building: Annotated[str | None, Query(max_length=16)] = None,
) -> list[ResidentView]:
    """Masked residents with their code colour; 404 outside your jurisdiction."""
    views = service.list_residents(session, who, code, building=building)
    found = colours.colours_for_refs(session, [v.ref for v in views])
    for view in views:
        view.colour = found.get(view.ref)
    return views


@router.get(
    "/compounds/{code}/reports",
    response_model=list[ReportView],
    summary="A day's health reports of a compound, flagged first",
)
def reports(
    code: CompoundCode,
    session: DB,
    who: Staff,
    day: dt.date | None = None,
    flagged_only: bool = False,
) -> list[ReportView]:
    """每日健康打卡 of a compound (today by default)."""
    return service.list_reports(session, who, code, day=day, flagged_only=flagged_only)


@router.get(
    "/compounds/{code}/passes", response_model=list[PassView], summary="Passes of a compound"
)
def passes(
    code: CompoundCode, session: DB, who: Staff, active_only: bool = False
) -> list[PassView]:
    """出入证 of a compound, newest first."""
    return service.list_passes(session, who, code, active_only=active_only)


@router.post(
    "/compounds/{code}/passes",
    response_model=PassView,
    status_code=201,
    summary="Issue a pass to a household (closed or controlled compounds)",
    responses=error_responses(401, 403, 404, 422),
)
def issue_pass(code: CompoundCode, data: PassIn, session: DB, who: PassStaff) -> PassView:
    """A pass for whole local days (at most 14); announced as ``healthcode.pass_issued``."""
    item = service.issue_pass(session, who, code, data)
    return next(p for p in service.list_passes(session, who, code) if p.id == item.id)


@router.post("/passes/{pass_id}/revoke", response_model=PassView, summary="Revoke a pass at once")
def revoke_pass(pass_id: RowId, session: DB, who: PassStaff) -> PassView:
    """Announced as ``healthcode.pass_revoked``; the gate refuses the pass from then on."""
    item = service.revoke_pass(session, who, pass_id)
    return next(p for p in service.list_passes(session, who, item.compound_code) if p.id == item.id)


def _card_view(card: HealthCard) -> dict[str, object]:
    return {
        "id": card.id,
        "card_no": cards.card_number(card.id),
        "person_ref": card.person_ref,
        "holder_name": card.holder_name,
        "id_tail": card.id_tail,
        "issued_via": card.issued_via,
        "issued_at": card.issued_at,
        "expires_at": card.expires_at,
        "ended_at": card.ended_at,
        "end_reason": card.end_reason,
        "in_force": cards.in_force(card, clock.now()),
    }


@router.get(
    "/compounds/{code}/cards",
    response_model=list[CardView],
    summary="Printed health cards of a compound's residents (纸质健康卡)",
)
def compound_cards(
    code: CompoundCode, session: DB, who: Staff, in_force_only: bool = False
) -> list[CardView]:
    """The cards of the residents living in the compound now, newest first, holders masked."""
    service.compound_for_staff(session, who, code)
    found = cards.cards_of_compound(session, who, code, in_force_only=in_force_only)
    return [CardView.model_validate(_card_view(card)) for card in found]


@router.post(
    "/persons/{ref}/card",
    response_model=CardIssued,
    status_code=201,
    summary="Issue a printed health card to a resident (ends the one they held)",
)
def issue_card(ref: Ref, session: DB, who: CardStaff) -> CardIssued:
    """For a resident without a smartphone: the answer's ``code`` is what the card's QR
    holds (no colour); announced as ``healthcode.card_issued``."""
    printable = cards.issue_by_staff(session, who, ref)
    return CardIssued.model_validate({**_card_view(printable.card), "code": printable.text})


@router.get(
    "/cards/{card_id}",
    response_model=CardDetail,
    summary="A printed health card, with where it was shown after it ended (挂失卡被出示)",
)
def get_card(card_id: RowId, session: DB, who: CardStaff) -> CardDetail:
    """A card of a resident of the caller's jurisdiction (where the holder lives now), its
    holder masked; ``presentations``: each time it was shown at a gate and refused after it
    had ended, newest first."""
    card = cards.card_for_staff(session, who, card_id)
    shown = [
        {
            "presented_at": p.presented_at,
            "place_code": p.place_code,
            "place_name": p.place_name,
            "direction": p.direction,
        }
        for p in cards.presentations_of(session, card.id)
    ]
    return CardDetail.model_validate({**_card_view(card), "presentations": shown})


@router.post(
    "/cards/{card_id}/end",
    response_model=CardView,
    summary="Report a printed health card lost, or cancel it (挂失/作废)",
)
def end_card(card_id: RowId, data: CardEndIn, session: DB, who: CardStaff) -> CardView:
    """Every copy of the card is refused at gates from the next scan; announced as
    ``healthcode.card_ended``."""
    card = cards.end_by_staff(session, who, card_id, data.reason)
    return CardView.model_validate(_card_view(card))

"""Printed health cards (纸质健康卡) on the residents' pages and the compound staff's pages.

A resident without a smartphone of their own (an elder, a child) passes gates with a card the
size of an ID card: its QR names them and the card, never a colour, and the gate takes their
current colour online and shows their masked name and ID tail to check against the ID card
(``healthcode.cards``). The community's staff issue one from the compound's residents tab
(社区代办); a household prints one for any of its members from 我的家庭. Either prints it again,
or reports it lost (挂失), from the card's page; a new card ends the old one. The page of a card
that has ended says so and lists where and when it was still presented at gates (挂失卡被出示).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from citybrain.apps.residents import service
from citybrain.apps.residents.pages import Resident, _page, _residents_tab_after, _to_login
from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo.models import Compound
from citybrain.core.people.models import Person
from citybrain.healthcode import cards
from citybrain.healthcode.models import CARD_CANCELLED, CARD_LOST, HealthCard
from citybrain.healthcode.qr import qr_svg
from citybrain.kit import clock
from citybrain.kit.web import DB, CompoundCode, Ref, RowId, check_csrf

router = APIRouter(tags=["residents 居民健康登记"], include_in_schema=False)

CardStaff = Annotated[Principal, Depends(require(Permission.RESIDENTS_CORRECT))]
STAFF_LAYOUT = "base.html"
RESIDENT_LAYOUT = "residents/resident_base.html"


def _card_face(session: Session, printable: cards.PrintableCard) -> dict[str, Any]:
    """What ``residents/_health_card.html`` prints of a card: the row, its number, its QR and
    its holder's compound."""
    number = cards.card_number(printable.card.id)
    compound = session.get(Compound, printable.card.area_code)
    return {
        "card": printable.card,
        "number": number,
        "svg": Markup(qr_svg(printable.text, scale=6, title=f"No. {number}")),  # noqa: S704
        "compound_name": compound.name if compound else "",
    }


def _card_page(
    request: Request,
    session: Session,
    printable: cards.PrintableCard,
    *,
    layout: str,
    back_url: str,
    end_url: str,
    me: Person | None = None,
) -> Response:
    return _page(
        request,
        "residents/card_print.html",
        {
            **_card_face(session, printable),
            "layout": layout,
            "me": me,
            "back_url": back_url,
            "end_url": end_url,
            "end_reasons": (CARD_LOST, CARD_CANCELLED),
            "issued": "issued" in request.query_params,
        },
    )


def _ended_card_page(
    request: Request,
    session: Session,
    card: HealthCard,
    *,
    layout: str,
    back_url: str,
    reissue_url: str,
    me: Person | None = None,
) -> Response:
    """A card no longer in force: why and since when, where it was presented since, and a new
    card for its holder."""
    return _page(
        request,
        "residents/card_ended.html",
        {
            "card": card,
            "number": cards.card_number(card.id),
            "status": card.end_reason or "expired",
            "ended_at": card.ended_at or card.expires_at,
            "presentations": cards.presentations_of(session, card.id),
            "layout": layout,
            "back_url": back_url,
            "reissue_url": reissue_url,
            "me": me,
        },
    )


# -- the community's staff -------------------------------------------------------------------


@router.post("/residents/staff/persons/{ref}/card")
def staff_issue_card(
    request: Request,
    ref: Ref,
    session: DB,
    who: CardStaff,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Issue a card to a resident of the jurisdiction (ending the one they held) and open it
    to print."""
    check_csrf(request, csrf_token)
    printable = cards.issue_by_staff(session, who, ref)
    return RedirectResponse(f"/residents/staff/cards/{printable.card.id}?issued=1", status_code=303)


@router.get("/residents/staff/cards/{card_id}")
def staff_card(request: Request, card_id: RowId, session: DB, who: CardStaff) -> Response:
    """A card of the jurisdiction, to print (again) or to report lost; one that has ended, with
    where it was presented since."""
    card = cards.card_for_staff(session, who, card_id)
    back_url = f"/residents/staff/compounds/{cards.holder_area(session, card)}?tab=residents"
    if not cards.in_force(card, clock.now()):
        return _ended_card_page(
            request,
            session,
            card,
            layout=STAFF_LAYOUT,
            back_url=back_url,
            reissue_url=f"/residents/staff/persons/{card.person_ref}/card",
        )
    return _card_page(
        request,
        session,
        cards.printable(session, who.actor, card),
        layout=STAFF_LAYOUT,
        back_url=back_url,
        end_url=f"/residents/staff/cards/{card_id}/end",
    )


@router.post("/residents/staff/cards/{card_id}/end")
def staff_end_card(
    request: Request,
    card_id: RowId,
    session: DB,
    who: CardStaff,
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=12)] = CARD_LOST,
) -> Response:
    """Report a card lost or cancel it: every copy is refused at gates from now on."""
    check_csrf(request, csrf_token)
    card = cards.end_by_staff(session, who, card_id, reason)
    return _residents_tab_after(cards.holder_area(session, card), "card_ended")


TICKED = "selected"  # the residents ticked on the residents tab
NEEDING = "needing"  # every resident who never logged in and holds no card


@router.post("/residents/staff/compounds/{code}/cards")
def staff_issue_cards(
    request: Request,
    code: CompoundCode,
    session: DB,
    who: CardStaff,
    csrf_token: Annotated[str, Form()] = "",
    refs: Annotated[list[str] | None, Form()] = None,
    scope: Annotated[str, Form(max_length=12)] = TICKED,
) -> Response:
    """Issue cards to several residents of the compound at once (批量办理): those ticked, or
    every resident who never logged in and holds no card, a sheet's worth at a time (the page
    says how many are left); then their sheet, to print."""
    check_csrf(request, csrf_token)
    service.compound_for_staff(session, who, code)
    left = 0
    if scope == NEEDING:
        needing = service.residents_needing_cards(session, who, code)
        chosen = needing[: cards.MANY_AT_ONCE]
        left = len(needing) - len(chosen)
    else:
        chosen = refs or []
    printables = cards.issue_many_by_staff(session, who, chosen)
    query = urlencode(
        {"ids": ",".join(str(p.card.id) for p in printables), "issued": 1, "left": left}
    )
    return RedirectResponse(
        f"/residents/staff/compounds/{code}/cards/sheet?{query}", status_code=303
    )


@router.get("/residents/staff/compounds/{code}/cards/sheet")
def staff_card_sheet(
    request: Request,
    code: CompoundCode,
    session: DB,
    who: CardStaff,
    ids: Annotated[str, Query(max_length=1000, pattern=r"^\d{1,9}(,\d{1,9})*$")],
    left: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Response:
    """Several cards of the jurisdiction on A4 sheets, two across and five down, to print and
    cut along their borders (each print audited)."""
    compound = service.compound_for_staff(session, who, code)
    wanted = list(dict.fromkeys(int(i) for i in ids.split(",")))[: cards.MANY_AT_ONCE]
    items = [
        _card_face(session, cards.printable_for_staff(session, who, card_id)) for card_id in wanted
    ]
    return _page(
        request,
        "residents/card_sheet.html",
        {
            "compound": compound,
            "items": items,
            "issued": "issued" in request.query_params,
            "left": left,
        },
    )


# -- the household ---------------------------------------------------------------------------


@router.post("/residents/household/cards")
def household_issue_card(
    request: Request,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    member: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Print a card for oneself or a member of one's household (ending the one they held)."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    printable = service.issue_member_card(session, me, member)
    return RedirectResponse(
        f"/residents/household/cards/{printable.card.id}?issued=1", status_code=303
    )


@router.get("/residents/household/cards/{card_id}")
def household_card(request: Request, card_id: RowId, session: DB, me: Resident) -> Response:
    """A card of the household, to print (again) or to report lost; one that has ended, with
    where it was presented since."""
    if me is None:
        return _to_login(request)
    card = service.household_card(session, me, card_id)
    if not cards.in_force(card, clock.now()):
        return _ended_card_page(
            request,
            session,
            card,
            layout=RESIDENT_LAYOUT,
            back_url="/residents/household",
            reissue_url="/residents/household/cards",
            me=me,
        )
    printable = service.print_member_card(session, me, card)
    return _card_page(
        request,
        session,
        printable,
        layout=RESIDENT_LAYOUT,
        back_url="/residents/household",
        end_url=f"/residents/household/cards/{card_id}/end",
        me=me,
    )


@router.post("/residents/household/cards/{card_id}/end")
def household_end_card(
    request: Request,
    card_id: RowId,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=12)] = CARD_LOST,
) -> Response:
    """Report a card of the household lost (挂失)."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    service.end_member_card(session, me, card_id, reason)
    return RedirectResponse("/residents/household?card_ended=1", status_code=303)

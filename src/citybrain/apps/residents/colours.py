"""What the residents' pages show of the risk engine and the health code: a person's colour
with its reasons, a freshly signed QR code, the compound's tier, override notices and
appeals. The engines decide; this module only reads them (and files appeals through them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.apps.residents.service import household_of, resident_actor
from citybrain.core.geo.models import Compound
from citybrain.core.people import service as people_service
from citybrain.core.people.models import Person
from citybrain.healthcode.codes import IssuedCode, issue_code
from citybrain.healthcode.qr import qr_svg
from citybrain.kit.crypto import field_cipher
from citybrain.kit.masking import mask_name
from citybrain.risk import service as risk
from citybrain.risk.schemas import AppealOut, ColourView, NotificationOut, ReasonView, TierView
from citybrain.risk.subjects import subject_of

# Refresh the card a minute before its code expires (at least every 30 seconds).
REFRESH_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class CodeCard:
    """Everything the code page (我的健康码) shows for one person."""

    person_ref: str
    name: str
    is_self: bool
    colour: str
    reasons: list[ReasonView]
    until: dt.datetime | None
    rule_set_version: int
    overridden: bool
    code_text: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    refresh_seconds: int
    compound_name: str | None
    tier: TierView | None
    appeals: list[AppealOut] = field(default_factory=list)
    notices: list[NotificationOut] = field(default_factory=list)
    member_colours: dict[str, str] = field(default_factory=dict)


def _issue(session: Session, person: Person) -> tuple[ColourView, IssuedCode]:
    """``person``'s colour as it stands, and a code of it signed now."""
    view = risk.colour_of(session, subject_of(person))
    issued = issue_code(session, person.ref, view.colour, rule_set_version=view.rule_set_version)
    return view, issued


def code_card(session: Session, me: Person, person: Person) -> CodeCard:
    """The card of ``person`` (the resident or a household member) as ``me`` sees it. The
    code is signed afresh on every call: it is short-lived, so a screenshot soon stops
    passing a gate. Reasons, notices and appeals come from the risk engine as they stand."""
    subject = subject_of(person)
    view, issued = _issue(session, person)
    compound = session.get(Compound, person.area_code) if len(person.area_code) == 15 else None
    name = field_cipher().decrypt(person.name_enc, people_service.NAME_FIELD)
    lifetime = int((issued.expires_at - issued.issued_at).total_seconds())
    members = household_of(session, me)
    return CodeCard(
        person_ref=person.ref,
        name=name if person.ref == me.ref else mask_name(name),
        is_self=person.ref == me.ref,
        colour=view.colour,
        reasons=list(view.reasons),
        until=view.until,
        rule_set_version=view.rule_set_version,
        overridden=view.overridden,
        # The page draws the QR of it in the browser (static/code-qr.js).
        code_text=issued.text,
        issued_at=issued.issued_at,
        expires_at=issued.expires_at,
        refresh_seconds=max(30, lifetime - REFRESH_MARGIN_SECONDS),
        compound_name=compound.name if compound is not None else None,
        # The colour's read saw the rule set in force: the tier and the household's colours
        # are judged by the same, without reading it twice more.
        tier=(
            risk.tier_of(session, compound.code, rule_set_version=view.rule_set_version)
            if compound is not None
            else None
        ),
        appeals=risk.appeals_of(session, subject),
        notices=risk.notifications_of(session, subject),
        member_colours=colours_for(session, members, rule_set_version=view.rule_set_version),
    )


def code_svg(session: Session, person: Person) -> str:
    """The QR of a code of ``person`` signed now, drawn by the server as SVG: for a browser
    without script (the code page draws its own otherwise)."""
    _, issued = _issue(session, person)
    return qr_svg(issued.text)


def file_appeal(session: Session, me: Person, person: Person, text: str) -> None:
    """File ``me``'s appeal against ``person``'s colour with the street office where the
    person lives (``me`` may appeal for a household member, as parents do for children)."""
    street = person.area_code[:9]
    risk.file_appeal(
        session, resident_actor(me), subject=subject_of(person), text=text, street_code=street
    )


def colours_for(
    session: Session, persons: Iterable[Person], *, rule_set_version: int | None = None
) -> dict[str, str]:
    """Colours (green/yellow/red) of persons, by person ref (one batched read;
    ``rule_set_version`` as in ``risk.colours_of``)."""
    by_subject = {subject_of(p): p.ref for p in persons}
    if not by_subject:
        return {}
    views = risk.colours_of(session, list(by_subject), rule_set_version=rule_set_version)
    return {by_subject[s]: v.colour for s, v in views.items()}


def colours_for_refs(session: Session, refs: list[str]) -> dict[str, str]:
    """Colours of persons given by ref (staff lists already scoped by the caller)."""
    if not refs:
        return {}
    persons = session.scalars(select(Person).where(Person.ref.in_(refs))).all()
    return colours_for(session, persons)


def tier_view(session: Session, compound_code: str) -> TierView | None:
    """A compound's tier with reasons, or None for a code that is not a compound's."""
    if not (compound_code.isdigit() and len(compound_code) == 15):
        return None
    return risk.tier_of(session, compound_code)


def tiers_for(session: Session, codes: list[str]) -> dict[str, str]:
    """Tiers of several compounds, by code."""
    return {code: risk.tier_of(session, code).tier for code in codes}

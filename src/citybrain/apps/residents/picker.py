"""The compound picker: district → street → community → compound, or a name search, over the
city's hierarchy (10,806 compounds: nobody scrolls one list of them).

The options come from ``core.geo``'s repository, as the staff geo API's do; residents hold no
staff permission, and the hierarchy is not personal data, so the picker is public.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.geo import repository as geo
from citybrain.core.geo.models import CITY_CODE, Area, Compound

SEARCH_LIMIT = 30
MIN_SEARCH = 2


@dataclass
class Choice:
    """One option of a select."""

    code: str
    name: str
    detail: str = ""


@dataclass
class Picker:
    """The picker's state and the options of each level for that state."""

    district: str = ""
    street: str = ""
    community: str = ""
    compound_code: str = ""
    q: str = ""
    districts: list[Choice] = field(default_factory=list)
    streets: list[Choice] = field(default_factory=list)
    communities: list[Choice] = field(default_factory=list)
    compounds: list[Choice] = field(default_factory=list)
    searched: bool = False
    chosen: Choice | None = None


def _area(session: Session, code: str, level: str, parent: str) -> str:
    """``code`` if it is an area of ``level`` under ``parent``, else ""."""
    if not code or not code.isdigit() or not code.startswith(parent):
        return ""
    area = session.get(Area, code)
    return code if area is not None and area.level == level else ""


def _choices(areas: list[Area]) -> list[Choice]:
    return [Choice(a.code, a.name) for a in areas]


def search(session: Session, q: str, within: str, limit: int = SEARCH_LIMIT) -> list[Choice]:
    """Compounds whose name contains ``q`` inside area ``within`` (the whole city by default),
    each with its community and address to tell namesakes apart."""
    statement = (
        select(Compound, Area.name)
        .join(Area, Area.code == Compound.community_code)
        .where(Compound.name.contains(q, autoescape=True))
        .where(Compound.code.startswith(within or CITY_CODE))
        .order_by(Compound.code)
        .limit(limit)
    )
    return [
        Choice(c.code, c.name, f"{community} · {c.address}")
        for c, community in session.execute(statement)
    ]


def options(
    session: Session,
    *,
    district: str = "",
    street: str = "",
    community: str = "",
    compound_code: str = "",
    q: str = "",
) -> Picker:
    """The picker for the choices so far. A chosen compound fixes the levels above it (it may
    come from a search); a higher level changed away from it clears it; each level is kept
    only if it lies inside the one above."""
    pick = Picker(q=" ".join(q.split())[:32])
    compound = (
        session.get(Compound, compound_code)
        if compound_code.isdigit() and len(compound_code) == 15
        else None
    )
    if compound is not None and all(
        not chosen or compound.code.startswith(chosen) for chosen in (district, street, community)
    ):
        district, street, community = (
            compound.code[:6],
            compound.code[:9],
            compound.code[:12],
        )
        pick.compound_code = compound.code
    pick.district = _area(session, district, "district", CITY_CODE)
    pick.street = _area(session, street, "street", pick.district) if pick.district else ""
    pick.community = _area(session, community, "community", pick.street) if pick.street else ""
    pick.districts = _choices(geo.children(session, CITY_CODE))
    if pick.district:
        pick.streets = _choices(geo.children(session, pick.district))
    if pick.street:
        pick.communities = _choices(geo.children(session, pick.street))
    if len(pick.q) >= MIN_SEARCH:
        pick.searched = True
        within = pick.community or pick.street or pick.district or CITY_CODE
        pick.compounds = search(session, pick.q, within)
    elif pick.community:
        pick.compounds = [
            Choice(c.code, c.name, c.address)
            for c in geo.compounds_in(session, pick.community, limit=1000)
        ]
    if compound is not None and pick.compound_code:
        pick.chosen = Choice(compound.code, compound.name, compound.address)
        if all(c.code != compound.code for c in pick.compounds):
            pick.compounds.insert(0, pick.chosen)
    return pick

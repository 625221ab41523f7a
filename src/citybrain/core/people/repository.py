"""All SQL over persons. Every query of personal data is scoped by the one helper."""

from __future__ import annotations

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from citybrain.core.authz.principal import Principal
from citybrain.core.authz.scope import scoped, within
from citybrain.core.geo.models import Area, Compound
from citybrain.core.people.models import Person


def by_id_number_index(session: Session, id_bidx: str) -> Person | None:
    """The person with this ID-number blind index, unscoped: registration must find an
    existing person wherever they live, so the ID is never registered twice."""
    return session.scalars(select(Person).where(Person.id_number_bidx == id_bidx)).first()


def get_scoped(session: Session, who: Principal, ref: str) -> Person | None:
    """The person ``ref`` if inside ``who``'s jurisdiction."""
    statement = scoped(select(Person).where(Person.ref == ref), Person.area_code, who)
    return session.scalars(statement).first()


def has_members(session: Session, household_id: int) -> bool:
    """Whether anyone in the registry still belongs to household ``household_id``."""
    found = session.scalar(select(Person.id).where(Person.household_id == household_id).limit(1))
    return found is not None


def exists_anywhere(session: Session, ref: str) -> bool:
    """Whether ``ref`` exists at all; only to tell a denial from a miss in the audit log."""
    return bool(session.scalar(select(exists().where(Person.ref == ref))))


def search_scoped(
    session: Session,
    who: Principal,
    *,
    id_bidx: str | None = None,
    phone_bidx: str | None = None,
    name_bidx: str | None = None,
    area_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[Person]]:
    """Persons inside ``who``'s jurisdiction matching every given criterion."""
    statement = scoped(select(Person), Person.area_code, who)
    if id_bidx:
        statement = statement.where(Person.id_number_bidx == id_bidx)
    if phone_bidx:
        statement = statement.where(Person.phone_bidx == phone_bidx)
    if name_bidx:
        statement = statement.where(Person.name_bidx == name_bidx)
    if area_code:
        statement = statement.where(within(Person.area_code, area_code))
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(statement.order_by(Person.id).limit(limit).offset(offset)).all()
    return int(total), list(rows)


def place_names(session: Session, area_codes: set[str]) -> dict[str, tuple[str | None, str | None]]:
    """Compound and community names for the area codes of some persons."""
    compound_codes = {c for c in area_codes if len(c) == 15}
    community_codes = {c[:12] for c in area_codes}
    compounds: dict[str, str] = {}
    if compound_codes:
        rows = session.execute(
            select(Compound.code, Compound.name).where(Compound.code.in_(compound_codes))
        )
        compounds = {code: name for code, name in rows}
    communities: dict[str, str] = {}
    if community_codes:
        rows = session.execute(select(Area.code, Area.name).where(Area.code.in_(community_codes)))
        communities = {code: name for code, name in rows}
    return {c: (compounds.get(c), communities.get(c[:12])) for c in area_codes}

"""JSON API over persons (/api/v1/people)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.people import service
from citybrain.core.people.schemas import (
    HouseholdIn,
    HouseholdOut,
    PersonIn,
    PersonMasked,
    PersonPage,
    PersonPlain,
    RegisterOut,
    UnmaskIn,
)
from citybrain.kit.errors import error_responses
from citybrain.kit.web import DB, Ref

router = APIRouter(
    prefix="/api/v1/people",
    tags=["people 人员"],
    responses=error_responses(401, 403, 404, 422),
)


@router.get("", response_model=PersonPage, summary="Search persons in your jurisdiction (masked)")
def search(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_SEARCH))],
    id_number: Annotated[str | None, Query(max_length=32)] = None,
    phone: Annotated[str | None, Query(max_length=20)] = None,
    name: Annotated[str | None, Query(max_length=32)] = None,
    area_code: Annotated[str | None, Query(max_length=15)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> PersonPage:
    """Exact match on ID number, phone or name; filter by area. Results are masked."""
    return service.search_people(
        session,
        who,
        id_number=id_number,
        phone=phone,
        name=name,
        area_code=area_code,
        limit=limit,
        offset=offset,
    )


@router.post("", response_model=RegisterOut, status_code=201, summary="Register a person")
def register(
    data: PersonIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_CREATE))],
) -> RegisterOut:
    """Register a person, or return the existing one with the same ID number."""
    person, created = service.register_person(session, who, data)
    return RegisterOut(person=person, created=created)


@router.get("/{ref}", response_model=PersonMasked, summary="One person (masked)")
def view(
    ref: Ref,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_VIEW))],
) -> PersonMasked:
    """404 when the person does not exist or lies outside your jurisdiction."""
    return service.view_person(session, who, ref)


@router.post("/{ref}/unmask", response_model=PersonPlain, summary="Unmask with a purpose")
def unmask(
    ref: Ref,
    data: UnmaskIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_UNMASK))],
) -> PersonPlain:
    """Plain name, ID number and phone; the purpose is written to the audit log."""
    return service.unmask_person(session, who, ref, data.purpose)


households = APIRouter(
    prefix="/api/v1/households",
    tags=["people 人员"],
    responses=error_responses(401, 403, 422),
)


@households.post("", response_model=HouseholdOut, status_code=201, summary="Open a household")
def create_household(
    data: HouseholdIn,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_CREATE))],
) -> HouseholdOut:
    """A household (户) in a compound of your jurisdiction; register its members with its id."""
    return service.create_household(session, who, data)

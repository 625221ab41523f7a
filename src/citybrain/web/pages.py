"""Shell pages: the home page per role, the audit trail for auditors, accounts for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from citybrain.core.audit import repository as audit_repository
from citybrain.core.audit.service import verify_chain
from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.deps import CurrentPrincipal, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission, Role, role_label
from citybrain.core.geo import repository as geo_repository
from citybrain.core.geo.models import Area, Compound
from citybrain.core.people.models import Person
from citybrain.kit.web import db_session, language, render

router = APIRouter(include_in_schema=False)
DB = Annotated[Session, Depends(db_session)]

# What each role's home page offers, in order: (message id, link, permission).
HOME_CARDS: list[tuple[str, str, Permission]] = [
    ("card.people_search", "/people", Permission.PERSON_SEARCH),
    ("card.people_new", "/people/new", Permission.PERSON_CREATE),
    ("card.audit", "/audit", Permission.AUDIT_VIEW),
    ("card.users", "/admin/users", Permission.USER_MANAGE),
]


def _area_summary(session: Session, area_code: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for level in ("district", "street", "community"):
        counts[level] = int(
            session.scalar(
                select(func.count())
                .select_from(Area)
                .where(Area.level == level, Area.code.startswith(area_code), Area.code != area_code)
            )
            or 0
        )
    counts["compound"] = int(
        session.scalar(
            select(func.count()).select_from(Compound).where(Compound.code.startswith(area_code))
        )
        or 0
    )
    return counts


@router.get("/")
def home(request: Request, session: DB, who: CurrentPrincipal) -> Response:
    """The signed-in user's home: their jurisdiction and what their role can do."""
    lang = language(request)
    path = geo_repository.ancestors(session, who.area_code)
    persons = None
    if who.can(Permission.PERSON_SEARCH):
        persons = int(
            session.scalar(
                select(func.count())
                .select_from(Person)
                .where(Person.area_code.startswith(who.area_code))
            )
            or 0
        )
    cards = [(key, link) for key, link, permission in HOME_CARDS if who.can(permission)]
    return render(
        request,
        "home.html",
        {
            "role_name": role_label(who.role, lang),
            "area_path": path,
            "summary": _area_summary(session, who.area_code),
            "persons": persons,
            "cards": cards,
        },
    )


@router.get("/audit")
def audit_page(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.AUDIT_VIEW))],
    action: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    verify: bool = False,
) -> Response:
    """The audit trail in the auditor's jurisdiction, newest first; ``verify=1`` walks the
    whole hash chain (costly on a long log, so only on request)."""
    size = 50
    total, entries = audit_repository.recent(
        session,
        action=action or None,
        outcome=outcome or None,
        area_prefix=None if who.area_code == "4101" else who.area_code,
        limit=size,
        offset=(page - 1) * size,
    )
    return render(
        request,
        "audit.html",
        {
            "entries": entries,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // size)),
            "action": action or "",
            "outcome": outcome or "",
            "chain": verify_chain(session) if verify else None,
        },
    )


@router.get("/admin/users")
def users_page(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.USER_MANAGE))],
) -> Response:
    """Accounts inside the admin's jurisdiction."""
    lang = language(request)
    users = authz_repository.list_users(session, who.area_code)
    return render(
        request,
        "users.html",
        {
            "users": users,
            "role_label": lambda role: role_label(role, lang),
            "roles": [(r.value, role_label(r.value, lang)) for r in Role],
        },
    )

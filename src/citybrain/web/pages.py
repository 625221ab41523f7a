"""Shell pages: the home page per role, the audit trail for auditors, accounts for admins."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from citybrain.core.audit import repository as audit_repository
from citybrain.core.audit.repository import AuditFilter
from citybrain.core.audit.service import record, verify_chain
from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz import service as authz_service
from citybrain.core.authz.deps import CurrentPrincipal, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission, Role, role_label
from citybrain.core.authz.scope import covers, within
from citybrain.core.geo import repository as geo_repository
from citybrain.core.geo.models import Area, Compound
from citybrain.core.people.models import Person
from citybrain.kit import clock
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError, InvalidInput, NotFound
from citybrain.kit.export import CSV_MEDIA_TYPE, csv_bytes
from citybrain.kit.web import DB, RowId, download, language, render

router = APIRouter(include_in_schema=False)

# What each role's home page offers, in order: (message id, link, permission).
HOME_CARDS: list[tuple[str, str, Permission]] = [
    ("card.people_search", "/people", Permission.PERSON_SEARCH),
    ("card.people_new", "/people/new", Permission.PERSON_CREATE),
    ("card.audit", "/audit", Permission.AUDIT_VIEW),
    ("card.users", "/admin/users", Permission.USER_MANAGE),
    ("card.datahub", "/datahub", Permission.DATAHUB_VIEW),
    ("card.datahub_quarantine", "/datahub/quarantine", Permission.DATAHUB_QUARANTINE),
    ("card.cockpit", "/cockpit", Permission.COCKPIT_VIEW),
    ("card.timeline", "/analysis/timeline", Permission.TRAJECTORY_READ),
    ("card.risk", "/risk", Permission.RISK_VIEW),
    ("card.risk_people", "/risk/people?control=uncontrolled", Permission.RISK_PEOPLE),
    ("card.appeals", "/risk/appeals", Permission.APPEAL_DECIDE),
    ("card.overrides", "/risk/overrides", Permission.OVERRIDE_REQUEST),
    ("card.residents", "/residents/staff", Permission.RESIDENTS_VIEW),
    ("card.place_codes", "/healthcode/place-codes", Permission.PLACE_CODE_ISSUE),
    ("card.devices", "/healthcode/devices", Permission.DEVICE_MANAGE),
    ("card.gate", "/healthcode/gate", Permission.DEVICE_SCAN),
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
                .where(within(Person.area_code, who.area_code))
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


# An actor as the trail writes it: ``user:7``, ``system``, ``cli``, ``device:12``,
# ``resident:<ref>``, ``agency:health_commission``…
_ACTOR_REF = re.compile(r"[a-z_]+(:[A-Za-z0-9_.-]{1,60})?")


@dataclass
class _AuditQuery:
    """The audit page's filters as typed, and what they mean for the repository."""

    form: dict[str, str]
    filters: AuditFilter
    error: str | None = None


def audit_query(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.AUDIT_VIEW))],
    action: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(alias="object", max_length=64)] = None,
    day_from: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    day_to: Annotated[str | None, Query(alias="to", max_length=10)] = None,
) -> _AuditQuery:
    """Read the filters: an actor is a reference or a staff username (resolved to its
    ``user:<id>``), days are China's calendar days; a filter that cannot be read says so."""
    lang = language(request)
    form = {
        "action": (action or "").strip(),
        "outcome": (outcome or "").strip(),
        "actor": (actor or "").strip(),
        "object": (object_id or "").strip(),
        "from": (day_from or "").strip(),
        "to": (day_to or "").strip(),
    }
    error = None
    actor_ref = form["actor"] or None
    if actor_ref and not (":" in actor_ref or actor_ref in ("system", "cli")):
        user = authz_repository.user_by_username(session, actor_ref.lower())
        if user is None:
            error = InvalidInput("未找到该账号", "no such account", field="actor").message(lang)
        actor_ref = f"user:{user.id}" if user is not None else "user:0"
    elif actor_ref and not _ACTOR_REF.fullmatch(actor_ref):
        error = InvalidInput(
            "操作者应为账号或 user:编号 这样的引用",
            "actor: an account name or a reference such as user:7",
            field="actor",
        ).message(lang)
        actor_ref = "user:0"
    bounds: list[dt.datetime | None] = []
    for key, extra in (("from", 0), ("to", 1)):
        try:
            day = dt.date.fromisoformat(form[key]) if form[key] else None
        except ValueError:
            error = InvalidInput(
                "日期格式应为 2026-11-25", "dates look like 2026-11-25", field=key
            ).message(lang)
            day = None
        bounds.append(clock.local_midnight(day + dt.timedelta(days=extra)) if day else None)
    return _AuditQuery(
        form,
        AuditFilter(
            action=form["action"] or None,
            outcome=form["outcome"] or None,
            area_prefix=None if who.area_code == "4101" else who.area_code,
            actor=actor_ref,
            object_id=form["object"] or None,
            since=bounds[0],
            until=bounds[1],
        ),
        error,
    )


AuditQuery = Annotated[_AuditQuery, Depends(audit_query)]


@router.get("/audit")
def audit_page(
    request: Request,
    session: DB,
    query: AuditQuery,
    page: Annotated[int, Query(ge=1, le=50_000)] = 1,
    verify: bool = False,
) -> Response:
    """The audit trail in the auditor's jurisdiction, newest first, narrowed by action,
    outcome, actor (an account name finds everything that account did), object and days;
    ``verify=1`` walks the whole hash chain (costly on a long log, so only on request)."""
    size = 50
    total, entries = audit_repository.recent(
        session, query.filters, limit=size, offset=(page - 1) * size
    )
    shown = {k: v for k, v in query.form.items() if v}
    return render(
        request,
        "audit.html",
        {
            "entries": entries,
            "names": authz_service.actor_names(session, [e.actor for e in entries]),
            "total": total,
            "page": page,
            "pages": max(1, -(-total // size)),
            "form": query.form,
            "error": query.error,
            "query": lambda **changes: urlencode(shown | {k: str(v) for k, v in changes.items()}),
            "chain": verify_chain(session) if verify else None,
        },
        status_code=422 if query.error else 200,
    )


@router.get("/audit/export.csv")
def audit_export(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.AUDIT_VIEW))],
    query: AuditQuery,
) -> Response:
    """The filtered trail as CSV (newest first, at most 50,000 rows), cells neutralised."""
    if query.error:
        raise InvalidInput(query.error, query.error)
    _total, entries = audit_repository.recent(session, query.filters, limit=50_000)
    record(
        session,
        who.actor,
        "audit.export",
        object_type="audit_log",
        area_code=who.area_code,
        detail={"rows": len(entries)} | {k: v for k, v in query.form.items() if v},
    )
    names = authz_service.actor_names(session, [e.actor for e in entries])
    body = csv_bytes(
        [
            "seq",
            "at",
            "actor",
            "actor_name",
            "role",
            "action",
            "object_type",
            "object_id",
            "area",
            "purpose",
            "outcome",
            "hash",
        ],
        (
            [
                e.seq,
                e.at.isoformat(),
                e.actor,
                names.get(e.actor, e.actor),
                e.actor_role or "",
                e.action,
                e.object_type or "",
                e.object_id or "",
                e.area_code or "",
                e.purpose or "",
                e.outcome,
                e.hash,
            ]
            for e in entries
        ),
    )
    return download(body, "audit.csv", CSV_MEDIA_TYPE)


def _users_page(
    request: Request,
    session: Session,
    who: Principal,
    *,
    error: str | None = None,
    error_field: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request)
    return render(
        request,
        "users.html",
        {
            "users": authz_repository.list_users(session, who.area_code),
            "role_label": lambda role: role_label(role, lang),
            "roles": [(r.value, role_label(r.value, lang)) for r in Role],
            "error": error,
            "error_field": error_field,
            "form": form or {},
        },
        status_code=status_code,
    )


@router.get("/admin/users")
def users_page(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.USER_MANAGE))],
) -> Response:
    """Accounts inside the admin's jurisdiction, with the form for a new one."""
    return _users_page(request, session, who)


@router.post("/admin/users")
def users_create(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.USER_MANAGE))],
    username: Annotated[str, Form(max_length=64)] = "",
    display_name: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=32)] = "",
    area_code: Annotated[str, Form(max_length=12)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Create an account inside the admin's jurisdiction; errors come back on the form."""
    form = {
        "username": username,
        "display_name": display_name,
        "role": role,
        "area_code": area_code,
    }
    try:
        if not covers(who, area_code):
            raise InvalidInput(
                "辖区须在您的管理范围内",
                "the area must lie inside your own jurisdiction",
                field="area_code",
            )
        authz_service.create_user(
            session,
            who.actor,
            username=username,
            password=password,
            role=role,
            area_code=area_code,
            display_name=display_name or None,
        )
    except CitybrainError as error:
        rollback_keeping(session, error)
        return _users_page(
            request,
            session,
            who,
            error=error.message(language(request)),
            error_field=error.field,
            form=form,
            status_code=error.status_code,
        )
    return RedirectResponse("/admin/users", status_code=303)


def _managed_user(session: Session, who: Principal, user_id: int) -> int:
    user = authz_repository.user_by_id(session, user_id)
    if user is None or not covers(who, user.area_code):
        raise NotFound("未找到该账号", "no such account", code="user_not_found")
    if user.id == who.id:
        raise InvalidInput("不能停用自己的账号", "you cannot disable your own account")
    return user.id


@router.post("/admin/users/{user_id}/active")
def users_set_active(
    user_id: RowId,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.USER_MANAGE))],
    active: Annotated[bool, Form()] = False,
) -> Response:
    """Disable (ending its sessions) or re-enable an account."""
    authz_service.set_active(session, who.actor, _managed_user(session, who, user_id), active)
    return RedirectResponse("/admin/users", status_code=303)

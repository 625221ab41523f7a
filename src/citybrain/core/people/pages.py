"""People pages (人员查询): search with masked results, a person's page, unmask with a
stated purpose (audited), registration, and CSV export of the masked list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.people import service
from citybrain.core.people.schemas import PersonIn, PersonPage
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError
from citybrain.kit.export import CSV_MEDIA_TYPE, csv_bytes
from citybrain.kit.web import DB, Ref, download, language, render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
EXPORT_LIMIT = 5000


def _search(
    session: Session,
    who: Principal,
    q: str,
    area_code: str,
    page: int,
    size: int,
    lang: str = "zh-CN",
) -> tuple[PersonPage | None, str | None]:
    """Interpret the one search box: 18 characters → ID number, 11 digits → phone,
    anything else → exact name."""
    q = q.strip()
    criteria: dict[str, str | None] = {"id_number": None, "phone": None, "name": None}
    if q:
        if len(q) == 18:
            criteria["id_number"] = q
        elif q.replace(" ", "").isdigit():
            criteria["phone"] = q
        else:
            criteria["name"] = q
    try:
        result = service.search_people(
            session,
            who,
            area_code=area_code or None,
            limit=size,
            offset=(page - 1) * size,
            **criteria,
        )
    except CitybrainError as error:
        rollback_keeping(session, error)
        return None, error.message(lang)
    return result, None


def _search_page(
    request: Request, session: Session, who: Principal, q: str, area: str, page: int
) -> Response:
    result, error = _search(session, who, q, area, page, PAGE_SIZE, language(request))
    context = {
        "q": q,
        "area": area,
        "page": page,
        "result": result,
        "error": error,
        "pages": max(1, -(-(result.total if result else 0) // PAGE_SIZE)),
    }
    template = "people/_results.html" if request.headers.get("hx-request") else "people/search.html"
    return render(request, template, context)


@router.get("/people")
def people_list(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_SEARCH))],
    area: Annotated[str, Query(max_length=15)] = "",
    page: Annotated[int, Query(ge=1, le=50_000)] = 1,
) -> Response:
    """Everyone in the jurisdiction (or an area of it), masked, page by page."""
    return _search_page(request, session, who, "", area, page)


@router.post("/people")
def people_search(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_SEARCH))],
    q: Annotated[str, Form(max_length=32)] = "",
    area: Annotated[str, Form(max_length=15)] = "",
    page: Annotated[int, Form(ge=1, le=50_000)] = 1,
) -> Response:
    """Search by ID number, phone or name. A form post, so what was searched for never
    appears in a URL, a browser's history or a proxy's log."""
    return _search_page(request, session, who, q, area, page)


@router.post("/people/export.csv")
def people_export(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_SEARCH))],
    q: Annotated[str, Form(max_length=32)] = "",
    area: Annotated[str, Form(max_length=15)] = "",
) -> Response:
    """The current search as CSV, masked, formulas neutralised (at most 5,000 rows)."""
    rows: list[list[object]] = []
    page = 1
    while len(rows) < EXPORT_LIMIT:
        result, _error = _search(session, who, q, area, page, 500)
        if result is None or not result.items:
            break
        rows.extend(
            [
                p.ref,
                p.name,
                p.id_number,
                p.phone or "",
                p.sex,
                p.age,
                p.community_name or "",
                p.compound_name or "",
                p.area_code,
            ]
            for p in result.items
        )
        if len(rows) >= result.total:
            break
        page += 1
    body = csv_bytes(
        ["编号", "姓名", "身份证号", "手机号", "性别", "年龄", "社区", "小区", "区域代码"], rows
    )
    return download(body, "people.csv", CSV_MEDIA_TYPE)


@router.get("/people/new")
def person_new(
    request: Request,
    who: Annotated[Principal, Depends(require(Permission.PERSON_CREATE))],
) -> Response:
    """The registration form (人员登记)."""
    return render(request, "people/new.html", {"form": {}, "error": None})


@router.post("/people/new")
def person_create(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_CREATE))],
    name: Annotated[str, Form(max_length=32)] = "",
    id_number: Annotated[str, Form(max_length=32)] = "",
    phone: Annotated[str, Form(max_length=20)] = "",
    compound_code: Annotated[str, Form(max_length=15)] = "",
) -> Response:
    """Register, then show the person; errors come back on the form, field named."""
    form = {"name": name, "compound_code": compound_code}
    try:
        person, created = service.register_person(
            session,
            who,
            PersonIn(
                name=name or " ",
                id_number=id_number or " ",
                phone=phone or None,
                compound_code=compound_code or None,
            ),
        )
    except CitybrainError as error:
        rollback_keeping(session, error)
        lang = language(request)
        return render(
            request,
            "people/new.html",
            {"form": form, "error": error.message(lang), "error_field": error.field},
            status_code=error.status_code,
        )
    flag = "created" if created else "existing"
    return RedirectResponse(f"/people/{person.ref}?{flag}=1", status_code=303)


@router.get("/people/{ref}")
def person_page(
    request: Request,
    ref: Ref,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_VIEW))],
) -> Response:
    """One person, masked, with the unmask form for roles that may unmask."""
    person = service.view_person(session, who, ref)
    return render(
        request,
        "people/detail.html",
        {
            "person": person,
            "can_unmask": who.can(Permission.PERSON_UNMASK),
            "created": "created" in request.query_params,
            "existing": "existing" in request.query_params,
        },
    )


@router.post("/people/{ref}/unmask")
def person_unmask(
    request: Request,
    ref: Ref,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PERSON_UNMASK))],
    purpose: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Show the plain data for a stated purpose (htmx swaps the masked card)."""
    try:
        plain = service.unmask_person(session, who, ref, purpose)
    except CitybrainError as error:
        if error.status_code == 404:
            raise
        rollback_keeping(session, error)
        return render(
            request,
            "people/_unmask_form.html",
            {"ref": ref, "error": error.message(language(request)), "purpose": purpose},
            status_code=error.status_code,
        )
    if request.headers.get("hx-request"):
        return render(request, "people/_plain.html", {"person": plain})
    # Without JavaScript the form posts normally: show the whole page with the plain data.
    return render(
        request,
        "people/detail.html",
        {"person": plain, "plain": plain, "can_unmask": False, "created": False, "existing": False},
    )

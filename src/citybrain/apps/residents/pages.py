"""Pages of compound resident registration (小区居民健康登记).

For residents, on a phone: register self and household, log back in, report daily health,
see one's health code with its colour and reasons, appeal. For compound and community staff:
compounds of their jurisdiction, a compound's residents (masked), today's reports (flagged
first), entries and exits, passes; lists export to Excel with formulas neutralised.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from citybrain.apps.residents import colours, picker, service, sessions
from citybrain.apps.residents.i18n import translator
from citybrain.apps.residents.models import WHEREABOUTS, MemberInvitation
from citybrain.apps.residents.schemas import (
    CompoundRow,
    HealthReportIn,
    MemberIn,
    PassIn,
    RegistrationIn,
)
from citybrain.apps.residents.sms_codes import CodeSent
from citybrain.core.audit.service import record
from citybrain.core.authz.deps import GUARD_ATTRIBUTE, public, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo.models import Place
from citybrain.core.people import service as people_service
from citybrain.core.people.models import Person
from citybrain.healthcode import cards as gate_cards
from citybrain.healthcode.codes import PLACE_SCAN_PATH
from citybrain.healthcode.models import PASS_REASONS
from citybrain.healthcode.routes import record as record_scan
from citybrain.healthcode.routes import verify_place
from citybrain.healthcode.service import REPEAT_CHECK_IN, place_scan_request, recent_visit
from citybrain.healthcode.writer import Overloaded
from citybrain.kit import clock
from citybrain.kit.crypto import field_cipher
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError, InvalidInput
from citybrain.kit.export import XLSX_MEDIA_TYPE, xlsx_bytes
from citybrain.kit.masking import mask_name
from citybrain.kit.web import DB, CompoundCode, Ref, RowId, check_csrf, download, language, render
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of

router = APIRouter(include_in_schema=False)
Staff = Annotated[Principal, Depends(require(Permission.RESIDENTS_VIEW))]
PassStaff = Annotated[Principal, Depends(require(Permission.RESIDENTS_PASS))]
NO_STORE = {"cache-control": "no-store"}
TABS = ("residents", "reports", "scans", "passes")
EXPORT_LISTS = TABS


def current_resident(request: Request, session: DB) -> Person | None:
    """The resident of a valid resident session cookie, or None (pages then send them to the
    resident login, never to the staff one)."""
    found = sessions.read(request)
    if found is None:
        return None
    return service.session_person(session, *found)


setattr(current_resident, GUARD_ATTRIBUTE, "resident")
Resident = Annotated[Person | None, Depends(current_resident)]


def _page(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """Render with the app's messages (falling back to the shared catalogue)."""
    full = {"t": translator(language(request)), "today": clock.today_local()}
    full.update(context or {})
    response = render(request, name, full, status_code=status_code)
    # Resident pages carry their own data (and typed ID numbers after an error): never cached.
    response.headers.update(NO_STORE)
    return response


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _to_login(request: Request) -> Response:
    return RedirectResponse("/residents/login", status_code=303)


def _errors(error: CitybrainError, lang: str) -> dict[str, str]:
    if isinstance(error, service.FormInvalid):
        return error.messages(lang)
    return {error.field or "form": error.message(lang)}


# ---------------------------------------------------------------------------------------------
# Residents: landing, registration, login


@router.get("/residents")
@public
def landing(request: Request, me: Resident) -> Response:
    """The resident service's front page: register, or log in (straight to the code when
    already logged in)."""
    if me is not None:
        return RedirectResponse("/residents/code", status_code=303)
    return _page(
        request,
        "residents/landing.html",
        {"deregistered": "deregistered" in request.query_params},
    )


def _register_form(
    request: Request,
    session: Session,
    form: RegistrationIn,
    pick: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    sent: CodeSent | None = None,
) -> Response:
    members = list(form.members) or [MemberIn()]
    return _page(
        request,
        "residents/register.html",
        {
            "form": form,
            "members": members,
            "errors": errors or {},
            "sent": sent,
            "pick": picker.options(session, **pick),
            "max_members": service.MAX_MEMBERS,
        },
        status_code=status_code,
    )


@router.get("/residents/register")
@public
def register_page(request: Request, session: DB) -> Response:
    """The registration form (居民登记): self, address, household members."""
    return _register_form(
        request, session, RegistrationIn(), {"district": "", "street": "", "community": ""}
    )


@router.post("/residents/register")
@public
def register_submit(
    request: Request,
    session: DB,
    csrf_token: Annotated[str, Form()] = "",
    action: Annotated[str, Form(max_length=24)] = "submit",
    name: Annotated[str, Form(max_length=32)] = "",
    id_number: Annotated[str, Form(max_length=32)] = "",
    phone: Annotated[str, Form(max_length=20)] = "",
    sms_code: Annotated[str, Form(max_length=8)] = "",
    district: Annotated[str, Form(max_length=6)] = "",
    street: Annotated[str, Form(max_length=9)] = "",
    community: Annotated[str, Form(max_length=12)] = "",
    compound_q: Annotated[str, Form(max_length=32)] = "",
    compound_code: Annotated[str, Form(max_length=15)] = "",
    building: Annotated[str, Form(max_length=16)] = "",
    unit: Annotated[str, Form(max_length=16)] = "",
    room: Annotated[str, Form(max_length=16)] = "",
    member_name: Annotated[list[str] | None, Form(max_length=10)] = None,
    member_id_number: Annotated[list[str] | None, Form(max_length=10)] = None,
    member_phone: Annotated[list[str] | None, Form(max_length=10)] = None,
) -> Response:
    """Register; on any error the form comes back with everything typed and each wrong field
    saying what is wrong. "Add a member" and "remove" re-show the form with one slot more or
    less, "choose" refreshes the compound lists (for phones without JavaScript), and "get a
    code" sends the one-time code to the phone typed, keeping everything else."""
    check_csrf(request, csrf_token)
    names, numbers, phones = member_name or [], member_id_number or [], member_phone or []
    slots = max(len(names), len(numbers), len(phones))
    members = [
        MemberIn(
            name=names[i] if i < len(names) else "",
            id_number=numbers[i] if i < len(numbers) else "",
            phone=phones[i] if i < len(phones) else "",
        )
        for i in range(slots)
    ]
    form = RegistrationIn(
        name=name,
        id_number=id_number,
        phone=phone,
        sms_code=sms_code,
        compound_code=compound_code,
        building=building,
        unit=unit,
        room=room,
        members=members[: service.MAX_MEMBERS],
    )
    pick = {
        "district": district,
        "street": street,
        "community": community,
        "compound_code": compound_code,
        "q": compound_q,
    }
    if action == "add_member":
        form.members = [*form.members, MemberIn()][: service.MAX_MEMBERS]
        return _register_form(request, session, form, pick)
    if action.startswith("remove_member_"):
        position = action.removeprefix("remove_member_")
        if position.isdigit():
            index = int(position) - 1
            form.members = [m for i, m in enumerate(form.members) if i != index]
        return _register_form(request, session, form, pick)
    if action == "choose":
        return _register_form(request, session, form, pick)
    if action == "send_code":
        sent, errors, status = _send_code(request, session, phone)
        return _register_form(
            request, session, form, pick, errors=errors, status_code=status, sent=sent
        )
    try:
        result = service.register_household(session, form, client_ip=_client_ip(request))
    except CitybrainError as error:
        rollback_keeping(session, error)
        return _register_form(
            request,
            session,
            form,
            pick,
            errors=_errors(error, language(request)),
            status_code=error.status_code,
        )
    if result.invited:
        # Adults await their own consent: the household page is where it is asked for.
        target = f"/residents/household?invited={len(result.invited)}"
    else:
        target = "/residents/code?" + ("registered=1" if result.created else "existing=1")
    response = RedirectResponse(target, status_code=303)
    sessions.start(response, result.person_ref)
    return response


@router.get("/residents/picker")
@public
def picker_fragment(
    request: Request,
    session: DB,
    district: Annotated[str, Query(max_length=6)] = "",
    street: Annotated[str, Query(max_length=9)] = "",
    community: Annotated[str, Query(max_length=12)] = "",
    compound_code: Annotated[str, Query(max_length=15)] = "",
    compound_q: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """The compound picker (区县 → 街道 → 社区 → 小区) for the choices so far (htmx swaps it)."""
    pick = picker.options(
        session,
        district=district,
        street=street,
        community=community,
        compound_code=compound_code,
        q=compound_q,
    )
    return _page(request, "residents/_picker.html", {"pick": pick, "errors": {}})


@router.get("/residents/picker/compounds")
@public
def picker_compounds(
    request: Request,
    session: DB,
    district: Annotated[str, Query(max_length=6)] = "",
    street: Annotated[str, Query(max_length=9)] = "",
    community: Annotated[str, Query(max_length=12)] = "",
    compound_code: Annotated[str, Query(max_length=15)] = "",
    compound_q: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Only the compound list, for a name search as it is typed (the search box keeps its
    focus)."""
    pick = picker.options(
        session,
        district=district,
        street=street,
        community=community,
        compound_code=compound_code,
        q=compound_q,
    )
    return _page(request, "residents/_compound_field.html", {"pick": pick, "errors": {}})


def _next_page(value: str | None) -> str:
    """Where to go after logging in: a residents' page the login was asked from (a place's
    check-in, say), else the code page. Only paths of this site's residents pages, never
    another site."""
    if value and value.startswith("/residents/") and "//" not in value and "\\" not in value:
        return value
    return "/residents/code"


@router.get("/residents/login")
@public
def login_page(
    request: Request, me: Resident, next: Annotated[str, Query(max_length=1200)] = ""
) -> Response:
    """Log back in with ID number, phone, name and a code sent to the phone."""
    if me is not None:
        return RedirectResponse(_next_page(next), status_code=303)
    return _login_form(request, {"next": _next_page(next) if next else ""})


def _login_form(
    request: Request,
    form: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    sent: CodeSent | None = None,
    status_code: int = 200,
    change_phone: bool = False,
) -> Response:
    """The login form (or, ``change_phone``, the same fields to take a new phone) with what
    was typed, each wrong field's message, and the code notice."""
    context = {"form": form, "errors": errors or {}, "sent": sent, "change_phone": change_phone}
    return _page(request, "residents/login.html", context, status_code=status_code)


def _send_code(
    request: Request, session: Session, phone: str
) -> tuple[CodeSent | None, dict[str, str], int]:
    """The form's "get a code" button (获取验证码): the notice to show, or the errors."""
    try:
        return service.send_sms_code(session, phone, client_ip=_client_ip(request)), {}, 200
    except CitybrainError as error:
        rollback_keeping(session, error)
        return None, _errors(error, language(request)), error.status_code


def _proof_submit(
    request: Request,
    session: DB,
    form: dict[str, str],
    action: str,
    *,
    act: Callable[..., Person],
    success: str,
    change_phone: bool = False,
) -> Response:
    """The login form's two buttons (and the phone change's, ``change_phone``): "get a code"
    sends one to the phone typed; the other runs ``act`` on the three fields and the code and
    on success starts a resident session and goes to ``success``; any problem shows the form
    again with what was typed."""
    if action == "send_code":
        sent, errors, status = _send_code(request, session, form["phone"])
        return _login_form(
            request, form, errors=errors, sent=sent, status_code=status, change_phone=change_phone
        )
    try:
        person = act(
            session,
            id_number=form["id_number"],
            phone=form["phone"],
            name=form["name"],
            sms_code=form["sms_code"],
            client_ip=_client_ip(request),
        )
    except CitybrainError as error:
        rollback_keeping(session, error)
        errors = _errors(error, language(request))
        return _login_form(
            request, form, errors=errors, status_code=error.status_code, change_phone=change_phone
        )
    response = RedirectResponse(success, status_code=303)
    sessions.start(response, person.ref)
    return response


@router.post("/residents/login")
@public
def login_submit(
    request: Request,
    session: DB,
    csrf_token: Annotated[str, Form()] = "",
    action: Annotated[str, Form(max_length=24)] = "submit",
    name: Annotated[str, Form(max_length=32)] = "",
    id_number: Annotated[str, Form(max_length=32)] = "",
    phone: Annotated[str, Form(max_length=20)] = "",
    sms_code: Annotated[str, Form(max_length=8)] = "",
    next: Annotated[str, Form(max_length=1200)] = "",
) -> Response:
    """ "Get a code" sends one to the phone typed; "log in" checks the three and the code and
    on success starts a resident session and shows the code page (or the page the login was
    asked from)."""
    check_csrf(request, csrf_token)
    form = {
        "name": name,
        "id_number": id_number,
        "phone": phone,
        "sms_code": sms_code,
        "next": _next_page(next) if next else "",
    }
    return _proof_submit(
        request, session, form, action, act=service.log_in, success=_next_page(next)
    )


@router.get("/residents/phone")
@public
def phone_page(request: Request) -> Response:
    """更换手机号: take a new phone as one's own (changed numbers, or registered without one)."""
    return _login_form(request, {}, change_phone=True)


@router.post("/residents/phone")
@public
def phone_submit(
    request: Request,
    session: DB,
    csrf_token: Annotated[str, Form()] = "",
    action: Annotated[str, Form(max_length=24)] = "submit",
    name: Annotated[str, Form(max_length=32)] = "",
    id_number: Annotated[str, Form(max_length=32)] = "",
    phone: Annotated[str, Form(max_length=20)] = "",
    sms_code: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """ "Get a code" sends one to the new phone; "change" checks name and ID against the
    registration, the code, and that the phone is in the resident's name, then holds the new
    phone, ends the resident's other sessions and logs them in."""
    check_csrf(request, csrf_token)
    form = {"name": name, "id_number": id_number, "phone": phone, "sms_code": sms_code}
    return _proof_submit(
        request,
        session,
        form,
        action,
        act=service.change_phone,
        success="/residents/code?phone_changed=1",
        change_phone=True,
    )


@router.post("/residents/logout")
def logout(
    request: Request, session: DB, me: Resident, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """End the resident session everywhere."""
    check_csrf(request, csrf_token)
    if me is not None:
        service.log_out(session, me)
    response = RedirectResponse("/residents", status_code=303)
    sessions.end(response)
    return response


# ---------------------------------------------------------------------------------------------
# Residents: checking in at a place by its code (扫场所码)


def _place_context(session: Session, me: Person, place_code: str) -> dict[str, Any]:
    place = session.get(Place, place_code)
    view = risk.colour_of(session, subject_of(me))
    return {
        "place_name": place.name if place is not None else place_code,
        "colour": view.colour,
        # Masked: the result is shown to the staff at the door.
        "my_name": mask_name(field_cipher().decrypt(me.name_enc, people_service.NAME_FIELD)),
    }


def _place_refused(request: Request, error: CitybrainError) -> Response:
    lang = language(request)
    return _page(
        request,
        "residents/place.html",
        {"refused": error.message(lang), "c": ""},
        status_code=error.status_code,
    )


@router.get(PLACE_SCAN_PATH)
def place_page(
    request: Request,
    session: DB,
    me: Resident,
    c: Annotated[str, Query(max_length=1024)] = "",
) -> Response:
    """The page a place code's link opens (扫场所码): which place, who checks in with what
    colour, and the button that records it. Not logged in: the login first, then back here."""
    if me is None:
        here = f"{PLACE_SCAN_PATH}?{urlencode({'c': c})}"
        return RedirectResponse(f"/residents/login?{urlencode({'next': here})}", status_code=303)
    try:
        place = verify_place(request, c)
    except CitybrainError as error:
        return _place_refused(request, error)
    context = _place_context(session, me, place.place_code)
    context.update({"c": c, "result": None})
    return _page(request, "residents/place.html", context)


@router.post(PLACE_SCAN_PATH)
async def place_submit(
    request: Request,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    c: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Record the visit with the resident's current colour, and show the result big, for the
    staff at the door."""
    check_csrf(request, csrf_token)
    if me is None:
        return _to_login(request)
    try:
        place = verify_place(request, c)
    except CitybrainError as error:
        return _place_refused(request, error)
    context = _place_context(session, me, place.place_code)
    earlier = recent_visit(session, me.ref, place.place_code, within=REPEAT_CHECK_IN)
    if earlier is not None:
        context.update({"c": "", "result": earlier, "at": earlier.scanned_at, "repeat": True})
        return _page(request, "residents/place.html", context)
    try:
        outcome = await record_scan(
            request, place_scan_request(place.place_code, me.ref, str(context["colour"]))
        )
    except Overloaded:
        context.update({"c": c, "result": None, "busy": True})
        response = _page(request, "residents/place.html", context, status_code=429)
        response.headers["Retry-After"] = "1"
        return response
    context.update({"c": "", "result": outcome, "at": clock.now()})
    return _page(request, "residents/place.html", context)


# ---------------------------------------------------------------------------------------------
# Residents: code, appeal, daily report, household


def _code_context(session: Session, me: Person, member: str | None) -> dict[str, Any]:
    person = service.member_of(session, me, member)
    return {
        "me": me,
        "card": colours.code_card(session, me, person),
        "members": service.members_view(session, me),
    }


@router.get("/residents/code")
def code_page(
    request: Request,
    session: DB,
    me: Resident,
    member: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """我的健康码: the QR code (issued afresh on every view, short-lived), its colour big, the
    reasons in plain words, override notices, the compound's tier, appeals, and the
    household's colours."""
    if me is None:
        return _to_login(request)
    context = _code_context(session, me, member)
    context.update(
        {
            "registered": "registered" in request.query_params,
            "existing": "existing" in request.query_params,
            "phone_changed": "phone_changed" in request.query_params,
            "appealed": "appealed" in request.query_params,
            "errors": {},
            "appeal_text": "",
        }
    )
    return _page(request, "residents/code.html", context)


@router.get("/residents/code/fresh")
def code_fresh(
    request: Request,
    session: DB,
    me: Resident,
    member: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """A newly issued code for the card (htmx refreshes it before the old one expires)."""
    if me is None:
        return Response(status_code=401, headers={"HX-Redirect": "/residents/login"})
    person = service.member_of(session, me, member)
    return _page(
        request, "residents/_code_card.html", {"card": colours.code_card(session, me, person)}
    )


@router.get("/residents/code/qr.svg")
def code_qr(
    session: DB,
    me: Resident,
    member: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """The QR of a newly issued code drawn by the server, for a browser without script (the
    code page draws the QR itself otherwise); never cached."""
    if me is None:
        return Response(status_code=401)
    person = service.member_of(session, me, member)
    return Response(
        colours.code_svg(session, person),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store"},
    )


@router.post("/residents/appeal")
def appeal_submit(
    request: Request,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    member: Annotated[str, Form(max_length=32)] = "",
    text: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """File an appeal against the colour shown (申诉); it goes to the street office's queue."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    person = service.member_of(session, me, member or None)
    try:
        colours.file_appeal(session, me, person, text)
    except CitybrainError as error:
        rollback_keeping(session, error)
        context = _code_context(session, me, member or None)
        context.update(
            {
                "errors": _errors(error, language(request)),
                "appeal_text": text,
                "registered": False,
                "existing": False,
                "appealed": False,
            }
        )
        return _page(request, "residents/code.html", context, status_code=error.status_code)
    query = urlencode({"appealed": 1, **({"member": person.ref} if person.ref != me.ref else {})})
    return RedirectResponse(f"/residents/code?{query}", status_code=303)


def _report_form(
    request: Request,
    session: Session,
    me: Person,
    *,
    chosen: str,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    members = service.members_view(session, me)
    reports = service.todays_reports(session, me)
    current = reports.get(chosen)
    if form is None:
        form = (
            {
                "temperature": f"{current.temperature:.1f}",
                "symptoms": list(current.symptoms or []),
                "whereabouts": current.whereabouts,
            }
            if current
            else {"temperature": "", "symptoms": [], "whereabouts": ""}
        )
    return _page(
        request,
        "residents/report.html",
        {
            "me": me,
            "members": members,
            "chosen": chosen,
            "current": current,
            "reports": reports,
            "form": form,
            "errors": errors or {},
            "saved": saved,
            "symptoms": service.SYMPTOMS,
            "whereabouts": WHEREABOUTS,
            "fever_from": service.FEVER_FROM,
        },
        status_code=status_code,
    )


@router.get("/residents/report")
def report_page(
    request: Request,
    session: DB,
    me: Resident,
    member: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """每日健康打卡 for oneself or a household member; today's report is shown and can be
    corrected until midnight."""
    if me is None:
        return _to_login(request)
    chosen = service.member_of(session, me, member).ref
    return _report_form(request, session, me, chosen=chosen, saved="saved" in request.query_params)


@router.post("/residents/report")
def report_submit(
    request: Request,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    person_ref: Annotated[str, Form(max_length=32)] = "",
    temperature: Annotated[str, Form(max_length=8)] = "",
    symptoms: Annotated[list[str] | None, Form(max_length=12)] = None,
    whereabouts: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Save (or correct) today's report."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    data = HealthReportIn(
        person_ref=person_ref or me.ref,
        temperature=temperature,
        symptoms=symptoms or [],
        whereabouts=whereabouts,
    )
    try:
        report = service.submit_report(session, me, data)
    except CitybrainError as error:
        if error.status_code == 404:
            raise
        rollback_keeping(session, error)
        return _report_form(
            request,
            session,
            me,
            chosen=data.person_ref,
            form={
                "temperature": temperature,
                "symptoms": data.symptoms,
                "whereabouts": whereabouts,
            },
            errors=_errors(error, language(request)),
            status_code=error.status_code,
        )
    query = urlencode({"saved": 1, "member": report.person_ref})
    return RedirectResponse(f"/residents/report?{query}", status_code=303)


@router.get("/residents/household")
def household_page(
    request: Request,
    session: DB,
    me: Resident,
    remove: Annotated[str | None, Query(max_length=32)] = None,
    leave: bool = False,
    deregister: bool = False,
) -> Response:
    """我的家庭: the members (masked) with their colours and today's reports, the household's
    passes, and a form to add a member; ``remove`` asks to confirm taking a member out,
    ``leave`` to confirm leaving oneself, ``deregister`` to confirm withdrawing one's own
    registration."""
    if me is None:
        return _to_login(request)
    return _household(request, session, me, remove=remove, leave=leave, deregister=deregister)


def _household(
    request: Request,
    session: Session,
    me: Person,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    added: bool = False,
    remove: str | None = None,
    leave: bool = False,
    deregister: bool = False,
    pending_errors: dict[int, dict[str, str]] | None = None,
    sent: tuple[int, CodeSent] | None = None,
    status_code: int = 200,
) -> Response:
    household = service.household_of(session, me)
    members = service.members_view(session, me, household)
    address = service.address_of(session, me)
    # The member to confirm removing, and whether that withdraws their registration.
    removing = next((m for m in members if m.ref == remove and not m.is_self), None)
    withdraws = removing is not None and not service.has_own_account(session, removing.ref)
    return _page(
        request,
        "residents/household.html",
        {
            "me": me,
            "members": members,
            "member_colours": colours.colours_for(session, household),
            "member_cards": gate_cards.current_cards(session, [m.ref for m in members]),
            "presented_cards": gate_cards.presented_cards(session, [m.ref for m in members]),
            "card_ended": "card_ended" in request.query_params,
            "compound": address.compound,
            "unit": address.flat,
            "passes": service.my_passes(session, me),
            "form": form or {},
            "errors": errors or {},
            "added": added or "added" in request.query_params,
            "removing": removing,
            "withdraws": withdraws,
            "leaving": leave and len(members) > 1,
            "deregistering": deregister,
            "left": "left" in request.query_params,
            "removed": request.query_params.get("removed", ""),
            "moved": "moved" in request.query_params,
            "pending": service.pending_members(session, me),
            "pending_errors": pending_errors or {},
            "sent": sent,
            "invited": request.query_params.get("invited", ""),
            "confirmed": "confirmed" in request.query_params,
            "withdrawn": "withdrawn" in request.query_params,
        },
        status_code=status_code,
    )


@router.post("/residents/household")
def household_add(
    request: Request,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    name: Annotated[str, Form(max_length=32)] = "",
    id_number: Annotated[str, Form(max_length=32)] = "",
    phone: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Add a household member."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    try:
        added = service.add_member(
            session, me, name, id_number, phone, client_ip=_client_ip(request)
        )
    except CitybrainError as error:
        rollback_keeping(session, error)
        return _household(
            request,
            session,
            me,
            form={"name": name, "id_number": id_number, "phone": phone},
            errors=_errors(error, language(request)),
            status_code=error.status_code,
        )
    flag = "invited=1" if isinstance(added, MemberInvitation) else "added=1"
    return RedirectResponse(f"/residents/household?{flag}", status_code=303)


@router.post("/residents/household/invitations/{invitation_id}")
def household_invitation(
    request: Request,
    invitation_id: RowId,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    action: Annotated[str, Form(max_length=24)] = "confirm",
    sms_code: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """An adult member awaiting consent (待本人确认): text them the code ("send_code"), confirm
    with the code they pass on ("confirm"), or withdraw the invitation ("withdraw"). Errors
    come back beside that member."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    try:
        if action == "send_code":
            code_sent = service.send_consent_code(
                session, me, invitation_id, client_ip=_client_ip(request)
            )
            return _household(request, session, me, sent=(invitation_id, code_sent))
        if action == "withdraw":
            service.withdraw_invitation(session, me, invitation_id)
            return RedirectResponse("/residents/household?withdrawn=1", status_code=303)
        service.confirm_member(session, me, invitation_id, sms_code)
    except CitybrainError as error:
        return _household_refusing(request, session, me, error, beside=invitation_id)
    return RedirectResponse("/residents/household?confirmed=1", status_code=303)


@router.get("/residents/address")
def address_page(request: Request, session: DB, me: Resident) -> Response:
    """变更住址: the household's compound and flat, to correct or to move."""
    if me is None:
        return _to_login(request)
    address = service.address_of(session, me)
    code = address.compound.code if address.compound is not None else ""
    pick = {"district": code[:6], "street": code[:9], "community": code[:12], "compound_code": code}
    form = {"building": address.building, "unit": address.unit, "room": address.room}
    return _address_form(request, session, me, form, pick)


def _address_form(
    request: Request,
    session: Session,
    me: Person,
    form: dict[str, str],
    pick: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    address = service.address_of(session, me)
    return _page(
        request,
        "residents/address.html",
        {
            "me": me,
            "form": form,
            "pick": picker.options(session, **pick),
            "errors": errors or {},
            "compound": address.compound,
            "unit": address.flat,
        },
        status_code=status_code,
    )


@router.post("/residents/address")
def address_submit(
    request: Request,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    action: Annotated[str, Form(max_length=24)] = "submit",
    district: Annotated[str, Form(max_length=6)] = "",
    street: Annotated[str, Form(max_length=9)] = "",
    community: Annotated[str, Form(max_length=12)] = "",
    compound_q: Annotated[str, Form(max_length=32)] = "",
    compound_code: Annotated[str, Form(max_length=15)] = "",
    building: Annotated[str, Form(max_length=16)] = "",
    unit: Annotated[str, Form(max_length=16)] = "",
    room: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Save the new address; "choose" refreshes the compound lists (phones without
    JavaScript); on an error the form comes back as typed with what is wrong."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    form = {"building": building, "unit": unit, "room": room}
    pick = {
        "district": district,
        "street": street,
        "community": community,
        "compound_code": compound_code,
        "q": compound_q,
    }
    if action == "choose":
        return _address_form(request, session, me, form, pick)
    try:
        service.move_household(session, me, compound_code, building, unit, room)
    except CitybrainError as error:
        rollback_keeping(session, error)
        return _address_form(
            request,
            session,
            me,
            form,
            pick,
            errors=_errors(error, language(request)),
            status_code=error.status_code,
        )
    return RedirectResponse("/residents/household?moved=1", status_code=303)


def _household_confirmed(
    request: Request,
    session: Session,
    me: Person | None,
    csrf_token: str,
    act: Callable[[Person], str],
) -> Response:
    """Run an action the household page asked to confirm: ``act`` returns where to go next;
    a refusal shows 我的家庭 again with the reason."""
    if me is None:
        return _to_login(request)
    check_csrf(request, csrf_token)
    try:
        target = act(me)
    except CitybrainError as error:
        return _household_refusing(request, session, me, error)
    return RedirectResponse(target, status_code=303)


@router.post("/residents/household/leave")
def household_leave(
    request: Request, session: DB, me: Resident, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Leave one's household, after the page asked to confirm."""

    def leave(me: Person) -> str:
        service.leave_own_household(session, me)
        return "/residents/household?left=1"

    return _household_confirmed(request, session, me, csrf_token, leave)


@router.post("/residents/household/deregister")
def household_deregister(
    request: Request, session: DB, me: Resident, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Withdraw one's own registration (注销本人登记), after the page asked to confirm; the
    session ends with it."""

    def deregister(me: Person) -> str:
        service.deregister_self(session, me)
        return "/residents?deregistered=1"

    response = _household_confirmed(request, session, me, csrf_token, deregister)
    if response.status_code == 303:  # gone (or never logged in): no session to keep
        sessions.end(response)
    return response


def _household_refusing(
    request: Request,
    session: Session,
    me: Person,
    error: CitybrainError,
    *,
    beside: int | None = None,
) -> Response:
    """我的家庭 again, saying why an action on it was refused (``beside`` an adult awaiting
    consent, when it was about them)."""
    rollback_keeping(session, error)
    errors = _errors(error, language(request))
    return _household(
        request,
        session,
        me,
        errors=errors if beside is None else None,
        pending_errors={beside: errors} if beside is not None else None,
        status_code=error.status_code,
    )


@router.post("/residents/household/remove")
def household_remove(
    request: Request,
    session: DB,
    me: Resident,
    csrf_token: Annotated[str, Form()] = "",
    member: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Take a member out of the household, after the page asked to confirm."""

    def remove(me: Person) -> str:
        return f"/residents/household?removed={service.remove_member(session, me, member)}"

    return _household_confirmed(request, session, me, csrf_token, remove)


# ---------------------------------------------------------------------------------------------
# Staff


@router.get("/residents/staff")
def staff_index(
    request: Request,
    session: DB,
    who: Staff,
    area: Annotated[str, Query(max_length=15)] = "",
    name: Annotated[str, Query(max_length=32)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The compounds of the jurisdiction: residents registered, today's reports and flags,
    and each compound's tier."""
    size = 30
    error = None
    total, rows = 0, list[CompoundRow]()
    try:
        total, rows = service.compounds_overview(
            session, who, area_code=area or None, name=name or None, page=page, size=size
        )
    except InvalidInput as exc:
        rollback_keeping(session, exc)
        error = exc.message(language(request))
    tiers = colours.tiers_for(session, [r.code for r in rows])
    for row in rows:
        row.tier = tiers.get(row.code)
    return _page(
        request,
        "residents/staff_index.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // size)),
            "area": area,
            "name": name,
            "error": error,
        },
    )


def _day(value: str) -> dt.date:
    if not value:
        return clock.today_local()
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("日期格式应为 YYYY-MM-DD", "dates are YYYY-MM-DD", field="day") from exc


@router.get("/residents/staff/compounds/{code}")
def staff_compound(
    request: Request,
    code: CompoundCode,
    session: DB,
    who: Staff,
    tab: Annotated[str, Query(max_length=16)] = "reports",
    day: Annotated[str, Query(max_length=10)] = "",
    flagged: bool = False,
    building: Annotated[str, Query(max_length=16)] = "",
    direction: Annotated[str, Query(max_length=8)] = "",
    active: bool = False,
    withdraw: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """One compound: its tier with reasons, and the tab asked for (residents, today's reports
    with the flagged first, entries and exits, passes); on the residents tab, ``withdraw``
    asks to confirm withdrawing one registration."""
    return _compound_page(
        request,
        session,
        who,
        code,
        tab=tab,
        day=day,
        flagged=flagged,
        building=building,
        direction=direction,
        active=active,
        withdraw=withdraw,
    )


def _compound_page(
    request: Request,
    session: Session,
    who: Principal,
    code: str,
    *,
    tab: str,
    day: str = "",
    flagged: bool = False,
    building: str = "",
    direction: str = "",
    active: bool = False,
    withdraw: str = "",
    errors: dict[str, str] | None = None,
    reason: str = "",
    status_code: int = 200,
) -> Response:
    compound = service.compound_for_staff(session, who, code)
    tab = tab if tab in TABS else "reports"
    the_day = _day(day)
    context: dict[str, Any] = {
        "compound": compound,
        "tier": colours.tier_view(session, compound.code),
        "tab": tab,
        "day": the_day,
        "flagged": flagged,
        "building": building,
        "direction": direction,
        "active": active,
        "filters": _filters(tab, day, flagged, building, direction, active),
        "can_pass": who.can(Permission.RESIDENTS_PASS),
        "pass_reasons": PASS_REASONS,
        "symptom_names": service.symptom_labels,
        "where_name": service.whereabouts_label,
        "errors": errors or {},
        "pass_form": {},
        "can_correct": who.can(Permission.RESIDENTS_CORRECT),
        "withdrawn": "withdrawn" in request.query_params,
        "reason": reason,
    }
    if tab == "residents":
        residents = service.list_residents(session, who, code, building=building or None)
        found = colours.colours_for_refs(session, [r.ref for r in residents])
        for r in residents:
            r.colour = found.get(r.ref)
        context["residents"] = residents
        context["cards"] = gate_cards.current_cards(session, [r.ref for r in residents])
        context["presented_cards"] = (
            gate_cards.presented_cards(session, [r.ref for r in residents])
            if context["can_correct"]
            else []
        )
        if not context["can_correct"]:
            context["needing_cards"] = 0
        elif building:
            context["needing_cards"] = len(service.residents_needing_cards(session, who, code))
        else:  # the whole compound is listed already: counted from it, not read again
            context["needing_cards"] = sum(
                1 for r in residents if not r.self_registered and r.ref not in context["cards"]
            )
        context["card_ended"] = "card_ended" in request.query_params
        context["withdrawing"] = next((r for r in residents if r.ref == withdraw), None)
        context["pending"] = service.pending_in_compound(session, who, code)
        context["member_confirmed"] = "member_confirmed" in request.query_params
    elif tab == "reports":
        context["reports"] = service.list_reports(
            session, who, code, day=the_day, flagged_only=flagged
        )
    elif tab == "scans":
        context["scans"] = service.list_scans(
            session, who, code, day=the_day, direction=direction or None
        )
    else:
        context["passes"] = service.list_passes(session, who, code, active_only=active)
        context["households"] = service.households_of(session, who, code)
    return _page(request, "residents/staff_compound.html", context, status_code=status_code)


def _filters(tab: str, day: str, flagged: bool, building: str, direction: str, active: bool) -> str:
    """The list's filters as a query string (for the export link)."""
    values: dict[str, str] = {"list": tab}
    if day:
        values["day"] = day
    if flagged:
        values["flagged"] = "true"
    if building:
        values["building"] = building
    if direction:
        values["direction"] = direction
    if active:
        values["active"] = "true"
    return urlencode(values)


@router.get("/residents/staff/compounds/{code}/export.xlsx")
def staff_export(
    request: Request,
    code: CompoundCode,
    session: DB,
    who: Staff,
    list_: Annotated[str, Query(alias="list", max_length=16)] = "residents",
    day: Annotated[str, Query(max_length=10)] = "",
    flagged: bool = False,
    building: Annotated[str, Query(max_length=16)] = "",
    direction: Annotated[str, Query(max_length=8)] = "",
    active: bool = False,
) -> Response:
    """The list as shown (same filters), masked, as an Excel workbook; cells that a
    spreadsheet would run as formulas are neutralised. The export is audited."""
    lang = language(request)
    t = translator(lang)
    compound = service.compound_for_staff(session, who, code)
    if list_ not in EXPORT_LISTS:
        raise InvalidInput("未知的列表", "unknown list", field="list")
    the_day = _day(day)
    header: list[str]
    rows: list[list[Any]]
    if list_ == "residents":
        residents = service.list_residents(session, who, code, building=building or None)
        found = colours.colours_for_refs(session, [r.ref for r in residents])
        held = gate_cards.current_cards(session, [r.ref for r in residents])
        header = [
            t(k)
            for k in (
                "res.name",
                "res.id_number",
                "res.phone",
                "res.sex",
                "res.age",
                "res.building",
                "res.unit",
                "res.room",
                "res.household",
                "res.self_registered",
                "res.reported_today_col",
                "res.colour",
                "card.column",
            )
        ]
        rows = [
            [
                r.name,
                r.id_number,
                r.phone or "",
                t("sex." + r.sex),
                r.age,
                r.building,
                r.unit,
                r.room,
                r.household_id or "",
                t("res.yes") if r.self_registered else t("res.no"),
                t("res.yes") if r.reported_today else t("res.no"),
                t("colour." + found[r.ref]) if r.ref in found else "",
                f"No.{gate_cards.card_number(held[r.ref].id)}" if r.ref in held else "",
            ]
            for r in residents
        ]
    elif list_ == "reports":
        reports = service.list_reports(session, who, code, day=the_day, flagged_only=flagged)
        header = [
            t(k)
            for k in (
                "res.name",
                "res.building",
                "res.report_date",
                "res.temperature",
                "res.symptoms",
                "res.whereabouts",
                "res.flagged",
                "res.followed_up",
                "res.updated_at",
                "res.corrections",
            )
        ]
        rows = [
            [
                r.name,
                r.building,
                r.report_date.isoformat(),
                r.temperature,
                service.symptom_labels(r.symptoms, lang),
                service.whereabouts_label(r.whereabouts, lang),
                t("res.yes") if r.flagged else t("res.no"),
                t("res.yes") if r.followed_up_at else t("res.no"),
                r.updated_at.astimezone(clock.CHINA_TZ).strftime("%Y-%m-%d %H:%M"),
                r.corrections,
            ]
            for r in reports
        ]
    elif list_ == "scans":
        scans = service.list_scans(session, who, code, day=the_day, direction=direction or None)
        header = [
            t(k)
            for k in (
                "res.scanned_at",
                "res.gate",
                "res.direction",
                "res.name",
                "res.colour",
                "res.decision",
                "res.reason",
                "card.column",
            )
        ]
        rows = [
            [
                s.scanned_at.astimezone(clock.CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"),
                s.place_name,
                t("direction." + s.direction),
                s.name or "",
                t("colour." + s.colour),
                t("decision." + s.decision),
                s.reason,
                f"No.{gate_cards.card_number(s.card_id)}" if s.card_id else "",
            ]
            for s in scans
        ]
    else:
        passes = service.list_passes(session, who, code, active_only=active)
        header = [
            t(k)
            for k in (
                "res.pass_id",
                "res.household",
                "res.members",
                "res.valid_from",
                "res.valid_until",
                "res.pass_reason",
                "res.note",
                "res.pass_status",
            )
        ]
        rows = [
            [
                p.id,
                p.household_id,
                p.members,
                p.valid_from.isoformat(),
                p.valid_until.isoformat(),
                t("pass." + p.reason),
                p.note or "",
                t("res.revoked")
                if p.revoked_at
                else (t("res.active") if p.active else t("res.inactive")),
            ]
            for p in passes
        ]
    record(
        session,
        who.actor,
        "residents.export",
        object_type="compound",
        object_id=compound.code,
        area_code=compound.code,
        detail={"list": list_, "rows": len(rows)},
    )
    body = xlsx_bytes(f"{compound.name}-{list_}", header, rows)
    filename = f"{compound.code}-{list_}-{the_day.isoformat()}.xlsx"
    return download(body, filename, XLSX_MEDIA_TYPE)


@router.post("/residents/staff/reports/{report_id}/follow-up")
def staff_follow_up(
    request: Request,
    report_id: RowId,
    session: DB,
    who: Staff,
) -> Response:
    """Mark a flagged report followed up, then back to the compound's reports."""
    report = service.follow_up(session, who, report_id)
    query = urlencode({"tab": "reports", "day": report.report_date.isoformat()})
    return RedirectResponse(
        f"/residents/staff/compounds/{report.area_code}?{query}", status_code=303
    )


@router.post("/residents/staff/persons/{ref}/withdraw")
def staff_withdraw(
    request: Request,
    ref: Ref,
    session: DB,
    who: Staff,
    csrf_token: Annotated[str, Form()] = "",
    compound: Annotated[str, Form(max_length=15)] = "",
    reason: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    """Withdraw a registration after checking in person, with the reason; back to the
    compound's residents."""
    check_csrf(request, csrf_token)
    try:
        service.withdraw_registration(session, who, ref, reason)
    except CitybrainError as error:
        return _residents_tab_refusing(
            request, session, who, compound, error, withdraw=ref, reason=reason
        )
    return _residents_tab_after(compound, "withdrawn")


def _residents_tab_refusing(
    request: Request,
    session: Session,
    who: Principal,
    compound: str,
    error: CitybrainError,
    *,
    withdraw: str = "",
    reason: str = "",
) -> Response:
    """A staff action on the residents tab was refused: the tab again, saying why (the error
    itself when the form named no compound)."""
    rollback_keeping(session, error)
    if not compound.isdigit():
        raise error
    return _compound_page(
        request,
        session,
        who,
        compound,
        tab="residents",
        withdraw=withdraw,
        errors=_errors(error, language(request)),
        reason=reason,
        status_code=error.status_code,
    )


def _residents_tab_after(compound: str, flag: str) -> Response:
    query = urlencode({"tab": "residents", flag: "1"})
    return RedirectResponse(f"/residents/staff/compounds/{compound}?{query}", status_code=303)


@router.post("/residents/staff/invitations/{invitation_id}/confirm")
def staff_confirm_member(
    request: Request,
    invitation_id: RowId,
    session: DB,
    who: Staff,
    csrf_token: Annotated[str, Form()] = "",
    compound: Annotated[str, Form(max_length=15)] = "",
    seen: Annotated[str, Form(max_length=8)] = "",
    card: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Confirm an adult awaiting consent after seeing them and their ID card (当面核验); the
    box saying so must be ticked. Back to the compound's residents, or, with ``card`` ticked
    (an adult without a smartphone: 同时办理纸质健康卡), on to their new card to print."""
    check_csrf(request, csrf_token)
    try:
        if seen != "yes":
            raise InvalidInput(
                "请先当面核对本人及其身份证，并勾选确认",
                "check the person and their ID card in person first, and tick the box",
                field=f"seen-{invitation_id}",
            )
        person = service.confirm_member_in_person(session, who, invitation_id)
        printable = gate_cards.issue_by_staff(session, who, person.ref) if card == "yes" else None
    except CitybrainError as error:
        return _residents_tab_refusing(request, session, who, compound, error)
    if printable is not None:
        return RedirectResponse(
            f"/residents/staff/cards/{printable.card.id}?issued=1", status_code=303
        )
    return _residents_tab_after(compound, "member_confirmed")


@router.post("/residents/staff/compounds/{code}/passes")
def staff_issue_pass(
    request: Request,
    code: CompoundCode,
    session: DB,
    who: PassStaff,
    household_id: Annotated[str, Form(max_length=12)] = "",
    valid_from: Annotated[str, Form(max_length=10)] = "",
    valid_until: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=16)] = "",
    note: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Issue a pass to a household (closed or controlled compounds only)."""
    form = {
        "household_id": household_id,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "reason": reason,
        "note": note,
    }
    try:
        data = _pass_in(household_id, valid_from, valid_until, reason, note)
        service.issue_pass(session, who, code, data)
    except CitybrainError as error:
        if error.status_code == 404:
            raise
        rollback_keeping(session, error)
        compound = service.compound_for_staff(session, who, code)
        context: dict[str, Any] = {
            "compound": compound,
            "tier": colours.tier_view(session, compound.code),
            "tab": "passes",
            "day": clock.today_local(),
            "flagged": False,
            "building": "",
            "direction": "",
            "active": False,
            "filters": _filters("passes", "", False, "", "", False),
            "can_pass": True,
            "pass_reasons": PASS_REASONS,
            "passes": service.list_passes(session, who, code),
            "households": service.households_of(session, who, code),
            "errors": _errors(error, language(request)),
            "pass_form": form,
        }
        return _page(
            request, "residents/staff_compound.html", context, status_code=error.status_code
        )
    return RedirectResponse(f"/residents/staff/compounds/{code}?tab=passes", status_code=303)


def _pass_in(
    household_id: str, valid_from: str, valid_until: str, reason: str, note: str
) -> PassIn:
    problems: dict[str, tuple[str, str]] = {}
    if not household_id.isdigit() or not 1 <= int(household_id) < 2**31:
        problems["household_id"] = ("请选择一户", "choose a household")
    dates: dict[str, dt.date] = {}
    for field, value in (("valid_from", valid_from), ("valid_until", valid_until)):
        try:
            dates[field] = dt.date.fromisoformat(value)
        except ValueError:
            problems[field] = ("请填写日期（YYYY-MM-DD）", "enter a date (YYYY-MM-DD)")
    if problems:
        raise service.FormInvalid(problems)
    return PassIn(
        household_id=int(household_id),
        valid_from=dates["valid_from"],
        valid_until=dates["valid_until"],
        reason=reason,
        note=note or None,
    )


@router.post("/residents/staff/passes/{pass_id}/revoke")
def staff_revoke_pass(
    request: Request,
    pass_id: RowId,
    session: DB,
    who: PassStaff,
) -> Response:
    """Revoke a pass at once."""
    item = service.revoke_pass(session, who, pass_id)
    return RedirectResponse(
        f"/residents/staff/compounds/{item.compound_code}?tab=passes", status_code=303
    )

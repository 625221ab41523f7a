"""The scan page for gate staff (门岗扫码), made for a phone browser.

No camera in the page itself: a scanner wedge (or the phone's own scanner app, or a person
typing) puts the code text into the field and presses Enter, the form posts, and the page
answers with a big green 通行 PASS or red 禁止 DENY and the reason in Chinese, the field
focused again for the next person. The same path as ``POST /api/v1/scans`` verifies and
records the scan.

Without script the form works as it is. With it (``static/gate-offline.js``, progressive
enhancement) the page keeps the trust list, and when the network is down it verifies codes
in the browser, decides by the colour in the code (each place's kind and, for a compound's
gate, its tier as of page load, travel in the options' data attributes), queues the scans
and uploads them to ``POST /api/v1/scans/offline`` when back online.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from citybrain.core.authz.deps import public, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo.models import Place
from citybrain.healthcode import devices, repository
from citybrain.healthcode.cards import card_number
from citybrain.healthcode.deps import device_tokens
from citybrain.healthcode.qr import qr_svg
from citybrain.healthcode.routes import gate_scan, printable_place_code
from citybrain.healthcode.service import printable_subkinds
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.healthcode.writer import Overloaded
from citybrain.kit import clock
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError
from citybrain.kit.export import XLSX_MEDIA_TYPE, xlsx_bytes
from citybrain.kit.web import DB, PlaceCode, RowId, china_time, download, language, render

router = APIRouter(include_in_schema=False)
Staff = Annotated[Principal, Depends(require(Permission.DEVICE_SCAN))]
MAX_PLACES = 300

TEXT: dict[str, tuple[str, str]] = {
    "title": ("门岗扫码", "Gate scan"),
    "place": ("扫码场所", "Place"),
    "direction": ("方向", "Direction"),
    "entry": ("进", "Entry"),
    "exit": ("出", "Exit"),
    "code": ("健康码或纸质健康卡（扫码枪扫入或粘贴）", "Health code or card (scanner, or paste)"),
    "scan": ("核验", "Check"),
    "pass": ("通行", "PASS"),
    "deny": ("禁止通行", "DENY"),
    "refused": ("码无效", "Code refused"),
    "colour": ("当前颜色", "Current colour"),
    "green": ("绿码", "green"),
    "yellow": ("黄码", "yellow"),
    "red": ("红码", "red"),
    "colour_code": ("（离线：码内颜色）", "(offline: colour in the code)"),
    "card_check": ("纸质健康卡：请核对身份证", "Health card: check the ID card"),
    "card_holder": ("持卡人", "Holder"),
    "card_id_tail": ("身份证尾号", "ID ends"),
    "card_no": ("卡号", "Card No."),
    "busy": ("系统繁忙", "Busy"),
    "no_places": ("辖区内没有可扫码的场所", "no scanning places in your area"),
    "codes_title": ("场所码", "Place codes"),
    "codes_intro": (
        "为辖区内的场所打印场所码：居民用手机相机扫码，登录后确认，即记录到访；"
        "入口工作人员查看居民手机上的登记结果。",
        "Print a place code for a place in your area: residents scan it with their phone's "
        "camera and confirm, which records the visit; staff at the door look at the result on "
        "the resident's phone.",
    ),
    "search": ("场所名称", "Place name"),
    "kind": ("类型", "Kind"),
    "all_kinds": ("全部类型", "All kinds"),
    "filter": ("筛选", "Filter"),
    "print": ("打印场所码", "Print its code"),
    "page_of": ("第 {page} / {pages} 页，共 {total} 处", "Page {page} of {pages}, {total} in all"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "poster_scan": ("请扫码登记", "Scan to check in"),
    "poster_steps": (
        "① 用手机相机扫描上方二维码　② 登录居民健康服务并确认登记　③ 向工作人员出示登记结果",
        "1. Scan the code with your phone's camera  2. Log in and confirm  3. Show the result",
    ),
    "valid_until": ("有效期至", "Valid until"),
    "print_hint": ("用浏览器打印本页（Ctrl+P），建议A4纸。", "Print this page (Ctrl+P), A4."),
    "back": ("返回场所列表", "Back to the places"),
}

KIND_LABELS: dict[str, tuple[str, str]] = {
    "compound_gate": ("小区门岗", "compound gate"),
    "checkpoint": ("卡口", "checkpoint"),
    "station": ("车站", "station"),
    "airport": ("机场", "airport"),
    "venue": ("公共场所", "venue"),
}
CODES_PAGE_SIZE = 30


def _texts(lang: str, table: dict[str, tuple[str, str]] = TEXT) -> dict[str, str]:
    return {key: en if lang == "en" else zh for key, (zh, en) in table.items()}


def _places(session: Session, who: Principal) -> list[Place]:
    return list(
        session.scalars(
            select(Place)
            .where(Place.area_code.startswith(who.area_code))
            .order_by(Place.kind, Place.code)
            .limit(MAX_PLACES)
        )
    )


def _offline_context(session: Session, places: list[Place]) -> dict[str, object]:
    """What the offline script needs besides the form: the compounds' tiers as stored now
    (its decision offline mirrors the gate policy as far as the page knows), and the clock
    skew the server allows."""
    compounds = {p.compound_code for p in places if p.compound_code}
    tiers = {code: row.tier for code, row in repository.stored_tiers(session, compounds).items()}
    return {"tiers": tiers, "clock_skew": get_healthcode_settings().clock_skew_seconds}


@router.get("/healthcode/place-codes")
def place_codes(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PLACE_CODE_ISSUE))],
    q: Annotated[str, Query(max_length=32)] = "",
    kind: Annotated[str, Query(max_length=24)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """场所码: the places of the jurisdiction, by name and kind, a page at a time, each with
    a link to its printable code."""
    lang = language(request)
    kind = kind if kind in KIND_LABELS else ""
    total, places = repository.places_for_codes(
        session,
        who.area_code,
        name=q.strip() or None,
        kind=kind or None,
        offset=(page - 1) * CODES_PAGE_SIZE,
        limit=CODES_PAGE_SIZE,
        venue_subkinds=printable_subkinds(who),
    )
    return render(
        request,
        "healthcode/place_codes.html",
        {
            "text": _texts(lang),
            "kinds": _texts(lang, KIND_LABELS),
            "places": places,
            "q": q,
            "kind": kind,
            "page": page,
            "pages": max(1, -(-total // CODES_PAGE_SIZE)),
            "total": total,
        },
    )


@router.get("/healthcode/place-codes/{place_code}")
def place_code_poster(
    request: Request,
    place_code: PlaceCode,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PLACE_CODE_ISSUE))],
) -> Response:
    """A place's code as a poster to print: the name big, the QR of the link residents'
    phones open, the three steps, and until when it is valid. Issuing it is audited."""
    lang = language(request)
    place, issued, url = printable_place_code(request, session, who, place_code)
    return render(
        request,
        "healthcode/place_poster.html",
        {
            "text": _texts(lang),
            "place": place,
            "kind_label": KIND_LABELS.get(place.kind, (place.kind, place.kind))[
                1 if lang == "en" else 0
            ],
            # segno's SVG of our own signed link: no user input reaches it.
            "svg": Markup(qr_svg(url, scale=8, title=place.name)),  # noqa: S704
            "expires_at": issued.expires_at,
        },
    )


_SERVICE_WORKER = FilePath(__file__).parent / "templates" / "healthcode" / "gate-sw.js"


@router.get("/healthcode/gate-sw.js")
@public
def gate_service_worker() -> Response:
    """The gate page's service worker (network first; the kept page and scripts when there is
    no network). Served here rather than under /static so that its scope is /healthcode/."""
    return Response(
        _SERVICE_WORKER.read_text(encoding="utf-8"),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/healthcode/gate")
def gate_page(
    request: Request,
    session: DB,
    who: Staff,
    place_code: Annotated[str, Query(max_length=24)] = "",
    direction: Annotated[str, Query(max_length=8)] = "entry",
) -> Response:
    """The empty scan form."""
    lang = language(request)
    places = _places(session, who)
    return render(
        request,
        "healthcode/gate.html",
        {
            "text": _texts(lang),
            "places": places,
            "place_code": place_code,
            "direction": "exit" if direction == "exit" else "entry",
            "result": None,
            "offline": _offline_context(session, places),
        },
    )


@router.post("/healthcode/gate")
async def gate_submit(
    request: Request,
    session: DB,
    who: Staff,
    code: Annotated[str, Form(max_length=4096)] = "",
    direction: Annotated[str, Form(max_length=8)] = "entry",
    place_code: Annotated[str, Form(max_length=24)] = "",
) -> Response:
    """Check one code and show the decision; the form stays, focused, for the next one."""
    lang = language(request)
    direction = "exit" if direction == "exit" else "entry"
    result: dict[str, str | bool] = {}
    status = 200
    try:
        outcome = await gate_scan(request, who, code, direction, place_code or None)
        result = {
            "passed": outcome.passed,
            "reason_zh": outcome.reason_zh,
            "reason_en": outcome.reason_en,
            "colour": outcome.colour,
            "colour_source": outcome.colour_source,
            "place_name": outcome.place_name,
        }
        if outcome.card is not None:
            result["card_holder"] = outcome.card.name
            result["card_id_tail"] = outcome.card.id_tail
            result["card_no"] = card_number(outcome.card.card_no)
    except Overloaded as error:
        result = {
            "passed": False,
            "busy": True,
            "reason_zh": error.message_zh,
            "reason_en": error.message_en,
        }
        status = 429
    except CitybrainError as error:
        result = {
            "passed": False,
            "refused": True,
            "reason_zh": error.message_zh,
            "reason_en": error.message_en,
            "code": error.code,
        }
        status = error.status_code
    places = _places(session, who)
    response = render(
        request,
        "healthcode/gate.html",
        {
            "text": _texts(lang),
            "places": places,
            "place_code": place_code,
            "direction": direction,
            "result": result,
            "offline": _offline_context(session, places),
        },
        status_code=status,
    )
    if status == 429:
        response.headers["Retry-After"] = "1"
    return response


# ---------------------------------------------------------------------------------------------
# Scanning devices (场所设备): enrol, list, withdraw

DeviceStaff = Annotated[Principal, Depends(require(Permission.DEVICE_MANAGE))]
DEVICES_PAGE_SIZE = 30
EXPORT_LIMIT = 10_000
DEVICE_TEXT: dict[str, tuple[str, str]] = {
    "title": ("场所设备", "Scanning devices"),
    "intro": (
        "辖区内场所的扫码设备（闸机、卡口扫码枪、场所扫码终端）：每台设备一个令牌，以所属场所的"
        "身份上报扫码。设备丢失或停用时请立即停用，下一批扫码起即被拒绝。",
        "The scanning devices of your area's places (gates, checkpoint scanners, venue "
        "terminals): each has a token of its own and posts scans as its place. Withdraw a "
        "lost or retired device at once: its next scan is refused.",
    ),
    "enrol": ("登记新设备", "Enrol a device"),
    "name": ("设备名称", "Device name"),
    "name_hint": ("例如：东门1号闸机", "e.g. East gate 1"),
    "place": ("所属场所", "Place"),
    "place_hint": ("输入场所名称或代码选择", "type the place's name or code"),
    "days": ("有效期", "Valid for"),
    "days_n": ("{days} 天", "{days} days"),
    "submit": ("登记并生成令牌", "Enrol and make its token"),
    "token_once": (
        "设备令牌仅显示这一次，请立即配置到设备上（或用设备扫描下方二维码），离开本页后无法再查看。",
        "The device's token is shown this once: set it up on the device now (or let the "
        "device scan the QR below); it cannot be shown again.",
    ),
    "enrolled": ("已登记设备：{name}（{place}）", "Device enrolled: {name} ({place})"),
    "search": ("场所或设备名称", "Place or device"),
    "status": ("状态", "Status"),
    "all": ("全部", "All"),
    "active": ("使用中", "Active"),
    "withdrawn": ("已停用", "Withdrawn"),
    "expired": ("已过期", "Expired"),
    "expiring": ("7天内到期", "Expiring within 7 days"),
    "renew": ("续期", "Renew"),
    "renew_intro": (
        "续期后令牌不变，设备无需重新配置；已过期的设备续期后可继续扫码。",
        "The token stays the same, so the device needs no new setup; an expired device "
        "scans again once renewed.",
    ),
    "renewed_notice": (
        "设备已续期：{name}，有效期至 {until}",
        "Device renewed: {name}, until {until}",
    ),
    "export": ("导出Excel", "Export to Excel"),
    "token": ("令牌", "Token"),
    "created": ("登记时间", "Enrolled"),
    "last_used": ("最近使用", "Last used"),
    "expires": ("到期时间", "Expires"),
    "never": ("从未使用", "never"),
    "withdraw": ("停用", "Withdraw"),
    "cancel": ("取消", "Cancel"),
    "withdraw_confirm": (
        "确定停用该设备？停用后其扫码将被拒绝，且不能恢复。",
        "Withdraw this device? Its scans will be refused, and this cannot be undone.",
    ),
    "withdrawn_notice": ("设备已停用：{name}", "Device withdrawn: {name}"),
    "none": ("没有符合条件的设备", "no devices match"),
    "page_of": ("第 {page} / {pages} 页，共 {total} 台", "Page {page} of {pages}, {total} in all"),
    "sheet": ("场所设备", "Devices"),
    **{key: TEXT[key] for key in ("filter", "prev", "next")},
}


def _devices_page(
    request: Request,
    session: Session,
    who: Principal,
    *,
    q: str = "",
    status: str = "active",
    page: int = 1,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    enrolled: tuple[devices.Device, str] | None = None,
    withdrawn: devices.Device | None = None,
    withdraw: int | None = None,
    renew: int | None = None,
    renewed: devices.Device | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request)
    status = status if status in (*devices.STATUSES, "all") else "active"
    total, rows = devices.list_devices(
        session,
        who,
        query=q,
        status=status,
        offset=(page - 1) * DEVICES_PAGE_SIZE,
        limit=DEVICES_PAGE_SIZE,
    )
    response = render(
        request,
        "healthcode/devices.html",
        {
            "text": _texts(lang, DEVICE_TEXT),
            "kinds": _texts(lang, KIND_LABELS),
            "devices": rows,
            "places": _places(session, who),
            "days_choices": devices.DAYS_CHOICES,
            "q": q,
            "status": status,
            "statuses": devices.STATUSES,
            "page": page,
            "pages": max(1, -(-total // DEVICES_PAGE_SIZE)),
            "total": total,
            "form": form or {"days": "90"},
            "errors": errors or {},
            "enrolled": enrolled[0] if enrolled else None,
            "secret": enrolled[1] if enrolled else None,
            # segno escapes the title (the device's name) in the SVG it writes.
            "secret_qr": Markup(qr_svg(enrolled[1], title=enrolled[0].name))  # noqa: S704
            if enrolled
            else None,
            "withdrawn": withdrawn,
            # The device to confirm withdrawing (the list's link asks first).
            "confirming": next(
                (d for d in rows if d.id == withdraw and d.status == "active"), None
            ),
            "renewing": next(
                (d for d in rows if d.id == renew and d.status in ("active", "expired")), None
            ),
            "renewed": renewed,
        },
        status_code=status_code,
    )
    if enrolled:
        # The token is on this page only: never kept by a browser's or a proxy's cache.
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/healthcode/devices")
def devices_page(
    request: Request,
    session: DB,
    who: DeviceStaff,
    q: Annotated[str, Query(max_length=32)] = "",
    status: Annotated[str, Query(max_length=12)] = "active",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    withdraw: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    renew: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """场所设备: the devices of the area's places, by place or name and status, a page at a
    time, with the form to enrol one (``withdraw``, ``renew``: a device of the page to confirm
    withdrawing, or to renew)."""
    return _devices_page(
        request, session, who, q=q, status=status, page=page, withdraw=withdraw, renew=renew
    )


@router.post("/healthcode/devices")
def devices_enrol(
    request: Request,
    session: DB,
    who: DeviceStaff,
    name: Annotated[str, Form(max_length=200)] = "",
    place_code: Annotated[str, Form(max_length=24)] = "",
    days: Annotated[int, Form(ge=1, le=3650)] = 90,
) -> Response:
    """Enrol a device; the page then shows its token, once."""
    form = {"name": name, "place_code": place_code, "days": str(days)}
    try:
        enrolled = devices.enrol_device(
            session, who, place_code=place_code.strip(), name=name, days=days
        )
    except CitybrainError as error:
        rollback_keeping(session, error)
        lang = language(request)
        # A place not found (or not the caller's: the same answer) is the place field's.
        field = error.field or ("place_code" if error.status_code == 404 else "form")
        messages = (
            error.messages(lang)
            if isinstance(error, devices.DeviceInvalid)
            else {field: error.message(lang)}
        )
        return _devices_page(
            request, session, who, form=form, errors=messages, status_code=error.status_code
        )
    return _devices_page(request, session, who, enrolled=enrolled)


def _device_action(
    request: Request,
    session: Session,
    who: Principal,
    act: Callable[[], devices.Device],
    done: Literal["withdrawn", "renewed"],
) -> Response:
    """Run ``act`` on a device and show the list with its notice, or with the error."""
    try:
        device = act()
    except CitybrainError as error:
        rollback_keeping(session, error)
        return _devices_page(
            request,
            session,
            who,
            errors={"form": error.message(language(request))},
            status_code=error.status_code,
        )
    return _devices_page(
        request,
        session,
        who,
        withdrawn=device if done == "withdrawn" else None,
        renewed=device if done == "renewed" else None,
    )


@router.post("/healthcode/devices/{token_id}/withdraw")
def devices_withdraw(request: Request, token_id: RowId, session: DB, who: DeviceStaff) -> Response:
    """Withdraw a device at once."""

    def withdraw() -> devices.Device:
        device = devices.withdraw_device(session, who, token_id)
        # This process stops trusting it at once; the others at their next scan batch.
        device_tokens.forget({device.id})
        return device

    return _device_action(request, session, who, withdraw, "withdrawn")


@router.post("/healthcode/devices/{token_id}/renew")
def devices_renew(
    request: Request,
    token_id: RowId,
    session: DB,
    who: DeviceStaff,
    days: Annotated[int, Form(ge=1, le=3650)] = 90,
) -> Response:
    """Renew a device: the same token runs ``days`` from now."""
    return _device_action(
        request, session, who, lambda: devices.renew_device(session, who, token_id, days), "renewed"
    )


@router.get("/healthcode/devices/export.xlsx")
def devices_export(
    request: Request,
    session: DB,
    who: DeviceStaff,
    q: Annotated[str, Query(max_length=32)] = "",
    status: Annotated[str, Query(max_length=12)] = "active",
) -> Response:
    """The device list as filtered, as an Excel workbook (cells neutralised)."""
    lang = language(request)
    x = _texts(lang, DEVICE_TEXT)
    kinds = _texts(lang, KIND_LABELS)
    _, rows = devices.list_devices(session, who, query=q, status=status, limit=EXPORT_LIMIT)
    header = [
        x["name"], x["token"], x["place"], "code", x["status"], x["created"], x["last_used"],
        x["expires"],
    ]  # fmt: skip
    body = xlsx_bytes(
        x["sheet"],
        header,
        (
            [
                d.name,
                d.prefix + "…",
                f"{d.place_name}（{kinds.get(d.place_kind, d.place_kind)}）",
                d.place_code,
                x["expiring"] if d.expiring else x[d.status],
                china_time(d.created_at, "%Y-%m-%d %H:%M"),
                china_time(d.last_used_at, "%Y-%m-%d %H:%M") if d.last_used_at else x["never"],
                china_time(d.expires_at, "%Y-%m-%d %H:%M") if d.expires_at else "",
            ]
            for d in rows
        ),
    )
    name = f"devices-{status}-{who.area_code}-{clock.today_local():%Y%m%d}.xlsx"
    return download(body, name, XLSX_MEDIA_TYPE)

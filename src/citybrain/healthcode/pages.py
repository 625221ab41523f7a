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

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from citybrain.core.authz.deps import public, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo.models import Place
from citybrain.healthcode import repository
from citybrain.healthcode.routes import gate_scan
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.healthcode.writer import Overloaded
from citybrain.kit.errors import CitybrainError
from citybrain.kit.web import DB, language, render

router = APIRouter(include_in_schema=False)
Staff = Annotated[Principal, Depends(require(Permission.DEVICE_SCAN))]
MAX_PLACES = 300

TEXT: dict[str, tuple[str, str]] = {
    "title": ("门岗扫码", "Gate scan"),
    "place": ("扫码场所", "Place"),
    "direction": ("方向", "Direction"),
    "entry": ("进", "Entry"),
    "exit": ("出", "Exit"),
    "code": ("健康码（扫码枪扫入或粘贴）", "Health code (scanner, or paste)"),
    "scan": ("核验", "Check"),
    "pass": ("通行", "PASS"),
    "deny": ("禁止通行", "DENY"),
    "refused": ("码无效", "Code refused"),
    "colour": ("当前颜色", "Current colour"),
    "green": ("绿码", "green"),
    "yellow": ("黄码", "yellow"),
    "red": ("红码", "red"),
    "colour_code": ("（离线：码内颜色）", "(offline: colour in the code)"),
    "busy": ("系统繁忙", "Busy"),
    "no_places": ("辖区内没有可扫码的场所", "no scanning places in your area"),
}


def _texts(lang: str) -> dict[str, str]:
    return {key: en if lang == "en" else zh for key, (zh, en) in TEXT.items()}


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


_SERVICE_WORKER = Path(__file__).parent / "templates" / "healthcode" / "gate-sw.js"


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

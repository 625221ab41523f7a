"""The health-code API: the public trust list, gate scans, place-code scans and place codes.

``POST /api/v1/scans`` is the hot path of the whole platform at the morning peak. It verifies
the code's signature in memory against the cached trust list (no database), hands the scan
to the group-commit writer and answers after the commit; when too many scans wait it answers
429 with Retry-After at once. It does not use the per-request unit of work: the writer's
transaction is the one that matters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from citybrain.core.audit.service import record as record_audit
from citybrain.core.authz.deps import GUARD_ATTRIBUTE, public, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo.models import Place
from citybrain.healthcode.cards import CardHolder, card_holder, card_number, note_presentation
from citybrain.healthcode.codes import (
    CodeRefused,
    IssuedCode,
    VerifiedCard,
    VerifiedCode,
    VerifiedPlace,
    is_card,
    issue_place_code,
    place_code_url,
    place_text_from,
    verify_card,
    verify_code,
    verify_place_code,
)
from citybrain.healthcode.deps import device_tokens, scanner
from citybrain.healthcode.keys import trust_cache
from citybrain.healthcode.models import DIRECTION_ENTRY, SCAN_GATE
from citybrain.healthcode.qr import qr_svg
from citybrain.healthcode.schemas import (
    OfflineScanResultOut,
    OfflineScansIn,
    OfflineScansOut,
    PlaceCodeOut,
    PlaceScanIn,
    ScanIn,
    ScanOut,
    TrustListOut,
)
from citybrain.healthcode.service import (
    OFFLINE_STATUS_DUPLICATE,
    OFFLINE_STATUS_RECORDED,
    OFFLINE_STATUS_REFUSED,
    REPEAT_CHECK_IN,
    DeviceWithdrawn,
    OfflineResult,
    OfflineScan,
    ScanOutcome,
    ScanRequest,
    may_print,
    place_scan_request,
    recent_visit,
    record_offline_scans,
    record_scans,
)
from citybrain.healthcode.trust import TrustList
from citybrain.healthcode.writer import Overloaded, check_capacity, writer_for
from citybrain.kit import clock
from citybrain.kit.errors import InvalidInput, NotFound, error_responses
from citybrain.kit.logging import get_logger
from citybrain.kit.web import (
    DB,
    PlaceCode,
    language,
    public_base_url,
    request_database,
    request_unit,
)

log = get_logger(__name__)

router = APIRouter(tags=["healthcode 健康码"])
T = TypeVar("T")
TRUST_LIST_MAX_AGE = 60


def _trust_list(request: Request, *, unknown_kid: str | None = None) -> TrustList:
    test_session = getattr(request.app.state, "test_session", None)
    if test_session is not None:
        from citybrain.healthcode.keys import trust_list

        return trust_list(test_session)
    return trust_cache.get(request_database(request), unknown_kid=unknown_kid)


def _kid_hint(text: str) -> str:
    # Any value not in the list makes the cache re-read (at most once a second).
    return f"?{text[:16]}"


def _verified(request: Request, verify: Callable[[str, TrustList], T], text: str) -> T:
    """``verify(text, trust list)`` with the server's trust list; a code naming a key the list
    does not know makes it re-read the list once (a rotation by another process)."""
    try:
        return verify(text, _trust_list(request))
    except CodeRefused as refused:
        if refused.reason_code != "unknown_key":
            raise
        return verify(text, _trust_list(request, unknown_kid=_kid_hint(text)))


def verify_health_code(request: Request, text: str) -> VerifiedCode:
    """Verify a health code with the server's trust list."""
    return _verified(request, verify_code, text.strip())


def verify_health_card(request: Request, text: str) -> VerifiedCard:
    """Verify a printed health card's signature with the server's trust list."""
    return _verified(request, verify_card, text.strip())


def _card_holder(
    request: Request, card: VerifiedCard, who: Principal, place: str, direction: str
) -> CardHolder:
    """The holder of a card in force; a card that has ended is refused and its presentation
    here noted (挂失卡被出示), in a unit of work of its own."""
    try:
        test_session = getattr(request.app.state, "test_session", None)
        if test_session is not None:
            return card_holder(test_session, card)
        with request_database(request).sessions() as session:
            return card_holder(session, card)
    except CodeRefused as refused:
        if refused.reason_code == "card_revoked":
            _note_presentation(request, card, who, place, direction)
        raise


def _note_presentation(
    request: Request, card: VerifiedCard, who: Principal, place: str, direction: str
) -> None:
    try:
        with request_unit(request) as session:
            note_presentation(session, who.actor, card, place, direction)
    except OperationalError as exc:  # the database busy or away: the gate still hears why
        log.warning("healthcode.card_presentation_not_noted", error=type(exc).__name__)


def verify_place(request: Request, scanned: str) -> VerifiedPlace:
    """Verify a place code (the printed link, or the code itself) with the server's trust
    list."""
    return _verified(request, verify_place_code, place_text_from(scanned))


class _PlaceCache:
    """Place code -> (area code, name), for checking a staff member's jurisdiction."""

    def __init__(self, seconds: float = 300.0) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._places: dict[tuple[str, str], tuple[str, float]] = {}

    def area_of(self, session: Session, database_url: str, code: str) -> str | None:
        key = (database_url, code)
        with self._lock:
            hit = self._places.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        place = session.get(Place, code)
        if place is None:
            return None
        with self._lock:
            self._places[key] = (place.area_code, time.monotonic() + self.seconds)
        return place.area_code


_places = _PlaceCache()


def _place_area(request: Request, code: str) -> str | None:
    test_session = getattr(request.app.state, "test_session", None)
    if test_session is not None:
        place = test_session.get(Place, code)
        return place.area_code if place else None
    database = request_database(request)
    with database.sessions() as session:
        return _places.area_of(session, database.url, code)


async def scan_place_of(request: Request, who: Principal, place_code: str | None) -> str:
    """The place a scan is made at: a device's own place, or the place a staff member names
    (which must lie in their jurisdiction)."""
    if who.kind == "device":
        if place_code and place_code != who.name:
            raise InvalidInput(
                "设备只能在其所属场所扫码",
                "a device scans only at its own place",
                field="place_code",
            )
        return who.name
    if not place_code:
        raise InvalidInput("请选择扫码场所", "name the place of the scan", field="place_code")
    area = await run_in_threadpool(_place_area, request, place_code)
    if area is None or not area.startswith(who.area_code):
        raise NotFound(
            f"场所 {place_code} 不存在或不在辖区内",
            f"place {place_code} does not exist or lies outside your area",
            field="place_code",
        )
    return place_code


async def record(request: Request, scan: ScanRequest) -> ScanOutcome:
    """Record one scan: through the group-commit writer, or in the test's own transaction."""
    if getattr(request.app.state, "test_session", None) is not None:
        with request_unit(request) as session:
            return record_scans(session, [scan])[0]
    writer = writer_for(request_database(request))
    return await writer.record(scan)


def overloaded(error: Overloaded, lang: str) -> JSONResponse:
    """429 with Retry-After."""
    return JSONResponse(
        {"error": error.to_dict(lang)},
        status_code=429,
        headers={"Retry-After": str(error.retry_after)},
    )


def outcome_json(outcome: ScanOutcome, lang: str) -> dict[str, object]:
    """The answer to a scan."""
    answer: dict[str, object] = {
        "scan_id": outcome.scan_id,
        "passed": outcome.passed,
        "decision": outcome.decision,
        "reason_code": outcome.reason_code,
        "reason": outcome.reason_en if lang == "en" else outcome.reason_zh,
        "reason_zh": outcome.reason_zh,
        "reason_en": outcome.reason_en,
        "colour": outcome.colour,
        "colour_source": outcome.colour_source,
        "place_code": outcome.place_code,
        "place_name": outcome.place_name,
        "direction": outcome.direction,
        "scanned_at": outcome.scanned_at.isoformat(),
    }
    if outcome.card is not None:
        answer["card"] = {
            "card_no": card_number(outcome.card.card_no),
            "name": outcome.card.name,
            "id_tail": outcome.card.id_tail,
            "check_identity": True,
        }
    return answer


async def gate_scan(
    request: Request, who: Principal, text: str, direction: str, place_code: str | None
) -> ScanOutcome:
    """Verify a health code, or a printed health card, at a gate and record the decision
    (raises CodeRefused, Overloaded, InvalidInput, NotFound).

    A card (``CBK1:``) carries no colour: after its signature, the card itself is checked in
    the database (one read, for cards only: not lost, not replaced), the holder's current
    colour decides, and the answer carries the holder's masked name and ID tail for the
    gate staff to check against their ID card."""
    place = await scan_place_of(request, who, place_code)
    holder: CardHolder | None = None
    if is_card(text):
        card = verify_health_card(request, text)
        holder = await run_in_threadpool(_card_holder, request, card, who, place, direction)
        person_ref, colour = card.person_ref, ""
    else:
        verified = verify_health_code(request, text)
        person_ref, colour = verified.person_ref, verified.colour
    outcome = await record(
        request,
        ScanRequest(
            method=SCAN_GATE,
            place_code=place,
            person_ref=person_ref,
            code_colour=colour,
            direction=direction,
            device_token_id=who.id if who.kind == "device" else None,
            scanned_at=clock.now(),
            card_no=holder.card_no if holder else None,
        ),
    )
    return replace(outcome, card=holder) if holder else outcome


@router.get(
    "/api/v1/healthcode/trust-list",
    response_model=TrustListOut,
    summary="信任列表 Trust list of code-signing keys",
)
@public
def get_trust_list(request: Request) -> Response:
    """The public keys that verify citybrain's codes, for gates to verify offline. Public
    and cacheable; a gate re-downloads it every minute or when a code names an unknown key."""
    trust = _trust_list(request)
    return JSONResponse(
        trust.as_json(),
        headers={"Cache-Control": f"public, max-age={TRUST_LIST_MAX_AGE}"},
    )


def _scan_body(raw: bytes) -> ScanIn:
    """The scan's JSON body, validated by pydantic's own JSON parser (422 in the API's shape,
    each problem's field under ``body`` as FastAPI names them)."""
    try:
        return ScanIn.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error.get("loc", ()))} for error in exc.errors()]
        ) from None


@router.post(
    "/api/v1/scans",
    response_model=ScanOut,
    summary="闸机扫码 Scan a health code at a gate",
    responses=error_responses(401, 403, 404, 422, 429),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ScanIn.model_json_schema()}},
        }
    },
)
async def post_scan(request: Request) -> Response:
    """Verify the code (signature offline-capable, then the person's current colour online),
    decide pass or deny by the place's policy and the compound's tier, record the scan and
    answer after it is committed. 422 names why a code is refused (``bad_signature``,
    ``expired``, ``unknown_key``…); 429 with Retry-After when too many scans wait.

    A printed health card (``CBK1:``, 纸质健康卡) is scanned the same way: it is checked not
    lost or replaced (422 ``card_revoked``, the presentation noted and the holder's household
    told), the holder's current colour decides, and the answer's ``card`` gives their masked
    name and ID tail to check against the ID card.

    The hot path of the morning peak, so it takes the request as it is: the body is read and
    validated here by pydantic's own JSON parser (its schema is ``ScanIn``, documented above)
    and the scanner is checked here; FastAPI's general machinery for a body model and a
    dependency took twice as long for the same work."""
    lang = language(request)
    try:
        if getattr(request.app.state, "test_session", None) is None:
            # Past capacity, refused before any work: no token check, no signature check.
            check_capacity()
            writer_for(request_database(request)).check_room()
        who = await scanner(request)
        body = _scan_body(await request.body())
        outcome = await gate_scan(request, who, body.code, body.direction, body.place_code)
    except Overloaded as error:
        return overloaded(error, lang)
    return JSONResponse(outcome_json(outcome, lang))


# The guard this route checks itself (``scanner``), for the test that walks every route.
setattr(post_scan, GUARD_ATTRIBUTE, str(Permission.DEVICE_SCAN))


@router.post(
    "/api/v1/scans/place",
    response_model=ScanOut,
    summary="扫场所码 Record a visit by scanning a place code",
    responses=error_responses(422, 429),
)
@public
async def post_place_scan(body: PlaceScanIn, request: Request) -> Response:
    """A resident scanned a place code (场所码): record "I was here". The resident's own
    current health code (signed, valid for minutes, shown only to its holder) identifies
    them, so no further login is needed; both codes must verify. A second scan of the same
    place within five minutes answers with the visit already recorded (``repeat`` true)
    instead of recording another, as the residents' page does."""
    lang = language(request)
    try:
        if getattr(request.app.state, "test_session", None) is None:
            check_capacity()
    except Overloaded as error:
        return overloaded(error, lang)
    place = verify_place(request, body.place)
    person = verify_health_code(request, body.code)
    earlier = await run_in_threadpool(_recent_visit, request, person.person_ref, place.place_code)
    if earlier is not None:
        return JSONResponse({**outcome_json(earlier, lang), "repeat": True})
    try:
        outcome = await record(
            request, place_scan_request(place.place_code, person.person_ref, person.colour)
        )
    except Overloaded as error:
        return overloaded(error, lang)
    return JSONResponse(outcome_json(outcome, lang))


def _recent_visit(request: Request, person_ref: str, place_code: str) -> ScanOutcome | None:
    # Looked up only once both codes verified, in a unit of work of its own, off the event
    # loop: a scan refused for overload or a bad code never touches the database.
    with request_unit(request) as session:
        return recent_visit(session, person_ref, place_code, within=REPEAT_CHECK_IN)


@router.get(
    "/api/v1/healthcode/place-codes/{place_code}",
    response_model=PlaceCodeOut,
    summary="场所码 A place's signed code to print",
    responses=error_responses(401, 403, 404, 422),
)
def get_place_code(
    place_code: PlaceCode,
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.PLACE_CODE_ISSUE))],
) -> PlaceCodeOut:
    """Sign a place code (场所码) for a place in the caller's area: the code, the link it is
    printed as (a phone's camera opens the residents' page with it), and that link's QR as
    SVG."""
    place, issued, url = printable_place_code(request, session, who, place_code)
    return PlaceCodeOut(
        place_code=place.code,
        place_name=place.name,
        text=issued.text,
        url=url,
        kid=issued.kid,
        issued_at=issued.issued_at,
        expires_at=issued.expires_at,
        svg=qr_svg(url, title=place.name),
    )


def printable_place_code(
    request: Request, session: Session, who: Principal, place_code: str
) -> tuple[Place, IssuedCode, str]:
    """A place of ``who``'s area, its newly signed code and the link it is printed as; the
    issue is audited. A place outside the area, or not of the caller's sort
    (``service.may_print``), is answered as not found."""
    place = session.get(Place, place_code)
    if place is None or not may_print(who, place):
        raise NotFound(
            f"场所 {place_code} 不存在或不在辖区内",
            f"place {place_code} does not exist or lies outside your area",
        )
    issued = issue_place_code(session, place.code, place.kind)
    record_audit(
        session,
        who.actor,
        "healthcode.place_code.issue",
        object_type="place",
        object_id=place.code,
        area_code=place.area_code,
        detail={"kid": issued.kid, "expires_at": issued.expires_at.isoformat()},
    )
    return place, issued, place_code_url(public_base_url(request), issued.text)


__all__ = ["DIRECTION_ENTRY", "router"]


def _record_offline(
    request: Request, who: Principal, items: list[OfflineScan]
) -> list[OfflineResult]:
    """Record an offline upload in one transaction of its own (the test's, in tests). On
    SQLite the write lock is taken up front, as the scan writer does, so the upload waits
    for the writer's commit instead of failing on a stale read."""
    try:
        with request_unit(request, immediate=True) as session:
            return record_offline_scans(session, who, items)
    except DeviceWithdrawn as withdrawn:
        device_tokens.forget(withdrawn.token_ids)
        raise


def _offline_result_out(result: OfflineResult, lang: str) -> OfflineScanResultOut:
    return OfflineScanResultOut.model_validate(
        {
            "client_id": result.client_id,
            "status": result.status,
            "scan_id": result.scan_id,
            "reason_code": result.reason_code,
            "reason": result.reason_en if lang == "en" else result.reason_zh,
            "reason_zh": result.reason_zh,
            "reason_en": result.reason_en,
            "field": result.field,
            "code_colour": result.code_colour,
            "current_colour": result.current_colour,
            "flagged": result.flagged,
        }
    )


@router.post(
    "/api/v1/scans/offline",
    response_model=OfflineScansOut,
    summary="上传离线扫码 Upload the scans a gate made offline",
    responses=error_responses(401, 403, 422, 429),
)
async def post_offline_scans(
    body: OfflineScansIn,
    request: Request,
    who: Annotated[Principal, Depends(scanner)],
) -> OfflineScansOut:
    """A gate back online uploads the scans it verified offline (up to 500 per request).
    Per item: ``recorded``, ``duplicate`` (this scanner uploaded that ``client_id`` before:
    recorded once) or ``refused`` with the reason and field (bad signature or expired *at the
    scan's time*, too old, in the future, another place…); a bad item never blocks the
    others. Each recorded item carries the person's current colour, and ``flagged`` when
    the gate let them through offline but they are not green now (离线放行但当前非绿码):
    the gate should follow up."""
    lang = language(request)
    items = [OfflineScan(**item.model_dump()) for item in body.items]
    try:
        results = await run_in_threadpool(_record_offline, request, who, items)
    except OperationalError as exc:
        # The database is busy or restarting: the gate keeps its queue and tries again.
        raise HTTPException(
            429, "数据库繁忙，请稍后重试 / database busy, retry", {"Retry-After": "5"}
        ) from exc
    out = [_offline_result_out(result, lang) for result in results]
    return OfflineScansOut(
        recorded=sum(1 for r in results if r.status == OFFLINE_STATUS_RECORDED),
        duplicate=sum(1 for r in results if r.status == OFFLINE_STATUS_DUPLICATE),
        refused=sum(1 for r in results if r.status == OFFLINE_STATUS_REFUSED),
        flagged=sum(1 for r in results if r.flagged),
        items=out,
    )

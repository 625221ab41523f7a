"""Scanning devices (场所设备): the gates, checkpoint scanners and venue scanners that post scans
as their place, each with a bearer token of its own.

Staff with ``device.manage`` enrol a device for a place of their jurisdiction (its token is
shown once, then only its first characters), see the devices of their area with when each was
last used, and withdraw one at once — a phone lost at a gate must stop scanning as that gate
before anyone finds it. A withdrawn token is refused by the next scan batch in every server
process (``service.check_devices``). Enrolling and withdrawing are audited (``token.issue``,
``token.revoke``, ``token.renew``) and announced (``healthcode.device_enrolled``,
``healthcode.device_withdrawn``, ``healthcode.device_renewed``: token id, place code) in the
same transaction. A device whose token runs out within ``EXPIRING_DAYS`` is flagged, and
renewing it extends the same token. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from citybrain.core.authz.models import ApiToken
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.scope import covers, within
from citybrain.core.authz.service import issue_token, renew_token, revoke_token
from citybrain.core.events.service import publish
from citybrain.core.geo.models import Place
from citybrain.healthcode.passes import not_found_in_area
from citybrain.kit import clock
from citybrain.kit.errors import FieldsInvalid, InvalidInput

TOPIC_DEVICE_ENROLLED = "healthcode.device_enrolled"
TOPIC_DEVICE_WITHDRAWN = "healthcode.device_withdrawn"
TOPIC_DEVICE_RENEWED = "healthcode.device_renewed"
STATUSES = ("active", "expiring", "withdrawn", "expired")
# A device whose token runs out within this many days is flagged (即将到期): a gate that stops
# at the morning peak because its token ran out overnight is what renewal is for.
EXPIRING_DAYS = 7
DAYS_CHOICES = (30, 90, 180, 365)
DAYS_WRONG = (
    "有效期只能选择 " + "、".join(f"{d}天" for d in DAYS_CHOICES),
    "valid for one of " + ", ".join(f"{d} days" for d in DAYS_CHOICES),
)
NAME_LONGEST = 64


class DeviceInvalid(FieldsInvalid):
    """A device that cannot be enrolled: every field that is wrong, with what is wrong."""

    code = "device_invalid"


@dataclass(frozen=True)
class Device:
    """A device as staff see it: never its token, only the token's first characters."""

    id: int
    name: str
    prefix: str
    place_code: str
    place_name: str
    place_kind: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    status: str
    expiring: bool


def _status(token: ApiToken, now: dt.datetime) -> str:
    if token.revoked_at is not None:
        return "withdrawn"
    if token.expires_at is not None and clock.as_utc(token.expires_at) <= now:
        return "expired"
    return "active"


def _device(token: ApiToken, place: Place, now: dt.datetime) -> Device:
    status = _status(token, now)
    return Device(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        place_code=place.code,
        place_name=place.name,
        place_kind=place.kind,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
        status=status,
        expiring=status == "active"
        and token.expires_at is not None
        and clock.as_utc(token.expires_at) <= now + dt.timedelta(days=EXPIRING_DAYS),
    )


def list_devices(
    session: Session,
    who: Principal,
    *,
    query: str = "",
    status: str = "active",
    offset: int = 0,
    limit: int = 50,
) -> tuple[int, list[Device]]:
    """The devices of the places in ``who``'s jurisdiction, newest first: those whose place's
    name or code, or whose own name, contains ``query``, in ``status`` (``active``,
    ``expiring`` within ``EXPIRING_DAYS``, ``withdrawn``, ``expired``; anything else: all).
    How many in all, and the page."""
    who.require(Permission.DEVICE_MANAGE)
    now = clock.now()
    statement = select(ApiToken, Place).join(Place, Place.code == ApiToken.device_place_code)
    statement = statement.where(within(Place.area_code, who.area_code))
    query = query.strip()
    if query:
        statement = statement.where(
            or_(
                Place.name.contains(query, autoescape=True),
                Place.code.startswith(query, autoescape=True),
                ApiToken.name.contains(query, autoescape=True),
            )
        )
    live = or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now)
    if status == "active":
        statement = statement.where(ApiToken.revoked_at.is_(None), live)
    elif status == "expiring":
        soon = now + dt.timedelta(days=EXPIRING_DAYS)
        statement = statement.where(
            ApiToken.revoked_at.is_(None), ApiToken.expires_at > now, ApiToken.expires_at <= soon
        )
    elif status == "withdrawn":
        statement = statement.where(ApiToken.revoked_at.is_not(None))
    elif status == "expired":
        statement = statement.where(ApiToken.revoked_at.is_(None), ~live)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.execute(
        statement.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return int(total), [_device(token, place, now) for token, place in rows]


def enrol_device(
    session: Session, who: Principal, *, place_code: str, name: str, days: int
) -> tuple[Device, str]:
    """Enrol a scanning device for a place of ``who``'s jurisdiction (登记设备): a token valid
    ``days`` days (one of ``DAYS_CHOICES``), returned once with the device; audited and
    announced. A place outside the jurisdiction is the same 404 as none, the attempt audited."""
    who.require(Permission.DEVICE_MANAGE)
    problems: dict[str, tuple[str, str]] = {}
    name = " ".join(name.split())
    if not 1 <= len(name) <= NAME_LONGEST:
        problems["name"] = (
            f"请填写设备名称（1至{NAME_LONGEST}字），例如“东门1号闸机”",
            f"name the device (1 to {NAME_LONGEST} characters), e.g. 'east gate 1'",
        )
    if days not in DAYS_CHOICES:
        problems["days"] = DAYS_WRONG
    place = session.get(Place, place_code) if place_code else None
    if place_code and (place is None or not covers(who, place.area_code)):
        raise not_found_in_area(who, "token.issue", "place", place_code[:24])
    if place is None:
        problems["place_code"] = ("请选择设备所在场所", "choose the device's place")
    if problems:
        raise DeviceInvalid(problems)
    assert place is not None
    token, secret = issue_token(
        session, who.actor, name=name, device_place_code=place.code, ttl=dt.timedelta(days=days)
    )
    publish(
        session,
        TOPIC_DEVICE_ENROLLED,
        {"token_id": token.id, "place_code": place.code},
        key=str(token.id),
    )
    return _device(token, place, clock.now()), secret


def _device_of_area(
    session: Session, who: Principal, token_id: int, action: str
) -> tuple[ApiToken, Place]:
    """Device ``token_id`` with its place, if it is of ``who``'s jurisdiction; otherwise the
    same 404 as none, the attempt audited as ``action``."""
    who.require(Permission.DEVICE_MANAGE)
    found = session.execute(
        select(ApiToken, Place)
        .join(Place, Place.code == ApiToken.device_place_code)
        .where(ApiToken.id == token_id, within(Place.area_code, who.area_code))
    ).first()
    if found is None:
        raise not_found_in_area(who, action, "api_token", str(token_id))
    return found[0], found[1]


def renew_device(session: Session, who: Principal, token_id: int, days: int) -> Device:
    """Let a device of ``who``'s jurisdiction run ``days`` (one of ``DAYS_CHOICES``) from now
    (续期), its token unchanged, so the device goes on scanning without being set up again; an
    expired one scans again. A withdrawn device is not renewed (``renew_token`` refuses it). Audited
    (``token.renew``) and announced."""
    token, place = _device_of_area(session, who, token_id, "token.renew")
    if days not in DAYS_CHOICES:
        raise InvalidInput(*DAYS_WRONG, field="days")
    renew_token(session, who.actor, token.id, dt.timedelta(days=days))
    publish(
        session,
        TOPIC_DEVICE_RENEWED,
        {"token_id": token.id, "place_code": place.code, "days": days},
        key=str(token.id),
    )
    return _device(token, place, clock.now())


def withdraw_device(session: Session, who: Principal, token_id: int) -> Device:
    """Withdraw a device of ``who``'s jurisdiction at once (停用设备): its token is revoked, and
    the next scan batch in every server process refuses it. Audited and announced; a device
    outside the jurisdiction is the same 404 as none, the attempt audited."""
    token, place = _device_of_area(session, who, token_id, "token.revoke")
    if token.revoked_at is not None:
        raise InvalidInput("该设备已停用", "this device is already withdrawn", field="device")
    revoke_token(session, who.actor, token.id)
    publish(
        session,
        TOPIC_DEVICE_WITHDRAWN,
        {"token_id": token.id, "place_code": place.code},
        key=str(token.id),
    )
    return _device(token, place, clock.now())

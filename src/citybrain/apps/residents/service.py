"""Operations of resident registration (小区居民健康登记). Each write changes the data, writes
its audit row and queues its outbox event in the caller's transaction; nothing here commits.

Residents register through the core registry's own services (``core.people.service``), acting
as a self-service channel limited to the one compound they chose; this app keeps only its own
tables (accounts, failed logins, daily reports). Exit passes (出入证) are the gate's: issued,
listed and revoked through ``healthcode.passes``, which the gate decision consults.
"""

from __future__ import annotations

import calendar
import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from citybrain.apps.residents import repository, sms_codes
from citybrain.apps.residents.models import (
    AT_HOME,
    AWAY,
    FOR_CONSENT,
    WHEREABOUTS,
    HealthReport,
    MemberInvitation,
    ResidentAccount,
    ResidentLoginFailure,
    ResidentSmsCode,
)
from citybrain.apps.residents.schemas import (
    CompoundRow,
    HealthReportIn,
    PassIn,
    PassView,
    RegistrationIn,
    RegistrationOut,
    ReportView,
    ResidentView,
    ScanView,
)
from citybrain.core.audit.service import SYSTEM, Actor, record, record_purge
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.scope import covers
from citybrain.core.events.service import publish
from citybrain.core.geo.models import Compound, Place
from citybrain.core.people import repository as people_repository
from citybrain.core.people import service as people_service
from citybrain.core.people.models import Household, Person
from citybrain.core.people.schemas import HouseholdIn, PersonIn
from citybrain.healthcode import cards as gate_cards
from citybrain.healthcode import passes as gate_passes
from citybrain.healthcode.models import HealthCard, HouseholdPass
from citybrain.kit import clock
from citybrain.kit.attempts import ask_once
from citybrain.kit.crypto import BlindIndex, FieldCipher, blind_index, field_cipher
from citybrain.kit.errors import (
    CitybrainError,
    Conflict,
    FieldsInvalid,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    RaceLost,
    RateLimited,
)
from citybrain.kit.idcheck import normalise_mobile, parse_resident_id
from citybrain.kit.identity import identity_matches
from citybrain.kit.logging import get_logger
from citybrain.kit.masking import mask_name, mask_phone, mask_resident_id
from citybrain.kit.settings import get_settings
from citybrain.kit.sms import SmsNotSent, send_sms
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of

log = get_logger(__name__)

RESIDENT_ROLE = "resident"
SELF_SERVICE = Actor("resident:self-service", RESIDENT_ROLE, None)
MAX_MEMBERS = 9
# An adult (18 and over by the birth date in their ID number) enters someone's household only
# with their own consent; a guardian registers a child (监护人代为登记).
ADULT_AGE = 18
INVITATION_DAYS = 7
INVITED_NAME, INVITED_ID, INVITED_PHONE = (
    "resident_member_invitations.name",
    "resident_member_invitations.id_number",
    "resident_member_invitations.phone",
)

# Daily report (每日健康打卡): fever from 37.3 ℃ (the national screening threshold); a reading
# outside 34–43 ℃ is a typo, not a temperature.
FEVER_FROM = 37.3
LOWEST_TEMPERATURE, HIGHEST_TEMPERATURE = 34.0, 43.0
SYMPTOMS: dict[str, tuple[str, str]] = {
    "cough": ("咳嗽", "cough"),
    "sore_throat": ("咽痛", "sore throat"),
    "fatigue": ("乏力", "fatigue"),
    "taste_smell": ("嗅觉或味觉减退", "loss of taste or smell"),
    "breathless": ("呼吸困难", "shortness of breath"),
    "diarrhoea": ("腹泻", "diarrhoea"),
    "aches": ("肌肉酸痛", "muscle aches"),
    "runny_nose": ("鼻塞流涕", "runny or blocked nose"),
}
PASS_LONGEST_DAYS = gate_passes.PASS_LONGEST_DAYS

T = TypeVar("T")
E = TypeVar("E", bound=CitybrainError)


# ---------------------------------------------------------------------------------------------
# Errors naming every field that is wrong


class FormInvalid(FieldsInvalid):
    """Several fields of a form are wrong at once: each field with what is wrong with it."""

    code = "form_invalid"


def _collect(
    problems: dict[str, tuple[str, str]],
    check: Callable[..., T],
    *args: Any,
    prefix: tuple[str, str] | None = None,
    **kwargs: Any,
) -> T | None:
    """Run ``check``; on InvalidInput note its field and message and return None."""
    try:
        return check(*args, **kwargs)
    except InvalidInput as error:
        zh, en = error.message_zh, error.message_en
        if prefix:
            zh, en = prefix[0] + zh, prefix[1] + en
        problems.setdefault(error.field or "form", (zh, en))
        return None


# ---------------------------------------------------------------------------------------------
# Field checks

_NAME_MARKS = frozenset("·•-' ")


def check_name(value: str, field: str = "name") -> str:
    """A person's name: letters of any script, the interpunct of minority and foreign names
    (·), spaces, hyphens and apostrophes; no digits or symbols (a name starting with = is a
    spreadsheet formula, not a name)."""
    cleaned = " ".join(value.split())
    if not cleaned:
        raise InvalidInput("请填写姓名", "name is required", field=field)
    if len(cleaned) > 32:
        raise InvalidInput(
            "姓名不能超过32个字", "name must have at most 32 characters", field=field
        )
    if any(ch.isdigit() for ch in cleaned):
        raise InvalidInput("姓名不能包含数字", "name must not contain digits", field=field)
    if not all(ch.isalpha() or ch in _NAME_MARKS for ch in cleaned):
        raise InvalidInput(
            "姓名只能包含文字、字母、间隔号“·”和空格",
            "name may contain letters, the interpunct (·) and spaces only",
            field=field,
        )
    return cleaned


def check_id_number(value: str, field: str = "id_number") -> str:
    """A resident ID number checked per GB 11643 (length, characters, area, birth date,
    checksum); the error names the failing check."""
    if not value.strip():
        raise InvalidInput("请填写身份证号码", "resident ID number is required", field=field)
    return parse_resident_id(value, field=field).number


def check_phone(value: str, field: str = "phone", *, required: bool = True) -> str | None:
    """A mainland mobile number; required for whoever will log in with it."""
    if not value.strip():
        if required:
            raise InvalidInput(
                "请填写手机号码（登录时需要）",
                "mobile number is required (you log in with it)",
                field=field,
            )
        return None
    return normalise_mobile(value, field=field)


def _check_address_part(value: str, field: str, zh: str, en: str, *, required: bool) -> str:
    cleaned = "".join(value.split())
    if not cleaned:
        if required:
            raise InvalidInput(f"请填写{zh}", f"{en} is required", field=field)
        return ""
    if len(cleaned) > 16:
        raise InvalidInput(
            f"{zh}不能超过16个字", f"{en} must have at most 16 characters", field=field
        )
    if not all(ch.isalnum() or ch in "-#" for ch in cleaned):
        raise InvalidInput(
            f"{zh}只能包含文字、字母、数字和 - #",
            f"{en} may contain letters, digits, - and # only",
            field=field,
        )
    return cleaned


def check_compound(session: Session, code: str) -> Compound:
    """The chosen compound (小区), which must exist."""
    code = code.strip()
    if not code:
        raise InvalidInput(
            "请选择所在小区（区县 → 街道 → 社区 → 小区）",
            "choose your compound (district → street → community → compound)",
            field="compound_code",
        )
    compound = session.get(Compound, code) if code.isdigit() and len(code) == 15 else None
    if compound is None:
        raise InvalidInput(
            "所选小区不存在，请重新选择",
            "the chosen compound does not exist",
            field="compound_code",
        )
    return compound


def parse_temperature(value: str) -> float:
    """A body temperature in ℃ with at most one decimal, within 34–43."""
    text = value.strip().replace("，", ".").replace(",", ".").replace("℃", "")
    if not text:
        raise InvalidInput("请填写体温", "temperature is required", field="temperature")
    try:
        reading = float(text)
    except ValueError as exc:
        raise InvalidInput(
            "体温须为数字，例如 36.5",
            "temperature must be a number such as 36.5",
            field="temperature",
        ) from exc
    if not LOWEST_TEMPERATURE <= reading <= HIGHEST_TEMPERATURE:
        raise InvalidInput(
            f"体温应在{LOWEST_TEMPERATURE}–{HIGHEST_TEMPERATURE}℃之间，请重新测量",
            f"temperature must lie between {LOWEST_TEMPERATURE} and {HIGHEST_TEMPERATURE} ℃",
            field="temperature",
        )
    return round(reading, 1)


# ---------------------------------------------------------------------------------------------
# The self-service channel and residents as actors


class _SelfService(Principal):
    """The registration page acting on a resident's behalf, for core.people's services: it may
    only create persons, and only in the one compound the resident chose (its jurisdiction)."""

    @property
    def actor(self) -> Actor:
        """Audit rows of self-registration name the channel and the compound."""
        return Actor(SELF_SERVICE.ref, RESIDENT_ROLE, self.area_code)


def _self_service(compound_code: str) -> Principal:
    return _SelfService(
        kind="device",
        id=0,
        name="residents",
        display_name="居民自助登记",
        role=RESIDENT_ROLE,
        area_code=compound_code,
        permissions=frozenset({Permission.PERSON_CREATE}),
    )


def resident_actor(person: Person) -> Actor:
    """A logged-in resident as an audit actor (pseudonymous: the person's ref)."""
    return Actor(f"resident:{person.ref}", RESIDENT_ROLE, person.area_code)


# ---------------------------------------------------------------------------------------------
# Rate limits, as core.authz does for staff logins


def _limit_key(id_bidx: str) -> str:
    return id_bidx[:32]


def _check_rate(session: Session, key: str, client_ip: str) -> None:
    settings = get_settings()
    since = clock.now() - dt.timedelta(seconds=settings.login_window_seconds)
    if repository.recent_failures(session, key, client_ip, since) < settings.login_max_failures:
        return
    minutes = settings.login_window_seconds // 60
    error = RateLimited(
        f"尝试次数过多，请{minutes}分钟后再试",
        f"too many attempts; try again in {minutes} minutes",
        code="resident_rate_limited",
    )
    raise error.keep(
        lambda s: record(
            s,
            SYSTEM,
            "residents.login",
            object_type="resident",
            outcome="denied",
            detail={"reason": "rate_limited", "client_ip": client_ip},
        )
    )


def _failed(error: InvalidInput | NotAuthenticated, key: str, client_ip: str, reason: str) -> Any:
    """``error`` carrying the record of the failure, kept although the attempt rolls back."""

    def keep(session: Session) -> None:
        session.add(ResidentLoginFailure(key=key, client_ip=client_ip, at=clock.now()))
        record(
            session,
            SYSTEM,
            "residents.login",
            object_type="resident",
            outcome="denied",
            detail={"reason": reason, "client_ip": client_ip},
        )

    return error.keep(keep)


def _matches(person: Person, name: str, phone: str, index: BlindIndex) -> bool:
    return (
        person.phone_bidx is not None
        and secrets.compare_digest(person.phone_bidx, index.digest(phone, "phone"))
        and secrets.compare_digest(person.name_bidx, index.digest(name, "name"))
    )


def _logged_in(session: Session, person: Person, key: str, client_ip: str) -> None:
    repository.clear_failures(session, key)
    now = clock.now()
    account = repository.account(session, person.ref)
    if account is None:
        account = ResidentAccount(person_ref=person.ref, created_at=now)
        session.add(account)
    account.last_login_at = now
    record(
        session,
        resident_actor(person),
        "residents.login",
        object_type="person",
        object_id=person.ref,
        area_code=person.area_code,
        detail={"client_ip": client_ip},
    )


# ---------------------------------------------------------------------------------------------
# Registration and login


def _unit_text(data: RegistrationIn, problems: dict[str, tuple[str, str]]) -> str | None:
    return _unit_of(data.building, data.unit, data.room, problems)


def _unit_of(
    building_text: str, unit_text: str, room_text: str, problems: dict[str, tuple[str, str]]
) -> str | None:
    """Building, unit and room as stored ("3号楼/2单元/501"), or None with the problems."""
    building = _collect(
        problems, _check_address_part, building_text, "building", "楼栋", "building", required=True
    )
    unit = _collect(
        problems, _check_address_part, unit_text, "unit", "单元", "unit", required=False
    )
    room = _collect(
        problems, _check_address_part, room_text, "room", "门牌号", "room", required=True
    )
    if building is None or unit is None or room is None:
        return None
    return "/".join((building, unit, room))


def split_unit(text: str) -> tuple[str, str, str]:
    """Building, unit and room of a household's stored unit ("3号楼/2单元/501")."""
    parts = [*text.split("/"), "", "", ""][:3]
    return parts[0], parts[1], parts[2]


def send_sms_code(session: Session, phone: str, *, client_ip: str) -> sms_codes.CodeSent:
    """Send a one-time code (短信验证码) to the phone a resident typed, for registering or
    logging in (an invalid number is refused on the ``phone`` field; see ``sms_codes``)."""
    checked = check_phone(phone)
    assert checked is not None
    return sms_codes.send_code(session, checked, client_ip=client_ip)


def _phone_proof(
    session: Session,
    phone: str | None,
    code: str,
    problems: dict[str, tuple[str, str]],
    kept: list[Callable[[Any], object]],
) -> ResidentSmsCode | None:
    """The live SMS code proving ``phone``, or None with the problem noted (and a wrong try's
    count in ``kept``). Nothing is checked while the phone itself is wrong."""
    if phone is None:
        return None
    try:
        return sms_codes.check_code(session, phone, code)
    except InvalidInput as error:
        problems.setdefault(error.field or sms_codes.FIELD, (error.message_zh, error.message_en))
        kept.extend(error.after_rollback)
        return None


def _keeping(error: E, kept: list[Callable[[Any], object]]) -> E:
    for hook in kept:
        error.keep(hook)
    return error


IDENTITY_MISMATCH = (
    "实名核验未通过：姓名、身份证号码与手机号码的实名登记信息不一致。请核对姓名和身份证号码，"
    "并使用登记在本人名下的手机号码；手机号码不在本人名下的，可请家人将您登记为家庭成员，"
    "或到所在社区登记",
    "the real-name check failed: the name, ID number and phone do not match the registered "
    "holder. Check the name and ID number and use a phone registered in your own name; if you "
    "have none, a family member can register you as a household member, or register at your "
    "community",
)
MEMBER_IDENTITY_MISMATCH = (
    "姓名与身份证号码不一致（实名核验未通过），请核对",
    "the name does not match the ID number (real-name check failed); check both",
)
MEMBER_PHONE_MISMATCH = (
    "姓名、身份证号码与手机号码不一致（实名核验未通过）：成年家庭成员须填写其本人名下的手机号码，"
    "用于本人确认；没有手机的，请登记时不填，由社区网格员当面核验",
    "the name, ID number and phone do not match (real-name check failed): an adult member's "
    "phone must be registered in their own name, for their consent; leave it empty if they "
    "have none, and the community's grid worker will confirm them in person",
)


def _check_identities(
    name: str,
    number: str,
    phone: str,
    members: list[tuple[int, str, str, str | None]],
    key: str,
    client_ip: str,
) -> None:
    """Ask the city's identity service (``kit.identity``) about the registrant (name, ID and
    phone: three factors) and each member (name and ID, and the phone an adult's consent will
    be asked on); every mismatch is reported on its field, and the attempt counts against the
    rate limit like a failed login, so the form cannot be used to test name and ID pairs at
    will."""
    problems: dict[str, tuple[str, str]] = {}
    if not identity_matches(name, number, phone):
        problems["id_number"] = IDENTITY_MISMATCH
    for position, m_name, m_number, m_phone in members:
        if not identity_matches(m_name, m_number, m_phone):
            zh, en = MEMBER_PHONE_MISMATCH if m_phone else MEMBER_IDENTITY_MISMATCH
            problems[f"members-{position}-name"] = (
                f"家庭成员{position}：{zh}",
                f"household member {position}: {en}",
            )
    if problems:
        raise _failed(FormInvalid(problems), key, client_ip, "identity_mismatch")


def _expose(session: Session, refs: list[str]) -> None:
    """Persons who just entered a household: a case in force among its members makes the
    others close contacts now, in this transaction, so the code page shows it at once (the
    ``person.registered`` handler repeats it harmlessly). The platform derives these facts, not
    the resident: the system is their asserter."""
    for ref in refs:
        person = repository.person_by_ref(session, ref)
        assert person is not None
        risk.expose_to_household(session, SYSTEM, person)


def register_household(
    session: Session, data: RegistrationIn, *, client_ip: str
) -> RegistrationOut:
    """Register a resident and their household members to a compound (居民自助登记).

    Every field is checked and every problem reported at once, each with its field. The
    registrant's phone must be proven with the one-time code sent to it (``sms_code``). An ID
    number already in the registry is never registered again, and nothing of that person is
    shown: if the phone and name given match the registered ones and the code proves the
    phone, the resident is simply logged in (``created`` False, nothing changed); otherwise
    the ID field says it is taken and asks for the registered phone and name, and a mismatch
    counts against the rate limit as a failed login does. A wrong code counts against the
    code's own tries.
    """
    index = blind_index()
    problems: dict[str, tuple[str, str]] = {}
    kept: list[Callable[[Any], object]] = []
    name = _collect(problems, check_name, data.name, "name")
    number = _collect(problems, check_id_number, data.id_number, "id_number")
    phone = _collect(problems, check_phone, data.phone, "phone")
    compound = _collect(problems, check_compound, session, data.compound_code)
    unit = _unit_text(data, problems)

    key: str | None = None
    taken = False
    id_bidx = index.digest(number, "id_number") if number is not None else None
    if id_bidx is not None:
        key = _limit_key(id_bidx)
        _check_rate(session, key, client_ip)
    proof = _phone_proof(session, phone, data.sms_code, problems, kept)
    if id_bidx is not None and key is not None:
        existing = repository.person_by_id_index(session, id_bidx)
        if existing is not None:
            matched = (
                name is not None and phone is not None and _matches(existing, name, phone, index)
            )
            if matched and proof is not None:
                sms_codes.spend(proof)
                _logged_in(session, existing, key, client_ip)
                return RegistrationOut(
                    person_ref=existing.ref,
                    household_id=existing.household_id,
                    members=[],
                    created=False,
                )
            # The same answer, and the same count against the limit, whether or not phone and
            # name matched: without the code, a match must not show.
            taken = True
            problems["id_number"] = (
                "该身份证号码已登记。如是本人，请填写登记时的手机号码和姓名并获取验证码"
                "（将直接为您登录）；如仍有问题请联系所在社区",
                "this ID number is already registered. If it is yours, enter the phone and name "
                "you registered with and the code sent to it (you will be logged in); otherwise "
                "contact your community",
            )

    members: list[tuple[str, str, str | None]] = []
    positions: list[int] = []  # each member's place on the form, for its fields
    seen = {number} if number else set()
    slots = [m for m in data.members if not m.is_blank()]
    if len(slots) > MAX_MEMBERS:
        problems["members"] = (
            f"一次最多登记{MAX_MEMBERS}位家庭成员",
            f"at most {MAX_MEMBERS} household members at once",
        )
    for position, member in enumerate(data.members, start=1):
        if member.is_blank():
            continue
        field = f"members-{position}-"
        prefix = (f"家庭成员{position}：", f"household member {position}: ")
        m_name = _collect(problems, check_name, member.name, field + "name", prefix=prefix)
        m_number = _collect(
            problems, check_id_number, member.id_number, field + "id_number", prefix=prefix
        )
        m_phone = _collect(
            problems, check_phone, member.phone, field + "phone", required=False, prefix=prefix
        )
        if m_number is not None:
            if m_number in seen:
                problems.setdefault(
                    field + "id_number",
                    (prefix[0] + "身份证号码与前面重复", prefix[1] + "ID number entered twice"),
                )
                continue
            seen.add(m_number)
            if repository.person_by_id_index(session, index.digest(m_number, "id_number")):
                # Say only that it is taken: who holds it and where is not this resident's to see.
                problems.setdefault(
                    field + "id_number",
                    (
                        prefix[0] + "该身份证号码已登记，不能重复登记；成年人可在登记后从“我的家庭”"
                        "邀请其加入本户（须本人确认），或联系社区网格员",
                        prefix[1] + "this ID number is already registered; an adult can be "
                        "invited from “my household” once you have registered (they consent), "
                        "or your community's grid worker can help",
                    ),
                )
        if m_name is not None and m_number is not None:
            members.append((m_name, m_number, m_phone))
            positions.append(position)

    if problems:
        error = _keeping(FormInvalid(problems), kept)
        if taken and key is not None:
            raise _failed(error, key, client_ip, "id_taken")
        raise error
    assert name is not None and number is not None and phone is not None
    assert compound is not None and unit is not None and proof is not None
    assert key is not None
    # Checked last, when all else holds: the city's service is asked only for a whole form,
    # before anything is written, and the code stays unspent for a corrected try.
    today = clock.today_local()
    adults = {m_number for _, m_number, _ in members if is_adult(m_number, today)}
    _check_identities(
        name,
        number,
        phone,
        [
            (p, m[0], m[1], m[2] if m[1] in adults else None)
            for p, m in zip(positions, members, strict=True)
        ],
        key,
        client_ip,
    )
    sms_codes.spend(proof)

    channel = _self_service(compound.code)
    household = people_service.create_household(
        session, channel, HouseholdIn(compound_code=compound.code, unit=unit)
    )
    me, created = people_service.register_person(
        session,
        channel,
        PersonIn(name=name, id_number=number, phone=phone, household_id=household.id),
    )
    if not created:
        raise RaceLost("the ID number was registered since it was looked for")
    member_refs: list[str] = []
    invited: list[int] = []
    for m_name, m_number, m_phone in members:
        if m_number in adults:
            invitation = _invite(
                session,
                channel.actor,
                household.id,
                compound.code,
                me.ref,
                (m_name, m_number, m_phone),
            )
            invited.append(invitation.id)
            continue
        registered, created = people_service.register_person(
            session,
            channel,
            PersonIn(name=m_name, id_number=m_number, phone=m_phone, household_id=household.id),
        )
        if not created:
            raise RaceLost("a member's ID number was registered since it was looked for")
        member_refs.append(registered.ref)
    _expose(session, [me.ref, *member_refs])
    now = clock.now()
    session.add(ResidentAccount(person_ref=me.ref, created_at=now, last_login_at=now))
    record(
        session,
        channel.actor,
        "residents.register",
        object_type="household",
        object_id=household.id,
        area_code=compound.code,
        detail={"members": len(member_refs), "invited": len(invited), "client_ip": client_ip},
    )
    publish(
        session,
        "residents.household.registered",
        {
            "household_id": household.id,
            "compound_code": compound.code,
            "person_refs": [me.ref, *member_refs],
        },
        key=str(household.id),
    )
    return RegistrationOut(
        person_ref=me.ref,
        household_id=household.id,
        members=member_refs,
        invited=invited,
        created=True,
    )


@dataclass(frozen=True)
class _Proven:
    """Name, ID number and phone as checked, the ID's blind index, and the live code that
    proves the phone."""

    name: str
    number: str
    phone: str
    id_bidx: str
    proof: ResidentSmsCode

    @property
    def key(self) -> str:
        """The ID's rate-limit key."""
        return _limit_key(self.id_bidx)


def _proven(
    session: Session, *, id_number: str, phone: str, name: str, sms_code: str, client_ip: str
) -> _Proven:
    """The three fields checked and the phone proven by its code, within the rate limit; any
    problem raised on its field. A typo is not a guess: format errors do not count against
    the limit, a wrong code counts against the code's own tries."""
    problems: dict[str, tuple[str, str]] = {}
    checked_name = _collect(problems, check_name, name, "name")
    number = _collect(problems, check_id_number, id_number, "id_number")
    checked_phone = _collect(problems, check_phone, phone, "phone")
    if problems:
        raise FormInvalid(problems)
    assert checked_name is not None and number is not None and checked_phone is not None
    id_bidx = blind_index().digest(number, "id_number")
    _check_rate(session, _limit_key(id_bidx), client_ip)
    kept: list[Callable[[Any], object]] = []
    proof = _phone_proof(session, checked_phone, sms_code, problems, kept)
    if proof is None:
        raise _keeping(FormInvalid(problems), kept)
    return _Proven(checked_name, number, checked_phone, id_bidx, proof)


def log_in(
    session: Session, *, id_number: str, phone: str, name: str, sms_code: str, client_ip: str
) -> Person:
    """A resident logs back in with ID number, phone and name, matched through the blind
    indexes (nothing is decrypted), and the one-time code sent to that phone. Failures are
    rate-limited per ID and per address; the answer never says which of the three did not
    match (only a holder of the phone, who has the code, learns that they did not)."""
    proven = _proven(
        session,
        id_number=id_number,
        phone=phone,
        name=name,
        sms_code=sms_code,
        client_ip=client_ip,
    )
    person = repository.person_by_id_index(session, proven.id_bidx)
    if person is None or not _matches(person, proven.name, proven.phone, blind_index()):
        error = NotAuthenticated(
            "身份证号码、手机号码和姓名与登记信息不符，或尚未登记",
            "the ID number, phone and name do not match a registration",
            code="resident_login_failed",
        )
        raise _failed(error, proven.key, client_ip, "unknown" if person is None else "mismatch")
    sms_codes.spend(proven.proof)
    _logged_in(session, person, proven.key, client_ip)
    return person


PHONE_CHANGE_MISMATCH = (
    "实名核验未通过：姓名、身份证号码与手机号码的实名登记信息不一致。请核对姓名和身份证号码，"
    "并使用登记在本人名下的手机号码；没有的，请联系所在社区",
    "the real-name check failed: the name, ID number and phone do not match the registered "
    "holder. Check the name and ID number and use a phone registered in your own name; if you "
    "have none, contact your community",
)


def _tell_the_old_phone(session: Session, old_phone: str, new_phone: str) -> None:
    """Text the phone being replaced that it no longer logs in: its holder learns of a change
    they did not make. Sent before anything is written, with the reads ended first, as a code
    is (``sms_codes.send_code``); a run of the request again does not send it twice; a
    platform that fails does not stop the change (the number stays out of the log)."""
    text = (
        f"【城市大脑】您在居民健康登记中登记的手机号已更换为{mask_phone(new_phone)}，"
        "本号码不能再登录。如非本人操作，请立即联系所在社区。"
    )

    def send() -> bool:
        try:
            send_sms(old_phone, text)
        except SmsNotSent:
            log.warning("residents.phone_change_notice_not_sent")
            return False
        return True

    session.commit()
    ask_once(("old-phone-notice", old_phone, new_phone), send)


def change_phone(
    session: Session, *, id_number: str, phone: str, name: str, sms_code: str, client_ip: str
) -> Person:
    """A registered resident takes a new phone as their own (更换手机号): they changed
    numbers, or were registered without one, or on a guardian's as a child. Proof is what
    registration asks: the code texted to the new phone, and the identity service's answer
    that the number is registered in their name (three factors), with the name matching the
    registration. The registry then holds the new phone, every earlier session of theirs ends
    (whoever held the old phone is logged out) and they are logged in. Failures count against
    the rate limit as failed logins do; whether the ID is registered is told only past the
    identity check, that is to its holder."""
    proven = _proven(
        session,
        id_number=id_number,
        phone=phone,
        name=name,
        sms_code=sms_code,
        client_ip=client_ip,
    )
    # The identity service first: past it, only the holder of the ID (whose name it is, with
    # a phone in that name) learns whether and how the registry knows them.
    if not identity_matches(proven.name, proven.number, proven.phone):
        raise _failed(
            FormInvalid({"id_number": PHONE_CHANGE_MISMATCH}),
            proven.key,
            client_ip,
            "identity_mismatch",
        )
    person = repository.person_by_id_index(session, proven.id_bidx)
    if person is None or not secrets.compare_digest(
        person.name_bidx, blind_index().digest(proven.name, "name")
    ):
        error = NotAuthenticated(
            "未找到以该身份证号码和姓名登记的居民。尚未登记的请先登记；登记时姓名有误的，"
            "请联系所在社区",
            "no resident is registered with this ID number and name. Register first; if your "
            "name was registered wrongly, contact your community",
            code="resident_phone_change_failed",
        )
        raise _failed(error, proven.key, client_ip, "unknown" if person is None else "mismatch")
    old_phone = _registered_phone(person)
    if old_phone is not None and old_phone != proven.phone:
        _tell_the_old_phone(session, old_phone, proven.phone)
    sms_codes.spend(proven.proof)
    people_service.change_phone(session, resident_actor(person), person, proven.phone)
    account = repository.account(session, person.ref)
    if account is not None:
        account.sessions_revoked_at = clock.now()
    _logged_in(session, person, proven.key, client_ip)
    return person


def session_person(session: Session, ref: str, issued_at: float) -> Person | None:
    """The resident behind a session cookie issued at ``issued_at`` (epoch seconds), unless
    their sessions were ended since."""
    found = repository.person_with_account(session, ref)
    if found is None:
        return None
    person, revoked = found
    if revoked is not None and issued_at < revoked.timestamp():
        return None
    return person


def log_out(session: Session, person: Person) -> None:
    """End every session of the resident (a copied cookie must not outlive the logout)."""
    account = repository.account(session, person.ref)
    if account is not None:
        account.sessions_revoked_at = clock.now()
    record(
        session,
        resident_actor(person),
        "residents.logout",
        object_type="person",
        object_id=person.ref,
        area_code=person.area_code,
    )


# ---------------------------------------------------------------------------------------------
# What a resident sees of their household


@dataclass(frozen=True)
class Member:
    """A household member as the resident sees them: masked, except their own entry's name."""

    ref: str
    name: str
    id_number: str
    is_self: bool
    can_log_in: bool
    reported_today: bool


def household_of(session: Session, me: Person) -> list[Person]:
    """The resident and the members of their household."""
    return repository.household_members(session, me)


def members_view(session: Session, me: Person, persons: list[Person] | None = None) -> list[Member]:
    """The household, masked (a member's ID and name are theirs, not the registrant's);
    ``persons``: the household as the caller already read it."""
    cipher = field_cipher()
    persons = household_of(session, me) if persons is None else persons
    reports = repository.reports_of_persons(session, [p.ref for p in persons], clock.today_local())
    out = []
    for person in persons:
        name = cipher.decrypt(person.name_enc, people_service.NAME_FIELD)
        number = cipher.decrypt(person.id_number_enc, people_service.ID_FIELD)
        out.append(
            Member(
                ref=person.ref,
                name=name if person.ref == me.ref else mask_name(name),
                id_number=mask_resident_id(number),
                is_self=person.ref == me.ref,
                can_log_in=person.phone_bidx is not None,
                reported_today=person.ref in reports,
            )
        )
    return out


def member_of(session: Session, me: Person, ref: str | None) -> Person:
    """The resident (``ref`` None) or one of their household; anyone else is not found."""
    if not ref or ref == me.ref:
        return me
    for person in household_of(session, me):
        if person.ref == ref:
            return person
    raise NotFound("未找到该家庭成员", "no such household member", code="member_not_found")


def issue_member_card(session: Session, me: Person, ref: str) -> gate_cards.PrintableCard:
    """Print a health card (纸质健康卡) for the resident or a member of their household, who
    may have no smartphone of their own (``healthcode.cards``: it ends the card they held,
    audits and announces it)."""
    member = member_of(session, me, ref)
    return gate_cards.issue_by_household(session, resident_actor(me), member)


CARD_NOTICE_TEXT = (
    "已为您办理纸质健康卡（卡号 {number}），由{who}办理。卡上不显示颜色，闸机联网核验当前颜色，"
    "并核对身份证。如您不知情，请在“我的家庭”中挂失，或联系所在社区。",
    "A printed health card (No. {number}) was issued for you by {who_en}. It shows no colour: "
    "gates check your current colour online and your ID card. If you did not know of it, "
    "report it lost under My household, or contact your community.",
)


def tell_card_holder(
    session: Session, person_ref: str, card_id: int, issued_by: str, via: str
) -> bool:
    """Tell a holder who logs in themselves that someone else issued them a printed health
    card (its number, by whom, how to report it lost): a card in their name is not printed
    behind their back. On their code page and texted, once per card; nobody is told of a card
    they printed themselves, and a child or an elder without an account is not texted here
    (the household or the community printed it with them). Returns whether a notice was
    left."""
    person = repository.person_by_ref(session, person_ref)
    if person is None or not has_own_account(session, person_ref):
        return False
    if issued_by == resident_actor(person).ref:
        return False
    zh, en = CARD_NOTICE_TEXT
    number = gate_cards.card_number(card_id)
    by_household = via == "household"
    return risk.leave_notice(
        session,
        subject_of(person),
        f"card_issued:{card_id}",
        zh.format(number=number, who="家人" if by_household else "社区工作人员"),
        en.format(number=number, who_en="your household" if by_household else "community staff"),
    )


CARD_PRESENTED_TEXT = (
    "{whose}纸质健康卡（卡号 {number}，{status}）于{at}在{place}被出示，闸机未放行。"
    "如不是本人所用，请联系所在社区；需要时可在“我的家庭”中补办新卡。",
    "{whose_en} printed health card (No. {number}, {status_en}) was presented at {place} at "
    "{at}; the gate did not let it through. If it was not its holder, contact your community; "
    "you can issue a new card under My household.",
)


def tell_household_of_presented_card(
    session: Session,
    person_ref: str,
    card_id: int,
    reason: str,
    place_code: str,
    presented_at: dt.datetime,
) -> int:
    """Tell the holder of a card that had ended and was presented at a gate (挂失卡被出示), if
    they log in themselves, and every member of their household who does: where and when, and
    that the gate refused it. On their code pages and texted, once a card a day each (a card
    presented at several gates in a morning sends one text). Returns how many were told."""
    holder = repository.person_by_ref(session, person_ref)
    if holder is None:
        return 0
    household = household_of(session, holder)
    accounts = repository.account_refs(session, [p.ref for p in household])
    card = session.get(HealthCard, card_id)
    place = session.get(Place, place_code)
    zh, en = CARD_PRESENTED_TEXT
    status_zh, status_en = gate_cards.END_REASON_LABELS.get(reason, (reason, reason))
    local = clock.as_utc(presented_at).astimezone(clock.CHINA_TZ)
    values = {
        "number": gate_cards.card_number(card_id),
        "status": status_zh,
        "status_en": status_en,
        "at": local.strftime("%m-%d %H:%M"),
        "place": place.name if place else place_code,
    }
    name = card.holder_name if card else ""
    told = 0
    for member in household:
        if member.ref not in accounts:
            continue
        own = member.ref == holder.ref
        told += risk.leave_notice(
            session,
            subject_of(member),
            f"card_presented:{card_id}:{local.date().isoformat()}",
            zh.format(whose="您的" if own else f"您家庭成员{name}的", **values),
            en.format(whose_en="Your" if own else f"Your household member {name}'s", **values),
        )
    return told


def residents_needing_cards(session: Session, who: Principal, compound_code: str) -> list[str]:
    """The refs of a compound's residents who have never logged in themselves (a child, an
    elder registered by their family) and hold no card in force: whom the community prints
    cards for first. Scoped to ``who``'s jurisdiction (the caller has checked the compound
    with :func:`compound_for_staff`)."""
    persons = repository.residents_scoped(session, who, compound_code)
    refs = [p.ref for p in persons]
    accounts = repository.account_refs(session, refs)
    held = gate_cards.current_cards(session, refs)
    return [ref for ref in refs if ref not in accounts and ref not in held]


def household_card(session: Session, me: Person, card_id: int) -> HealthCard:
    """A card of the resident's household (of a member now); anyone else's is not found."""
    card = session.get(HealthCard, card_id)
    refs = {person.ref for person in household_of(session, me)}
    if card is None or card.person_ref not in refs:
        raise NotFound("未找到该健康卡", "no such health card", code="card_not_found")
    return card


def print_member_card(session: Session, me: Person, card: HealthCard) -> gate_cards.PrintableCard:
    """A card of the household (found by :func:`household_card`) to print again (audited)."""
    return gate_cards.printable(session, resident_actor(me), card)


def end_member_card(session: Session, me: Person, card_id: int, reason: str) -> HealthCard:
    """Report a card of the household lost, or cancel it (挂失): refused at gates at once."""
    card = household_card(session, me, card_id)
    return gate_cards.end_by_household(session, resident_actor(me), card, reason)


@dataclass(frozen=True)
class Address:
    """A person's compound and flat, for their own pages."""

    compound: Compound | None
    building: str = ""
    unit: str = ""
    room: str = ""

    @property
    def flat(self) -> str:
        """Building, unit and room as shown ("3号楼 2单元 501")."""
        return " ".join(p for p in (self.building, self.unit, self.room) if p)


def address_of(session: Session, person: Person) -> Address:
    """The person's compound and their building/unit/room (for their own pages)."""
    compound = session.get(Compound, person.area_code) if len(person.area_code) == 15 else None
    text = ""
    if person.household_id is not None:
        household = session.get(Household, person.household_id)
        if household is not None and household.unit_enc:
            text = field_cipher().decrypt(household.unit_enc, people_service.UNIT_FIELD)
    return Address(compound, *split_unit(text))


def add_member(
    session: Session, me: Person, name: str, id_number: str, phone: str, *, client_ip: str
) -> Person | MemberInvitation:
    """Add a household member later (from "my household"), with the same checks as at
    registration, the real-name check included (a failure counts against the rate limit); the
    household is created if the resident had none. A child is registered at once (the
    ``Person``); an adult is invited (the ``MemberInvitation``) and joins on their consent."""
    problems: dict[str, tuple[str, str]] = {}
    m_name = _collect(problems, check_name, name, "name")
    number = _collect(problems, check_id_number, id_number, "id_number")
    m_phone = _collect(problems, check_phone, phone, "phone", required=False)
    index = blind_index()
    registered = (
        repository.person_by_id_index(session, index.digest(number, "id_number"))
        if number is not None
        else None
    )
    if registered is not None and _age(registered.birth_date, clock.today_local()) < ADULT_AGE:
        problems["id_number"] = (
            "该身份证号码已登记，不能重复登记；如需加入本户，请联系社区网格员",
            "this ID number is already registered; your community's grid worker can help",
        )
    if len(me.area_code) != 15:
        problems.setdefault(
            "form",
            (
                "您的登记没有小区，请联系社区",
                "your registration has no compound; ask your community",
            ),
        )
    if problems:
        raise FormInvalid(problems)
    assert m_name is not None and number is not None
    adult = is_adult(number, clock.today_local())
    key = _limit_key(index.digest(number, "id_number"))
    _check_rate(session, key, client_ip)
    if registered is not None:
        return _invite_registered(session, me, registered, m_name, number, key, client_ip)
    if not identity_matches(m_name, number, m_phone if adult else None):
        mismatch = MEMBER_PHONE_MISMATCH if adult and m_phone else MEMBER_IDENTITY_MISMATCH
        raise _failed(FormInvalid({"name": mismatch}), key, client_ip, "identity_mismatch")
    household_id = _household_with_room(session, me, index.digest(number, "id_number"))
    if adult:
        return _invite(
            session,
            resident_actor(me),
            household_id,
            me.area_code,
            me.ref,
            (m_name, number, m_phone),
        )
    return _enter_household(
        session,
        resident_actor(me),
        household_id,
        me.area_code,
        (m_name, number, m_phone),
        action="residents.member.add",
    )


def _enter_household(
    session: Session,
    actor: Actor,
    household_id: int,
    compound_code: str,
    member: tuple[str, str, str | None],
    *,
    action: str,
    detail: dict[str, Any] | None = None,
) -> Person:
    """Register ``member`` (name, ID, phone: checked) into the household living in
    ``compound_code`` and expose them to a case in force among its members; audited
    ``action`` and announced as a member added."""
    name, number, phone = member
    masked, created = people_service.register_person(
        session,
        _self_service(compound_code),
        PersonIn(name=name, id_number=number, phone=phone, household_id=household_id),
    )
    if not created:
        raise RaceLost("the member's ID number was registered since it was looked for")
    person = repository.person_by_ref(session, masked.ref)
    assert person is not None
    _member_added(session, actor, household_id, compound_code, person, action, detail)
    return person


def _member_added(
    session: Session,
    actor: Actor,
    household_id: int,
    compound_code: str,
    person: Person,
    action: str,
    detail: dict[str, Any] | None,
) -> None:
    """A member entered the household: exposed at once to a case in force among its members;
    audited ``action`` and announced."""
    _expose(session, [person.ref])
    record(
        session,
        actor,
        action,
        object_type="household",
        object_id=household_id,
        area_code=compound_code,
        detail=detail,
    )
    publish(
        session,
        "residents.household.member_added",
        {"household_id": household_id, "compound_code": compound_code, "person_ref": person.ref},
        key=str(household_id),
    )


def _household_with_room(session: Session, me: Person, id_bidx: str) -> int:
    """``me``'s household (opened now if they had none), when it has room for one more and
    the ID of blind index ``id_bidx`` is not already awaiting consent in it."""
    pending = (
        repository.invitations_of_household(session, me.household_id, clock.now())
        if me.household_id is not None
        else []
    )
    if len(household_of(session, me)) + len(pending) > MAX_MEMBERS:
        raise InvalidInput(
            f"一户最多登记{MAX_MEMBERS + 1}人", f"at most {MAX_MEMBERS + 1} persons per household"
        )
    if any(i.id_number_bidx == id_bidx for i in pending):
        raise FormInvalid({"id_number": ALREADY_INVITED})
    if me.household_id is None:
        opened = people_service.create_household(
            session, _self_service(me.area_code), HouseholdIn(compound_code=me.area_code)
        )
        me.household_id = opened.id
    return me.household_id


def _invite_registered(
    session: Session,
    me: Person,
    person: Person,
    name: str,
    number: str,
    key: str,
    client_ip: str,
) -> MemberInvitation:
    """Invite an adult who registered themselves to move into ``me``'s household: the name
    must be the registered one (a mismatch counts against the rate limit, as a wrong name at
    login does), they must live in the same compound (else they change their address first),
    and their consent is asked on the phone they registered."""
    index = blind_index()
    if not secrets.compare_digest(person.name_bidx, index.digest(name, "name")):
        raise _failed(
            FormInvalid(
                {
                    "name": (
                        "姓名与该身份证号码登记的姓名不一致，请核对",
                        "the name is not the one registered with this ID number; check both",
                    )
                }
            ),
            key,
            client_ip,
            "name_mismatch",
        )
    if me.household_id is not None and person.household_id == me.household_id:
        raise FormInvalid({"id_number": ("该成员已在本户", "they are already in your household")})
    if person.area_code != me.area_code:
        raise FormInvalid(
            {
                "id_number": (
                    "对方登记在其他小区：请其先在“我的家庭”中把住址变更到本小区，再邀请其加入",
                    "they are registered in another compound: they change their address to "
                    "yours first (my household, change address), then you invite them",
                )
            }
        )
    return _invite(
        session,
        resident_actor(me),
        _household_with_room(session, me, person.id_number_bidx),
        me.area_code,
        me.ref,
        (name, number, None),
        person_ref=person.ref,
    )


ALREADY_INVITED = (
    "该成员已在等待本人确认，请在下方“待本人确认”中发送确认码",
    "this member is already awaiting their consent; send them a code below",
)


# ---------------------------------------------------------------------------------------------
# Adult members' consent (成年家庭成员本人确认)


COMING_OF_AGE = "coming_of_age"
COMING_OF_AGE_TEXT = (
    "您已年满18周岁。您由家人代为登记在本户：今后可以用本人手机号管理自己的健康码"
    "（在登录页“手机号已更换，或登记时未留本人手机号？”中登记本人手机号），"
    "是否留在本户也由您本人决定（可在“我的家庭”中退出本户）。",
    "You have turned 18. A family member registered you in this household: you can now manage "
    "your own health code with your own phone (register it on the login page, under “changed "
    "your phone, or registered without one of your own?”), and whether you stay in this "
    "household is yours to decide (you can leave it under “my household”).",
)


def _born_years_before(today: dt.date, years: int) -> list[dt.date]:
    """The birthdays that make ``years`` today: 29 February's children come of age on
    1 March in a year without one."""
    year = today.year - years
    try:
        days = [today.replace(year=year)]
    except ValueError:  # 29 February today, and not in that year
        days = []
    if (
        (today.month, today.day) == (3, 1)
        and calendar.isleap(year)
        and not calendar.isleap(today.year)
    ):
        days.append(dt.date(year, 2, 29))
    return days


def tell_coming_of_age(session: Session, today: dt.date | None = None) -> int:
    """Tell each household member who turns 18 today that their code and their place in the
    household are now theirs (成年提醒): a member registered as a child by a guardian never
    consented as an adult. The notice shows on their code page and goes to the phone on their
    registration; nobody is told twice. Audited (a count, no names); returns how many."""
    today = today or clock.today_local()
    told = 0
    for person in repository.household_members_born_on(
        session, _born_years_before(today, ADULT_AGE)
    ):
        if risk.leave_notice(session, subject_of(person), COMING_OF_AGE, *COMING_OF_AGE_TEXT):
            told += 1
    if told:
        record(
            session,
            SYSTEM,
            "residents.coming_of_age",
            object_type="person",
            detail={"told": told, "day": today.isoformat()},
        )
    return told


def is_adult(id_number: str, today: dt.date) -> bool:
    """Whether the holder of ``id_number`` (a checked resident ID) is 18 or over ``today``."""
    return _age(parse_resident_id(id_number).birth_date, today) >= ADULT_AGE


def _invite(
    session: Session,
    actor: Actor,
    household_id: int,
    compound_code: str,
    inviter_ref: str,
    member: tuple[str, str, str | None],
    *,
    person_ref: str | None = None,
) -> MemberInvitation:
    """Keep an adult member (name, ID, phone: all checked; or a registered person's
    ``person_ref``) awaiting their consent; audited (no personal data) and announced."""
    name, number, phone = member
    cipher, now = field_cipher(), clock.now()
    invitation = MemberInvitation(
        household_id=household_id,
        compound_code=compound_code,
        invited_by=inviter_ref,
        name_enc=cipher.encrypt(name, INVITED_NAME),
        id_number_enc=cipher.encrypt(number, INVITED_ID),
        id_number_bidx=blind_index().digest(number, "id_number"),
        phone_enc=cipher.encrypt(phone, INVITED_PHONE) if phone else None,
        person_ref=person_ref,
        created_at=now,
        expires_at=now + dt.timedelta(days=INVITATION_DAYS),
    )
    session.add(invitation)
    session.flush()
    record(
        session,
        actor,
        "residents.member.invite",
        object_type="member_invitation",
        object_id=invitation.id,
        area_code=compound_code,
        detail={
            "household_id": household_id,
            "phone": phone is not None,
            "registered": person_ref is not None,
        },
    )
    publish(
        session,
        "residents.household.member_invited",
        {
            "household_id": household_id,
            "compound_code": compound_code,
            "invitation_id": invitation.id,
        },
        key=str(household_id),
    )
    return invitation


@dataclass(frozen=True)
class PendingMember:
    """An adult awaiting their consent, masked, as their household or the staff see them."""

    id: int
    name: str
    id_number: str
    phone: str | None
    expires_on: dt.date  # the city's calendar day it lapses
    household_id: int
    invited_by: str | None = None  # who entered them, masked (None once they left the registry)


def _phone_of(session: Session, invitation: MemberInvitation) -> str | None:
    """Where the adult's consent is asked: the phone given for them, or the one a registered
    adult registered with."""
    if invitation.person_ref is not None:
        person = repository.person_by_ref(session, invitation.person_ref)
        return _registered_phone(person) if person is not None else None
    if invitation.phone_enc is None:
        return None
    return field_cipher().decrypt(invitation.phone_enc, INVITED_PHONE)


def _registered_phone(person: Person) -> str | None:
    """The phone ``person`` is registered with (decrypted), if any."""
    if person.phone_enc is None:
        return None
    return field_cipher().decrypt(person.phone_enc, people_service.PHONE_FIELD)


def _pending(session: Session, invitation: MemberInvitation) -> PendingMember:
    cipher = field_cipher()
    phone = _phone_of(session, invitation)
    return PendingMember(
        id=invitation.id,
        name=mask_name(cipher.decrypt(invitation.name_enc, INVITED_NAME)),
        id_number=mask_resident_id(cipher.decrypt(invitation.id_number_enc, INVITED_ID)),
        phone=mask_phone(phone) if phone else None,
        expires_on=clock.as_utc(invitation.expires_at).astimezone(clock.CHINA_TZ).date(),
        household_id=invitation.household_id,
        invited_by=_masked_name_of(session, invitation.invited_by),
    )


def _masked_name_of(session: Session, ref: str) -> str | None:
    """The masked name of registered person ``ref`` (as household members and staff see each
    other), or None when nobody holds it any more."""
    person = repository.person_by_ref(session, ref)
    return people_service.masked_views(session, [person])[0].name if person is not None else None


def pending_members(session: Session, me: Person) -> list[PendingMember]:
    """The resident's household's adults awaiting their consent (masked)."""
    if me.household_id is None:
        return []
    found = repository.invitations_of_household(session, me.household_id, clock.now())
    return [_pending(session, i) for i in found]


INVITATION_NOT_FOUND = ("未找到该待确认成员，可能已确认或已过期", "no such member awaiting consent")


def _my_invitation(session: Session, me: Person, invitation_id: int) -> MemberInvitation:
    if me.household_id is not None:
        for invitation in repository.invitations_of_household(
            session, me.household_id, clock.now()
        ):
            if invitation.id == invitation_id:
                return invitation
    raise NotFound(*INVITATION_NOT_FOUND, code="invitation_not_found")


def _invited_phone(session: Session, invitation: MemberInvitation) -> str:
    phone = _phone_of(session, invitation)
    if phone is None:
        raise InvalidInput(
            "该成员没有登记手机号码，请其本人携带身份证到社区，由网格员当面核验确认",
            "this member gave no phone: they confirm in person with their ID card at the community",
            code="invitation_without_phone",
        )
    return phone


def send_consent_code(
    session: Session, me: Person, invitation_id: int, *, client_ip: str
) -> sms_codes.CodeSent:
    """Text the invited adult a code (本人确认码): the text names the resident (masked) and the
    compound, so passing the code on is their consent. Rate limits as for any code."""
    invitation = _my_invitation(session, me, invitation_id)
    phone = _invited_phone(session, invitation)
    cipher = field_cipher()
    inviter = mask_name(cipher.decrypt(me.name_enc, people_service.NAME_FIELD))
    household = session.get(Household, invitation.household_id)
    compound = session.get(Compound, household.compound_code) if household else None
    return sms_codes.send_code(
        session,
        phone,
        client_ip=client_ip,
        purpose=FOR_CONSENT,
        message=sms_codes.consent_text(inviter, compound.name if compound else ""),
    )


def _join(session: Session, actor: Actor, invitation: MemberInvitation, via: str) -> Person:
    """Register the invited adult into the household (its compound now, wherever it moved),
    expose them to a case among its members, delete the invitation; audited and announced as a
    member added. An ID registered meanwhile (by its holder, say) is refused: the invitation
    can only be withdrawn then."""
    household = session.get(Household, invitation.household_id)
    if household is None:
        raise NotFound(*INVITATION_NOT_FOUND, code="invitation_not_found")
    if invitation.person_ref is not None:
        return _move_in(session, actor, invitation, invitation.person_ref, household, via)
    cipher = field_cipher()
    number = cipher.decrypt(invitation.id_number_enc, INVITED_ID)
    if repository.person_by_id_index(session, invitation.id_number_bidx) is not None:
        raise Conflict(
            "该身份证号码已登记（可能已由本人登记），无法确认，请撤回该邀请",
            "this ID number has been registered meanwhile (perhaps by its holder); withdraw "
            "the invitation",
            code="invitation_id_taken",
        )
    phone = cipher.decrypt(invitation.phone_enc, INVITED_PHONE) if invitation.phone_enc else None
    name = cipher.decrypt(invitation.name_enc, INVITED_NAME)
    session.delete(invitation)
    return _enter_household(
        session,
        actor,
        household.id,
        household.compound_code,
        (name, number, phone),
        action="residents.member.confirm",
        detail={"invitation_id": invitation.id, "via": via},
    )


def _move_in(
    session: Session,
    actor: Actor,
    invitation: MemberInvitation,
    person_ref: str,
    household: Household,
    via: str,
) -> Person:
    """A registered adult consented: they leave their own household for this one (same
    compound), exposed at once to a case in force among its members. Refused while their code
    is not green, as any move is, or when they no longer live in the household's compound."""
    person = repository.person_by_ref(session, person_ref)
    if person is None:
        raise NotFound(*INVITATION_NOT_FOUND, code="invitation_not_found")
    if person.area_code != household.compound_code:
        raise Conflict(
            "对方的住址已不在本小区，无法加入，请撤回该邀请",
            "they no longer live in this compound; withdraw the invitation",
            code="invitation_moved_away",
        )
    _require_green(
        session,
        [person],
        "对方当前不是绿码，暂不能加入本户；如有疑问，请联系所在社区",
        "their code is not green, so they cannot join the household now; ask your community",
        code="member_not_green",
    )
    session.delete(invitation)
    people_service.join_household(session, actor, person, household, reason=f"consent_{via}")
    _member_added(
        session,
        actor,
        household.id,
        household.compound_code,
        person,
        "residents.member.confirm",
        {"invitation_id": invitation.id, "via": via, "registered": True},
    )
    return person


def confirm_member(session: Session, me: Person, invitation_id: int, code: str) -> Person:
    """The invited adult's consent, by the code texted to their phone: they join the
    household. A wrong code counts against the code's tries."""
    invitation = _my_invitation(session, me, invitation_id)
    proof = sms_codes.check_code(
        session, _invited_phone(session, invitation), code, purpose=FOR_CONSENT
    )
    sms_codes.spend(proof)
    return _join(session, resident_actor(me), invitation, "sms")


def withdraw_invitation(session: Session, me: Person, invitation_id: int) -> None:
    """Withdraw an invitation (撤回): nothing of the adult is kept."""
    invitation = _my_invitation(session, me, invitation_id)
    session.delete(invitation)
    record(
        session,
        resident_actor(me),
        "residents.member.uninvite",
        object_type="member_invitation",
        object_id=invitation.id,
        area_code=invitation.compound_code,
    )


def pending_in_compound(
    session: Session, who: Principal, compound_code: str
) -> list[PendingMember]:
    """Adults awaiting consent in a compound of the caller's jurisdiction (masked)."""
    compound_for_staff(session, who, compound_code)
    found = repository.invitations_scoped(session, who, compound_code, clock.now())
    return [_pending(session, i) for i in found]


def confirm_member_in_person(session: Session, who: Principal, invitation_id: int) -> Person:
    """Staff confirm an invited adult after seeing them and their ID card in person (社区当面核验):
    for an adult without a phone of their own. The invitation must lie in the caller's
    jurisdiction; anything else is not found."""
    who.require(Permission.RESIDENTS_CORRECT)
    invitation = repository.invitation_scoped(session, who, invitation_id, clock.now())
    if invitation is None:
        # The same answer as for none at all; the attempt is audited.
        raise gate_passes.not_found_in_area(
            who, "residents.member.confirm", "member_invitation", str(invitation_id)
        )
    return _join(session, who.actor, invitation, "in_person")


def reseal_invitations(session: Session, actor: Actor, cipher: FieldCipher | None = None) -> int:
    """Re-encrypt the invitations' name, ID and phone sealed with an older field key under the
    active one (``citybrain keys reseal`` runs it after the registry's); audited with the count
    when any changed. Returns how many invitations were resealed."""
    cipher = cipher or field_cipher()
    fields = (
        ("name_enc", INVITED_NAME),
        ("id_number_enc", INVITED_ID),
        ("phone_enc", INVITED_PHONE),
    )
    resealed = sum(
        cipher.reseal(invitation, fields) for invitation in repository.all_invitations(session)
    )
    if resealed:
        record(
            session,
            actor,
            "residents.invitations_reseal",
            object_type="field_key",
            object_id=cipher.active_kid,
            detail={"resealed": resealed},
        )
    return resealed


def purge_lapsed_invitations(session: Session) -> int:
    """Delete invitations whose consent never came (past ``expires_at``); returns how many."""
    now = clock.now()
    purged = repository.purge_invitations_before(session, now)
    record_purge(
        session,
        "residents.invitations_purge",
        object_type="member_invitation",
        deleted=purged,
        before=now,
        retention_days=INVITATION_DAYS,
    )
    return purged


def has_own_account(session: Session, ref: str) -> bool:
    """Whether person ``ref`` has logged in themselves (has a resident account)."""
    return repository.account(session, ref) is not None


def _require_green(session: Session, persons: list[Person], zh: str, en: str, *, code: str) -> None:
    """Refuse (409, ``code``) unless every one of ``persons`` shows green. A case or a contact
    must stay reachable where they are registered: taking them out of the registry or their
    compound would erase what the community needs to find them (their colour row keeps
    placing them in the compound in any case, so a tier could not be lowered this way)."""
    views = risk.colours_of(session, [subject_of(p) for p in persons])
    if any(view.colour != "green" for view in views.values()):
        raise Conflict(zh, en, code=code)


def _withdraw_from_registry(session: Session, actor: Actor, person: Person, reason: str) -> None:
    """Withdraw ``person``'s registration: their daily reports and resident account (if any)
    are deleted, then their name, ID and phone (audited and announced by the registry); their
    health record stays with the risk subject. A household left with nobody in it loses the
    adults still invited into it too: their names, IDs and phones were entered for a household
    that no longer has anyone to welcome them."""
    household_id = person.household_id
    repository.delete_reports_of(session, person.ref)
    repository.delete_account(session, person.ref)
    people_service.withdraw_person(session, actor, person, reason=reason)
    if household_id is not None and not people_repository.has_members(session, household_id):
        repository.delete_invitations_of_household(session, household_id)


def _require_a_holder_among(session: Session, others: list[Person], going_zh: str) -> None:
    """Refuse (409) unless one of ``others``, the members staying in the household, can log
    in: otherwise nobody would show the codes of the rest or report for them. ``going_zh``
    names what the resident is doing (退出, 注销)."""
    if not repository.account_refs(session, [p.ref for p in others]):
        raise Conflict(
            f"本户其他成员都不能自行登录（如孩子、没有手机的老人），您{going_zh}后无人为其查看"
            f"健康码和打卡。请先将其移出，或请一位家人登录后再{going_zh}",
            "nobody else in the household can log in (children, elders without a phone), so "
            "nobody would show their codes or report for them; take them out first, or have "
            "another member log in first",
            code="household_needs_holder",
        )


def deregister_self(session: Session, me: Person) -> None:
    """Withdraw one's own registration (注销本人登记): someone who moved out of the city, or
    no longer wants to be in the resident service, takes their name, ID number, phone, daily
    reports and account out of it, as the law on personal information lets them. What the
    platform learnt about their health stays with the risk subject, as it would for anyone,
    and they can register again later. Refused while their code is not green (a case or a
    contact stays where the community finds them), and while their household holds members
    nobody else could log in for (children, elders without a phone): those are taken out
    first, or another member logs in first. Audited and announced by the registry."""
    _require_green(
        session,
        [me],
        "您当前不是绿码，暂不能注销登记；如有疑问，请联系所在社区",
        "your code is not green, so you cannot withdraw your registration now; ask your community",
        code="self_not_green",
    )
    others = [p for p in household_of(session, me) if p.ref != me.ref]
    if others:
        _require_a_holder_among(session, others, "注销")
    _withdraw_from_registry(session, resident_actor(me), me, reason="deregistered_by_self")


def remove_member(session: Session, me: Person, ref: str) -> str:
    """Take a member out of the resident's household (移出家庭成员). A member who never logged
    in themselves was registered only by this household: their registration is withdrawn —
    name, ID, phone and daily reports deleted — so the ID is free for them to register on
    their own (a member entered by mistake, or by someone who should not have). A member with
    an account of their own stays registered, outside the household. Returns ``withdrawn`` or
    ``left``; audited and announced by the registry."""
    if not ref or ref == me.ref:
        raise InvalidInput(
            "不能移出本人", "you cannot remove yourself from the household", field="member"
        )
    person = member_of(session, me, ref)
    _require_green(
        session,
        [person],
        "该成员当前不是绿码，暂不能移出；如登记有误，请联系所在社区",
        "this member's code is not green, so they cannot be removed now; if the "
        "registration is wrong, contact your community",
        code="member_not_green",
    )
    actor = resident_actor(me)
    if not has_own_account(session, person.ref):
        _withdraw_from_registry(session, actor, person, reason="removed_by_household")
        return "withdrawn"
    people_service.leave_household(session, actor, person, reason="removed_by_household")
    return "left"


def leave_own_household(session: Session, me: Person) -> None:
    """Leave one's household oneself (退出本户): a member's consent to be in it is theirs to
    withdraw. The household no longer sees their code nor they the household's; they stay
    registered where they live. Refused while their code is not green (a case or a contact
    stays where the community finds them), and when the household would be left with members
    nobody can log in for (children, elders without a phone): those are taken out first, or
    another member logs in first. Audited and announced by the registry."""
    others = [p for p in household_of(session, me) if p.ref != me.ref]
    if me.household_id is None or not others:
        raise InvalidInput(
            "您的家庭中没有其他成员",
            "there is nobody else in your household",
            code="household_alone",
        )
    _require_green(
        session,
        [me],
        "您当前不是绿码，暂不能退出本户；如有疑问，请联系所在社区",
        "your code is not green, so you cannot leave the household now; ask your community",
        code="self_not_green",
    )
    _require_a_holder_among(session, others, "退出")
    people_service.leave_household(session, resident_actor(me), me, reason="left_by_self")


def withdraw_registration(session: Session, who: Principal, ref: str, reason: str) -> None:
    """Staff withdraw a registration that should not stand (撤销登记), after checking in
    person: an ID number registered by someone other than its holder (as a household member,
    or before the city's real-name checks were switched on), so that the holder can register.
    The person must live in the caller's jurisdiction and show green (a case or a contact
    stays reachable); the reason is required and kept in the audit row. Their name, ID, phone,
    daily reports and resident account go; their health record stays with the risk subject."""
    who.require(Permission.RESIDENTS_CORRECT)
    reason = " ".join(reason.split())
    if not 4 <= len(reason) <= 200:
        raise InvalidInput(
            "请填写撤销理由（4至200字），例如核实情况",
            "give the reason (4 to 200 characters), such as what was checked",
            field="reason",
        )
    person = repository.person_by_ref(session, ref) if ref.isalnum() else None
    if person is None or not covers(who, person.area_code):
        raise _deny(session, who, "person.withdraw", "person", ref[:32])
    _require_green(
        session,
        [person],
        "该人员当前不是绿码，不能撤销其登记",
        "this person's code is not green, so their registration cannot be withdrawn",
        code="person_not_green",
    )
    _withdraw_from_registry(session, who.actor, person, reason=reason)


def move_household(
    session: Session, me: Person, compound_code: str, building: str, unit: str, room: str
) -> None:
    """Move the resident's household to another compound or flat (变更住址), or correct the
    one chosen at registration; every member moves with it. Refused while any member's code is
    not green, or while the compound left or the one moved to is closed or controlled: a
    registration must not become a way into or out of a compound under control (its gate lets
    only residents through)."""
    problems: dict[str, tuple[str, str]] = {}
    compound = _collect(problems, check_compound, session, compound_code)
    unit_text = _unit_of(building, unit, room, problems)
    if problems:
        raise FormInvalid(problems)
    assert compound is not None and unit_text is not None
    members = household_of(session, me)
    _require_green(
        session,
        members,
        "家庭成员中有人当前不是绿码，暂不能变更住址；如登记有误，请联系所在社区",
        "someone in the household does not have a green code, so the address cannot "
        "change now; if the registration is wrong, contact your community",
        code="household_not_green",
    )
    for code in {me.area_code, compound.code}:
        if len(code) == 15 and risk.tier_of(session, code).tier != "green":
            raise Conflict(
                "小区处于封控或管控期间，暂不能迁入或迁出；如确有需要，请联系所在社区",
                "a compound under closure or control cannot be moved into or out of now; "
                "contact your community if you must",
                code="compound_under_control",
                field="compound_code" if code == compound.code else None,
            )
    actor = resident_actor(me)
    if me.household_id is None:
        opened = people_service.create_household(
            session, _self_service(compound.code), HouseholdIn(compound_code=compound.code)
        )
        me.household_id = opened.id
    household = session.get(Household, me.household_id)
    assert household is not None
    people_service.move_household(
        session, actor, household, members, compound_code=compound.code, unit=unit_text
    )
    repository.move_invitations(session, household.id, compound.code)
    for person in members:
        # Where a colour row places the person decides which compound they count for.
        risk.relocate(session, person)


# ---------------------------------------------------------------------------------------------
# Daily health reports (每日健康打卡)


def submit_report(session: Session, me: Person, data: HealthReportIn) -> HealthReport:
    """Record today's report for the resident or a household member; a second report the same
    day corrects the first (one per person per day). Fever (≥ 37.3 ℃) or any symptom flags it
    for the compound's staff.

    A self-report never becomes a risk fact: a fever typed into a phone is not a diagnosis, and
    a fact turns codes and compounds red. Only clinics assert ``fever_visit`` (after seeing the
    patient); the flag here asks the grid worker to call or visit, and they decide what
    follows.
    """
    target = member_of(session, me, data.person_ref)
    problems: dict[str, tuple[str, str]] = {}
    temperature = _collect(problems, parse_temperature, data.temperature)
    symptoms = sorted(set(data.symptoms))
    unknown = [s for s in symptoms if s not in SYMPTOMS]
    if unknown:
        problems["symptoms"] = ("症状选项无效", f"unknown symptom {unknown[0]!r}")
    if data.whereabouts not in WHEREABOUTS:
        problems["whereabouts"] = ("请选择今天在家还是外出", "choose at home or away today")
    if problems:
        raise FormInvalid(problems)
    assert temperature is not None
    flagged = temperature >= FEVER_FROM or bool(symptoms)
    today = clock.today_local()
    now = clock.now()
    report = repository.report_of(session, target.ref, today)
    corrected = report is not None
    if report is None:
        report = HealthReport(
            person_ref=target.ref,
            report_date=today,
            corrections=0,
            created_at=now,
        )
        session.add(report)
    else:
        report.corrections += 1
        # A corrected report is a new statement: a flag already followed up is raised again
        # when the correction still shows fever or symptoms.
        report.followed_up_at = None
        report.followed_up_by = None
    report.area_code = target.area_code
    report.temperature = temperature
    report.symptoms = symptoms
    report.whereabouts = data.whereabouts
    report.flagged = flagged
    report.reported_by = me.ref
    report.updated_at = now
    session.flush()
    record(
        session,
        resident_actor(me),
        "residents.health_report.correct" if corrected else "residents.health_report.submit",
        object_type="health_report",
        object_id=report.id,
        area_code=target.area_code,
        detail={"flagged": flagged, "for_self": target.ref == me.ref},
    )
    publish(
        session,
        "residents.health_report.submitted",
        {
            "report_id": report.id,
            "person_ref": target.ref,
            "area_code": target.area_code,
            "report_date": today.isoformat(),
            "flagged": flagged,
            "corrected": corrected,
        },
        key=target.ref,
    )
    return report


def todays_reports(session: Session, me: Person) -> dict[str, HealthReport]:
    """Today's reports of the resident's household, by person ref."""
    refs = [p.ref for p in household_of(session, me)]
    return repository.reports_of_persons(session, refs, clock.today_local())


def my_passes(session: Session, me: Person) -> list[PassView]:
    """The passes of the resident's household."""
    if me.household_id is None:
        return []
    passes = gate_passes.passes_of_household(session, me.household_id)
    counts = repository.member_counts(session, {me.household_id})
    return [_pass_view(p, counts.get(p.household_id, 0)) for p in passes]


# ---------------------------------------------------------------------------------------------
# Staff: compounds, residents, reports, entries and exits, passes — all scoped


def _deny(session: Session, who: Principal, action: str, object_type: str, object_id: str) -> Any:
    error = NotFound("未找到，或不在您的辖区内", "not found in your jurisdiction", code="not_found")
    return error.keep(
        lambda s: record(
            s,
            who.actor,
            action,
            object_type=object_type,
            object_id=object_id,
            area_code=who.area_code,
            outcome="denied",
        )
    )


def compound_for_staff(session: Session, who: Principal, code: str) -> Compound:
    """The compound ``code`` if inside the caller's jurisdiction; otherwise the same 404 as a
    compound that does not exist (the log tells them apart)."""
    who.require(Permission.RESIDENTS_VIEW)
    compound = repository.compound_scoped(session, who, code) if code.isdigit() else None
    if compound is None:
        raise _deny(session, who, "residents.compound.view", "compound", code[:15])
    return compound


def compounds_overview(
    session: Session,
    who: Principal,
    *,
    area_code: str | None = None,
    name: str | None = None,
    page: int = 1,
    size: int = 30,
) -> tuple[int, list[CompoundRow]]:
    """The compounds of the caller's jurisdiction with registered residents, adults awaiting
    their consent and today's reports (flagged ones counted apart)."""
    who.require(Permission.RESIDENTS_VIEW)
    if area_code and not area_code.isdigit():
        raise InvalidInput("区域代码须为数字", "area code must be digits", field="area")
    total, rows = repository.compounds_scoped(
        session,
        who,
        area_code=area_code or None,
        name=(name or "").strip() or None,
        limit=size,
        offset=(max(1, page) - 1) * size,
    )
    codes = [c.code for c, _ in rows]
    residents = repository.resident_counts(session, who, codes)
    reports = repository.report_counts(session, who, codes, clock.today_local())
    waiting = repository.invitation_counts(session, who, codes, clock.now())
    return total, [
        CompoundRow(
            code=c.code,
            name=c.name,
            community_name=community,
            residents=residents.get(c.code, 0),
            reports_today=reports.get(c.code, (0, 0))[0],
            flagged_today=reports.get(c.code, (0, 0))[1],
            awaiting_consent=waiting.get(c.code, 0),
        )
        for c, community in rows
    ]


def _units(session: Session, persons: list[Person]) -> dict[int, tuple[str, str, str]]:
    households = repository.households_by_id(
        session, {p.household_id for p in persons if p.household_id is not None}
    )
    cipher = field_cipher()
    out = {}
    for hid, household in households.items():
        text = (
            cipher.decrypt(household.unit_enc, people_service.UNIT_FIELD)
            if household.unit_enc
            else ""
        )
        out[hid] = split_unit(text)
    return out


def _age(birth: dt.date, today: dt.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def list_residents(
    session: Session, who: Principal, compound_code: str, *, building: str | None = None
) -> list[ResidentView]:
    """The residents of a compound in the caller's jurisdiction, masked (4101**********1234,
    138****5678), by household; rooms are masked too (the building and unit are kept, which is
    what staff organise door-to-door work by). The listing is audited (counts, no data)."""
    compound_for_staff(session, who, compound_code)
    persons = repository.residents_scoped(session, who, compound_code)
    units = _units(session, persons)
    if building:
        wanted = "".join(building.split())
        persons = [
            p
            for p in persons
            if p.household_id is not None and units.get(p.household_id, ("",))[0] == wanted
        ]
    refs = [p.ref for p in persons]
    accounts = repository.account_refs(session, refs)
    reports = repository.reports_of_persons(session, refs, clock.today_local())
    cipher = field_cipher()
    today = clock.today_local()
    views = []
    for person in persons:
        b, u, room = units.get(person.household_id or 0, ("", "", ""))
        phone = (
            cipher.decrypt(person.phone_enc, people_service.PHONE_FIELD)
            if person.phone_enc
            else None
        )
        views.append(
            ResidentView(
                ref=person.ref,
                name=mask_name(cipher.decrypt(person.name_enc, people_service.NAME_FIELD)),
                id_number=mask_resident_id(
                    cipher.decrypt(person.id_number_enc, people_service.ID_FIELD)
                ),
                phone=mask_phone(phone) if phone else None,
                sex=person.sex,
                age=_age(person.birth_date, today),
                household_id=person.household_id,
                building=b,
                unit=u,
                room="*" * len(room),
                self_registered=person.ref in accounts,
                reported_today=person.ref in reports,
            )
        )
    record(
        session,
        who.actor,
        "residents.list",
        object_type="compound",
        object_id=compound_code,
        area_code=compound_code,
        detail={"results": len(views), "building": bool(building)},
    )
    return views


def list_reports(
    session: Session,
    who: Principal,
    compound_code: str,
    *,
    day: dt.date | None = None,
    flagged_only: bool = False,
) -> list[ReportView]:
    """A day's health reports of a compound (today by default), flagged ones first."""
    compound_for_staff(session, who, compound_code)
    day = day or clock.today_local()
    rows = repository.reports_scoped(session, who, compound_code, day, flagged_only=flagged_only)
    units = _units(session, [p for _, p in rows])
    cipher = field_cipher()
    views = [
        ReportView(
            id=report.id,
            person_ref=person.ref,
            name=mask_name(cipher.decrypt(person.name_enc, people_service.NAME_FIELD)),
            report_date=report.report_date,
            temperature=report.temperature,
            symptoms=list(report.symptoms or []),
            whereabouts=report.whereabouts,
            flagged=report.flagged,
            corrections=report.corrections,
            updated_at=report.updated_at,
            followed_up_at=report.followed_up_at,
            building=units.get(person.household_id or 0, ("", "", ""))[0],
        )
        for report, person in rows
    ]
    record(
        session,
        who.actor,
        "residents.reports.list",
        object_type="compound",
        object_id=compound_code,
        area_code=compound_code,
        detail={"results": len(views), "day": day.isoformat(), "flagged_only": flagged_only},
    )
    return views


def purge_expired_reports(session: Session) -> int:
    """Delete the daily health reports older than ``health_report_retention_days`` (flagged
    ones still awaiting follow-up stay); audited when any went. Never commits."""
    days = get_settings().health_report_retention_days
    before = clock.today_local() - dt.timedelta(days=days)
    gone = repository.purge_reports_before(session, before)
    record_purge(
        session,
        "residents.reports_purge",
        object_type="health_report",
        deleted=gone,
        before=before,
        retention_days=days,
    )
    return gone


def follow_up(session: Session, who: Principal, report_id: int) -> HealthReport:
    """Mark a flagged report as followed up (已跟进) by the caller."""
    who.require(Permission.RESIDENTS_VIEW)
    report = repository.report_scoped(session, who, report_id)
    if report is None:
        raise _deny(
            session, who, "residents.health_report.follow_up", "health_report", str(report_id)
        )
    if not report.flagged:
        raise InvalidInput("该报告无异常，无需跟进", "this report is not flagged", field="report")
    report.followed_up_at = clock.now()
    report.followed_up_by = who.actor.ref
    record(
        session,
        who.actor,
        "residents.health_report.follow_up",
        object_type="health_report",
        object_id=report.id,
        area_code=report.area_code,
    )
    publish(
        session,
        "residents.health_report.followed_up",
        {"report_id": report.id, "person_ref": report.person_ref, "area_code": report.area_code},
        key=report.person_ref,
    )
    return report


def list_scans(
    session: Session,
    who: Principal,
    compound_code: str,
    *,
    day: dt.date | None = None,
    direction: str | None = None,
    limit: int = 500,
) -> list[ScanView]:
    """Entries and exits at the compound's gates on a local day (today by default), newest
    first; the person masked."""
    compound_for_staff(session, who, compound_code)
    day = day or clock.today_local()
    start = clock.local_midnight(day)
    rows = repository.scans_scoped(
        session,
        who,
        compound_code,
        start,
        start + dt.timedelta(days=1),
        direction=direction or None,
        limit=limit,
    )
    cipher = field_cipher()
    views = [
        ScanView(
            scanned_at=scan.scanned_at,
            place_name=place.name,
            direction=scan.direction,
            colour=scan.colour,
            decision=scan.decision,
            reason=scan.reason,
            card_id=scan.card_id,
            name=mask_name(cipher.decrypt(person.name_enc, people_service.NAME_FIELD))
            if person is not None
            else None,
        )
        for scan, place, person in rows
    ]
    record(
        session,
        who.actor,
        "residents.scans.list",
        object_type="compound",
        object_id=compound_code,
        area_code=compound_code,
        detail={"results": len(views), "day": day.isoformat()},
    )
    return views


def pass_active(item: HouseholdPass, day: dt.date) -> bool:
    """Whether a pass lets its household out on local day ``day``."""
    return gate_passes.is_valid_on(item, day)


def _pass_view(item: HouseholdPass, members: int) -> PassView:
    return PassView(
        id=item.id,
        household_id=item.household_id,
        compound_code=item.compound_code,
        valid_from=item.valid_from,
        valid_until=item.valid_until,
        reason=item.reason,
        note=item.note,
        issued_at=item.issued_at,
        revoked_at=item.revoked_at,
        active=pass_active(item, clock.today_local()),
        members=members,
    )


def list_passes(
    session: Session, who: Principal, compound_code: str, *, active_only: bool = False
) -> list[PassView]:
    """The passes of a compound, newest first (only those valid today if ``active_only``),
    from the gate's pass service (``healthcode.passes``), scoped to the jurisdiction."""
    compound_for_staff(session, who, compound_code)
    passes = gate_passes.passes_of_compound(
        session, who, compound_code, valid_on=clock.today_local() if active_only else None
    )
    counts = repository.member_counts(session, {p.household_id for p in passes})
    return [_pass_view(p, counts.get(p.household_id, 0)) for p in passes]


def households_of(
    session: Session, who: Principal, compound_code: str
) -> list[tuple[int, str, int]]:
    """The compound's households for the pass form: id, building/unit (room masked) and how
    many members are registered."""
    compound_for_staff(session, who, compound_code)
    persons = repository.residents_scoped(session, who, compound_code)
    units = _units(session, persons)
    seen: dict[int, tuple[str, int]] = {}
    for person in persons:
        if person.household_id is None:
            continue
        building, unit, _room = units.get(person.household_id, ("", "", ""))
        label, count = seen.get(
            person.household_id, (" ".join(p for p in (building, unit) if p), 0)
        )
        seen[person.household_id] = (label, count + 1)
    return [(hid, label, count) for hid, (label, count) in sorted(seen.items())]


def issue_pass(session: Session, who: Principal, compound_code: str, data: PassIn) -> HouseholdPass:
    """Issue a pass (出入证) to a household of a closed (red) or controlled (yellow) compound,
    valid for whole local days, at most 14, through the gate's pass service
    (``healthcode.passes.issue``: it reads the tier, audits, and announces
    ``healthcode.pass_issued``); every problem comes back as one ``FormInvalid``."""
    compound_for_staff(session, who, compound_code)
    try:
        return gate_passes.issue(
            session,
            who,
            compound_code,
            household_id=data.household_id,
            valid_from=data.valid_from,
            valid_until=data.valid_until,
            reason=data.reason,
            note=data.note,
        )
    except gate_passes.PassInvalid as error:
        raise FormInvalid(error.problems) from None


def revoke_pass(session: Session, who: Principal, pass_id: int) -> HouseholdPass:
    """Revoke a pass at once (``healthcode.passes.revoke``: audited, announces
    ``healthcode.pass_revoked``); the gate refuses it from the next scan."""
    return gate_passes.revoke(session, who, pass_id)


def whereabouts_label(code: str, lang: str = "zh-CN") -> str:
    """在家 / 外出 in ``lang``."""
    labels = {AT_HOME: ("在家", "at home"), AWAY: ("外出", "away")}
    zh, en = labels.get(code, (code, code))
    return en if lang.startswith("en") else zh


def symptom_labels(codes: list[str], lang: str = "zh-CN") -> str:
    """The symptoms in ``lang``, or 无 / none."""
    english = lang.startswith("en")
    if not codes:
        return "none" if english else "无"
    names = [SYMPTOMS.get(c, (c, c))[1 if english else 0] for c in codes]
    return ", ".join(names) if english else "、".join(names)

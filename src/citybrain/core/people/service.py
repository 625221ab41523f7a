"""Operations on persons (人员). Each write changes the data, writes the audit row and queues
its outbox event in the caller's transaction; nothing here commits."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import Actor, record
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.scope import covers
from citybrain.core.events.service import publish
from citybrain.core.geo.models import Area, Compound
from citybrain.core.people import repository
from citybrain.core.people.models import Household, Person
from citybrain.core.people.schemas import (
    HouseholdIn,
    HouseholdOut,
    PersonIn,
    PersonMasked,
    PersonPage,
    PersonPlain,
)
from citybrain.kit import clock
from citybrain.kit.crypto import FieldCipher, blind_index, field_cipher
from citybrain.kit.errors import InvalidInput, NotFound
from citybrain.kit.idcheck import normalise_mobile, parse_resident_id
from citybrain.kit.masking import mask_name, mask_phone, mask_resident_id

NAME_FIELD, ID_FIELD, PHONE_FIELD = "persons.name", "persons.id_number", "persons.phone"
UNIT_FIELD = "households.unit"


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInput("姓名不能为空", "name must not be empty", field="name")
    if any(ch.isdigit() for ch in cleaned):
        raise InvalidInput("姓名不能包含数字", "name must not contain digits", field="name")
    return cleaned


def _age(birth: dt.date, today: dt.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def masked_views(session: Session, persons: Sequence[Person]) -> list[PersonMasked]:
    """``persons`` as staff see them by default (脱敏): name, ID number and phone masked,
    with their compound's and community's names."""
    cipher = field_cipher()
    names = repository.place_names(session, {p.area_code for p in persons})
    today = clock.today_local()
    views = []
    for person in persons:
        compound_name, community_name = names.get(person.area_code, (None, None))
        phone = cipher.decrypt(person.phone_enc, PHONE_FIELD) if person.phone_enc else None
        views.append(
            PersonMasked(
                ref=person.ref,
                name=mask_name(cipher.decrypt(person.name_enc, NAME_FIELD)),
                id_number=mask_resident_id(cipher.decrypt(person.id_number_enc, ID_FIELD)),
                phone=mask_phone(phone) if phone else None,
                sex=person.sex,
                birth_year=person.birth_date.year,
                age=_age(person.birth_date, today),
                area_code=person.area_code,
                compound_code=person.area_code if len(person.area_code) == 15 else None,
                compound_name=compound_name,
                community_name=community_name,
                household_id=person.household_id,
            )
        )
    return views


def _compound(session: Session, code: str) -> Compound:
    compound = session.get(Compound, code)
    if compound is None:
        raise InvalidInput(
            f"小区代码 {code} 不存在", f"compound {code} does not exist", field="compound_code"
        )
    return compound


def _residence(session: Session, who: Principal, data: PersonIn) -> str:
    if data.household_id is not None:
        household = session.get(Household, data.household_id)
        if household is None or not covers(who, household.compound_code):
            raise InvalidInput(
                f"户 {data.household_id} 不存在或不在您的辖区内",
                f"household {data.household_id} does not exist in your jurisdiction",
                field="household_id",
            )
        return household.compound_code
    if data.compound_code:
        return _compound(session, data.compound_code).code
    if data.community_code:
        area = session.get(Area, data.community_code)
        if area is None or area.level != "community":
            raise InvalidInput(
                f"社区代码 {data.community_code} 不存在",
                f"community {data.community_code} does not exist",
                field="community_code",
            )
        return area.code
    raise InvalidInput(
        "须填写居住小区或社区",
        "a compound or community of residence is required",
        field="compound_code",
    )


def create_household(session: Session, who: Principal, data: HouseholdIn) -> HouseholdOut:
    """Open a household (户) in a compound of the caller's jurisdiction; members then register
    with its id and live where it lives."""
    who.require(Permission.PERSON_CREATE)
    compound = _compound(session, data.compound_code)
    if not covers(who, compound.code):
        raise InvalidInput(
            "小区不在您的辖区内",
            "the compound lies outside your jurisdiction",
            field="compound_code",
        )
    unit = " ".join((data.unit or "").split())
    household = Household(
        compound_code=compound.code,
        unit_enc=field_cipher().encrypt(unit, UNIT_FIELD) if unit else None,
        created_at=clock.now(),
    )
    session.add(household)
    session.flush()
    record(
        session,
        who.actor,
        "household.create",
        object_type="household",
        object_id=household.id,
        area_code=compound.code,
    )
    publish(
        session,
        "household.created",
        {"household_id": household.id, "compound_code": compound.code},
        key=str(household.id),
    )
    return HouseholdOut(id=household.id, compound_code=compound.code, members=0)


def register_person(session: Session, who: Principal, data: PersonIn) -> tuple[PersonMasked, bool]:
    """Register a person, or find them when their ID number is already known (按身份证去重).

    Returns the masked person and whether they were created now. The residence must lie in
    the registering principal's jurisdiction.
    """
    who.require(Permission.PERSON_CREATE)
    name = _clean_name(data.name)
    resident_id = parse_resident_id(data.id_number)
    phone = normalise_mobile(data.phone) if data.phone else None
    index = blind_index()
    id_bidx = index.digest(resident_id.number, "id_number")
    existing = repository.by_id_number_index(session, id_bidx)
    if existing is not None:
        record(
            session,
            who.actor,
            "person.register",
            object_type="person",
            object_id=existing.ref,
            area_code=existing.area_code,
            detail={"created": False},
        )
        return masked_views(session, [existing])[0], False
    area_code = _residence(session, who, data)
    if not covers(who, area_code):
        raise InvalidInput(
            "居住地不在您的辖区内",
            "the residence lies outside your jurisdiction",
            field="compound_code",
        )
    cipher = field_cipher()
    now = clock.now()
    person = Person(
        ref=secrets.token_hex(16),
        name_enc=cipher.encrypt(name, NAME_FIELD),
        id_number_enc=cipher.encrypt(resident_id.number, ID_FIELD),
        id_number_bidx=id_bidx,
        phone_enc=cipher.encrypt(phone, PHONE_FIELD) if phone else None,
        phone_bidx=index.digest(phone, "phone") if phone else None,
        name_bidx=index.digest(name, "name"),
        birth_date=resident_id.birth_date,
        sex=resident_id.sex,
        area_code=area_code,
        household_id=data.household_id,
        created_at=now,
        updated_at=now,
    )
    session.add(person)
    session.flush()
    record(
        session,
        who.actor,
        "person.register",
        object_type="person",
        object_id=person.ref,
        area_code=area_code,
        detail={"created": True},
    )
    publish(
        session,
        "person.registered",
        {"person_ref": person.ref, "area_code": area_code},
        key=person.ref,
    )
    return masked_views(session, [person])[0], True


TOPIC_PERSON_WITHDRAWN = "person.withdrawn"
TOPIC_PERSON_LEFT_HOUSEHOLD = "person.left_household"


def withdraw_person(session: Session, actor: Actor, person: Person, *, reason: str) -> None:
    """Take a person out of the registry (撤销登记): a registration made for them by someone
    else that should not stand (a household member entered by mistake). Their name, ID and
    phone leave with the row; what the platform learnt about their health stays with the risk
    subject, which is not the registry's. The caller decides that ``actor`` may, and removes
    its own rows that point at the person first. Audited and announced."""
    record(
        session,
        actor,
        "person.withdraw",
        object_type="person",
        object_id=person.ref,
        area_code=person.area_code,
        detail={"reason": reason},
    )
    publish(
        session,
        TOPIC_PERSON_WITHDRAWN,
        {"person_ref": person.ref, "area_code": person.area_code, "reason": reason},
        key=person.ref,
    )
    household_id = person.household_id
    session.delete(person)
    session.flush()
    _forget_empty_household(session, household_id)


def _forget_empty_household(session: Session, household_id: int | None) -> None:
    """A household nobody belongs to any more keeps no address: its flat (personal, encrypted)
    is cleared; the row stays for what refers to it (passes, the cockpit's counts)."""
    if household_id is None or repository.has_members(session, household_id):
        return
    household = session.get(Household, household_id)
    if household is not None and household.unit_enc is not None:
        household.unit_enc = None
        session.flush()


def leave_household(session: Session, actor: Actor, person: Person, *, reason: str) -> None:
    """The person is no longer a member of their household (移出本户); they stay registered
    where they live. The caller decides that ``actor`` may. Audited and announced."""
    household_id = person.household_id
    person.household_id = None
    person.updated_at = clock.now()
    record(
        session,
        actor,
        "person.leave_household",
        object_type="person",
        object_id=person.ref,
        area_code=person.area_code,
        detail={"household_id": household_id, "reason": reason},
    )
    publish(
        session,
        TOPIC_PERSON_LEFT_HOUSEHOLD,
        {"person_ref": person.ref, "household_id": household_id, "area_code": person.area_code},
        key=person.ref,
    )
    session.flush()
    _forget_empty_household(session, household_id)


TOPIC_PERSON_JOINED_HOUSEHOLD = "person.joined_household"


def join_household(
    session: Session, actor: Actor, person: Person, household: Household, *, reason: str
) -> None:
    """The person, registered and living in the household's compound, becomes a member of
    ``household`` (加入本户), leaving the one they were in (whose flat is forgotten if nobody
    is left). The caller decides that ``actor`` may. Audited and announced."""
    if person.area_code != household.compound_code:
        raise InvalidInput(
            "只能加入同一小区的家庭", "one joins only a household of one's own compound"
        )
    before = person.household_id
    person.household_id = household.id
    person.updated_at = clock.now()
    record(
        session,
        actor,
        "person.join_household",
        object_type="person",
        object_id=person.ref,
        area_code=person.area_code,
        detail={"from": before, "to": household.id, "reason": reason},
    )
    publish(
        session,
        TOPIC_PERSON_JOINED_HOUSEHOLD,
        {
            "person_ref": person.ref,
            "household_id": household.id,
            "from_household_id": before,
            "area_code": person.area_code,
        },
        key=person.ref,
    )
    session.flush()
    _forget_empty_household(session, before)


TOPIC_PERSON_PHONE_CHANGED = "person.phone_changed"


def change_phone(session: Session, actor: Actor, person: Person, phone: str) -> None:
    """Hold ``phone`` (a checked mobile number) as the person's own from now on (更换手机号):
    encrypted, with its blind index, so they log in with it. The caller has proved that the
    number is theirs. Audited and announced without the number."""
    had_phone = person.phone_enc is not None
    person.phone_enc = field_cipher().encrypt(phone, PHONE_FIELD)
    person.phone_bidx = blind_index().digest(phone, "phone")
    person.updated_at = clock.now()
    record(
        session,
        actor,
        "person.change_phone",
        object_type="person",
        object_id=person.ref,
        area_code=person.area_code,
        detail={"had_phone": had_phone},
    )
    publish(
        session,
        TOPIC_PERSON_PHONE_CHANGED,
        {"person_ref": person.ref, "area_code": person.area_code},
        key=person.ref,
    )


TOPIC_HOUSEHOLD_MOVED = "household.moved"


def move_household(
    session: Session,
    actor: Actor,
    household: Household,
    members: Sequence[Person],
    *,
    compound_code: str,
    unit: str,
) -> None:
    """The household now lives in ``compound_code`` at ``unit`` (变更住址): the household and
    each of ``members`` move together. The caller decides that ``actor`` may (a compound under
    closure is not left or entered this way). Audited with both compounds and announced."""
    compound = _compound(session, compound_code)
    moved_from = household.compound_code
    unit = " ".join(unit.split())
    household.compound_code = compound.code
    household.unit_enc = field_cipher().encrypt(unit, UNIT_FIELD) if unit else None
    now = clock.now()
    for person in members:
        person.area_code = compound.code
        person.updated_at = now
    record(
        session,
        actor,
        "household.move",
        object_type="household",
        object_id=household.id,
        area_code=compound.code,
        detail={"from": moved_from, "to": compound.code, "members": len(members)},
    )
    publish(
        session,
        TOPIC_HOUSEHOLD_MOVED,
        {
            "household_id": household.id,
            "from_compound": moved_from,
            "compound_code": compound.code,
            "person_refs": [p.ref for p in members],
        },
        key=str(household.id),
    )
    session.flush()


def search_people(
    session: Session,
    who: Principal,
    *,
    id_number: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    area_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> PersonPage:
    """Search persons in the caller's jurisdiction by exact ID number, phone or name, and by
    area; results are masked. The search is audited with its criteria kinds, never values."""
    who.require(Permission.PERSON_SEARCH)
    index = blind_index()
    id_bidx = phone_bidx = name_bidx = None
    if id_number:
        id_bidx = index.digest(parse_resident_id(id_number, field="id_number").number, "id_number")
    if phone:
        phone_bidx = index.digest(normalise_mobile(phone), "phone")
    if name:
        name_bidx = index.digest(_clean_name(name), "name")
    if area_code and not area_code.isdigit():
        raise InvalidInput("区域代码须为数字", "area code must be digits", field="area_code")
    limit = max(1, min(limit, 500))
    total, persons = repository.search_scoped(
        session,
        who,
        id_bidx=id_bidx,
        phone_bidx=phone_bidx,
        name_bidx=name_bidx,
        area_code=area_code,
        limit=limit,
        offset=max(0, offset),
    )
    criteria = [k for k, v in (("id_number", id_number), ("phone", phone), ("name", name)) if v]
    record(
        session,
        who.actor,
        "person.search",
        object_type="person",
        area_code=who.area_code,
        detail={"criteria": criteria, "area_code": area_code, "results": total},
    )
    return PersonPage(total=total, items=masked_views(session, persons), limit=limit, offset=offset)


def _get_or_deny(session: Session, who: Principal, ref: str, action: str) -> Person:
    person = repository.get_scoped(session, who, ref)
    if person is not None:
        return person
    # Same answer whether the person is elsewhere or nowhere; the log tells them apart.
    outcome = "denied" if repository.exists_anywhere(session, ref) else "failed"
    error = NotFound("未找到该人员", "no such person", code="person_not_found")
    raise error.keep(
        lambda s: record(
            s,
            who.actor,
            action,
            object_type="person",
            object_id=ref,
            area_code=who.area_code,
            outcome=outcome,
            detail={"reason": "out_of_jurisdiction" if outcome == "denied" else "not_found"},
        )
    )


def view_person(session: Session, who: Principal, ref: str) -> PersonMasked:
    """One person, masked, if inside the caller's jurisdiction (audited)."""
    who.require(Permission.PERSON_VIEW)
    person = _get_or_deny(session, who, ref, "person.view")
    record(
        session,
        who.actor,
        "person.view",
        object_type="person",
        object_id=ref,
        area_code=person.area_code,
    )
    return masked_views(session, [person])[0]


def unmask_person(session: Session, who: Principal, ref: str, purpose: str) -> PersonPlain:
    """One person in plain text for a stated purpose (查看明文); the purpose is audited."""
    who.require(Permission.PERSON_UNMASK)
    purpose = " ".join(purpose.split())
    if len(purpose) < 4:
        raise InvalidInput(
            "请说明查看原因（至少4个字）",
            "state the purpose (at least 4 characters)",
            field="purpose",
        )
    person = _get_or_deny(session, who, ref, "person.unmask")
    masked = masked_views(session, [person])[0]
    cipher = field_cipher()
    now = clock.now()
    record(
        session,
        who.actor,
        "person.unmask",
        object_type="person",
        object_id=ref,
        area_code=person.area_code,
        purpose=purpose,
    )
    return PersonPlain(
        **masked.model_dump(exclude={"name", "id_number", "phone"}),
        name=cipher.decrypt(person.name_enc, NAME_FIELD),
        id_number=cipher.decrypt(person.id_number_enc, ID_FIELD),
        phone=cipher.decrypt(person.phone_enc, PHONE_FIELD) if person.phone_enc else None,
        purpose=purpose,
        unmasked_at=now,
    )


def reseal_personal_data(
    session: Session,
    actor: Actor,
    *,
    cipher: FieldCipher | None = None,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Re-encrypt every person's and household's fields sealed with an older key under the
    active key (密钥轮换), batch by batch; plain values exist only in memory. Returns counts."""
    cipher = cipher or field_cipher()
    total = session.scalar(select(func.count()).select_from(Person)) or 0
    resealed = done = 0
    last_id = 0
    while True:
        persons = session.scalars(
            select(Person).where(Person.id > last_id).order_by(Person.id).limit(batch)
        ).all()
        if not persons:
            break
        for person in persons:
            resealed += cipher.reseal(
                person,
                (("name_enc", NAME_FIELD), ("id_number_enc", ID_FIELD), ("phone_enc", PHONE_FIELD)),
            )
        last_id = persons[-1].id
        done += len(persons)
        session.flush()
        if progress:
            progress(done, int(total))
    households = 0
    for household in session.scalars(select(Household).where(Household.unit_enc.is_not(None))):
        households += cipher.reseal(household, (("unit_enc", UNIT_FIELD),))
    counts = {"persons": done, "persons_resealed": resealed, "households_resealed": households}
    record(
        session,
        actor,
        "keys.reseal",
        object_type="field_key",
        object_id=cipher.active_kid,
        detail=counts,
    )
    return counts

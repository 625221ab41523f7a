"""Exit passes (出入证): which households of a closed (red) or controlled (yellow) compound may
go out, on which days, and why.

Passes belong to the gate's domain: the gate decision (``healthcode.policy``) honours them, so
they live here and the residents app's staff pages call this module to issue, list and revoke
them. A pass covers the whole household (每户一证) for whole local days (China time), at most
14, inclusive; it is revoked at once. Issuing and revoking are audited and announced:
``healthcode.pass_issued`` (pass_id, household_id, compound_code, person_refs, valid_from,
valid_until) and ``healthcode.pass_revoked`` (pass_id, household_id, compound_code).

Staff see and touch only the passes of compounds inside their jurisdiction; a compound or
pass outside it is the same 404 as one that does not exist, and the denial is audited.

The few SQL statements of passes are kept here, beside the operations, rather than in
``healthcode.repository`` (the scan path's SQL). Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import record, record_purge
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.scope import scoped
from citybrain.core.events.service import publish
from citybrain.core.geo.models import Compound
from citybrain.core.people.models import Household, Person
from citybrain.healthcode.models import PASS_REASONS, PERMIT_OTHER, HouseholdPass
from citybrain.kit import clock
from citybrain.kit.db import rows_affected
from citybrain.kit.errors import FieldsInvalid, InvalidInput, NotFound
from citybrain.kit.settings import get_settings
from citybrain.risk import service as risk

TOPIC_PASS_ISSUED = "healthcode.pass_issued"  # noqa: S105 — an event topic, not a password
TOPIC_PASS_REVOKED = "healthcode.pass_revoked"  # noqa: S105 — an event topic
PASS_LONGEST_DAYS = 14
# A subject is the first 32 hex characters of the ID's blind index (risk.subjects).
_SUBJECT_LENGTH = 32


class PassInvalid(FieldsInvalid):
    """A pass that cannot be issued: every field that is wrong, with what is wrong with it."""

    code = "pass_invalid"


# ---------------------------------------------------------------------------------------------
# The gate's question: does this person hold a pass valid now?


def local_day(at: dt.datetime) -> dt.date:
    """The city's calendar day (China time) of instant ``at``: passes run by whole local days."""
    return clock.as_utc(at).astimezone(clock.CHINA_TZ).date()


def is_valid_on(item: HouseholdPass, day: dt.date) -> bool:
    """Whether ``item`` lets its household out on local day ``day`` (not revoked, in range)."""
    return item.revoked_at is None and item.valid_from <= day <= item.valid_until


def valid_pass(
    session: Session,
    person_ref: str | None,
    compound_code: str,
    at: dt.datetime | None = None,
    *,
    subject: str | None = None,
) -> HouseholdPass | None:
    """The pass of ``compound_code`` valid at ``at`` (now by default) held by the household of
    the person ``person_ref`` — or, with ``person_ref`` None, of the person whose risk
    ``subject`` is given — if any (the one running longest).

    One indexed query: the person by their unique ref (or blind-index range), their
    household's passes by ``(household_id, valid_until)``. A pass revoked, expired, not yet
    started or of another compound is no pass."""
    if person_ref is None and subject is None:
        raise ValueError("give a person_ref or a subject")
    day = local_day(at or clock.now())
    statement = (
        select(HouseholdPass)
        .join(Person, Person.household_id == HouseholdPass.household_id)
        .where(
            HouseholdPass.compound_code == compound_code,
            HouseholdPass.valid_until >= day,
            HouseholdPass.valid_from <= day,
            HouseholdPass.revoked_at.is_(None),
        )
    )
    if person_ref is not None:
        statement = statement.where(Person.ref == person_ref)
    else:
        assert subject is not None
        if len(subject) != _SUBJECT_LENGTH:
            return None
        # A range on the unique blind-index column, so its index serves every backend (every
        # hex character sorts before "g"), as risk.subjects.person_of_subject does.
        statement = statement.where(
            Person.id_number_bidx >= subject, Person.id_number_bidx < subject + "g"
        )
    statement = statement.order_by(HouseholdPass.valid_until.desc(), HouseholdPass.id.desc())
    return session.scalars(statement.limit(1)).first()


def pass_check(
    session: Session, person_ref: str, compound_code: str | None, at: dt.datetime
) -> Callable[[], bool]:
    """A function answering whether ``person_ref`` holds a pass of ``compound_code`` valid at
    ``at``, for ``policy.decide(has_pass=...)``: the policy calls it only where a pass can
    change the decision (a green resident leaving a closed compound), so the scan path
    queries nothing for any other scan; the answer is remembered."""
    answer: list[bool] = []

    def check() -> bool:
        if not answer:
            answer.append(
                bool(compound_code)
                and valid_pass(session, person_ref, compound_code or "", at) is not None
            )
        return answer[0]

    return check


# ---------------------------------------------------------------------------------------------
# Staff: list, issue, revoke (scoped to the jurisdiction)


def not_found_in_area(who: Principal, action: str, object_type: str, object_id: str) -> NotFound:
    """Not found (404), as for anything outside ``who``'s jurisdiction; the denied attempt is
    audited (kept although the request rolls back)."""
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


def _compound(session: Session, who: Principal, code: str, action: str) -> Compound:
    compound = (
        session.scalars(
            scoped(select(Compound).where(Compound.code == code), Compound.code, who)
        ).first()
        if code.isdigit()
        else None
    )
    if compound is None:
        raise not_found_in_area(who, action, "compound", code[:15])
    return compound


def passes_of_compound(
    session: Session, who: Principal, compound_code: str, *, valid_on: dt.date | None = None
) -> list[HouseholdPass]:
    """The passes of a compound in ``who``'s jurisdiction, newest first (only those valid on
    local day ``valid_on`` if given). The caller audits the listing."""
    who.require(Permission.RESIDENTS_VIEW)
    _compound(session, who, compound_code, "healthcode.pass_list")
    statement = scoped(
        select(HouseholdPass).where(HouseholdPass.compound_code == compound_code),
        HouseholdPass.compound_code,
        who,
    )
    if valid_on is not None:
        statement = statement.where(
            HouseholdPass.revoked_at.is_(None),
            HouseholdPass.valid_from <= valid_on,
            HouseholdPass.valid_until >= valid_on,
        )
    return list(session.scalars(statement.order_by(HouseholdPass.id.desc())))


def passes_of_household(session: Session, household_id: int) -> list[HouseholdPass]:
    """A household's passes, newest first (for the household's own page: the caller has bound
    ``household_id`` to the resident's session)."""
    return list(
        session.scalars(
            select(HouseholdPass)
            .where(HouseholdPass.household_id == household_id)
            .order_by(HouseholdPass.id.desc())
        )
    )


def _member_refs(session: Session, household_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Person.ref).where(Person.household_id == household_id).order_by(Person.id)
        )
    )


def issue(
    session: Session,
    who: Principal,
    compound_code: str,
    *,
    household_id: int,
    valid_from: dt.date,
    valid_until: dt.date,
    reason: str,
    note: str | None = None,
) -> HouseholdPass:
    """Issue an exit pass (出入证) to household ``household_id`` of a closed (red) or
    controlled (yellow) compound, for whole local days ``valid_from``..``valid_until`` (at
    most 14, not before today), with a reason (``PASS_REASONS``; "other" needs a note).

    The compound's tier is read from the risk engine here: a green compound needs no pass.
    Every problem is reported at once (``PassInvalid``). Audited (``healthcode.pass_issue``)
    and announced (``healthcode.pass_issued``, with the household's person refs)."""
    who.require(Permission.RESIDENTS_PASS)
    compound = _compound(session, who, compound_code, "healthcode.pass_issue")
    tier = risk.tier_of(session, compound.code).tier
    problems: dict[str, tuple[str, str]] = {}
    if tier not in ("red", "yellow"):
        problems["compound"] = (
            "小区目前不是封控（红）或管控（黄）小区，无需出入证",
            "the compound is neither closed (red) nor controlled (yellow): no pass is needed",
        )
    household = session.get(Household, household_id)
    if household is None or household.compound_code != compound.code:
        problems["household_id"] = ("请选择本小区的一户", "choose a household of this compound")
    today = clock.today_local()
    if valid_from < today:
        problems["valid_from"] = ("起始日期不能早于今天", "the pass cannot start before today")
    if valid_until < valid_from:
        problems["valid_until"] = ("截止日期不能早于起始日期", "the end date precedes the start")
    elif (valid_until - valid_from).days + 1 > PASS_LONGEST_DAYS:
        problems["valid_until"] = (
            f"出入证有效期最长{PASS_LONGEST_DAYS}天",
            f"a pass is valid for at most {PASS_LONGEST_DAYS} days",
        )
    if reason not in PASS_REASONS:
        problems["reason"] = ("请选择事由", "choose a reason")
    note = " ".join((note or "").split()) or None
    if reason == PERMIT_OTHER and not note:
        problems["note"] = ("事由为“其他”时请写明", "explain the reason “other”")
    if problems:
        raise PassInvalid(problems)
    assert household is not None
    item = HouseholdPass(
        household_id=household.id,
        compound_code=compound.code,
        valid_from=valid_from,
        valid_until=valid_until,
        reason=reason,
        note=note,
        issued_by=who.actor.ref,
        issued_at=clock.now(),
    )
    session.add(item)
    session.flush()
    record(
        session,
        who.actor,
        "healthcode.pass_issue",
        object_type="household_pass",
        object_id=item.id,
        area_code=compound.code,
        detail={
            "household_id": household.id,
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat(),
            "reason": reason,
            "tier": tier,
        },
    )
    publish(
        session,
        TOPIC_PASS_ISSUED,
        {
            "pass_id": item.id,
            "household_id": household.id,
            "compound_code": compound.code,
            "person_refs": _member_refs(session, household.id),
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat(),
        },
        key=str(item.id),
    )
    return item


def revoke(session: Session, who: Principal, pass_id: int) -> HouseholdPass:
    """Revoke a pass at once: the gate refuses it from the next scan. Audited
    (``healthcode.pass_revoke``) and announced (``healthcode.pass_revoked``)."""
    who.require(Permission.RESIDENTS_PASS)
    item = session.scalars(
        scoped(
            select(HouseholdPass).where(HouseholdPass.id == pass_id),
            HouseholdPass.compound_code,
            who,
        )
    ).first()
    if item is None:
        raise not_found_in_area(who, "healthcode.pass_revoke", "household_pass", str(pass_id))
    if item.revoked_at is not None:
        raise InvalidInput("该出入证已作废", "this pass is already revoked", field="pass")
    item.revoked_at = clock.now()
    item.revoked_by = who.actor.ref
    record(
        session,
        who.actor,
        "healthcode.pass_revoke",
        object_type="household_pass",
        object_id=item.id,
        area_code=item.compound_code,
    )
    publish(
        session,
        TOPIC_PASS_REVOKED,
        {
            "pass_id": item.id,
            "household_id": item.household_id,
            "compound_code": item.compound_code,
        },
        key=str(item.id),
    )
    return item


def purge_expired(session: Session) -> int:
    """Delete the passes that ran out, or were revoked, more than ``CITYBRAIN_PASS_RETENTION_DAYS``
    (30) local days ago, their notes with them; audited (``healthcode.passes_purge``) when any
    went. A pass still valid, or ended within the period, stays. Never commits."""
    days = get_settings().pass_retention_days
    before = clock.today_local() - dt.timedelta(days=days)
    revoked_before = clock.local_midnight(before)
    gone = rows_affected(
        session.execute(
            delete(HouseholdPass).where(
                or_(
                    HouseholdPass.valid_until < before,
                    HouseholdPass.revoked_at < revoked_before.astimezone(dt.UTC),
                )
            )
        )
    )
    record_purge(
        session,
        "healthcode.passes_purge",
        object_type="household_pass",
        deleted=gone,
        before=before,
        retention_days=days,
    )
    return gone

"""Tables of compound resident registration (小区居民健康登记, application 9.3).

Persons and households live in the core registry (``persons``, ``households``); this app adds
only what is its own: the residents' self-service accounts, their failed logins, the one-time
codes sent to their phones, the adult household members awaiting their own consent and the
daily health reports (每日健康打卡). The households' exit
passes (出入证) belong to the gate's domain:
``healthcode.models.HouseholdPass``, issued through ``healthcode.passes``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, JSONType, UTCDateTime

# Where a resident spent the day (在家 / 外出).
AT_HOME = "home"
AWAY = "away"
WHEREABOUTS = (AT_HOME, AWAY)

# What a one-time code proves: the resident's own phone, to register or log in; or an adult's
# consent to be entered in someone else's household (本人同意).
FOR_LOGIN = "login"
FOR_CONSENT = "consent"


class ResidentAccount(Base):
    """A resident's self-service account (居民账户), bound to a person of the registry.

    Residents are not staff users: they hold no role and no password. They prove who they are
    with their ID number, phone and name (matched through the blind indexes) and a one-time
    code sent to that phone (``ResidentSmsCode``); the signed
    session cookie carries only ``person_ref``. ``sessions_revoked_at`` lets logging out end
    every copy of the cookie, as staff sessions do.
    """

    __tablename__ = "resident_accounts"

    person_ref: Mapped[str] = mapped_column(ForeignKey("persons.ref"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sessions_revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ResidentLoginFailure(Base):
    """One failed resident login or registration with a known ID, kept for the rate-limit
    window. ``key`` is pseudonymous (the first 32 hex characters of the ID's blind index), so
    this table holds no ID number."""

    __tablename__ = "resident_login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), index=True)
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class ResidentSmsCode(Base):
    """A one-time code sent by text message (短信验证码) to prove a resident holds the phone
    they type at registration or login. ``phone_key`` is the phone's blind index and
    ``code_hash`` an HMAC of the code, so this table holds neither. Only a phone's latest code
    counts; it is spent by one success or ``MAX_ATTEMPTS`` wrong tries, and dies at
    ``expires_at``. Rows are purged a day after they are sent. ``purpose`` keeps a login code
    from passing as a member's consent and the other way round: each text says what its code
    is for."""

    __tablename__ = "resident_sms_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone_key: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default=FOR_LOGIN, server_default=FOR_LOGIN)
    code_hash: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class MemberInvitation(Base):
    """An adult entered as a household member, awaiting their own consent (待本人确认的家庭成员).

    Name and ID number are weak proof: they leak together, and a household's members see each
    other's colours and are made close contacts of a case among them. So an adult is not
    registered into someone's household on the registrant's word: they confirm with a code
    texted to their own phone (``FOR_CONSENT``), or the community's staff confirm after seeing
    them in person. Until then nothing of theirs is in the registry, and their ID number stays
    free for them to register themselves. An adult who registered themselves is invited the
    same way to move into the household (``person_ref``). Name, ID and phone are kept
    encrypted like the registry's; ``id_number_bidx`` finds a second invitation of the same
    ID. Invitations lapse at ``expires_at`` and are purged then.
    """

    __tablename__ = "resident_member_invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    compound_code: Mapped[str] = mapped_column(String(15), index=True)
    invited_by: Mapped[str] = mapped_column(String(32))  # the registrant's person ref
    name_enc: Mapped[bytes] = mapped_column(LargeBinary)
    id_number_enc: Mapped[bytes] = mapped_column(LargeBinary)
    id_number_bidx: Mapped[str] = mapped_column(String(64), index=True)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # An adult already registered in the compound, invited to move into this household: their
    # consent is asked on the phone they registered (``phone_enc`` stays empty).
    person_ref: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class HealthReport(Base):
    """One person's daily health report (每日健康打卡): at most one per person per local day,
    correctable the same day.

    ``area_code`` is where the person lived when reporting (their compound); staff scoping
    matches it by prefix. A report with fever or symptoms is ``flagged`` for the compound's
    staff to follow up; it is never turned into a risk fact (see service.submit_report).
    """

    __tablename__ = "health_reports"
    __table_args__ = (UniqueConstraint("person_ref", "report_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_ref: Mapped[str] = mapped_column(ForeignKey("persons.ref"))
    report_date: Mapped[dt.date] = mapped_column(Date, index=True)
    area_code: Mapped[str] = mapped_column(String(15), index=True)
    temperature: Mapped[float] = mapped_column(Float)  # °C, one decimal
    symptoms: Mapped[list[str]] = mapped_column(JSONType)
    whereabouts: Mapped[str] = mapped_column(String(8))
    flagged: Mapped[bool] = mapped_column(Boolean, index=True)
    # The person ref of whoever submitted it: the person, or a member of their household
    # reporting for a child or an elder (代报).
    reported_by: Mapped[str] = mapped_column(String(32))
    corrections: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # A flagged report is followed up by the compound's staff (已跟进): who and when.
    followed_up_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    followed_up_by: Mapped[str | None] = mapped_column(String(64))

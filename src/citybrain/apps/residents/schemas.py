"""Pydantic I/O of resident registration: what residents submit, and what staff see (masked)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

Colour = Literal["green", "yellow", "red"]


class MemberIn(BaseModel):
    """A household member registered with the resident (家庭成员); a phone is optional (children,
    elders without one) but needed for the member to log in on their own."""

    name: str = Field(default="", max_length=32, description="姓名")
    id_number: str = Field(default="", max_length=32, description="居民身份证号码")
    phone: str = Field(default="", max_length=20, description="手机号码（可选）")

    def is_blank(self) -> bool:
        """Whether nothing was typed into this member's fields (an unused slot of the form)."""
        return not (self.name.strip() or self.id_number.strip() or self.phone.strip())


class RegistrationIn(BaseModel):
    """A resident registering self and household to a compound (居民登记)."""

    name: str = Field(default="", max_length=32, description="姓名")
    id_number: str = Field(default="", max_length=32, description="居民身份证号码")
    phone: str = Field(default="", max_length=20, description="手机号码")
    sms_code: str = Field(default="", max_length=8, description="短信验证码（发至上述手机）")
    compound_code: str = Field(default="", max_length=15, description="小区代码")
    building: str = Field(default="", max_length=16, description="楼栋")
    unit: str = Field(default="", max_length=16, description="单元")
    room: str = Field(default="", max_length=16, description="门牌号")
    members: list[MemberIn] = Field(default_factory=list, max_length=9)


class RegistrationOut(BaseModel):
    """The outcome of a registration: the registrant, and whether they were new.

    ``created`` False means the ID number, phone and name matched a registered person: nothing
    was changed and the resident is simply logged in."""

    person_ref: str
    household_id: int | None
    members: list[str]
    # Adult members awaiting their own consent (MemberInvitation ids).
    invited: list[int] = []
    created: bool


class HealthReportIn(BaseModel):
    """A daily health report (每日健康打卡) for oneself or a household member."""

    person_ref: str = Field(max_length=32)
    temperature: str = Field(default="", max_length=8, description="体温（℃）")
    symptoms: list[str] = Field(default_factory=list, max_length=12)
    whereabouts: str = Field(default="", max_length=8, description="在家/外出")


class ReportView(BaseModel):
    """A health report as staff see it (the person masked)."""

    id: int
    person_ref: str
    name: str
    report_date: dt.date
    temperature: float
    symptoms: list[str]
    whereabouts: str
    flagged: bool
    corrections: int
    updated_at: dt.datetime
    followed_up_at: dt.datetime | None
    building: str


class ResidentView(BaseModel):
    """A resident of a compound as staff see them (脱敏)."""

    ref: str
    name: str
    id_number: str
    phone: str | None
    sex: str
    age: int
    household_id: int | None
    building: str
    unit: str
    room: str
    self_registered: bool
    reported_today: bool
    colour: str | None = None


class PassIn(BaseModel):
    """Staff issuing a pass (出入证) to a household."""

    household_id: int = Field(ge=1, le=2**31 - 1)
    valid_from: dt.date
    valid_until: dt.date
    reason: str = Field(max_length=16)
    note: str | None = Field(default=None, max_length=100)


class CardView(BaseModel):
    """A printed health card (纸质健康卡) as staff see it: the holder masked, as printed."""

    id: int
    card_no: str = Field(description="卡号，如 000012 the number printed on the card")
    person_ref: str
    holder_name: str = Field(description="姓名（脱敏） the holder's name, masked")
    id_tail: str = Field(description="身份证号后四位 the ID number's last four characters")
    issued_via: Literal["staff", "household"]
    issued_at: dt.datetime
    expires_at: dt.datetime
    ended_at: dt.datetime | None
    end_reason: Literal["lost", "replaced", "cancelled"] | None
    in_force: bool


class CardPresentationView(BaseModel):
    """An ended card shown at a gate and refused there (挂失卡被出示)."""

    presented_at: dt.datetime
    place_code: str
    place_name: str
    direction: Literal["entry", "exit"]


class CardDetail(CardView):
    """A card with where it was shown at gates after it ended, newest first."""

    presentations: list[CardPresentationView]


class CardIssued(CardView):
    """A card just issued, with the text its QR holds (``CBK1:…``) for a printing system."""

    code: str = Field(description="二维码内容 the signed text the card's QR holds")


class CardEndIn(BaseModel):
    """Why a card ends (挂失 or 作废)."""

    reason: Literal["lost", "cancelled"] = "lost"


class PassView(BaseModel):
    """A pass as staff and the household see it."""

    id: int
    household_id: int
    compound_code: str
    valid_from: dt.date
    valid_until: dt.date
    reason: str
    note: str | None
    issued_at: dt.datetime
    revoked_at: dt.datetime | None
    active: bool
    members: int


class ScanView(BaseModel):
    """An entry or exit at one of the compound's gates (no person data but a masked name)."""

    scanned_at: dt.datetime
    place_name: str
    direction: str
    colour: str
    decision: str
    reason: str
    name: str | None
    # The printed health card's number when a card was scanned (纸质健康卡: the ID was checked).
    card_id: int | None = None


class CompoundRow(BaseModel):
    """One compound in a staff member's overview."""

    code: str
    name: str
    community_name: str
    residents: int
    reports_today: int
    flagged_today: int
    tier: str | None = None
    # Adults entered by a household, awaiting their consent (some to be checked in person).
    awaiting_consent: int = 0

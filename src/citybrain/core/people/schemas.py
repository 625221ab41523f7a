"""Pydantic I/O for persons: masked by default, plain only through the audited unmask."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class PersonIn(BaseModel):
    """Registering a person (name, resident ID, phone, where they live)."""

    name: str = Field(min_length=1, max_length=32, description="姓名")
    id_number: str = Field(min_length=1, max_length=32, description="居民身份证号码")
    phone: str | None = Field(default=None, max_length=20, description="手机号码")
    compound_code: str | None = Field(default=None, max_length=15, description="小区代码")
    community_code: str | None = Field(
        default=None, max_length=12, description="社区代码（无小区时）"
    )
    household_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="户编号（与家人同户登记）"
    )


class HouseholdIn(BaseModel):
    """A household (户) in a compound; the unit (楼栋/单元/门牌) is kept encrypted."""

    compound_code: str = Field(min_length=15, max_length=15, description="小区代码")
    unit: str | None = Field(default=None, max_length=64, description="楼栋单元门牌")


class HouseholdOut(BaseModel):
    """A household as staff see it (the unit masked away)."""

    id: int
    compound_code: str
    members: int


class PersonMasked(BaseModel):
    """A person as staff see them by default (脱敏)."""

    ref: str
    name: str
    id_number: str
    phone: str | None
    sex: str
    birth_year: int
    age: int
    area_code: str
    compound_code: str | None
    compound_name: str | None
    community_name: str | None
    household_id: int | None = None


class PersonPlain(PersonMasked):
    """A person unmasked for a stated purpose (audited)."""

    purpose: str
    unmasked_at: dt.datetime


class PersonPage(BaseModel):
    """One page of a search."""

    total: int
    items: list[PersonMasked]
    limit: int
    offset: int


class UnmaskIn(BaseModel):
    """Why the plain data is needed (查看原因)."""

    purpose: str = Field(min_length=4, max_length=200, description="查看原因")


class RegisterOut(BaseModel):
    """Result of a registration: the person and whether they were new."""

    person: PersonMasked
    created: bool

"""Persons and households. Names, ID numbers and phones are stored only encrypted, with
blind indexes (keyed hashes) for exact lookup."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, UTCDateTime


class Household(Base):
    """A household (户) living in a compound (小区)."""

    __tablename__ = "households"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    compound_code: Mapped[str] = mapped_column(ForeignKey("compounds.code"), index=True)
    # Building/unit/room is personal: encrypted like the rest.
    unit_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Person(Base):
    """A person the platform serves.

    ``area_code`` is where the person lives (a compound code, or the registering community
    when no compound is known); jurisdiction scoping matches it by prefix.
    """

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)  # pseudonymous reference
    name_enc: Mapped[bytes] = mapped_column(LargeBinary)
    id_number_enc: Mapped[bytes] = mapped_column(LargeBinary)
    id_number_bidx: Mapped[str] = mapped_column(String(64), unique=True)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Not unique: families share a phone.
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    name_bidx: Mapped[str] = mapped_column(String(64), index=True)
    # Indexed for the daily look for the household members who turn 18 (成年提醒).
    birth_date: Mapped[dt.date] = mapped_column(Date, index=True)
    sex: Mapped[str] = mapped_column(String(1))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    area_code: Mapped[str] = mapped_column(String(15), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

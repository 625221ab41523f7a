"""Cockpit tables: materialised figures, their per-leaf inputs, alerts, source freshness and
the daily closed-loop times.

Area codes nest by prefix (city 4101 ⊃ district ⊃ street ⊃ community ⊃ compound), so a figure
of an area is the sum of the leaf values whose codes start with the area's code. A handler
recomputes the leaves an event touched from the source tables and adds the difference to every
prefix of the leaf: re-running a handler (at-least-once delivery) adds nothing.

No personal data: counts per area and day, and alert titles that name areas only.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, UTCDateTime

# The ``day`` of a leaf's current value for state measures (a leaf keeps only its present).
CURRENT = dt.date(1970, 1, 1)


class LeafValue(Base):
    """One leaf's own value of a measure: for daily measures per day, for state measures only
    the current one (``day`` = ``CURRENT``). The inputs the figures are summed from."""

    __tablename__ = "cockpit_leaf_values"

    area_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    measure: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Figure(Base):
    """The value of a measure for an area (every prefix level) on a day.

    Daily measures: what happened that day. State measures: the state as it stood at the end
    of that day; a day without a row carries the latest earlier row forward.
    """

    __tablename__ = "cockpit_figures"
    __table_args__ = (Index("ix_cockpit_figures_measure_day", "measure", "day"),)

    area_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    measure: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Alert(Base):
    """One line of the alert feed: a kind, an area and titles that carry no personal data."""

    __tablename__ = "cockpit_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    area_code: Mapped[str] = mapped_column(String(15), index=True)
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(300))
    # What the alert is about (an event, a fact, a category and file): a redelivered event
    # finds its alert already written.
    dedupe_key: Mapped[str] = mapped_column(String(96), unique=True)


class SourceFreshness(Base):
    """Per source category of the data centre: when data last arrived, how many records today
    (China's calendar day), and when its going stale was last alerted.

    ``watched_since``: when the freshness check first looked for a feed that had not yet sent
    anything; a feed still silent its expected interval later is alerted as never received."""

    __tablename__ = "cockpit_sources"

    category: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    records_day: Mapped[dt.date | None] = mapped_column(Date)
    records_today: Mapped[int] = mapped_column(Integer, default=0)
    stale_alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    watched_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoopDay(Base):
    """The closed-loop times of the cases traced on one day (medians, minutes)."""

    __tablename__ = "cockpit_loop_days"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    cases: Mapped[int] = mapped_column(Integer, default=0)
    arrival_to_contacts_min: Mapped[float | None] = mapped_column(Float)
    contacts_to_codes_min: Mapped[float | None] = mapped_column(Float)
    arrival_to_codes_min: Mapped[float | None] = mapped_column(Float)
    # The last step (落地管控): of the close contacts those traces listed, how many are under
    # control (an in_quarantine fact recorded), and the median minutes from their code to that.
    close_contacts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    contacts_controlled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    codes_to_control_min: Mapped[float | None] = mapped_column(Float)

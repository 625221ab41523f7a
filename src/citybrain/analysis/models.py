"""What the analysis keeps in the operational database: one row per confirmed case whose
contacts were traced (密接追踪), with when the case reached the lake and when its contacts were
listed. The contacts themselves are Parquet beside the person keys (``analysis/contacts/``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, UTCDateTime


class ContactTrace(Base):
    """The tracing of one case (a person key): its close (hop 1) and secondary (hop 2) contacts
    were listed at ``traced_at``, ``seconds`` after the case's first report reached the lake."""

    __tablename__ = "contact_traces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # A person key (see analysis.linkage): a pseudonym, the smallest record id of the person.
    case_key: Mapped[int] = mapped_column(BigInteger, unique=True)
    # When the case was found: its earliest case report or positive test in the lake.
    found_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # When the file bringing its first case report was taken into the lake.
    arrived_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    traced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    seconds: Mapped[float] = mapped_column(Float)
    close_contacts: Mapped[int] = mapped_column(Integer)
    secondary_contacts: Mapped[int] = mapped_column(Integer)
    # The contacts file under the data directory, relative to it.
    result_path: Mapped[str] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"<ContactTrace case={self.case_key} close={self.close_contacts}>"

"""The one jurisdiction-scoping helper (辖区过滤).

Area codes nest by prefix: city 4101 ⊃ district 410102 ⊃ street 410102001 ⊃ community
410102001002 ⊃ compound 410102001002001. A principal sees a record of personal data only when
the record's area code starts with the principal's area code. Every repository query of
personal data goes through :func:`scoped`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from citybrain.core.authz.principal import Principal

SelectT = TypeVar("SelectT", bound=Select[Any])


def within(column: InstrumentedAttribute[str] | ColumnElement[str], area_code: str) -> Any:
    """SQL condition: ``column`` lies inside ``area_code``."""
    if not area_code.isdigit():
        # Codes are digits only; anything else would be a LIKE pattern in disguise.
        raise ValueError("area codes are digits")
    return column.startswith(area_code)


def scoped(
    statement: SelectT, column: InstrumentedAttribute[str] | ColumnElement[str], who: Principal
) -> SelectT:
    """Restrict ``statement`` to rows whose ``column`` lies inside ``who``'s jurisdiction."""
    return statement.where(within(column, who.area_code))


def covers(who: Principal, area_code: str | None) -> bool:
    """Whether ``area_code`` lies inside ``who``'s jurisdiction (for single objects)."""
    return area_code is not None and area_code.startswith(who.area_code)

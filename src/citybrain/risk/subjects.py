"""Risk subjects (风险主体): the pseudonym facts and colours are keyed by.

A subject is the first 32 hex characters of a person's ID-number blind index, which is also
the lake's ``id_hmac`` as hex (see ``datahub.pseudonym``): so what the analysis finds about
someone not (yet) in the registry counts for them from the moment they register.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.people.models import Person
from citybrain.kit.crypto import blind_index
from citybrain.kit.errors import InvalidInput
from citybrain.kit.idcheck import parse_resident_id

SUBJECT_LENGTH = 32
SUBJECT_PATTERN = re.compile(r"[0-9a-f]{32}")


def subject_of(person: Person) -> str:
    """The risk subject of a registered person."""
    return person.id_number_bidx[:SUBJECT_LENGTH]


def subject_of_id_number(id_number: str) -> str:
    """The risk subject of a resident ID number (validated, GB 11643)."""
    number = parse_resident_id(id_number, field="id_number").number
    return blind_index().digest(number, "id_number")[:SUBJECT_LENGTH]


def subject_of_lake_hash(id_hmac: bytes) -> str:
    """The risk subject of a lake record's ``id_hmac`` (16 raw bytes)."""
    return id_hmac.hex()


def check_subject(subject: str, field: str = "subject") -> str:
    """``subject`` if it has a subject's shape (32 lowercase hex characters)."""
    if not isinstance(subject, str) or not SUBJECT_PATTERN.fullmatch(subject):
        raise InvalidInput(
            "风险主体编号应为32位十六进制字符",
            "a subject is 32 lowercase hex characters",
            field=field,
        )
    return subject


def person_of_subject(session: Session, subject: str) -> Person | None:
    """The registered person whose blind index starts with ``subject``, if any.

    A range on the unique blind-index column (``subject <= bidx < subject + 'g'``: every hex
    character sorts before ``g``), so the lookup uses its index on every backend.
    """
    statement = select(Person).where(
        Person.id_number_bidx >= subject, Person.id_number_bidx < subject + "g"
    )
    return session.scalars(statement.limit(1)).first()


def household_subjects(session: Session, person: Person) -> list[str]:
    """The subjects of the other registered members of ``person``'s household (同户成员)."""
    if person.household_id is None:
        return []
    rows = session.scalars(
        select(Person.id_number_bidx).where(
            Person.household_id == person.household_id, Person.id != person.id
        )
    )
    return sorted(bidx[:SUBJECT_LENGTH] for bidx in rows)


def compound_of(person: Person | None) -> str | None:
    """The compound a registered person lives in (a 15-digit area code), if known."""
    if person is None or len(person.area_code) != 15:
        return None
    return person.area_code

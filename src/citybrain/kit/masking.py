"""Masked display of personal data (4101**********1234, 138****5678, 张*)."""

from __future__ import annotations


def mask_resident_id(number: str) -> str:
    """Keep the first four and last four characters of an ID number."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_phone(phone: str) -> str:
    """Keep the first three and last four digits of a phone number."""
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str) -> str:
    """Keep the surname (first character) and, for three or more characters, the last one."""
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_passport(number: str) -> str:
    """Keep the first two and last three characters of a passport number."""
    if len(number) <= 5:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 5) + number[-3:]

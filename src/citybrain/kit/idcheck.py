"""Resident identity numbers (居民身份证号码) per GB 11643-1999 and mainland mobile numbers.

An 18-character ID is: a 6-digit administrative area code (GB/T 2260) of the place of first
registration, an 8-digit birth date, a 3-digit sequence (odd for men, even for women) and a
check character computed per ISO 7064 MOD 11-2.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from citybrain.kit.errors import InvalidInput

# Province-level codes of GB/T 2260 (the first two digits of an area code).
PROVINCE_CODES: dict[str, str] = {
    "11": "北京", "12": "天津", "13": "河北", "14": "山西", "15": "内蒙古",
    "21": "辽宁", "22": "吉林", "23": "黑龙江",
    "31": "上海", "32": "江苏", "33": "浙江", "34": "安徽", "35": "福建", "36": "江西",
    "37": "山东",
    "41": "河南", "42": "湖北", "43": "湖南", "44": "广东", "45": "广西", "46": "海南",
    "50": "重庆", "51": "四川", "52": "贵州", "53": "云南", "54": "西藏",
    "61": "陕西", "62": "甘肃", "63": "青海", "64": "宁夏", "65": "新疆",
    "71": "台湾", "81": "香港", "82": "澳门",
}  # fmt: skip

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
EARLIEST_BIRTH = dt.date(1900, 1, 1)


def check_character(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


@dataclass(frozen=True)
class ResidentId:
    """A validated resident ID number and what it says."""

    number: str
    area_code: str
    birth_date: dt.date
    sex: str  # "M" or "F"


def parse_resident_id(
    value: str, *, field: str = "id_number", today: dt.date | None = None
) -> ResidentId:
    """Validate ``value`` and return its parts, or raise InvalidInput naming what is wrong.

    The message names the first failing check: length, characters, area code, birth date or
    checksum (校验码).
    """
    number = value.strip().upper()
    if len(number) != 18:
        raise InvalidInput(
            f"身份证号码应为18位，实际为{len(number)}位",
            f"resident ID must have 18 characters, got {len(number)} (length)",
            code="id_length",
            field=field,
        )
    if not _ID_SHAPE.match(number):
        raise InvalidInput(
            "身份证号码前17位应为数字，末位为数字或X",
            "resident ID must be 17 digits then a digit or X (characters)",
            code="id_characters",
            field=field,
        )
    area = number[:6]
    if area[:2] not in PROVINCE_CODES or (area[2:4] == "00" and area[4:] != "00"):
        raise InvalidInput(
            f"身份证号码地区码{area}无效",
            f"resident ID area code {area} is not a valid GB/T 2260 code (area code)",
            code="id_area_code",
            field=field,
        )
    try:
        birth = dt.datetime.strptime(number[6:14], "%Y%m%d").date()
    except ValueError as exc:
        raise InvalidInput(
            f"身份证号码出生日期{number[6:14]}无效",
            f"resident ID birth date {number[6:14]} is not a valid date (birth date)",
            code="id_birth_date",
            field=field,
        ) from exc
    if birth < EARLIEST_BIRTH or birth > (today or dt.date.today()):
        raise InvalidInput(
            f"身份证号码出生日期{number[6:14]}超出合理范围",
            f"resident ID birth date {number[6:14]} is out of range (birth date)",
            code="id_birth_date",
            field=field,
        )
    expected = check_character(number[:17])
    if number[17] != expected:
        raise InvalidInput(
            f"身份证号码校验码错误：末位应为{expected}，实际为{number[17]}",
            f"resident ID checksum is wrong: last character should be {expected}, "
            f"got {number[17]} (checksum)",
            code="id_checksum",
            field=field,
        )
    sex = "M" if int(number[16]) % 2 == 1 else "F"
    return ResidentId(number=number, area_code=area, birth_date=birth, sex=sex)


def is_valid_resident_id(value: str) -> bool:
    """Whether ``value`` passes every GB 11643 check."""
    try:
        parse_resident_id(value)
    except InvalidInput:
        return False
    return True


def make_resident_id(area_code: str, birth_date: dt.date, sequence: int) -> str:
    """Build a valid ID from its parts (the synthetic city and tests use this)."""
    first17 = f"{area_code}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def normalise_mobile(value: str, *, field: str = "phone") -> str:
    """Validate a mainland mobile number (11 digits from 13x–19x; +86 and spaces allowed)."""
    digits = re.sub(r"[\s\-]", "", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if not digits.isdigit():
        raise InvalidInput(
            "手机号码只能包含数字",
            "mobile number may contain digits only",
            code="phone_characters",
            field=field,
        )
    if len(digits) != 11:
        raise InvalidInput(
            f"手机号码应为11位，实际为{len(digits)}位",
            f"mobile number must have 11 digits, got {len(digits)}",
            code="phone_length",
            field=field,
        )
    if not _MOBILE.match(digits):
        raise InvalidInput(
            f"手机号码号段{digits[:3]}无效",
            f"mobile number prefix {digits[:3]} is not a mainland mobile prefix",
            code="phone_prefix",
            field=field,
        )
    return digits

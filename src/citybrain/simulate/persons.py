"""Synthetic persons: realistic Chinese names, valid resident IDs and mobile numbers.

Deterministic by seed. No real person's data is ever used: names are drawn from surname and
given-name character frequencies, ID numbers are built to be valid per GB 11643 with random
sequence numbers, phones from real mobile prefixes with random subscriber numbers.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

from citybrain.kit.idcheck import make_resident_id

# The most common surnames with rough relative frequencies (per cent of the population).
SURNAMES: list[tuple[str, float]] = [
    ("王", 7.1), ("李", 7.0), ("张", 6.8), ("刘", 5.4), ("陈", 4.6), ("杨", 3.1), ("赵", 2.3),
    ("黄", 2.2), ("周", 1.9), ("吴", 1.8), ("徐", 1.5), ("孙", 1.5), ("胡", 1.3), ("朱", 1.3),
    ("高", 1.3), ("林", 1.2), ("何", 1.2), ("郭", 1.2), ("马", 1.1), ("罗", 0.9), ("梁", 0.9),
    ("宋", 0.9), ("郑", 0.8), ("谢", 0.7), ("韩", 0.7), ("唐", 0.7), ("冯", 0.7), ("于", 0.6),
    ("董", 0.6), ("萧", 0.6), ("程", 0.6), ("曹", 0.6), ("袁", 0.5), ("邓", 0.5), ("许", 0.5),
    ("傅", 0.5), ("沈", 0.5), ("曾", 0.5), ("彭", 0.5), ("吕", 0.5), ("苏", 0.5), ("卢", 0.5),
    ("蒋", 0.5), ("蔡", 0.5), ("贾", 0.4), ("丁", 0.4), ("魏", 0.4), ("薛", 0.4), ("叶", 0.4),
    ("阎", 0.4), ("余", 0.4), ("潘", 0.4), ("杜", 0.4), ("戴", 0.3), ("夏", 0.3), ("钟", 0.3),
    ("汪", 0.3), ("田", 0.3), ("任", 0.3), ("姜", 0.3), ("范", 0.3), ("方", 0.3), ("石", 0.3),
    ("姚", 0.3), ("谭", 0.3), ("廖", 0.3), ("邹", 0.3), ("熊", 0.3), ("金", 0.3), ("陆", 0.3),
    ("欧阳", 0.05), ("司马", 0.02), ("诸葛", 0.01),
]  # fmt: skip
GIVEN_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林峰建国庆志文博"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲桂英华红梅琳洁雪燕婷颖慧倩晶欣怡佳雨涵萱琪璐瑶"
MOBILE_PREFIXES = (
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "182",
    "183",
    "187",
    "188",
    "130",
    "131",
    "132",
    "155",
    "156",
    "185",
    "186",
    "133",
    "153",
    "180",
    "181",
    "189",
    "199",
    "177",
    "176",
    "166",
)
# Places of first registration: mostly Zhengzhou's own districts, many from elsewhere in
# Henan and beyond (the city draws workers and students from the whole country).
ZHENGZHOU_AREAS = (
    "410102",
    "410103",
    "410104",
    "410105",
    "410106",
    "410108",
    "410122",
    "410181",
    "410182",
    "410183",
    "410184",
    "410185",
)
OTHER_AREAS = (
    "410202",
    "410302",
    "410402",
    "410502",
    "410602",
    "410702",
    "410802",
    "411002",
    "411102",
    "411302",
    "411402",
    "411502",
    "411602",
    "411702",
    "420102",
    "340102",
    "370102",
    "130102",
    "320102",
    "610102",
    "140105",
    "110101",
    "310101",
    "440103",
)


@dataclass(frozen=True)
class SyntheticPerson:
    """One made-up person."""

    name: str
    id_number: str
    phone: str
    sex: str
    birth_date: dt.date


def _surname(rng: random.Random) -> str:
    names, weights = zip(*SURNAMES, strict=True)
    return str(rng.choices(names, weights=weights)[0])


def generate_persons(
    count: int, seed: int, *, today: dt.date | None = None
) -> Iterator[SyntheticPerson]:
    """``count`` distinct synthetic persons, the same for the same seed."""
    rng = random.Random(seed)
    today = today or dt.date(2020, 2, 1)
    seen: set[str] = set()
    while len(seen) < count:
        sex = "M" if rng.random() < 0.51 else "F"
        pool = GIVEN_MALE if sex == "M" else GIVEN_FEMALE
        given = "".join(rng.choice(pool) for _ in range(rng.choice((1, 2, 2, 2))))
        age_days = rng.randint(365, 90 * 365)
        birth = today - dt.timedelta(days=age_days)
        area = rng.choice(ZHENGZHOU_AREAS) if rng.random() < 0.6 else rng.choice(OTHER_AREAS)
        sequence = rng.randrange(0, 500) * 2 + (1 if sex == "M" else 0)
        id_number = make_resident_id(area, birth, sequence)
        if id_number in seen:
            continue
        seen.add(id_number)
        phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(0, 10**8):08d}"
        yield SyntheticPerson(_surname(rng) + given, id_number, phone, sex, birth)

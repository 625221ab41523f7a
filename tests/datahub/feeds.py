"""Small agency feed files for intake tests, written the way each agency's contract says
(columns, encodings and formats of datahub/data/sources.yaml), with synthetic people only."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from citybrain.kit.idcheck import make_resident_id

RAIL_HEADER = (
    "乘车人姓名,证件类型,证件号码,手机号,车次,出发站,到达站,发车时间,到达时间,车厢号,座位号"
)
SURNAMES = "王李张刘陈杨赵黄周吴"
GIVEN = "伟芳娜敏静丽强磊军洋"


@dataclass
class Traveller:
    """A synthetic rail passenger."""

    name: str
    id_number: str
    phone: str


def travellers(count: int, seed: int = 1) -> list[Traveller]:
    """Distinct synthetic people with valid IDs and phones."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 20000))
        id_number = make_resident_id("410105", birth, i % 999)
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
        out.append(Traveller(name, id_number, f"139{i:08d}"))
    return out


def rail_rows(people: list[Traveller], day: dt.date, seed: int = 2) -> list[str]:
    """One ticket per person on ``day``."""
    rng = random.Random(seed)
    rows = []
    for p in people:
        hour = rng.randrange(6, 22)
        depart = dt.datetime.combine(day, dt.time(hour, rng.randrange(60)))
        arrive = depart + dt.timedelta(minutes=rng.randrange(60, 300))
        rows.append(
            f"{p.name},身份证,{p.id_number},{p.phone},G{rng.randrange(1, 90)},武汉,郑州东,"
            f"{depart:%Y-%m-%d %H:%M},{arrive:%Y-%m-%d %H:%M},{rng.randrange(1, 17)},"
            f"{rng.randrange(1, 20):02d}{rng.choice('ABCDF')}"
        )
    return rows


def write_rail(folder: Path, day: dt.date, rows: list[str], suffix: str = "") -> Path:
    """A railway ticket file in GBK, named for its delivery day."""
    path = folder / "rail_ticket" / f"rail_ticket_{day:%Y%m%d}{suffix}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join([RAIL_HEADER, *rows]) + "\n").encode("gbk"))
    return path


def write_flights(folder: Path, day: dt.date, people: list[Traveller], broken: int = 0) -> Path:
    """A flight manifest in JSON lines; ``broken`` lines cut short."""
    path = folder / "flight_manifest" / f"flight_manifest_{day:%Y%m%d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, p in enumerate(people):
        record = {
            "passenger_name": p.name,
            "id_type": "NI",
            "id_no": p.id_number,
            "mobile": p.phone,
            "flight_no": "CZ3401",
            "dep": "WUH",
            "arr": "CGO",
            "std": f"{day:%Y-%m-%d}T08:30:00",
            "sta": f"{day:%Y-%m-%d}T09:40:00",
            "seat": f"{i % 30 + 1}{'ABCDEF'[i % 6]}",
        }
        text = json.dumps(record, ensure_ascii=False)
        lines.append(text[: len(text) // 2] if i < broken else text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_cases(folder: Path, day: dt.date, people: list[Traveller]) -> Path:
    """A confirmed-case list as the health commission sends it: an Excel workbook."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        ["病例编号", "姓名", "性别", "年龄", "身份证号", "联系电话", "现住址", "发病日期",
         "确诊日期", "确诊医院", "临床分型"]
    )  # fmt: skip
    for i, p in enumerate(people):
        sheet.append(
            [f"郑州市2020-{i + 1:04d}", p.name, "男", 40, p.id_number, p.phone,
             "金水区经八路1号", day - dt.timedelta(days=3), day, "郑州市第六人民医院", "普通型"]
        )  # fmt: skip
    path = folder / "case_confirmed" / f"case_confirmed_{day:%Y%m%d}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(buffer.getvalue())
    return path

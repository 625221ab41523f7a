"""The model's reference data: the other cities people travel to and from, the risk-area list
(中高风险地区) and the word lists names are made of. Cities and risk areas are CSV files in
``simulate/data`` so they can be read and changed without touching code."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pyarrow as pa

from citybrain.simulate.model_util import F64
from citybrain.simulate.schema import RISK_AREAS

HOME_CITY = "郑州市"


@dataclass(frozen=True)
class Cities:
    """The other cities as parallel arrays (index = city number)."""

    name: tuple[str, ...]
    province: tuple[str, ...]
    id_area: tuple[str, ...]  # a GB/T 2260 county code in the city, for birthplaces in IDs
    plate: tuple[str, ...]  # licence-plate prefix, e.g. 鄂A
    toll: tuple[str, ...]  # the expressway toll station a car from there enters at
    distance_km: F64
    weight: F64  # share of traffic with Zhengzhou
    airport: np.ndarray  # bool: flights to Zhengzhou
    import_risk: F64  # chance a traveller from there carries the virus, around 2020-01-20
    lockdown: tuple[dt.date | None, ...]  # 封城: no travel out after this date

    def index(self, name: str) -> int:
        """The city number of ``name``."""
        return self.name.index(name)


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("citybrain.simulate").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@lru_cache(maxsize=1)
def cities() -> Cities:
    """The cities of ``data/cities.csv``, in file order."""
    rows = _read("cities.csv")
    return Cities(
        name=tuple(r["name"] for r in rows),
        province=tuple(r["province"] for r in rows),
        id_area=tuple(r["id_area"] for r in rows),
        plate=tuple(r["plate"] for r in rows),
        toll=tuple(r["toll"] for r in rows),
        distance_km=np.array([float(r["distance_km"]) for r in rows]),
        weight=np.array([float(r["weight"]) for r in rows]),
        airport=np.array([r["airport"] == "y" for r in rows]),
        import_risk=np.array([float(r["import_risk"]) for r in rows]),
        lockdown=tuple(
            dt.date.fromisoformat(r["lockdown"]) if r["lockdown"] else None for r in rows
        ),
    )


@dataclass(frozen=True)
class RiskArea:
    """One entry of the risk-area list."""

    area: str
    level: str  # high | medium
    start: dt.date
    end: dt.date | None


@lru_cache(maxsize=1)
def risk_areas() -> tuple[RiskArea, ...]:
    """The risk-area list of ``data/risk_areas.csv``."""
    return tuple(
        RiskArea(
            area=r["area"],
            level=r["level"],
            start=dt.date.fromisoformat(r["start"]),
            end=dt.date.fromisoformat(r["end"]) if r["end"] else None,
        )
        for r in _read("risk_areas.csv")
    )


def risk_areas_table() -> pa.Table:
    """The risk-area list as a ``schema.RISK_AREAS`` table."""
    rows = risk_areas()
    return pa.table(
        {
            "area": [r.area for r in rows],
            "level": [r.level for r in rows],
            "start": [r.start for r in rows],
            "end": [r.end for r in rows],
        },
        schema=RISK_AREAS,
    )


def listed_cities_on(date: dt.date) -> np.ndarray:
    """Per city number: whether the city (or a district of it) is on the list on ``date``."""
    c = cities()
    listed = np.zeros(len(c.name), dtype=bool)
    for r in risk_areas():
        if r.start <= date and (r.end is None or date <= r.end):
            for i, name in enumerate(c.name):
                if r.area.startswith(name):
                    listed[i] = True
    return listed


# --- words ----------------------------------------------------------------------------------

WORDS = (
    "宏达", "鑫源", "中原", "华兴", "嘉禾", "恒通", "金盛", "瑞丰", "永安", "天成",
    "博远", "汇通", "新航", "东方", "盛世", "远景", "正弘", "豫商", "国邦", "万通",
    "华夏", "锦程", "晨光", "明德", "宇通", "森源", "安和", "凯旋", "同创", "昌达",
)  # fmt: skip
INDUSTRIES = (
    "商贸", "物流", "科技", "电子", "食品", "建筑工程", "餐饮管理", "物业服务", "机械制造",
    "医药", "纺织", "汽车销售", "软件", "文化传媒", "置业", "服装", "环保", "印务", "电力设备",
    "信息技术",
)  # fmt: skip
COMPANY_SUFFIXES = ("有限公司", "有限责任公司", "股份有限公司")
HOTEL_BRANDS = (
    "如家快捷酒店", "汉庭酒店", "7天连锁酒店", "锦江之星", "格林豪泰酒店", "维也纳酒店",
    "全季酒店", "速8酒店", "莫泰酒店", "城市便捷酒店",
)  # fmt: skip
HOTEL_WORDS = ("中州", "金水", "绿城", "商都", "黄河", "嵩山", "中原", "国际", "天地", "友谊")
DRUGS = (
    "布洛芬缓释胶囊", "对乙酰氨基酚片", "连花清瘟胶囊", "复方氨酚烷胺片", "感冒灵颗粒",
    "阿莫西林胶囊", "止咳糖浆", "头孢克肟分散片", "蒲地蓝消炎口服液", "双黄连口服液",
)  # fmt: skip
VACCINES = ("流感疫苗", "23价肺炎球菌多糖疫苗", "乙肝疫苗", "狂犬病疫苗", "百白破疫苗")
COLD_GOODS = (
    "进口冻猪肉（巴西）", "进口冻牛肉（阿根廷）", "进口冻虾（厄瓜多尔）", "进口冻鸡翅（美国）",
    "进口冻带鱼（印度）", "进口冻三文鱼（挪威）",
)  # fmt: skip
COUNTRIES = ("日本", "韩国", "泰国", "新加坡", "美国", "意大利", "德国", "英国", "澳大利亚")
PORTS = ("郑州新郑国际机场", "郑州新郑国际机场", "郑州新郑国际机场", "上海浦东国际机场")
AIRLINES = ("CZ", "MU", "HU")

"""The vocabulary of risk: fact kinds (health and travel evidence only), the attributes a rule
may read, colours and tiers, and their names in Chinese and English."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Colour = Literal["green", "yellow", "red"]
COLOURS: tuple[Colour, ...] = ("green", "yellow", "red")
SEVERITY: dict[str, int] = {"green": 0, "yellow": 1, "red": 2}


class FactKind(StrEnum):
    """The kinds of fact a colour may rest on: health and travel evidence, nothing else."""

    CONFIRMED_CASE = "confirmed_case"  # 确诊病例
    ASYMPTOMATIC = "asymptomatic"  # 无症状感染者
    CLOSE_CONTACT = "close_contact"  # 密切接触者
    SECONDARY_CONTACT = "secondary_contact"  # 次密切接触者
    RISK_AREA_TRAVEL = "risk_area_travel"  # 中高风险地区旅居史
    FEVER_VISIT = "fever_visit"  # 发热门诊就诊，待检测
    NEGATIVE_TEST = "negative_test"  # 核酸检测阴性
    IN_QUARANTINE = "in_quarantine"  # 隔离中
    RELEASED = "released"  # 解除隔离/解除管控


FACT_KINDS: frozenset[str] = frozenset(k.value for k in FactKind)
CASE_KINDS: frozenset[str] = frozenset({FactKind.CONFIRMED_CASE, FactKind.ASYMPTOMATIC})
# What clinic staff may assert (a visit and a test result); everything else needs risk.assert.
CLINICAL_KINDS: frozenset[str] = frozenset({FactKind.FEVER_VISIT, FactKind.NEGATIVE_TEST})

KIND_LABELS: dict[str, tuple[str, str]] = {
    FactKind.CONFIRMED_CASE: ("确诊病例", "confirmed case"),
    FactKind.ASYMPTOMATIC: ("无症状感染者", "asymptomatic infection"),
    FactKind.CLOSE_CONTACT: ("密切接触者", "close contact"),
    FactKind.SECONDARY_CONTACT: ("次密切接触者", "secondary contact"),
    FactKind.RISK_AREA_TRAVEL: ("中高风险地区旅居史", "travel from a risk area"),
    FactKind.FEVER_VISIT: ("发热门诊就诊（待检测）", "fever clinic visit (awaiting a test)"),
    FactKind.NEGATIVE_TEST: ("核酸检测阴性", "negative test"),
    FactKind.IN_QUARANTINE: ("隔离中", "in quarantine"),
    FactKind.RELEASED: ("解除隔离", "released"),
}

# Quarantine settings (隔离方式) an in_quarantine fact may carry.
SETTINGS: frozenset[str] = frozenset({"home", "facility", "hospital"})
SETTING_LABELS: dict[str, tuple[str, str]] = {
    "home": ("居家隔离", "home isolation"),
    "facility": ("集中隔离", "facility quarantine"),
    "hospital": ("住院治疗", "in hospital"),
}

# The attributes of a fact a rule may read (besides the kind lists themselves). Open-ended
# facts carry valid_until = OPEN_END so comparisons need no null checks.
FACT_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "valid_from",
        "valid_until",
        "in_force",
        "asserted_at",
        "source",
        "setting",
        "compound_code",
    }
)

SOURCE_LABELS: dict[str, tuple[str, str]] = {
    "analysis.contacts": ("流调密接分析", "contact tracing analysis"),
    "analysis.case_report": ("卫健委病例报告", "health commission case report"),
    "household": ("同户家庭成员为病例", "a household member is a case"),
    "screening": ("重点人员摸排（行程数据）", "key-person screening (travel data)"),
    "fever_clinic": ("发热门诊", "fever clinic"),
    "staff": ("防控工作人员录入", "entered by prevention staff"),
    "appeal": ("申诉处理", "appeal decision"),
}

COLOUR_LABELS: dict[str, tuple[str, str]] = {
    "green": ("绿码", "green"),
    "yellow": ("黄码", "yellow"),
    "red": ("红码", "red"),
}
TIER_LABELS: dict[str, tuple[str, str]] = {
    "green": ("绿色（正常）", "green (normal)"),
    "yellow": ("黄色（管控）", "yellow (controlled)"),
    "red": ("红色（封闭）", "red (closed)"),
}


def kind_label(kind: str, lang: str = "zh-CN") -> str:
    """The name of a fact kind in ``lang``."""
    zh, en = KIND_LABELS.get(kind, (kind, kind))
    return en if lang == "en" else zh


def source_label(source: str, lang: str = "zh-CN") -> str:
    """The name of a fact's source in ``lang`` (the code itself when unknown)."""
    zh, en = SOURCE_LABELS.get(source, (source, source))
    return en if lang == "en" else zh

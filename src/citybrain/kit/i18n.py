"""Interface strings: Simplified Chinese first, English second.

Catalogs are JSON files in ``kit/locales`` keyed by message id; a missing English string falls
back to Chinese and a missing id shows itself, so gaps are visible rather than silent.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"


@cache
def catalog(lang: str) -> dict[str, str]:
    """The message catalog of ``lang`` (zh-CN or en)."""
    name = "zh_CN.json" if lang == "zh-CN" else "en.json"
    text = resources.files("citybrain.kit").joinpath("locales", name).read_text("utf-8")
    return dict(json.loads(text))


def negotiate(requested: str | None, accept_language: str | None = None) -> str:
    """Pick zh-CN or en from an explicit choice, then the Accept-Language header."""
    for candidate in (requested, *(accept_language or "").split(",")):
        if not candidate:
            continue
        tag = candidate.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh-CN"
    return DEFAULT_LANGUAGE


def translate(key: str, lang: str = DEFAULT_LANGUAGE, **params: Any) -> str:
    """The message ``key`` in ``lang`` with ``{name}`` placeholders filled from ``params``."""
    text = catalog(lang).get(key) or catalog(DEFAULT_LANGUAGE).get(key) or key
    return text.format(**params) if params else text

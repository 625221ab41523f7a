"""The residents app's interface strings, from the shared catalogue (``kit/locales``, keys
``res.*``): Simplified Chinese first, English second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from citybrain.kit.i18n import translate


def message(key: str, lang: str = "zh-CN", **params: Any) -> str:
    """The message ``key`` in ``lang`` (zh-CN or en)."""
    return translate(key, lang, **params)


def translator(lang: str) -> Callable[..., str]:
    """The template's ``t`` for ``lang``."""

    def t(key: str, **params: Any) -> str:
        return translate(key, lang, **params)

    return t

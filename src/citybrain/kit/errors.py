"""Errors that carry a bilingual message and say where the problem is (field, row)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from pydantic import BaseModel


class CitybrainError(Exception):
    """Base error: a machine code, messages in Chinese and English, and where it happened."""

    status_code = 400
    code = "error"

    def __init__(
        self,
        message_zh: str,
        message_en: str | None = None,
        *,
        code: str | None = None,
        field: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message_en or message_zh)
        self.message_zh = message_zh
        self.message_en = message_en or message_zh
        if code:
            self.code = code
        self.field = field
        self.row = row
        # Work to keep even though the failed work is rolled back: the record of a denied
        # attempt, a failed login. The unit of work runs these in a fresh transaction.
        self.after_rollback: list[Callable[[Any], object]] = []

    def keep(self, hook: Callable[[Any], object]) -> Self:
        """Add ``hook(session)`` to run and commit after the failed work is rolled back."""
        self.after_rollback.append(hook)
        return self

    def message(self, lang: str = "zh-CN") -> str:
        """The message in the requested language (zh-CN default)."""
        return self.message_en if lang.startswith("en") else self.message_zh

    def to_dict(self, lang: str = "zh-CN") -> dict[str, Any]:
        """JSON shape used by the API for every error."""
        out: dict[str, Any] = {"code": self.code, "message": self.message(lang)}
        if self.field is not None:
            out["field"] = self.field
        if self.row is not None:
            out["row"] = self.row
        return out


class InvalidInput(CitybrainError):
    """Input that fails validation."""

    status_code = 422
    code = "invalid_input"


class FieldsInvalid(InvalidInput):
    """Several fields of a form are wrong at once: each field with what is wrong with it, so a
    page can mark them all and keep what was typed."""

    code = "fields_invalid"

    def __init__(self, problems: dict[str, tuple[str, str]]) -> None:
        field, (zh, en) = next(iter(problems.items()))
        super().__init__(zh, en, field=field)
        self.problems = dict(problems)

    def messages(self, lang: str = "zh-CN") -> dict[str, str]:
        """Field → what is wrong with it, in ``lang``."""
        english = lang.startswith("en")
        return {f: en if english else zh for f, (zh, en) in self.problems.items()}

    def to_dict(self, lang: str = "zh-CN") -> dict[str, Any]:
        """The API's error shape, with every problem listed."""
        out = super().to_dict(lang)
        out["problems"] = [{"field": f, "message": m} for f, m in self.messages(lang).items()]
        return out


class NotFound(CitybrainError):
    """The object does not exist, or lies outside the caller's jurisdiction (same answer)."""

    status_code = 404
    code = "not_found"


class PermissionDenied(CitybrainError):
    """The caller's role does not allow the action."""

    status_code = 403
    code = "permission_denied"


class NotAuthenticated(CitybrainError):
    """No valid session or token."""

    status_code = 401
    code = "not_authenticated"


class Conflict(CitybrainError):
    """The change conflicts with what exists."""

    status_code = 409
    code = "conflict"


class RateLimited(CitybrainError):
    """Too many attempts; try again later."""

    status_code = 429
    code = "rate_limited"


class ServiceBusy(CitybrainError):
    """The database stayed busy past its wait; nothing of the request was kept. Answered 503
    with Retry-After."""

    status_code = 503
    code = "busy"
    retry_after_seconds = 2


class RaceLost(Exception):
    """A write found that another request did the same thing first (a row it checked was
    missing is there now). Not an answer: the web layer runs the request once more, and that
    run answers what the data now says (``web.retry``)."""


class ConfigurationError(CitybrainError):
    """The process is misconfigured (missing keys in production, say)."""

    status_code = 500
    code = "configuration_error"


class ErrorProblem(BaseModel):
    """One failed check of a request: which field, what is wrong."""

    field: str
    message: str


class ErrorDetail(BaseModel):
    """What went wrong and where (field, row)."""

    code: str
    message: str
    field: str | None = None
    row: int | None = None
    problems: list[ErrorProblem] | None = None


class ErrorBody(BaseModel):
    """The body of every error answer of the API."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error answers a route may give, all in one shape."""
    descriptions = {
        401: "Not authenticated (no, expired or revoked token) 未登录",
        403: "Your role may not do this 无权限",
        404: "No such object, or outside your jurisdiction 不存在或不在辖区内",
        409: "Conflicts with what exists 冲突",
        422: "Invalid input: the field and the problem are named 输入有误",
        429: "Too many attempts 尝试次数过多",
        503: "Busy: nothing was saved, try again after Retry-After seconds 系统繁忙，请稍后重试",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}

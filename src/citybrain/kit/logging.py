"""Structured logs (JSON lines via structlog) that never carry personal data.

Call sites log ids and counts, never names, ID numbers or phones. As a second line of defence,
a processor masks anything in an event that looks like a resident ID or a mainland mobile.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[\dXx])(?![0-9A-Za-z])")
_PHONE_LIKE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


# PostgreSQL's errors quote the row or key they refused ("Failing row contains (...)",
# "Key (...)=(...) already exists"); the statement's own values are hidden by the engine.
_PG_DETAIL = re.compile(r"^DETAIL:.*$", re.MULTILINE)


def scrub(text: str) -> str:
    """Mask ID-number-like and mobile-like digit runs in ``text``, and drop the values
    PostgreSQL quotes in an error's DETAIL."""
    text = _PG_DETAIL.sub("DETAIL:  (values not logged)", text)
    text = _ID_LIKE.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(3)[-4:], text)
    return _PHONE_LIKE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def scrub_personal_data(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    """structlog processor: mask personal-data-like strings in every field."""
    return {k: _scrub_value(v) for k, v in event_dict.items()}


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: a handler bound to the stream of the
    moment would outlive it when a test runner or a tool swaps and closes it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Route structlog and the standard library's logging through one scrubbed renderer."""
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, scrub_personal_data, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            scrub_personal_data,
            renderer,
        ],
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every migration context at INFO, including /readyz's revision check.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``name``."""
    return structlog.get_logger(name)

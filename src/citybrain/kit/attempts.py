"""What one request already asked outside citybrain, kept for its next run.

On SQLite a request may run more than once (``web.retry``): a run whose snapshot went stale is
rolled back and run again. What that run learnt from outside the database — the city's
identity service's answer, an Argon2 password check — still holds for the same inputs, and
asking again would double the load on the service and keep the next run's transaction open
for as long again. Only the request's own runs share these answers; nothing outlives the
request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_answers: ContextVar[dict[Hashable, Any] | None] = ContextVar(
    "citybrain_request_answers", default=None
)


@contextmanager
def one_request() -> Iterator[None]:
    """Share the answers of ``ask_once`` between every run of the request inside the block."""
    token = _answers.set({})
    try:
        yield
    finally:
        _answers.reset(token)


def ask_once(key: Hashable, ask: Callable[[], T]) -> T:
    """``ask()``, or its answer from an earlier run of this request for the same ``key`` (a
    failure is not kept: the next run asks again). Outside a request it always asks."""
    answers = _answers.get()
    if answers is None:
        return ask()
    if key not in answers:
        answers[key] = ask()
    return answers[key]  # type: ignore[no-any-return]

"""What a request asked outside is asked once for all its runs, and never beyond the request."""

from __future__ import annotations

import pytest

from citybrain.kit.attempts import ask_once, one_request


def test_a_request_asks_once_a_failure_is_asked_again_and_nothing_outlives_it() -> None:
    asked: list[str] = []

    def ask(answer: bool) -> bool:
        asked.append("asked")
        return answer

    def fail() -> bool:
        asked.append("failed")
        raise TimeoutError

    assert ask_once("k", lambda: ask(True))
    assert not ask_once("k", lambda: ask(False))
    assert asked == ["asked", "asked"]  # outside a request: every time
    asked.clear()
    with one_request():
        assert ask_once("k", lambda: ask(True))
        assert ask_once("k", lambda: ask(False))  # the first answer holds
        assert not ask_once("other", lambda: ask(False))
        for _ in range(2):
            with pytest.raises(TimeoutError):
                ask_once("down", fail)
    assert asked == ["asked", "asked", "failed", "failed"]
    with one_request():
        assert not ask_once("k", lambda: ask(False))  # a new request asks afresh

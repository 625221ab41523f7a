"""The platform's clock: frozen and shifted for tests, the city's calendar day."""

from __future__ import annotations

import datetime as dt

from citybrain.kit import clock


def _ahead_of_real_time() -> dt.timedelta:
    return clock.now() - dt.datetime.now(dt.UTC)


def test_a_shifted_clock_keeps_ticking_and_a_frozen_one_inside_it_returns_to_it() -> None:
    # Relative to the clock as it is (the run itself may be shifted: --clock-at).
    hour, second = dt.timedelta(hours=1), dt.timedelta(seconds=1)
    before = _ahead_of_real_time()
    with clock.shifted(hour):
        assert abs(_ahead_of_real_time() - before - hour) < second
        first = clock.now()
        while clock.now() == first:
            pass  # it ticks
        at = dt.datetime(2020, 1, 24, 16, 5, tzinfo=dt.UTC)
        with clock.frozen(at):
            assert clock.now() == at
            # 00:05 on the 25th in Zhengzhou: the city's day, not UTC's.
            assert clock.today_local() == dt.date(2020, 1, 25)
        assert abs(_ahead_of_real_time() - before - hour) < second
    assert abs(_ahead_of_real_time() - before) < second

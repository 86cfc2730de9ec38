"""The sliding-window upload rate: a stall is noticed a window later, whatever came before."""

import math

from gateway.upload_rate import RecentRate


def test_nothing_is_too_slow_during_the_grace_period() -> None:
    rate = RecentRate(1000, 2.0, started=100.0)
    assert rate.too_slow_at(100.0) == 102.0


def test_a_burst_then_a_stall_is_cut_a_window_after_the_burst() -> None:
    rate = RecentRate(1000, 2.0, started=0.0)
    rate.add(0.5, 1_000_000)  # far more than the minimum over a whole deadline
    assert rate.too_slow_at(1.0) == 2.5  # the burst leaves the window at 0.5 + 2


def test_a_steady_client_is_never_due() -> None:
    rate = RecentRate(1000, 2.0, started=0.0)
    for tick in range(1, 40):
        now = tick * 0.25
        rate.add(now, 500)  # 2000 bytes/s, twice the minimum
        assert rate.too_slow_at(now) > now
    assert rate.received_lately(10.0) == 3500  # arrivals in (8, 10]: 8.25 to 9.75


def test_a_window_below_the_minimum_is_due_at_once() -> None:
    rate = RecentRate(1000, 2.0, started=0.0)
    rate.add(2.5, 100)
    assert rate.too_slow_at(3.0) == 3.0


def test_no_minimum_means_never() -> None:
    assert math.isinf(RecentRate(0, 2.0, started=0.0).too_slow_at(50.0))

"""Time left: from the pre-estimate towards the running phase's rate, without jumps."""

from __future__ import annotations

import pytest

from anomalyapp.core.remaining_time import RemainingTime, describe_seconds


def test_without_an_estimate_the_phase_rate_is_used():
    remaining = RemainingTime(None, started=0.0)
    assert remaining.update("features", 0, 10, now=0.0) is None
    assert remaining.update("features", 5, 10, now=5.0) == pytest.approx(5.0)


def test_starts_at_the_estimate_and_counts_down_between_measurements():
    remaining = RemainingTime(200.0, started=0.0)
    first = remaining.update("features", 1, 100, now=1.0)
    assert first == pytest.approx(199.0, abs=3)
    values = [remaining.update("features", step, 100, now=float(step)) for step in range(2, 101)]
    steps = [b - a for a, b in zip([first, *values], values)]
    assert all(-12 <= d <= 2 for d in steps)
    assert values[-1] < 20


def test_describe_rounds_long_times_to_ten_seconds():
    assert describe_seconds(196) == "about 3 min 20 s left"
    assert describe_seconds(180) == "about 3 min left"
    assert describe_seconds(42.4) == "about 42 s left"


def test_past_the_estimate_it_says_so_and_counts_only_the_running_stage():
    remaining = RemainingTime(20.0, started=0.0)
    remaining.update("train", 40, 40, now=15.0)
    assert not remaining.past_estimate
    remaining.update("fold 1/3", 1, 40, now=25.0)
    left = remaining.update("fold 1/3", 10, 40, now=30.0)  # a loaded machine: 10 of 40 epochs in 5 s
    assert remaining.past_estimate
    # The stage's own pace (15 s for its last 30 epochs), not the exhausted estimate's 0 s
    assert left is not None and left > 5

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


def _autoencoder_like_run(remaining: RemainingTime, slowdown: float) -> list[tuple[float, float, str]]:
    """Features (10 steps), training (40 epochs), three folds (40 epochs each), calibration (3 steps), each step
    taking ``slowdown`` times what the plan of ``_PLAN`` expects; (clock, shown seconds, stage) per report."""
    now, shown = 0.0, []
    stages = [("features", 10, 1.0), ("train", 40, 0.5), *((f"fold {i}/3", 40, 1 / 3) for i in (1, 2, 3)),
              ("calibrate", 3, 4.0)]
    for stage, steps, seconds in stages:
        for step in range(1, steps + 1):
            now += seconds * slowdown
            shown.append((now, remaining.update(stage, step, steps, now), stage))
    return shown


_PLAN = (("features", 10.0), ("train", 20.0), ("fold 1/3", 13.33), ("fold 2/3", 13.33), ("fold 3/3", 13.33),
         ("calibrate", 12.0))


def test_a_plan_by_stage_weighs_the_stages_to_come_at_the_pace_kept_so_far():
    """A machine at half the estimated speed: at the end of the training the three folds and the calibration are
    still to come, 104 s at that pace. The whole estimate alone (82 s, of which 60 s are gone) said about 0."""
    slow = 2.0
    planned = RemainingTime(sum(seconds for _, seconds in _PLAN), started=0.0, plan=_PLAN)
    run = _autoencoder_like_run(planned, slow)
    end_of_training = next(shown for now, shown, stage in run if stage == "train" and now == 60.0)
    assert end_of_training == pytest.approx(104.0, rel=0.15)
    assert planned.pace("fold 1/3") == pytest.approx(slow, rel=0.05)
    # The figure climbs towards the real time left as the slow pace shows (never past it), stays close to it
    # through the folds, and moves by a few seconds a step, not in jumps.
    total = run[-1][0]
    for (now, shown, stage), (_, previous, _) in zip(run[1:], run):
        if stage.startswith("fold"):
            assert shown == pytest.approx(total - now, rel=0.2, abs=3.0)
        assert shown <= (total - now) * 1.05 and abs(shown - previous) < 10.0
    whole_only = RemainingTime(sum(seconds for _, seconds in _PLAN), started=0.0)
    assert next(shown for now, shown, stage in _autoencoder_like_run(whole_only, slow)
                if stage == "train" and now == 60.0) < 30.0


def test_a_plan_at_the_estimated_speed_counts_down_with_the_clock():
    planned = RemainingTime(sum(seconds for _, seconds in _PLAN), started=0.0, plan=_PLAN)
    run = _autoencoder_like_run(planned, 1.0)
    total = run[-1][0]
    assert all(shown == pytest.approx(total - now, abs=0.1 * total) for now, shown, _ in run)


def test_a_plan_sent_by_the_job_counts_the_stages_to_come_without_an_estimate():
    """No estimate: the figure is the running stage's own until the job sends its plan (after its first epoch);
    from then on the folds and calibration to come are counted, at the pace the job keeps against its plan."""
    remaining = RemainingTime(None, started=0.0)
    remaining.update("features", 0, 10, 0.0)
    assert remaining.update("features", 5, 10, 5.0) == pytest.approx(5.0)  # the stage alone
    for step in range(6, 11):  # features: 10 s
        remaining.update("features", step, 10, float(step))
    remaining.adopt_plan(_PLAN)  # sent early in the training: 10 s of features, 20 s of training, ...
    assert remaining.estimate_seconds == pytest.approx(sum(seconds for _, seconds in _PLAN))
    shown = [remaining.update("train", epoch, 40, 10.0 + 0.5 * epoch) for epoch in range(1, 41)]
    # From the plan's arrival the figure is the whole job's: the training's 19.5 s and the 52 s after it, not the
    # stage's alone eased towards it.
    assert shown[0] == pytest.approx(19.5 + sum(seconds for _, seconds in _PLAN[2:]), rel=0.1)
    # At the end of the training the folds and the calibration are still to come: 52 s of the plan, not 0.
    assert shown[-1] == pytest.approx(sum(seconds for _, seconds in _PLAN[2:]), rel=0.2)
    assert all(abs(b - a) < 10.0 for a, b in zip(shown, shown[1:]))


def test_an_estimate_made_before_the_start_is_not_replaced_by_the_jobs_own_plan():
    planned = RemainingTime(82.0, started=0.0, plan=_PLAN)
    planned.adopt_plan((("features", 1.0), ("train", 1.0)))
    assert planned.plan["fold 1/3"] == pytest.approx(13.33) and planned.estimate_seconds == 82.0
    empty = RemainingTime(None, started=0.0)
    empty.adopt_plan(())
    assert not empty.plan and empty.estimate_seconds is None
